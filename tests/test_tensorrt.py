"""TensorRT: engine build, sidecar, runner and the TAMAggregate plugin.

Everything that does not need TensorRT runs everywhere: batch profiles, the ONNX side of a build,
sidecar checks and their messages, the plugin's shape / type / attribute logic, the one-line errors
without TensorRT or CUDA. Tests marked ``tensorrt`` build and run engines (small TANet and ACTION-Net,
FP32 and FP16, with and without the plugin, INT8 where ``tamdeploy.deploy.quantize`` provides a
graph) and skip with the reason where TensorRT or a CUDA GPU is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from tamdeploy.deploy.engine import (
    BUILD_INSTALL_HINT,
    BUILD_NO_CUDA_HINT,
    DEFAULT_BATCH,
    BatchProfile,
    EngineBuildResult,
    EngineMismatchError,
    build_engine,
    check_batch_range,
    check_sidecar,
    count_tam_nodes,
    graph_precision,
    layers_path,
    make_sidecar,
    onnx_input_dims,
    parse_batch_range,
    read_sidecar,
    resolve_profile,
    sidecar_path,
)
from tamdeploy.deploy.runners import TensorRTRunner, open_runner
from tamdeploy.deploy.runners.tensorrt_runner import NO_CUDA_HINT
from tamdeploy.errors import BackendUnavailableError, DataError, TamdeployError
from tamdeploy.onnx_model import make_model
from tamdeploy.plugins.tam_onnx import TAM_OP_TYPE, TAM_PLUGIN_NAMESPACE, make_tam_model
from tamdeploy.plugins.trt_plugin import (
    AUTOTUNE_TYPES,
    PLUGIN_ID,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    TAMPluginError,
    plugin_available,
    plugin_output_dtype,
    plugin_output_shape,
    register_tam_plugin,
    resolve_segments_and_kernel,
)

ROOT = Path(__file__).resolve().parents[1]
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_CUDA = torch.cuda.is_available()
SKIP_REASON = ("TensorRT is not installed (pip install 'tamdeploy[tensorrt]')" if not HAS_TENSORRT
               else "needs an NVIDIA GPU (torch.cuda.is_available() is False)")
tensorrt_and_gpu = pytest.mark.skipif(not (HAS_TENSORRT and HAS_CUDA), reason=SKIP_REASON)


# --- batch profile --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("8", (8, 8, 8)), ("1,16", (1, 1, 16)), ("1, 4, 16", (1, 4, 16)), ("2,2,2", (2, 2, 2)),
])
def test_parse_batch_range(text, expected):
    assert parse_batch_range(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("a", "must be B, MIN,MAX or MIN,OPT,MAX"), ("1,2,3,4", "must be B, MIN,MAX or MIN,OPT,MAX"),
    ("0,1,2", "smallest batch must be >= 1"), ("4,2,8", "min <= opt <= max"), ("1,9,8", "min <= opt <= max"),
])
def test_bad_batch_ranges_say_what_is_wrong(text, message):
    with pytest.raises(TamdeployError, match=message):
        parse_batch_range(text)


def test_check_batch_range_wants_three_integers():
    with pytest.raises(TamdeployError, match="three integers"):
        check_batch_range((1, 2))
    with pytest.raises(TamdeployError, match="three integers"):
        check_batch_range((1, 2.0, 3))


def test_default_profile_covers_the_bench_default_batches():
    from tamdeploy.deploy.bench import DEFAULT_BATCHES

    lo, opt, hi = DEFAULT_BATCH
    assert lo == opt == 1 and hi >= max(DEFAULT_BATCHES) and hi >= 8


def test_video_profile_replaces_the_batch_and_keeps_the_clip_shape():
    profile = resolve_profile("video", ["N", 8, 3, 224, 224], (1, 4, 16))
    assert profile == BatchProfile("video", (1, 8, 3, 224, 224), (4, 8, 3, 224, 224), (16, 8, 3, 224, 224))
    assert profile.batch == (1, 4, 16)
    assert BatchProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile
    assert resolve_profile("image", [None, 3, 64, 64], None).batch == DEFAULT_BATCH


def test_profile_fills_symbolic_dims_from_the_metadata_and_checks_static_ones():
    profile = resolve_profile("video", ["N", "T", 3, "S", "S"], None, fallback_shape=(4, 3, 64, 64))
    assert profile.max == (16, 4, 3, 64, 64)
    with pytest.raises(TamdeployError, match="metadata says"):
        resolve_profile("video", ["N", 8, 3, 64, 64], None, fallback_shape=(4, 3, 64, 64))
    with pytest.raises(TamdeployError, match="only the batch may be dynamic"):
        resolve_profile("video", ["N", "T", 3, 64, 64], None)


def test_static_batch_allows_only_itself():
    assert resolve_profile("image", [2, 3, 8, 8], None).batch == (2, 2, 2)
    assert resolve_profile("image", [2, 3, 8, 8], (2, 2, 2)).batch == (2, 2, 2)
    with pytest.raises(TamdeployError, match="fixed batch of 2"):
        resolve_profile("image", [2, 3, 8, 8], (1, 2, 4))


# --- the ONNX side of a build -----------------------------------------------------------------------------


def tiny_graph(nodes, initializers=(), elem=TensorProto.FLOAT) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, ["N", 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=list(initializers))
    return make_model(graph)


def test_onnx_input_dims_skips_initializers_and_keeps_symbols():
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    model = tiny_graph([helper.make_node("Mul", ["x", "w"], ["y"])], [w])
    model.graph.input.insert(0, helper.make_tensor_value_info("w", TensorProto.FLOAT, [1]))
    assert onnx_input_dims(model) == ("x", ["N", 3, 4, 4])


def test_tam_nodes_are_counted_by_op_type_and_domain():
    assert (PLUGIN_NAME, PLUGIN_NAMESPACE) == (TAM_OP_TYPE, TAM_PLUGIN_NAMESPACE)  # what the parser matches
    assert PLUGIN_ID == "tamdeploy::TAMAggregate"
    assert count_tam_nodes(make_tam_model(8, 3, 4, 5, 5)) == 1
    assert count_tam_nodes(make_tam_model(8, 3, 4, 5, 5, inline=True)) == 0


def test_graph_precision():
    assert graph_precision(tiny_graph([helper.make_node("Relu", ["x"], ["y"])])) == "fp32"
    cast = helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16)
    back = helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)
    assert graph_precision(tiny_graph([cast, back])) == "fp16"
    s = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zp = helper.make_tensor("z", TensorProto.INT8, [], [0])
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])
    dq = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])
    assert graph_precision(tiny_graph([q, dq], [s, zp])) == "int8"


# --- sidecar ------------------------------------------------------------------------------------------------


def fake_result(tmp_path: Path, **kw) -> EngineBuildResult:
    engine = tmp_path / "model.plan"
    fields = dict(
        engine_path=engine, sidecar_path=sidecar_path(engine), layers_path=layers_path(engine),
        onnx_path=tmp_path / "model.onnx", onnx_sha256="ab" * 32, precision="fp16", tensorrt_version="10.13.0.35",
        gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
        profile=resolve_profile("video", ["N", 8, 3, 224, 224], None), tam_op="plugin-aot", tam_nodes=16,
        plugin_layers=16, engine_bytes=123, num_layers=200, build_seconds=12.3456, workspace_gb=4.0, opt_level=3,
        timing_cache=tmp_path / "timing.cache", timing_cache_loaded=False,
    )
    fields.update(kw)
    return EngineBuildResult(**fields)


def test_engine_artifact_paths():
    assert sidecar_path(Path("out/model.plan")) == Path("out/model.plan.json")
    assert layers_path(Path("out/model.plan")) == Path("out/model.layers.json")


def test_build_result_and_sidecar_are_json(tmp_path):
    result = fake_result(tmp_path)
    d = json.loads(json.dumps(result.to_dict()))
    assert d["engine_path"].endswith("model.plan") and d["profile"]["max"][0] == DEFAULT_BATCH[2]
    assert d["tam_op"] == "plugin-aot" and d["build_seconds"] == 12.346
    sidecar = make_sidecar(result, outputs=["logits"], plugin={"aot": True})
    sidecar_path(result.engine_path).write_text(json.dumps(sidecar))
    read = read_sidecar(result.engine_path)
    assert read["tensorrt_version"] == "10.13.0.35" and read["gpu"]["compute_capability"] == "9.0"
    assert read["onnx"]["sha256"] == "ab" * 32 and read["precision"] == "fp16" and read["outputs"] == ["logits"]
    assert BatchProfile.from_dict(read["profiles"][0]) == result.profile


def test_missing_and_damaged_sidecars(tmp_path):
    engine = tmp_path / "model.plan"
    assert read_sidecar(engine) is None
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(EngineMismatchError, match="damaged"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(EngineMismatchError, match="not a tamdeploy engine sidecar"):
        read_sidecar(engine)


def test_check_sidecar_accepts_the_same_tensorrt_and_gpu(tmp_path):
    sidecar = make_sidecar(fake_result(tmp_path), outputs=["logits"])
    check_sidecar(sidecar, tmp_path / "model.plan", tensorrt_version="10.13.0.35", gpu_name="NVIDIA H100 80GB HBM3",
                  compute_capability="9.0")


@pytest.mark.parametrize(("trt_version", "gpu", "cc", "built", "here"), [
    ("10.14.1", "NVIDIA H100 80GB HBM3", "9.0", "TensorRT 10.13.0.35", "TensorRT 10.14.1"),
    ("10.13.0.35", "NVIDIA A100-SXM4-40GB", "8.0", "NVIDIA H100 80GB HBM3 (sm_90)", "NVIDIA A100-SXM4-40GB (sm_80)"),
    ("11.1.0", "NVIDIA L4", "8.9", "TensorRT 10.13.0.35 on NVIDIA H100 80GB HBM3 (sm_90)",
     "TensorRT 11.1.0 on NVIDIA L4 (sm_89)"),
])
def test_check_sidecar_refuses_another_tensorrt_or_gpu_in_one_line(tmp_path, trt_version, gpu, cc, built, here):
    result = fake_result(tmp_path)
    sidecar = make_sidecar(result, outputs=["logits"])
    with pytest.raises(EngineMismatchError) as raised:
        check_sidecar(sidecar, result.engine_path, tensorrt_version=trt_version, gpu_name=gpu, compute_capability=cc)
    message = str(raised.value)
    assert "\n" not in message
    assert f"model.plan was built for {built}; this machine has {here}" in message
    assert f"tamdeploy build {result.onnx_path}" in message


# --- the plugin's TensorRT-independent logic ----------------------------------------------------------------


def test_plugin_type_rules():
    assert plugin_output_dtype("float32", "float32", "float32") == "float32"
    assert plugin_output_dtype("float16", "float16", "float16") == "float16"
    with pytest.raises(TAMPluginError, match="share one type"):
        plugin_output_dtype("float16", "float32", "float16")
    with pytest.raises(TAMPluginError, match="float32 or float16"):
        plugin_output_dtype("int8", "int8", "int8")
    assert AUTOTUNE_TYPES.count(",") == 3 and all(p.strip() == "FP32|FP16" for p in AUTOTUNE_TYPES.split(","))


def test_plugin_shape_descriptor_is_x_shape_and_checks_known_dims():
    assert plugin_output_shape([16, 64, 56, 56], [2, 64, 3], [2, 64, 8]) == (16, 64, 56, 56)
    assert plugin_output_shape([None, 64, 56, 56], [None, 64, 3], [None, 64, 8]) == (None, 64, 56, 56)
    assert plugin_output_shape([-1, 8, 7, 7], [-1, 8, 3], [-1, 8, 4]) == (-1, 8, 7, 7)
    for args, message in (
        (([16, 64, 56], [2, 64, 3], [2, 64, 8]), "X must be"),
        (([16, 64, 56, 56], [2, 64], [2, 64, 8]), "kernel must be"),
        (([16, 64, 56, 56], [2, 32, 3], [2, 64, 8]), "X and kernel disagree on C"),
        (([16, 64, 56, 56], [2, 64, 3], [2, 32, 8]), "X and local disagree on C"),
        (([16, 64, 56, 56], [2, 64, 3], [3, 64, 8]), "disagree on N"),
        (([16, 64, 56, 56], [2, 64, 4], [2, 64, 8]), "must be odd"),
        (([15, 64, 56, 56], [2, 64, 3], [2, 64, 8]), "not N\\*T"),
    ):
        with pytest.raises(TAMPluginError, match=message):
            plugin_output_shape(*args)


def test_plugin_takes_t_and_k_from_static_shapes_whatever_the_attribute_order():
    assert resolve_segments_and_kernel([None, 64, 3], [None, 64, 8], 8, 3) == (8, 3)
    assert resolve_segments_and_kernel([None, 64, 3], [None, 64, 8], 3, 8) == (8, 3)  # attributes swapped
    assert resolve_segments_and_kernel([None, 64, None], [None, 64, 8], 3, 8) == (8, 3)
    assert resolve_segments_and_kernel([None, 64, 5], [None, 64, None], 5, 16) == (16, 5)
    assert resolve_segments_and_kernel([None, 64, None], [None, 64, None], 8, 3) == (8, 3)
    with pytest.raises(TAMPluginError, match="disagree with the inputs"):
        resolve_segments_and_kernel([None, 64, 3], [None, 64, 8], 16, 3)


# --- without TensorRT or CUDA: one line, no traceback ---------------------------------------------------------


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_build_without_tensorrt_says_how_to_install(tmp_path):
    with pytest.raises(BackendUnavailableError) as raised:
        build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", batch=None, workspace_gb=None, opt_level=None,
                     timing_cache=None)
    assert str(raised.value) == BUILD_INSTALL_HINT
    assert BUILD_INSTALL_HINT == ('TensorRT is not installed: pip install "tamdeploy[tensorrt]" on a machine with an '
                                  'NVIDIA GPU; --target onnxruntime works here')
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
    assert BUILD_NO_CUDA_HINT.endswith("--target onnxruntime works here")
    assert not list(tmp_path.iterdir())


def test_runner_with_tensorrt_but_no_gpu_says_so(tmp_path, tensorrt_without_cuda):
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"plan")
    with pytest.raises(BackendUnavailableError) as raised, TensorRTRunner(engine):
        pass
    assert str(raised.value) == NO_CUDA_HINT


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_plugin_module_imports_without_tensorrt():
    assert not plugin_available()
    with pytest.raises(ImportError):
        register_tam_plugin()


def test_engine_and_plugin_modules_import_nothing_optional():
    code = ("import sys; import tamdeploy.deploy.engine, tamdeploy.plugins.trt_plugin, tamdeploy.deploy.runners; "
            "print(sorted(m for m in ('tensorrt', 'triton') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_pyproject_offers_the_tensorrt_extra():
    text = (ROOT / "pyproject.toml").read_text()
    extras = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^tensorrt\s*=\s*\["tensorrt>=10\.9', extras, re.MULTILINE), extras


# --- with TensorRT and a GPU ----------------------------------------------------------------------------------

T, SIZE = 4, 64


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def fp16_graph(src: Path, dst: Path) -> Path:
    """The FP16 graph ``tamdeploy build --fp16`` makes (``deploy.precision``), else ONNX Runtime's converter."""
    model = onnx.load(str(src))
    if importlib.util.find_spec("tamdeploy.deploy.precision") is not None:
        from tamdeploy.deploy.precision import convert_fp16

        model = convert_fp16(model).model
    else:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(model, str(dst))
    return dst


def int8_graph(src: Path, dst: Path) -> Path:
    """The INT8 Q/DQ graph of ``tamdeploy.deploy.quantize`` on random calibration clips (skip without it)."""
    if importlib.util.find_spec("tamdeploy.deploy.quantize") is None:
        pytest.skip("tamdeploy.deploy.quantize does not exist: no INT8 graph to build")
    from tamdeploy.deploy.quantize import build_int8

    clips = np.random.default_rng(0).standard_normal((8, T, 3, SIZE, SIZE), dtype=np.float32)
    onnx.save(build_int8(onnx.load(str(src)), clips, progress=False).model, str(dst))
    return dst


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    """(arch, precision) -> ONNX path, exported with the TAMAggregate node and its function."""
    sys.path.insert(0, str(Path(__file__).parent))
    from checkpoint_factory import randomize_

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

    from tamdeploy.deploy.engine import make_logger
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


# --- the registration code against a stand-in of tensorrt.plugin (no TensorRT needed) -------------------------


class FakeExpr:
    """A ``trtp.ShapeExpr`` stand-in: a constant or a named size; products and cdiv build text."""

    def __init__(self, value: int | str) -> None:
        self.value = value
        self.is_fake = False

    @property
    def is_constant(self) -> bool:
        return isinstance(self.value, int)

    def constant_value(self) -> int:
        return self.value

    def __mul__(self, other: FakeExpr) -> FakeExpr:
        if self.is_constant and other.is_constant:
            return FakeExpr(self.value * other.value)
        return FakeExpr(f"({self.value}*{other.value})")


class FakeDesc:
    def __init__(self, dims: list[int | str], dtype=np.float16) -> None:
        self.shape_expr = [FakeExpr(d) for d in dims]
        self.shape = [d if isinstance(d, int) else -1 for d in dims]
        self.has_shape = True
        self.dtype = dtype

    @property
    def ndim(self) -> int:
        return len(self.shape_expr)

    def like(self) -> FakeDesc:
        return self


def fake_tensorrt_plugin() -> tuple[types.ModuleType, types.ModuleType, dict]:
    """``tensorrt`` and ``tensorrt.plugin`` stand-ins that record the decorated functions."""
    functions: dict = {}
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.0"
    trt.nptype = lambda dtype: dtype
    trtp = types.ModuleType("tensorrt.plugin")

    def decorator(kind):
        def outer(plugin_id):
            assert plugin_id == PLUGIN_ID

            def inner(fn):
                functions[kind] = fn
                return fn
            return inner
        return outer

    for kind in ("register", "impl", "aot_impl", "autotune"):
        setattr(trtp, kind, decorator(kind))

    class KernelLaunchParams:
        pass

    class SymInt32:
        def __init__(self, expr):
            self.expr = expr

    class SymIntExprs(list):
        @classmethod
        def from_tuple(cls, items):
            return cls(items)

    trtp.TensorDesc, trtp.Tensor, trtp.SymExprs = FakeDesc, object, list
    trtp.KernelLaunchParams, trtp.SymInt32, trtp.SymIntExprs = KernelLaunchParams, SymInt32, SymIntExprs
    trtp.AutoTuneCombination = lambda types_, layout: (types_, layout)
    trtp.cdiv = lambda a, b: FakeExpr(f"cdiv({a.value},{b})")
    trt.plugin = trtp
    return trt, trtp, functions


def test_plugin_registration_against_a_tensorrt_plugin_stand_in(monkeypatch):
    import inspect

    pytest.importorskip("triton", reason="the AOT implementation compiles the kernel with Triton")
    from tamdeploy.plugins import trt_plugin

    trt, trtp, functions = fake_tensorrt_plugin()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setattr(trt_plugin, "_build_capability", lambda: (9, 0))
    support = trt_plugin.register_tam_plugin.__wrapped__()
    assert support.aot and support.preferred == "aot" and support.tensorrt_version == "10.13.0"

    # the schemas tensorrt.plugin checks: inputs, attributes in registration order, then its own arguments
    params = {kind: list(inspect.signature(fn).parameters) for kind, fn in functions.items()}
    assert params["register"] == ["x", "kernel", "local", "num_segments", "kernel_size"]
    assert params["autotune"] == ["x", "kernel", "local", "outputs"]
    assert params["impl"] == ["x", "kernel", "local", "outputs", "stream"]
    assert params["aot_impl"] == ["x", "kernel", "local", "num_segments", "kernel_size", "outputs", "tactic"]
    annotations = inspect.signature(functions["register"]).parameters
    assert all(isinstance(p.annotation, type) for p in annotations.values())  # real classes, not strings

    x, kernel, local = FakeDesc(["NT", 64, 56, 56]), FakeDesc(["N", 64, 3]), FakeDesc(["N", 64, 8])
    assert functions["register"](x, kernel, local, num_segments=8, kernel_size=3) is x
    with pytest.raises(TAMPluginError, match="share one type"):
        functions["register"](x, FakeDesc(["N", 64, 3], np.float32), local, num_segments=8, kernel_size=3)
    assert functions["autotune"](x, kernel, local, (x,)) == [(AUTOTUNE_TYPES, "LINEAR")]

    # aot_impl gets the attributes by position, here swapped: T and K still come from the shapes
    name, ptx, launch, extra = functions["aot_impl"](x, kernel, local, 3, 8, (x,), 0)
    assert isinstance(name, bytes) and isinstance(ptx, bytes) and b".target sm_90a" in ptx
    assert launch.grid_x.value == "(64*cdiv(3136,1024))"  # C * blocks per frame
    assert launch.grid_y.value == "N" and launch.grid_z == 1 and launch.block_x == 128 and launch.shared_mem == 0
    assert [e.expr.value for e in extra] == [64, 3136]


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
    from tamdeploy.deploy import engine as engine_module
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
