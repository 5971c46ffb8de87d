"""``tamdeploy build``: FP16 and INT8 graphs whose accuracy is measured, not assumed.

Small TANet and ACTION-Net models are trained here on clips whose class only the order of frames
tells (tests/motion_dataset.py), exported, converted, and compared on held-out mp4 clips read
through ``deploy.inputs``: FP16 must agree with FP32 on >= 99.5 % of 256 clips, INT8 (calibrated on
other clips) must stay within 1 point of FP32's accuracy and agree on >= 98 %.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers.cli import invoke
from helpers.motion import CLASSES, accuracy, labels_of, predict, train, write_dataset
from helpers.video import write_garbage

from tamdeploy.compare import TOLERANCES
from tamdeploy.deploy.build.calibration import load_calibration
from tamdeploy.deploy.build.fp16 import convert_fp16
from tamdeploy.deploy.build.graph import PrecisionError, tam_kernel_branch, tam_nodes, topological_sort
from tamdeploy.deploy.build.int8 import (
    check_tensorrt_qdq,
    default_exclusions,
    layer_sensitivity,
    pick_fallback,
    quantizable_nodes,
    quantize_tam_tensors,
)
from tamdeploy.deploy.inputs.clips import ClipSpec, load_batch
from tamdeploy.deploy.runners import OpenVINORunner
from tamdeploy.errors import DataError
from tamdeploy.exporters.metadata import read_metadata
from tamdeploy.exporters.pipeline import export_checkpoint
from tamdeploy.models import create_model, save_checkpoint
from tamdeploy.models.config import IMAGENET_MEAN, IMAGENET_STD
from tamdeploy.onnx_model import make_model
from tamdeploy.onnx_runtime import create_session
from tamdeploy.plugins.contract import TAM_DOMAIN, TAM_OP_TYPE
from tamdeploy.system import system_info

T, SIZE = 4, 32
EVAL_CLIPS, CALIB_CLIPS = 256, 32
ARCHS = ("tanet_r50", "action_r50")
# training recipes, one torch thread: ~60 s (TANet; 160 steps left it at 95-97 % in some runs) and ~26 s
RECIPES = {"tanet_r50": {"steps": 240, "batch_size": 16, "lr": 6e-3},
           "action_r50": {"steps": 60, "batch_size": 16, "lr": 3e-3}}
SPEC = ClipSpec(T, SIZE, IMAGENET_MEAN, IMAGENET_STD)


@dataclass
class Trained:
    arch: str
    onnx_path: Path
    fp32_logits: np.ndarray  # ONNX Runtime, on the held-out clips
    torch_accuracy: float


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("motion")
    return {"eval": write_dataset(root / "eval", EVAL_CLIPS, seed=1),
            "calib": write_dataset(root / "calib", CALIB_CLIPS, seed=2)}


@pytest.fixture(scope="module")
def held_out(clips) -> tuple[np.ndarray, np.ndarray]:
    """The held-out clips, decoded once from the mp4 files through deploy.inputs: (inputs, labels)."""
    batch = load_batch(clips["eval"], SPEC, progress=False)
    return batch.array, labels_of(batch.sources)


def run_onnx(path: Path | onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = create_session(path, threads=1)  # tiny models; and no spinning threads on a shared machine
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 64]})[0] for i in range(0, len(x), 64)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, held_out):
    """``trained(arch)``: the model trained once per module, saved, exported, and run in FP32."""
    x, labels = held_out

    @cache
    def get(arch: str) -> Trained:
        root = tmp_path_factory.mktemp(arch)
        model = create_model(arch, width=0.25, num_segments=T, input_size=SIZE, num_classes=len(CLASSES))
        # One thread: beside another busy process on a 2-core machine, torch's two OpenMP threads
        # spin-waiting for each other made 10 training steps take 72 s instead of 5.4 s.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            train(model, SPEC, **RECIPES[arch])
            torch_accuracy = accuracy(predict(model, x), labels)
            checkpoint = save_checkpoint(model, None, root / "model.pt")
            run = export_checkpoint(checkpoint, root / "model.onnx", verify=False)
        finally:
            torch.set_num_threads(threads)
        return Trained(arch, run.export.path, run_onnx(run.export.path, x), torch_accuracy)

    return get


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.argmax(a, 1) == np.argmax(b, 1)))


def build_json(*args: str) -> dict:
    result = invoke("build", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return result.json()


# --- accuracy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_trained_models_read_the_order_of_frames(arch, trained, held_out):
    model = trained(arch)
    x, labels = held_out
    assert model.torch_accuracy >= 0.95
    assert accuracy(model.fp32_logits, labels) >= 0.95
    # played backwards, the flash in frame k is in frame T-1-k: the model reads the order, not the frames
    assert accuracy(run_onnx(model.onnx_path, x[:, ::-1].copy()), T - 1 - labels) >= 0.9


@pytest.mark.parametrize("arch", ARCHS)
def test_fp16_graph_agrees_with_fp32(arch, trained, held_out):
    model = trained(arch)
    report = build_json(model.onnx_path, "--fp16")
    out = Path(report["onnx"])
    assert out == model.onnx_path.with_name("model.fp16.onnx") and report["precision"] == "fp16"
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph, full_check=True)  # sorted, and the TAM function type-checks in FP16
    assert read_metadata(graph).precision == "fp16"
    assert [i.type.tensor_type.elem_type for i in (*graph.graph.input, *graph.graph.output)] == [1, 1]
    types = {v.name: v.type.tensor_type.elem_type
             for v in onnx.shape_inference.infer_shapes(graph).graph.value_info}
    tams = tam_nodes(graph)
    assert len(tams) == 16 and all(types[i] == onnx.TensorProto.FLOAT16 for n in tams for i in (*n.input, *n.output))
    assert report["size_ratio"] < 0.55

    x, labels = held_out
    fp16 = run_onnx(out, x)
    assert fp16.dtype == np.float32
    assert agreement(fp16, model.fp32_logits) >= 0.995
    assert abs(accuracy(fp16, labels) - accuracy(model.fp32_logits, labels)) <= 0.005


@pytest.mark.parametrize("arch", ARCHS)
def test_int8_graph_keeps_accuracy_and_tensorrt_rules(arch, trained, held_out, clips, tmp_path):
    model = trained(arch)
    out = tmp_path / "int8.onnx"
    # TANet --sensitivity: with the default exclusions alone, its INT8 agreement ranged 93-100 % over models
    # trained with other seeds / steps; the measured fallback (a few early convs) restored >= 99 %.
    # ACTION-Net's stayed at 99.6-100 % with the defaults.
    sensitivity = ["--sensitivity"] if arch == "tanet_r50" else []
    report = build_json(model.onnx_path, "--int8", "--calib", clips["calib"], "--calib-samples", str(CALIB_CLIPS),
                        *sensitivity, "-o", out)
    assert report["calibration"]["samples"] == CALIB_CLIPS and not report["calibration"]["random"]
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph, full_check=True)
    assert read_metadata(graph).precision == "int8"
    check_tensorrt_qdq(graph)  # INT8, zero point 0, no INT32 bias, nothing quantized inside the function
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("TAMAggregate") == 16 and graph.functions[0].name == "TAMAggregate"
    # TAMAggregate stays float: fed by float tensors (in ACTION-Net a DQ shared with the conv beside it)
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*onnx.shape_inference.infer_shapes(graph).graph.value_info, *graph.graph.input)}
    assert all(types[i] == onnx.TensorProto.FLOAT for n in tam_nodes(graph) for i in (*n.input, *n.output))
    excluded = report["int8"]["excluded_nodes"]
    source = onnx.load(str(model.onnx_path))
    defaults = default_exclusions(source)
    fallback = excluded[len(defaults):]
    assert excluded[:len(defaults)] == defaults
    assert len(fallback) <= -(-len(report["int8"].get("sensitivity", [])) // 4)
    kernel_branch = set(tam_kernel_branch(source)) & {n.name for n in quantizable_nodes(source)}
    assert kernel_branch <= set(excluded) and len(kernel_branch) == (32 if arch == "tanet_r50" else 0)
    assert report["size_ratio"] <= 0.4  # tiny layers: scales and float biases weigh more than at full size

    x, labels = held_out
    int8 = run_onnx(out, x)
    fp32_accuracy = accuracy(model.fp32_logits, labels)
    assert accuracy(int8, labels) >= fp32_accuracy - 0.01
    assert agreement(int8, model.fp32_logits) >= 0.98


# --- OpenVINO: the same graphs as IRs, on the held-out clips ---------------------------------------


def run_openvino(xml: Path, x: np.ndarray) -> tuple[np.ndarray, str]:
    """Logits of an IR over ``x`` (batches of 64) and the precision OpenVINO reports it ran at."""
    with OpenVINORunner(xml, threads=1) as runner:
        logits = np.concatenate([runner.infer({runner.input_name: x[i:i + 64]})["logits"]
                                 for i in range(0, len(x), 64)])
        return logits, runner.precision


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("arch", ARCHS)
def test_openvino_int8_keeps_accuracy(arch, trained, held_out, clips, tmp_path):
    """Issue 15: INT8 on OpenVINO within 1 point of FP32 top-1, agreeing with FP32 on >= 99 % of clips."""
    model = trained(arch)
    xml = tmp_path / "model.int8.xml"
    sensitivity = ["--sensitivity"] if arch == "tanet_r50" else []  # as for the ONNX Runtime graph above
    report = build_json(model.onnx_path, "--target", "openvino", "--int8", "--calib", clips["calib"],
                        "--calib-samples", str(CALIB_CLIPS), *sensitivity, "-o", xml)
    assert report["openvino"]["xml_path"] == str(xml) and xml.with_suffix(".bin").is_file()
    sidecar = json.loads(xml.with_name("model.int8.xml.json").read_text())
    assert sidecar["precision"] == "int8" and not sidecar["calibration"]["random"]
    x, labels = held_out
    int8, precision = run_openvino(xml, x)
    assert precision == "int8"
    assert accuracy(int8, labels) >= accuracy(model.fp32_logits, labels) - 0.01
    assert agreement(int8, model.fp32_logits) >= 0.99


@pytest.mark.parametrize("arch", ARCHS)
def test_openvino_bf16_agrees_with_fp32(arch, trained, held_out):
    """The bf16 row of the tolerance table, on trained networks: what BF16 inference keeps."""
    model = trained(arch)
    report = build_json(model.onnx_path, "--target", "openvino", "--bf16")
    x, _ = held_out
    bf16, precision = run_openvino(Path(report["openvino"]["xml_path"]), x)
    assert precision == ("bf16" if system_info().has_bf16 else "fp32")
    tolerance = TOLERANCES["bf16"]
    assert cosine(bf16, model.fp32_logits) >= tolerance.cosine_min
    assert agreement(bf16, model.fp32_logits) >= tolerance.top1_min


# --- sensitivity, on a graph tamdeploy did not make ------------------------------------------------


def _foreign_model() -> onnx.ModelProto:
    """Conv -> Relu -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm on [N, 3, 16, 16], no metadata.
    conv1's channel 0 is 300x larger than the others: one INT8 range for conv2's input crushes them."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    w1[0] *= 300
    w2 = rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32)
    w2[:, 0] /= 300
    w3 = rng.normal(0, 0.3, (4, 8)).astype(np.float32)
    h = onnx.helper
    nodes = [h.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             h.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             h.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             h.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
             h.make_node("Flatten", ["p"], ["f"], name="flatten"),
             h.make_node("Gemm", ["f", "w3"], ["y"], name="fc", transB=1)]
    graph = h.make_graph(nodes, "foreign", [h.make_tensor_value_info("x", 1, ["N", 3, 16, 16])],
                         [h.make_tensor_value_info("y", 1, ["N", 4])],
                         [onnx.numpy_helper.from_array(w, n) for w, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"))])
    return make_model(graph)


def test_sensitivity_finds_the_layer_int8_breaks(tmp_path):
    model = _foreign_model()
    path = tmp_path / "foreign.onnx"
    onnx.save(model, str(path))
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(1).normal(0, 1, (16, 3, 16, 16)).astype(np.float32))

    result = invoke("build", path, "--int8", "--calib", calib, "--sensitivity")
    assert result.exit_code == 0, result.stderr
    assert "sensitivity" in result.stdout and "conv2" in result.stdout

    report = build_json(path, "--int8", "--calib", calib, "--sensitivity", "-o", tmp_path / "q.onnx")
    errors = report["int8"]["sensitivity"]
    assert errors[0]["node"] == "conv2" and errors[0]["rel_l2_error"] > 4 * errors[-1]["rel_l2_error"]
    assert report["int8"]["excluded_nodes"] == ["conv1", "conv2"]  # the stem by default, conv2 measured
    quantized = onnx.load(str(tmp_path / "q.onnx"))
    assert read_metadata(quantized) is None  # no tamdeploy metadata to update, and none invented


def test_entropy_calibration(tmp_path):
    """KL-divergence ranges (slow in ONNX Runtime's Python search: a small graph here)."""
    path = tmp_path / "foreign.onnx"
    onnx.save(_foreign_model(), str(path))
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(1).normal(0, 1, (8, 3, 16, 16)).astype(np.float32))
    report = build_json(path, "--int8", "--calib", calib, "--calib-method", "entropy")
    assert report["int8"]["method"] == "entropy"
    check_tensorrt_qdq(onnx.load(report["onnx"]))


def test_pick_fallback_takes_the_fewest_worst_layers_that_reach_the_target():
    from tamdeploy.deploy.build.int8 import LayerError

    errors = [LayerError(f"n{i}", "Conv", 1.0 / (i + 1), 1.0) for i in range(12)]
    tried = []

    def agreement_of(excluded: list[str]) -> float:  # each of the 2 worst layers costs 1 %
        tried.append(len(excluded))
        return 1.0 - 0.01 * len({"n0", "n1"} - set(excluded))

    assert pick_fallback(errors, agreement_of, target=0.995) == ["n0", "n1"]
    assert len(tried) <= 4
    assert pick_fallback(errors, lambda excluded: 1.0) == []
    assert pick_fallback(errors, lambda excluded: 0.5) == ["n0", "n1", "n2"]  # capped at a quarter


def test_single_layer_sensitivity_matches_quantizing_that_layer_alone(tmp_path):
    from tamdeploy.deploy.build.int8 import calibrate, quantize_qdq

    model = _foreign_model()
    x = np.random.default_rng(1).normal(0, 1, (8, 3, 16, 16)).astype(np.float32)
    ranges = calibrate(model, x, progress=False)
    errors = {e.node: e.rel_l2_error for e in layer_sensitivity(model, ranges, x, progress=False)}
    reference = run_onnx(model, x)
    alone = run_onnx(quantize_qdq(model, ranges, only=["conv2"]), x)
    assert errors["conv2"] == pytest.approx(np.linalg.norm(alone - reference) / np.linalg.norm(reference), rel=1e-4)


# --- graph mechanics -------------------------------------------------------------------------------


def test_topological_sort_is_stable_and_complete():
    h = onnx.helper
    nodes = [h.make_node("Relu", ["b"], ["c"], name="second"), h.make_node("Relu", ["x"], ["a"], name="first"),
             h.make_node("Relu", ["a"], ["b"], name="middle"), h.make_node("Relu", ["x"], ["d"], name="free")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", 1, [1])],
                         [h.make_tensor_value_info("c", 1, [1]), h.make_tensor_value_info("d", 1, [1])])
    topological_sort(graph)
    assert [n.name for n in graph.node] == ["first", "middle", "second", "free"]


def test_fp16_of_a_foreign_model_works_without_metadata(tmp_path):
    path = tmp_path / "foreign.onnx"
    onnx.save(_foreign_model(), str(path))
    report = build_json(path, "--fp16")
    graph = onnx.load(report["onnx"])
    assert report["onnx"] == str(tmp_path / "foreign.fp16.onnx") and read_metadata(graph) is None
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.graph.initializer)


def test_quantizable_nodes_skip_matmuls_of_two_activations():
    h = onnx.helper
    graph = h.make_graph([h.make_node("MatMul", ["x", "x"], ["y"], name="mm")], "g",
                         [h.make_tensor_value_info("x", 1, [2, 2])], [h.make_tensor_value_info("y", 1, [2, 2])])
    assert quantizable_nodes(make_model(graph)) == []


def _action_like_block() -> onnx.ModelProto:
    """ACTION-Net's block input as a residual sum: r = Relu(a + b) feeds the shift (TAMAggregate), a conv
    through the quantizer's Q/DQ pair (as a downsample does) and the residual Add; the shift's output feeds
    a pooling and the gate Mul."""
    h = onnx.helper
    scale = onnx.numpy_helper.from_array(np.float32(0.1), "s")
    zero = onnx.numpy_helper.from_array(np.int8(0), "z")
    nodes = [h.make_node("Add", ["a", "b"], ["sum"], name="add"), h.make_node("Relu", ["sum"], ["r"], name="relu"),
             h.make_node("QuantizeLinear", ["r", "s", "z"], ["r_q"], name="r_q"),
             h.make_node("DequantizeLinear", ["r_q", "s", "z"], ["r_dq"], name="r_dq"),
             h.make_node("Relu", ["r_dq"], ["down"], name="down"),
             h.make_node(TAM_OP_TYPE, ["r", "k", "l"], ["y"], name="tam", domain=TAM_DOMAIN),
             h.make_node("ReduceMean", ["y"], ["pooled"], name="pool"),
             h.make_node("Mul", ["y", "pooled"], ["gated"], name="gate"),
             h.make_node("Add", ["gated", "r"], ["out"], name="residual")]
    inputs = [h.make_tensor_value_info(name, 1, [2, 4, 3, 3]) for name in ("a", "b")]
    inputs += [h.make_tensor_value_info("k", 1, [1, 4, 3]), h.make_tensor_value_info("l", 1, [1, 4, 2])]
    outputs = [h.make_tensor_value_info(name, 1, [2, 4, 3, 3]) for name in ("out", "down")]
    model = make_model(h.make_graph(nodes, "block", inputs, outputs, [scale, zero]))
    model.opset_import.append(h.make_opsetid(TAM_DOMAIN, 1))
    return model


def test_openvino_int8_graph_reads_tam_tensors_through_one_qdq_pair_each():
    """quantize_tam_tensors: X reuses the quantizer's pair and the residual Add reads it too; the output
    gets a pair of its own from its calibrated range, read by every reader."""
    model = _action_like_block()
    ranges = {"y": type("Range", (), {"range_value": (np.float32(-2.0), np.float32(1.0))})()}
    assert quantize_tam_tensors(model, ranges) == ["tam"]
    nodes = {n.name: n for n in model.graph.node}
    assert list(nodes["tam"].input) == ["r_dq", "k", "l"] and list(nodes["residual"].input) == ["gated", "r_dq"]
    assert nodes["pool"].input[0] == nodes["gate"].input[0] == "tam_Y_dq"
    assert [n.op_type for n in model.graph.node].count("QuantizeLinear") == 2
    y_scale = next(i for i in model.graph.initializer if i.name == "tam_Y_scale")
    assert onnx.numpy_helper.to_array(y_scale) == pytest.approx(2.0 / 127)  # symmetric over max |range|
    topological_sort(model.graph)
    onnx.checker.check_model(model)


def test_openvino_int8_graph_gives_a_tensor_one_qdq_pair_however_many_tam_nodes_read_it():
    model = _action_like_block()
    for twin in ("twin_a", "twin_b"):  # two more TAMAggregate nodes on the Add's output, which has no pair yet
        model.graph.node.append(onnx.helper.make_node(TAM_OP_TYPE, ["sum", "k", "l"], [f"{twin}_y"], name=twin,
                                                      domain=TAM_DOMAIN))
        model.graph.output.append(onnx.helper.make_tensor_value_info(f"{twin}_y", 1, [2, 4, 3, 3]))
    ranges = {name: type("Range", (), {"range_value": (np.float32(-1.0), np.float32(1.0))})() for name in ("sum", "y")}
    quantize_tam_tensors(model, ranges)
    nodes = {n.name: n for n in model.graph.node}
    assert [n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"].count("sum") == 1
    assert nodes["twin_a"].input[0] == nodes["twin_b"].input[0] == nodes["relu"].input[0] == "twin_a_X_dq"


def test_openvino_int8_graph_needs_the_range_of_a_tam_tensor_it_quantizes():
    with pytest.raises(PrecisionError, match="no calibrated range for y"):
        quantize_tam_tensors(_action_like_block(), {})


def test_fp16_block_nodes_stay_float32(trained):
    source = onnx.load(str(trained("tanet_r50").onnx_path))
    softmaxes = [n.name for n in source.graph.node if n.op_type == "Softmax"]
    result = convert_fp16(source, block_nodes=softmaxes)
    assert set(softmaxes) <= set(result.blocked_nodes) and result.casts_added > 2
    # the types ONNX infers for the written graph, not the converter's own annotations (dropped first)
    written = onnx.ModelProto()
    written.CopyFrom(result.model)
    del written.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(written, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    types.update({t.name: t.data_type for t in inferred.graph.initializer})
    nodes = {n.name: n for n in inferred.graph.node}
    float32, float16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    for name in softmaxes:
        tensors = [*nodes[name].input, *nodes[name].output]
        assert [types.get(t) for t in tensors] == [float32] * len(tensors), (name, tensors)
    convs = [n.output[0] for n in inferred.graph.node if n.op_type == "Conv"]
    assert convs and all(types.get(t) == float16 for t in convs)  # the rest of the graph did become FP16
    run_onnx(result.model, np.zeros((1, T, 3, SIZE, SIZE), np.float32))


# --- bad input -------------------------------------------------------------------------------------


def one_line_error(*args: str) -> str:
    result = invoke("build", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return " ".join(result.stderr.split())


def test_int8_without_calibration_data_says_how_to_give_it(trained):
    message = one_line_error(trained("action_r50").onnx_path, "--int8")
    assert "--calib PATH" in message and "--calib random" in message


def test_random_calibration_only_when_asked_and_with_a_warning(trained, tmp_path):
    result = invoke("build", trained("action_r50").onnx_path, "--int8", "--calib", "random", "--calib-samples", "4",
                    "-o", tmp_path / "r.onnx", "--json")
    assert result.exit_code == 0, result.stderr
    assert "random pixels" in " ".join(result.stderr.split()) and result.json()["calibration"]["random"]


def test_missing_and_empty_calibration_paths(trained, tmp_path):
    model = trained("action_r50").onnx_path
    assert "does not exist" in one_line_error(model, "--int8", "--calib", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "holds no videos" in one_line_error(model, "--int8", "--calib", tmp_path / "empty")


def test_undecodable_calibration_files_are_named_skipped_and_counted(trained, clips, tmp_path):
    model = onnx.load(str(trained("action_r50").onnx_path))
    folder = tmp_path / "calib"
    folder.mkdir()
    for p in sorted(clips["calib"].iterdir())[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    write_garbage(folder / "broken.mp4")
    data = load_calibration(folder, model, samples=8, progress=False)
    assert data.array.shape[0] == 3
    assert [s["source"] for s in data.to_dict()["skipped"]] == [str(folder / "broken.mp4")]
    only_garbage = tmp_path / "garbage"
    only_garbage.mkdir()
    write_garbage(only_garbage / "a.mp4")
    with pytest.raises(DataError, match="could not be decoded"):
        load_calibration(only_garbage, model, progress=False)


def test_foreign_model_needs_npy_for_int8(tmp_path, clips):
    path = tmp_path / "foreign.onnx"
    onnx.save(_foreign_model(), str(path))
    assert "no tamdeploy metadata" in one_line_error(path, "--int8", "--calib", clips["calib"])
    assert "needs the model's input size" in one_line_error(path, "--int8", "--calib", "random")


def test_nothing_to_build_and_conflicting_flags(trained):
    model = trained("action_r50").onnx_path
    assert "nothing to build" in one_line_error(model)
    assert "exclude each other" in one_line_error(model, "--fp16", "--int8")
    assert "--calib" in one_line_error(model, "--fp16", "--calib", "x")


def test_fp16_input_is_refused(trained):
    model = trained("action_r50").onnx_path
    fp16 = model.with_name("model.fp16.onnx")
    if not fp16.exists():
        build_json(model, "--fp16")
    assert "already an FP16 graph" in one_line_error(fp16, "--int8", "--calib", "random")


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    assert "not an ONNX model" in one_line_error(bad, "--fp16")
    assert "does not exist" in one_line_error(tmp_path / "missing.onnx", "--fp16")


def test_tensorrt_target_without_tensorrt_points_to_onnxruntime(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else real(name, *a))
    path = tmp_path / "foreign.onnx"
    onnx.save(_foreign_model(), str(path))
    message = one_line_error(path, "--fp16", "--target", "tensorrt", "--batch", "1,2,4")
    assert 'pip install "tamdeploy[tensorrt]"' in message and "--target onnxruntime" in message
    assert not (tmp_path / "foreign.fp16.onnx").exists()  # failed before any work


def test_bad_tensorrt_batch_option(tmp_path):
    assert "MIN,OPT,MAX" in one_line_error(tmp_path / "m.onnx", "--fp16", "--target", "tensorrt", "--batch", "4,2")
