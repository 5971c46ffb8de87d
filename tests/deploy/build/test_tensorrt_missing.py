"""Without TensorRT or CUDA: one-line errors that say what is missing and what works instead."""


from __future__ import annotations

import re
import subprocess
import sys
import types

import pytest
import torch
from helpers import REPO_ROOT as ROOT

from tamdeploy.deploy.build.engine import (
    build_engine,
)
from tamdeploy.deploy.runners import TensorRTRunner
from tamdeploy.deploy.runners.trt import (
    BUILD_INSTALL_HINT,
    BUILD_NO_CUDA_HINT,
    INSTALL_HINT,
    NO_CUDA_HINT,
)
from tamdeploy.errors import BackendUnavailableError
from tamdeploy.plugins.trt_plugin import (
    plugin_available,
    register_tam_plugin,
)

# --- without TensorRT or CUDA: one line, no traceback ---------------------------------------------------------


@pytest.fixture
def no_tensorrt(monkeypatch):
    """``import tensorrt`` fails here, whether or not TensorRT is installed (None in sys.modules)."""
    for name in ("tensorrt", "tensorrt.plugin"):
        monkeypatch.setitem(sys.modules, name, None)


def test_build_without_tensorrt_says_how_to_install(tmp_path, no_tensorrt):
    with pytest.raises(BackendUnavailableError) as raised:
        build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", batch=None, workspace_gb=None, opt_level=None,
                     timing_cache=None)
    assert str(raised.value) == BUILD_INSTALL_HINT
    assert BUILD_INSTALL_HINT == ('TensorRT is not installed: pip install "tamdeploy[tensorrt]" on a machine with an '
                                  'NVIDIA GPU; `target=onnxruntime` works here')
    assert not list(tmp_path.iterdir())


@pytest.fixture
def tensorrt_without_cuda(monkeypatch):
    """An importable stand-in ``tensorrt`` on a machine whose torch sees no GPU."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_build_with_tensorrt_but_no_gpu_says_so(tmp_path, tensorrt_without_cuda):
    with pytest.raises(BackendUnavailableError) as raised:
        build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", batch=None, workspace_gb=None, opt_level=None,
                     timing_cache=None)
    assert str(raised.value) == BUILD_NO_CUDA_HINT
    assert BUILD_NO_CUDA_HINT.startswith("CUDA is not available here")
    assert BUILD_NO_CUDA_HINT.endswith("`target=onnxruntime` works here")
    assert not list(tmp_path.iterdir())


def test_runner_with_tensorrt_but_no_gpu_says_so(tmp_path, tensorrt_without_cuda):
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"plan")
    with pytest.raises(BackendUnavailableError) as raised, TensorRTRunner(engine):
        pass
    assert str(raised.value) == NO_CUDA_HINT


def test_runner_without_tensorrt_says_how_to_install(tmp_path, no_tensorrt):
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"plan")
    with pytest.raises(BackendUnavailableError) as raised, TensorRTRunner(engine):
        pass
    assert str(raised.value) == INSTALL_HINT and INSTALL_HINT.endswith("use `backend=onnxruntime` here")


def test_plugin_module_works_without_tensorrt(no_tensorrt):
    assert not plugin_available()
    with pytest.raises(ImportError, match="tensorrt"):
        register_tam_plugin.__wrapped__()  # past the cache: a process with TensorRT may have registered already


def test_engine_and_plugin_modules_import_nothing_optional():
    code = ("import sys; import tamdeploy.deploy.build.engine, tamdeploy.plugins.trt_plugin, tamdeploy.deploy.runners; "
            "print(sorted(m for m in ('tensorrt', 'triton') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_pyproject_offers_the_tensorrt_extra():
    text = (ROOT / "pyproject.toml").read_text()
    extras = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^tensorrt\s*=\s*\["tensorrt>=10\.9', extras, re.MULTILINE), extras
