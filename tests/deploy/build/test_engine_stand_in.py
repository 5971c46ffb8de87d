"""``build_engine``'s orchestration against a stand-in of ``tensorrt`` (no TensorRT needed)."""


from __future__ import annotations

import json
import sys
import types

import onnx
import pytest
import torch

from tamdeploy.deploy.build.engine import (
    build_engine,
    layers_path,
)
from tamdeploy.deploy.runners.trt import (
    read_sidecar,
    sidecar_path,
)
from tamdeploy.errors import TamdeployError
from tamdeploy.plugins.tam_onnx import make_tam_model

# --- build_engine's orchestration against a tensorrt stand-in (no TensorRT needed) ------------------------------


def fake_tensorrt(plugin_layers: int, parse_ok: bool = True, plan: bytes | None = b"PLAN") -> types.ModuleType:
    """A ``tensorrt`` stand-in with just the calls ``build_engine`` makes, recording them in ``trt.calls``."""
    from types import SimpleNamespace as NS

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.0"
    trt.calls = []
    record = trt.calls.append

    class ILogger:
        Severity = NS(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3)

        def __init__(self) -> None:
            pass

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    class ParserError:
        def desc(self):
            return "Unsupported operator Foo"

        def node_name(self):
            return "/layer1/Foo"

        def node_operator(self):
            return "Foo"

    class Parser:
        def __init__(self, network, logger):
            self.num_errors = 0 if parse_ok else 1

        def parse_from_file(self, path):
            record(("parse_from_file", path))
            return parse_ok

        def parse(self, data, path):
            record(("parse", type(data).__name__, path))
            return parse_ok

        def get_error(self, i):
            return ParserError()

    layers = [NS(type="PLUGIN_V3")] * plugin_layers + [NS(type="CONVOLUTION")] * 3
    network = NS(num_layers=len(layers), get_layer=lambda i: layers[i])
    profile = NS(set_shape=lambda *a: record(("set_shape", *a)))
    cache = NS(serialize=lambda: b"CACHE")

    class Config:
        def set_memory_pool_limit(self, pool, size):
            record(("workspace", size))

        def add_optimization_profile(self, p):
            record(("profile",))

        def create_timing_cache(self, data):
            record(("create_timing_cache", bytes(data)))
            return cache

        def set_timing_cache(self, c, ignore_mismatch):
            return True

        def get_timing_cache(self):
            return cache

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            record(("flags", flags))
            return network

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return profile

        def build_serialized_network(self, net, config):
            if plan is None:
                self.logger.log(ILogger.Severity.ERROR, "out of memory")
            return plan

    names = {0: "x", 1: "y"}
    engine = NS(create_engine_inspector=lambda: NS(get_engine_information=lambda fmt: '{"Layers": ["conv"]}'),
                num_io_tensors=2, get_tensor_name=names.get, num_layers=4,
                get_tensor_mode=lambda n: "OUTPUT" if n == "y" else "INPUT")
    trt.ILogger, trt.IProgressMonitor, trt.OnnxParser, trt.Builder = ILogger, IProgressMonitor, Parser, Builder
    trt.Runtime = lambda logger: NS(deserialize_cuda_engine=lambda data: engine)
    trt.NetworkDefinitionCreationFlag = NS(STRONGLY_TYPED=0, PREFER_AOT_PYTHON_PLUGINS=2)
    trt.LayerType, trt.TensorIOMode = NS(PLUGIN_V3="PLUGIN_V3"), NS(OUTPUT="OUTPUT")
    trt.MemoryPoolType, trt.ProfilingVerbosity = NS(WORKSPACE="workspace"), NS(DETAILED="detailed")
    trt.LayerInformationFormat = NS(JSON="json")
    return trt


@pytest.fixture
def stand_in_build(monkeypatch, tmp_path):
    """Run ``build_engine`` on a 2-clip TAM graph against a tensorrt stand-in; returns (run, calls)."""
    from tamdeploy.deploy.build import engine as engine_module
    from tamdeploy.plugins import trt_plugin
    from tamdeploy.plugins.trt_plugin import PluginSupport

    onnx_path = tmp_path / "tam.onnx"
    onnx.save(make_tam_model(8, 3, 4, 5, 5), str(onnx_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(engine_module, "gpu_identity", lambda device=None: ("Fake GPU", "9.0"))
    monkeypatch.setattr(trt_plugin, "register_tam_plugin", lambda: PluginSupport("10.13.0", aot=True))

    def run(trt, **options):
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        kw = dict(batch=(1, 2, 4), workspace_gb=1.5, opt_level=None, timing_cache=tmp_path / "t.cache",
                  progress=True)
        kw.update(options)
        return build_engine(onnx_path, tmp_path / "tam.plan", **kw)

    return run, tmp_path


def test_build_with_the_plugin_writes_plan_sidecar_layers_and_cache(stand_in_build):
    run, root = stand_in_build
    trt = fake_tensorrt(plugin_layers=1)
    result = run(trt)
    assert (result.tam_op, result.tam_nodes, result.plugin_layers) == ("plugin-aot", 1, 1)
    assert ("flags", 1 << 0 | 1 << 2) in trt.calls  # STRONGLY_TYPED | PREFER_AOT_PYTHON_PLUGINS
    assert ("parse_from_file", str(root / "tam.onnx")) in trt.calls
    assert ("set_shape", "x", (1, 4, 5, 5), (2, 4, 5, 5), (4, 4, 5, 5)) in trt.calls  # the batch axis follows batch
    assert ("workspace", int(1.5 * 2**30)) in trt.calls and ("create_timing_cache", b"") in trt.calls
    assert (root / "tam.plan").read_bytes() == b"PLAN" and (root / "t.cache").read_bytes() == b"CACHE"
    assert json.loads(layers_path(root / "tam.plan").read_text())["layers"] == {"Layers": ["conv"]}
    sidecar = read_sidecar(root / "tam.plan")
    assert sidecar["tam_op"] == "plugin-aot" and sidecar["gpu"] == {"name": "Fake GPU", "compute_capability": "9.0"}
    assert sidecar["outputs"] == ["y"] and sidecar["onnx"]["sha256"] == result.onnx_sha256
    assert result.profile.batch == (1, 2, 4) and not result.timing_cache_loaded
    again = run(fake_tensorrt(plugin_layers=1))
    assert again.timing_cache_loaded


def test_build_without_the_plugin_parses_the_inlined_function(stand_in_build):
    run, root = stand_in_build
    trt = fake_tensorrt(plugin_layers=0)
    result = run(trt, use_plugin=False, timing_cache=None, progress=False)
    assert (result.tam_op, result.plugin_layers) == ("onnx-function", 0)
    assert ("parse", "bytes", str(root / "tam.onnx")) in trt.calls and ("flags", 1) in trt.calls
    assert not (root / "t.cache").exists()


def test_build_reports_parser_and_builder_errors_in_one_line(stand_in_build):
    run, root = stand_in_build
    with pytest.raises(TamdeployError, match=r"parser rejected tam.onnx: node /layer1/Foo \(Foo\): Unsupported"):
        run(fake_tensorrt(plugin_layers=1, parse_ok=False))
    with pytest.raises(TamdeployError, match="could not build tam.onnx: out of memory"):
        run(fake_tensorrt(plugin_layers=1, plan=None))
    assert not (root / "tam.plan").exists() and not sidecar_path(root / "tam.plan").exists()


def test_build_checks_its_options_before_building(stand_in_build):
    run, root = stand_in_build
    with pytest.raises(TamdeployError, match="optimization level must be 0..5"):
        run(fake_tensorrt(1), opt_level=9)
    with pytest.raises(TamdeployError, match="workspace must be > 0"):
        run(fake_tensorrt(1), workspace_gb=0)
    with pytest.raises(TamdeployError, match="directory .* does not exist"):
        run(fake_tensorrt(1), timing_cache=root / "missing" / "t.cache")
