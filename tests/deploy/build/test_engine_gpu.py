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


TOLERANCE = {"fp32": 5e-3, "fp16": 3e-2, "int8": 0.25}  # relative L2 of the logits vs ONNX Runtime (TF32 in FP32)


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
    assert result.tam_op in (("plugin-aot", "plugin-jit") if use_plugin else ("onnx-function",))
    assert result.tam_nodes > 0 and (result.plugin_layers == result.tam_nodes) == use_plugin
    assert engine.is_file() and cache.is_file() and result.engine_bytes == engine.stat().st_size
    sidecar = json.loads(sidecar_path(engine).read_text())
    assert sidecar["tam_op"] == result.tam_op and sidecar["profiles"][0]["max"][0] == 4
    assert sidecar["config"]["arch"] == arch and sidecar["precision"] == result.precision == precision
    assert "layers" in json.loads(layers_path(engine).read_text())
    for batch in (1, 3):
        feed, expected = onnxruntime_logits(src, batch)
        for cuda_graph in (False, True):
            with TensorRTRunner(engine, cuda_graph=cuda_graph) as runner:
                got = runner.infer(feed)[runner.output_names[0]]
                got = runner.infer(feed)[runner.output_names[0]]  # the graph's replay, when there is one
                assert runner.last_gpu_ms is not None and runner.last_gpu_ms > 0
                assert runner.config is not None and runner.config.arch == arch
            assert rel_l2(got, expected) <= TOLERANCE[precision], (batch, cuda_graph, rel_l2(got, expected))
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
    if result.tam_op != "plugin-aot":
        pytest.skip(f"this TensorRT built a {result.tam_op} engine (AOT plugins need TensorRT >= 10.9)")
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
    import tensorrt as trt
    import tensorrt.plugin as trtp

    from tamdeploy.deploy.runners.trt import make_logger
    from tamdeploy.plugins.tam_reference import tam_aggregate_reference

    support = register_tam_plugin()
    if aot and not support.aot:
        pytest.skip(f"TensorRT {trt.__version__} has no AOT plugins (needs >= 10.9)")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n * t, c, h, w, generator=gen).to("cuda", dtype)
    kernel = torch.softmax(torch.randn(n, c, k, generator=gen), -1).to("cuda", dtype)
    local = torch.sigmoid(torch.randn(n, c, t, generator=gen)).to("cuda", dtype)
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    trt_type = trt.float32 if dtype == torch.float32 else trt.float16
    inputs = [network.add_input(name, trt_type, tuple(a.shape)) for name, a in (("x", x), ("kernel", kernel),
                                                                                 ("local", local))]
    plugin = trtp.op.tamdeploy.TAMAggregate(*inputs, num_segments=t, kernel_size=k)
    layer = network.add_plugin(plugin, aot=aot) if support.aot else network.add_plugin(plugin)
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
    expected = tam_aggregate_reference(x.float(), kernel.float(), local.float())
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-3, "rtol": 2**-10}
    torch.testing.assert_close(y.float(), expected, **tol)
