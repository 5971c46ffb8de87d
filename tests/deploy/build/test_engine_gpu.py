"""Engines built and run for real (small TANet and ACTION-Net, FP32 / FP16 / INT8, with and without the
plugin); marked ``tensorrt``, they skip with the reason where TensorRT or a CUDA GPU is missing."""


from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import REPO_ROOT as ROOT
from helpers.hardware import tensorrt_and_gpu

from tamdeploy.deploy.build.engine import (
    build_engine,
    layers_path,
)
from tamdeploy.deploy.runners import TensorRTRunner, open_runner
from tamdeploy.deploy.runners.trt import (
    EngineMismatchError,
    sidecar_path,
)
from tamdeploy.errors import DataError
from tamdeploy.files import sha256_file
from tamdeploy.plugins.trt_plugin import (
    register_tam_plugin,
)

# --- with TensorRT and a GPU ----------------------------------------------------------------------------------

T, SIZE = 4, 64


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def fp16_graph(src: Path, dst: Path) -> Path:
    """The FP16 graph ``tamdeploy build --fp16`` makes (``deploy.precision``), else ONNX Runtime's converter."""
    model = onnx.load(str(src))
    if importlib.util.find_spec("tamdeploy.deploy.build.fp16") is not None:
        from tamdeploy.deploy.build.fp16 import convert_fp16

        model = convert_fp16(model).model
    else:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(model, str(dst))
    return dst


def int8_graph(src: Path, dst: Path) -> Path:
    """The INT8 Q/DQ graph of ``tamdeploy.deploy.build.int8`` on random calibration clips (skip without it)."""
    if importlib.util.find_spec("tamdeploy.deploy.build.int8") is None:
        pytest.skip("tamdeploy.deploy.build.int8 does not exist: no INT8 graph to build")
    from tamdeploy.deploy.build.int8 import build_int8

    clips = np.random.default_rng(0).standard_normal((8, T, 3, SIZE, SIZE), dtype=np.float32)
    onnx.save(build_int8(onnx.load(str(src)), clips, progress=False).model, str(dst))
    return dst


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    """(arch, precision) -> ONNX path, exported with the TAMAggregate node and its function."""
    from helpers.checkpoints import randomize_

    from tamdeploy.exporters.onnx_export import ExportOptions, export_model
    from tamdeploy.models import create_model

    root = tmp_path_factory.mktemp("trt")
    models = {}
    for arch in ("tanet_r50", "action_r50"):
        model = randomize_(create_model(arch, width=0.25, num_classes=7, input_size=SIZE, num_segments=T), seed=3)
        path = root / f"{arch}.onnx"
        export_model(model, model.config, path, "0" * 64, ExportOptions(tam_op="plugin"))
        models[arch, "fp32"] = path
        models[arch, "fp16"] = fp16_graph(path, root / f"{arch}.fp16.onnx")
    return models


def onnxruntime_logits(path: Path, batch: int) -> tuple[dict, np.ndarray]:
    from tamdeploy.deploy.runners import OnnxRuntimeRunner, random_feed

    with OnnxRuntimeRunner(path, providers=["cpu"]) as ort:
        feed = random_feed(ort.input_specs(), batch, seed=batch)
        return feed, next(iter(ort.infer(feed).values()))


# relative L2 of the logits vs ONNX Runtime on the same graph. FP32: TF32 convolutions. INT8: the Q/DQ
# graph fixes every scale, so both runtimes compute the same integer convolutions; they differ where a
# different fp32 summation order (or TF32 in the unquantized layers) moves a value across a rounding
# boundary of the next quantizer, one step (1/127 of that tensor's range) for a few elements, which
# should leave the logits within about 1e-2 (an estimate, to be confirmed on a GPU). 0.05 keeps room for
# that; a wrong scale, a lost Q/DQ pair or a wrong layer moves them by far more (0.25 let such engines pass).
TOLERANCE = {"fp32": 5e-3, "fp16": 3e-2, "int8": 0.05}


@pytest.mark.tensorrt
@tensorrt_and_gpu
@pytest.mark.parametrize("use_plugin", [True, False], ids=["plugin", "onnx-function"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("arch", ["tanet_r50", "action_r50"])
def test_build_run_and_parity(onnx_models, tmp_path, arch, precision, use_plugin):
    src = (int8_graph(onnx_models[arch, "fp32"], tmp_path / "model.int8.onnx") if precision == "int8"
           else onnx_models[arch, precision])
    engine = tmp_path / "model.plan"
    cache = tmp_path / "timing.cache"
    result = build_engine(src, engine, batch=(1, 2, 4), workspace_gb=2.0, opt_level=None, timing_cache=cache,
                          use_plugin=use_plugin, progress=False)
    # the plugin's AOT implementation needs TensorRT >= 10.9, which the tensorrt extra requires: JIT is a failure
    assert result.tam_op == ("plugin-aot" if use_plugin else "onnx-function")
    assert result.tam_nodes > 0 and (result.plugin_layers == result.tam_nodes) == use_plugin
    assert engine.is_file() and cache.is_file() and result.engine_bytes == engine.stat().st_size
    sidecar = json.loads(sidecar_path(engine).read_text())
    assert sidecar["tam_op"] == result.tam_op and sidecar["profiles"][0]["max"][0] == 4
    assert sidecar["engine"] == {"bytes": engine.stat().st_size, "sha256": sha256_file(engine)}
    assert sidecar["config"]["arch"] == arch and sidecar["precision"] == result.precision == precision
    assert "layers" in json.loads(layers_path(engine).read_text())
    expected = {batch: onnxruntime_logits(src, batch) for batch in (1, 3)}
    for cuda_graph in (False, True):
        with TensorRTRunner(engine, cuda_graph=cuda_graph) as runner:
            assert runner.config is not None and runner.config.arch == arch
            for batch in (1, 3, 1, 3):  # the input shape changes inside one runner, and comes back
                feed, want = expected[batch]
                got = runner.infer(feed)[runner.output_names[0]]
                assert runner.last_gpu_ms is not None and runner.last_gpu_ms > 0
                assert rel_l2(got, want) <= TOLERANCE[precision], (batch, cuda_graph, rel_l2(got, want))
            # each shape: captured after its first run, replayed on its second
            assert (runner.graph_captures, runner.graph_replays) == ((2, 2) if cuda_graph else (0, 0)), runner.notes
            assert runner.notes == []
    again = build_engine(src, engine, batch=(1, 2, 4), workspace_gb=2.0, opt_level=1, timing_cache=cache,
                         use_plugin=use_plugin, progress=False)
    assert again.timing_cache_loaded


@pytest.fixture(scope="module")
def tanet_engine(onnx_models, tmp_path_factory):
    path = tmp_path_factory.mktemp("engine") / "tanet.plan"
    result = build_engine(onnx_models["tanet_r50", "fp32"], path, batch=(1, 1, 2), workspace_gb=None,
                          opt_level=None, timing_cache=None, use_plugin=True, progress=False)
    return path, result


@pytest.mark.tensorrt
@tensorrt_and_gpu
def test_runner_refuses_batches_outside_the_profile_and_other_tensorrt_versions(tanet_engine):
    path, _ = tanet_engine
    with open_runner(path) as runner:
        assert runner.batch_range == (1, 2) and runner.input_shape == (None, T, 3, SIZE, SIZE)
        feed = {runner.input_name: np.zeros((3, T, 3, SIZE, SIZE), np.float32)}
        with pytest.raises(DataError, match="batch 3, outside the engine's profile 1..2"):
            runner.infer(feed)
    sidecar = json.loads(sidecar_path(path).read_text())
    sidecar["tensorrt_version"] = "9.0.0"
    sidecar_path(path).write_text(json.dumps(sidecar))
    try:
        with pytest.raises(EngineMismatchError, match="built for TensorRT 9.0.0"), TensorRTRunner(path):
            pass
    finally:
        sidecar["tensorrt_version"] = _tensorrt_version()
        sidecar_path(path).write_text(json.dumps(sidecar))


def _tensorrt_version() -> str:
    import tensorrt

    return tensorrt.__version__


@pytest.mark.tensorrt
@tensorrt_and_gpu
def test_aot_engine_runs_without_the_python_plugin(tanet_engine):
    path, result = tanet_engine
    assert result.tam_op == "plugin-aot"  # TensorRT >= 10.9 (the extra's floor) builds AOT plugins
    code = ("import sys, numpy as np; from tamdeploy.deploy.runners import TensorRTRunner\n"
            f"with TensorRTRunner({str(path)!r}) as r:\n"
            f"    y = r.infer({{r.input_name: np.ones((1, {T}, 3, {SIZE}, {SIZE}), np.float32)}})\n"
            "import tensorrt.plugin._lib as lib\n"
            "print(sorted(lib.QDP_REGISTRY), np.isfinite(next(iter(y.values()))).all())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]", "True"]


@pytest.mark.tensorrt
@tensorrt_and_gpu
@pytest.mark.parametrize("aot", [True, False], ids=["aot", "jit"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(("n", "t", "k", "c", "h", "w"), [(2, 8, 3, 16, 7, 7), (1, 1, 7, 3, 5, 5), (3, 4, 5, 8, 9, 9)])
def test_plugin_in_a_network_matches_the_reference(aot, dtype, n, t, k, c, h, w):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n * t, c, h, w, generator=gen).to("cuda", dtype)
    kernel = torch.softmax(torch.randn(n, c, k, generator=gen), -1).to("cuda", dtype)
    local = torch.sigmoid(torch.randn(n, c, t, generator=gen)).to("cuda", dtype)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-3, "rtol": 2**-10}
    y = run_plugin_network(x, kernel, local, aot=aot)
    torch.testing.assert_close(y.float(), reference(x, kernel, local), **tol)


@pytest.mark.tensorrt
@tensorrt_and_gpu
@pytest.mark.parametrize("aot", [True, False], ids=["aot", "jit"])
def test_fp16_plugin_accumulates_in_fp32(aot):
    # X near 1000 (an fp16 ulp there is 0.5), K = 7 zero-sum taps, T = 16: a kernel that accumulates
    # FP16 in FP16 drifts past the FP16 tolerance here (tests/plugins/test_triton_tam.py shows it)
    gen = torch.Generator().manual_seed(0)
    x = (1000 + 8 * torch.randn(2 * 16, 8, 4, 4, generator=gen)).to("cuda", torch.float16)
    taps = torch.randn(2, 8, 7, generator=gen)
    kernel = (taps - taps.mean(-1, keepdim=True)).to("cuda", torch.float16)
    local = torch.sigmoid(torch.randn(2, 8, 16, generator=gen)).to("cuda", torch.float16)
    y = run_plugin_network(x, kernel, local, aot=aot)
    torch.testing.assert_close(y.float(), reference(x, kernel, local), atol=1e-3, rtol=2**-10)


def reference(x: torch.Tensor, kernel: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    from tamdeploy.plugins.tam_reference import tam_aggregate_reference

    return tam_aggregate_reference(x.float(), kernel.float(), local.float())


def run_plugin_network(x: torch.Tensor, kernel: torch.Tensor, local: torch.Tensor, *, aot: bool) -> torch.Tensor:
    """Y of a network that is only the TAMAggregate plugin (its AOT or JIT implementation) on CUDA tensors."""
    import tensorrt as trt
    import tensorrt.plugin as trtp

    from tamdeploy.deploy.runners.trt import make_logger

    support = register_tam_plugin()
    assert support.aot, f"TensorRT {trt.__version__} has no AOT plugins (the tensorrt extra needs >= 10.9)"
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    trt_type = trt.float32 if x.dtype == torch.float32 else trt.float16
    inputs = [network.add_input(name, trt_type, tuple(a.shape)) for name, a in (("x", x), ("kernel", kernel),
                                                                                 ("local", local))]
    plugin = trtp.op.tamdeploy.TAMAggregate(*inputs, num_segments=local.shape[-1], kernel_size=kernel.shape[-1])
    layer = network.add_plugin(plugin, aot=aot)
    layer.get_output(0).name = "y"
    network.mark_output(layer.get_output(0))
    plan = builder.build_serialized_network(network, builder.create_builder_config())
    assert plan is not None, logger.errors
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    y = torch.empty_like(x)
    for name, tensor in (("x", x), ("kernel", kernel), ("local", local), ("y", y)):
        context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.Stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return y
