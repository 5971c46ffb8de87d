"""Runners: PyTorch and ONNX Runtime agree, feeds are checked, the lifecycle holds, artifacts pick
their runner, and TensorRT's slot says what to install."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from tamdeploy.compare import compare
from tamdeploy.deploy.runners import (
    INSTALL_HINT,
    OnnxRuntimeRunner,
    Runner,
    TensorRTRunner,
    TensorSpec,
    TorchRunner,
    available_providers,
    open_runner,
    random_feed,
)
from tamdeploy.deploy.runners.torch_runner import use_ieee_fp32
from tamdeploy.errors import BackendUnavailableError, DataError, ModelConfigError, TamdeployError
from tamdeploy.exporters.metadata import ModelMetadata, write_metadata
from tamdeploy.models import create_model, randomize_batchnorm_, save_checkpoint
from tamdeploy.models.config import ModelConfig
from tamdeploy.models.resnet import ResNet

SIZE, T, CLASSES = 64, 4, 10
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def model() -> ResNet:
    torch.manual_seed(0)
    net = create_model("tsn_r50", width=0.25, input_size=SIZE, num_segments=T, num_classes=CLASSES)
    return randomize_batchnorm_(net, affine=True)


@pytest.fixture(scope="module")
def onnx_path(model: ResNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny TSN exported with the dynamo exporter (dynamic batch), with tamdeploy metadata."""
    example = torch.randn(2, T, 3, SIZE, SIZE)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["video"],
                                    output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    proto = program.model_proto
    write_metadata(proto, ModelMetadata(config=model.config, input_name="video", input_layout="NTCHW",
                                        precision="fp32", checkpoint_sha256="0" * 64, tam_op="none"))
    path = tmp_path_factory.mktemp("onnx") / "tsn_tiny.onnx"
    onnx.save(proto, path)
    return path


# --- parity ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
def test_torch_and_onnxruntime_agree(model: ResNet, onnx_path: Path, batch: int) -> None:
    with TorchRunner(model) as pt, OnnxRuntimeRunner(onnx_path, providers=["cpu"]) as ort:
        assert pt.input_specs() == ort.input_specs() == [
            TensorSpec("video", (None, T, 3, SIZE, SIZE), np.dtype(np.float32))]
        assert pt.output_names == ort.output_names == ["logits"]
        feed = random_feed(pt.input_specs(), batch, seed=batch)
        ours, reference = ort.infer(feed)["logits"], pt.infer(feed)["logits"]
    assert ours.shape == reference.shape == (batch, CLASSES)
    result = compare(ours, reference)
    assert result.rel_l2_error < 1e-5, result
    assert result.top1_agreement == 1.0


def test_runners_describe_themselves(model: ResNet, onnx_path: Path) -> None:
    with TorchRunner(model, device="cpu") as pt, OnnxRuntimeRunner(onnx_path, providers=["cpu"], threads=1) as ort:
        assert (pt.name, ort.name) == ("pytorch", "onnxruntime-cpu")
        assert pt.config == ort.config == model.config  # from the module / from the ONNX metadata
        assert (ort.precision, ort.metadata.input_layout) == ("fp32", "NTCHW")
        for runner in (pt, ort):
            assert (runner.input_name, runner.input_shape, runner.frames_per_clip) == (
                "video", (None, T, 3, SIZE, SIZE), T)


def test_onnx_without_tamdeploy_metadata_still_runs(model: ResNet, onnx_path: Path) -> None:
    proto = onnx.load(onnx_path)
    del proto.metadata_props[:]
    with OnnxRuntimeRunner(proto.SerializeToString()) as ort:
        assert ort.config is None and ort.metadata is None
        assert ort.frames_per_clip == T  # read from the NTCHW input instead
        assert ort.infer(random_feed(ort.input_specs(), 2))["logits"].shape == (2, CLASSES)


def test_torch_compile(model: ResNet, monkeypatch: pytest.MonkeyPatch) -> None:
    # the "eager" backend traces with dynamo like the default but skips inductor's C++ build (minutes here)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    with TorchRunner(model, compile=True) as compiled, TorchRunner(model) as eager:
        assert compiled.name == "pytorch-compile"
        feed = random_feed(eager.input_specs(), 2)
        np.testing.assert_allclose(compiled.infer(feed)["logits"], eager.infer(feed)["logits"], rtol=1e-5,
                                   atol=1e-6)


# --- feed checks -------------------------------------------------------------------------------------

GOOD = np.zeros((2, T, 3, SIZE, SIZE), np.float32)
BAD_FEEDS = {
    "wrong name": ({"clip": GOOD}, r"unexpected input\(s\) 'clip'; the model takes 'video' "
                                   r"float32\[\?, 4, 3, 64, 64\]"),
    "missing": ({}, "input 'video' is missing from the feed"),
    "extra": ({"video": GOOD, "mask": GOOD}, r"unexpected input\(s\) 'mask'"),
    "rank": ({"video": GOOD[:, 0]}, r"has 4 dimensions \[2, 3, 64, 64\]; the model takes 5"),
    "shape": ({"video": GOOD[:, :2]}, r"dimension 1 must be 4 \(the model takes \[\?, 4, 3, 64, 64\]\)"),
    "size": ({"video": GOOD[..., :32]}, "dimension 4 must be 64"),
    "dtype": ({"video": GOOD.astype(np.float64)}, r"is float64; the model takes float32 \(convert with "
                                                   r"\.astype\(np\.float32\)\)"),
    "not an array": ({"video": GOOD.tolist()}, "must be a numpy array, got list"),
}


@pytest.mark.parametrize("kind", ["pytorch", "onnxruntime"])
@pytest.mark.parametrize("case", list(BAD_FEEDS))
def test_bad_feeds_are_refused(model: ResNet, onnx_path: Path, kind: str, case: str) -> None:
    feed, message = BAD_FEEDS[case]
    runner = TorchRunner(model) if kind == "pytorch" else OnnxRuntimeRunner(onnx_path)
    with runner, pytest.raises(DataError, match=message):
        runner.infer(feed)


def test_random_feed_refuses_what_it_cannot_make() -> None:
    with pytest.raises(DataError, match="fixed batch of 1"):
        random_feed([TensorSpec("x", (1, 3), np.dtype(np.float32))], batch=4)
    with pytest.raises(DataError, match="only the batch may be dynamic"):
        random_feed([TensorSpec("x", (None, None), np.dtype(np.float32))], batch=4)
    with pytest.raises(DataError, match="only float inputs"):
        random_feed([TensorSpec("ids", (None, 3), np.dtype(np.int64))], batch=4)
    feed = random_feed([TensorSpec("x", (None, 3), np.dtype(np.float16))], batch=4, seed=7)
    assert feed["x"].shape == (4, 3) and feed["x"].dtype == np.float16
    np.testing.assert_array_equal(feed["x"], random_feed([TensorSpec("x", (None, 3), np.dtype(np.float16))], 4, 7)["x"])


# --- lifecycle ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pytorch", "onnxruntime"])
def test_context_manager_lifecycle(model: ResNet, onnx_path: Path, kind: str) -> None:
    runner: Runner = TorchRunner(model) if kind == "pytorch" else OnnxRuntimeRunner(onnx_path)
    assert not runner.is_active and runner.load_seconds is None
    with pytest.raises(RuntimeError, match="not active"):
        runner.infer({"video": GOOD})
    with pytest.raises(RuntimeError, match="not active"):
        runner.input_specs()
    for _ in range(2):  # a runner can be activated again after it was freed
        with runner as active:
            assert active is runner and runner.is_active
            assert runner.load_seconds > 0
            assert runner.infer({"video": GOOD})["logits"].shape == (2, CLASSES)
            with pytest.raises(RuntimeError, match="already active"):
                runner.activate()
        assert not runner.is_active
        with pytest.raises(RuntimeError, match="not active"):
            _ = runner.output_names


def test_runner_frees_on_exit_and_on_error(model: ResNet, onnx_path: Path) -> None:
    ort = OnnxRuntimeRunner(onnx_path)
    with pytest.raises(ZeroDivisionError), ort:
        assert ort._session is not None
        _ = 1 / 0
    assert not ort.is_active and ort._session is None


def test_torch_threads_are_set_while_active_and_restored(model: ResNet) -> None:
    before = torch.get_num_threads()
    with TorchRunner(model, threads=1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_torch_runner_needs_a_config() -> None:
    with pytest.raises(ModelConfigError, match="needs the model's config"), TorchRunner(nn.Linear(3, 2)):
        pass


# --- backends that are not here ----------------------------------------------------------------------


def test_import_needs_no_optional_backend() -> None:
    # tensorrt blocked (None in sys.modules makes its import fail); onnxruntime and matplotlib load lazily
    code = ("import sys; sys.modules['tensorrt'] = None; import tamdeploy.deploy.runners, tamdeploy.deploy.bench; "
            "print(sorted(m for m in ('onnxruntime', 'tensorrt', 'matplotlib') if sys.modules.get(m)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_tensorrt_runner_says_how_to_install(tmp_path: Path) -> None:
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"not an engine")
    for runner in (TensorRTRunner(engine), open_runner(engine)):
        assert isinstance(runner, TensorRTRunner) and runner.name == "tensorrt"
        with pytest.raises(BackendUnavailableError) as raised, runner:
            pass
        assert str(raised.value) == INSTALL_HINT
        assert 'pip install "tamdeploy[tensorrt]"' in INSTALL_HINT and "`backend=onnxruntime`" in INSTALL_HINT
        assert not runner.is_active


@pytest.mark.skipif("CUDAExecutionProvider" in available_providers(), reason="onnxruntime-gpu is installed")
def test_onnxruntime_gpu_providers_need_onnxruntime_gpu(onnx_path: Path) -> None:
    for provider in ("cuda", "TensorrtExecutionProvider"):
        with pytest.raises(BackendUnavailableError, match="needs onnxruntime-gpu"):
            OnnxRuntimeRunner(onnx_path, providers=[provider])


def test_onnxruntime_unknown_provider(onnx_path: Path) -> None:
    with pytest.raises(TamdeployError, match="unknown ONNX Runtime provider 'tpu'"):
        OnnxRuntimeRunner(onnx_path, providers=["tpu"])


def test_onnxruntime_damaged_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00garbage")
    with pytest.raises(TamdeployError, match="ONNX Runtime cannot load .*broken.onnx"), OnnxRuntimeRunner(broken):
        pass


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_torch_cuda_unavailable(model: ResNet) -> None:
    runner = TorchRunner(model, device="cuda")
    assert runner.name == "pytorch-cuda"
    with pytest.raises(BackendUnavailableError, match="CUDA is not available here"), runner:
        pass


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_torch_cuda_matches_cpu(model: ResNet) -> None:
    before = torch.backends.cudnn.conv.fp32_precision
    with TorchRunner(model, device="cuda") as gpu, TorchRunner(model, device="cpu") as cpu:
        assert not torch.backends.cudnn.allow_tf32
        feed = random_feed(cpu.input_specs(), 3)
        # fp32 is IEEE fp32 on the GPU too (TF32 multiplies with 10 mantissa bits)
        assert compare(gpu.infer(feed)["logits"], cpu.infer(feed)["logits"]).rel_l2_error < 1e-5
    assert torch.backends.cudnn.conv.fp32_precision == before


def test_ieee_fp32_is_switched_on_and_restored() -> None:
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    per_op = (cudnn.conv, cudnn.rnn, matmul)
    try:
        # PyTorch's defaults, set through the legacy flags: restored through them, and still readable
        cudnn.allow_tf32, matmul.allow_tf32 = True, False
        restore = use_ieee_fp32()
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (False, False)
        restore()
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (True, False)
        # a mix set through the per-op API (legacy reads raise then): restored exactly
        mix = ("tf32", "ieee", "tf32")
        for s, value in zip(per_op, mix, strict=True):
            s.fp32_precision = value
        restore = use_ieee_fp32()
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (False, False)
        restore()
        assert tuple(s.fp32_precision for s in per_op) == mix
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = True, False  # PyTorch's defaults, readable by both APIs


@pytest.mark.cuda
@pytest.mark.skipif("CUDAExecutionProvider" not in available_providers(), reason="needs onnxruntime-gpu")
def test_onnxruntime_cuda_matches_cpu(onnx_path: Path) -> None:
    with OnnxRuntimeRunner(onnx_path, providers=["cuda"]) as gpu, OnnxRuntimeRunner(onnx_path) as cpu:
        assert gpu.name == "onnxruntime-cuda"
        feed = random_feed(cpu.input_specs(), 3)
        assert compare(gpu.infer(feed)["logits"], cpu.infer(feed)["logits"]).rel_l2_error < 1e-3


# --- open_runner -------------------------------------------------------------------------------------


def test_open_runner_picks_by_suffix(model: ResNet, onnx_path: Path, tmp_path: Path) -> None:
    checkpoint = save_checkpoint(model, None, tmp_path / "tsn.pt")
    for suffix in (".pth", ".ckpt"):
        checkpoint.with_suffix(suffix).write_bytes(checkpoint.read_bytes())
        assert isinstance(open_runner(checkpoint.with_suffix(suffix)), TorchRunner)
    engine = tmp_path / "tsn.engine"
    engine.touch()
    assert isinstance(open_runner(engine), TensorRTRunner)
    with open_runner(checkpoint, device="cpu", threads=1) as pt, open_runner(onnx_path, backend="onnxruntime") as ort:
        assert isinstance(pt, TorchRunner) and isinstance(ort, OnnxRuntimeRunner)
        assert pt.config == model.config and pt.name == "pytorch"
        feed = random_feed(ort.input_specs(), 2)
        assert compare(pt.infer(feed)["logits"], ort.infer(feed)["logits"]).rel_l2_error < 1e-5


def test_open_runner_checkpoint_options(model: ResNet, tmp_path: Path) -> None:
    checkpoint = save_checkpoint(model, None, tmp_path / "tsn.pt")
    with open_runner(checkpoint, backend="pytorch", input_size=96, num_segments=None, compile=False) as pt:
        assert pt.input_shape == (None, T, 3, 96, 96)
        assert isinstance(pt.config, ModelConfig) and pt.config.input_size == 96


@pytest.mark.parametrize(("name", "backend", "opts", "message"), [
    ("model.tflite", None, {},
     r"unknown suffix '\.tflite'; expected one of \.pt, \.pth, \.ckpt, \.tar, \.onnx, \.xml, \.plan"),
    ("model", None, {}, r"unknown suffix '\(none\)'"),
    ("model.onnx", "tensorrt", {},
     r"build a TensorRT engine from it first \(tamdeploy build model\.onnx --target tensorrt\)"),
    ("model.onnx", "pytorch", {}, "runs on onnxruntime"),
    ("model.pt", "onnxruntime", {}, r"export it to ONNX first \(tamdeploy export model\.pt\)"),
    ("model.plan", "onnxruntime", {}, "runs only on tensorrt"),
    ("model.onnx", "coreml", {}, "unknown backend 'coreml'; use one of pytorch, onnxruntime, openvino, tensorrt"),
    ("model.xml", "onnxruntime", {}, "is an OpenVINO IR, which runs only on openvino"),
    ("missing.onnx", None, {}, "missing.onnx does not exist"),
    ("model.onnx", None, {"compile": True, "device": "cuda"},
     r"option\(s\) compile, device do not apply to the onnxruntime runner \(model\.onnx\); it takes providers, "),
])
def test_open_runner_errors(tmp_path: Path, name: str, backend: str | None, opts: dict, message: str) -> None:
    path = tmp_path / name
    if not name.startswith("missing"):
        path.touch()
    with pytest.raises(TamdeployError, match=message):
        open_runner(path, backend, **opts)


def test_open_runner_ignores_unset_options(onnx_path: Path) -> None:
    runner = open_runner(onnx_path, threads=None, compile=None, providers=None)
    assert isinstance(runner, OnnxRuntimeRunner) and runner.name == "onnxruntime-" + (
        "cuda" if "CUDAExecutionProvider" in available_providers() else "cpu")
