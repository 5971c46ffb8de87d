"""``deploy/runners/openvino_graph.py``: the model OpenVINO reads computes what the ONNX graph computes, and
ACTION-Net's pooling MatMuls become reductions (measured faster on OpenVINO's CPU plugin)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers.checkpoints import randomize_
from onnx import TensorProto, helper, numpy_helper

from tamdeploy.deploy.build.graph import gate_branches, pooling_matmuls
from tamdeploy.deploy.build.int8 import quantizable_nodes
from tamdeploy.exporters.action_stats import is_pooling_constant, tap_matrix, tap_matrix_shape
from tamdeploy.exporters.pipeline import export_checkpoint
from tamdeploy.models import create_model, save_checkpoint
from tamdeploy.onnx_model import make_model
from tamdeploy.onnx_runtime import create_session

ov = pytest.importorskip("openvino")
from tamdeploy.deploy.runners.openvino_graph import tap_sums  # noqa: E402  (after the skip: needs OpenVINO)
from tamdeploy.deploy.runners.openvino_ir import read_model, tamdeploy_core  # noqa: E402


def compiled_output(model, x: np.ndarray) -> np.ndarray:
    core = ov.Core()
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "1"})
    return compiled.create_infer_request().infer({0: x})[0]


def rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.fixture
def reduce_then_add(tmp_path):
    """ReduceSum over the last axis, then + b[C]: the pattern OpenVINO 2026.4's CPU plugin fuses wrongly."""
    rng = np.random.default_rng(0)
    b = rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0), helper.make_node("Add", ["s", "b"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([-1], np.int64), "axes"), numpy_helper.from_array(b, "b")])
    path = tmp_path / "reduce_add.onnx"
    onnx.save(make_model(graph), str(path))
    x = rng.standard_normal((8, 4, 9)).astype(np.float32)
    return path, x, x.sum(-1) + b


def test_a_last_axis_reduction_and_its_offset_compute_what_onnx_says(reduce_then_add):
    path, x, want = reduce_then_add
    assert rel(compiled_output(read_model(tamdeploy_core(), path), x), want) < 1e-6


def test_openvino_still_fuses_the_offset_wrongly_without_the_change(reduce_then_add):
    """The reason for ``separate_last_axis_reductions``: when this fails, OpenVINO has fixed its fusion and the
    change can go (it costs one Squeeze per reduction)."""
    path, x, want = reduce_then_add
    assert rel(compiled_output(ov.Core().read_model(str(path)), x), want) > 0.1


@pytest.mark.parametrize("keepdims", [0, 1])
def test_spatial_means_become_avgpools_with_the_same_values(tmp_path, keepdims):
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=keepdims)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6, 5, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes")])
    path = tmp_path / "mean.onnx"
    onnx.save(make_model(graph), str(path))
    model = read_model(tamdeploy_core(), path)
    kinds = [op.get_type_name() for op in model.get_ordered_ops()]
    assert "AvgPool" in kinds and "ReduceMean" not in kinds
    x = np.random.default_rng(2).standard_normal((3, 6, 5, 7)).astype(np.float32)
    got = compiled_output(model, x)
    want = x.mean(axis=(2, 3), keepdims=bool(keepdims))
    assert got.shape == want.shape and rel(got, want) < 1e-6


@pytest.mark.parametrize("h, w", [(5, 3), (7, 7), (1, 4)])
def test_tap_sums_are_the_tap_matrix_matmul(h, w):
    import openvino.opset13 as ops

    x = np.random.default_rng(h * w).standard_normal((6, 5, h, w)).astype(np.float32)
    param = ops.parameter([-1, 5, h, w], np.float32)
    got = compiled_output(ov.Model([tap_sums(ops, param, h, w)], [param]), x)
    np.testing.assert_allclose(got, x.reshape(6, 5, h * w) @ tap_matrix(h, w), rtol=1e-5, atol=1e-5)
    assert tap_matrix_shape(tap_matrix(h, w)) == (h, w)


@pytest.fixture(scope="module")
def action_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("action")
    model = create_model("action_r50", width=0.25, num_classes=7, input_size=32, num_segments=4)
    ckpt = save_checkpoint(randomize_(model, seed=5), None, root / "action.pth")
    return export_checkpoint(ckpt, root / "action.onnx", verify=False).export.path


def test_action_poolings_become_reductions_and_logits_stay_exact(action_export):
    model = read_model(tamdeploy_core(), action_export)
    ops = model.get_ordered_ops()
    pooling = [op for op in ops if op.get_type_name() == "MatMul" and any(
        c.get_node().get_type_name() == "Constant" and is_pooling_constant(c.get_node().get_data(), left=side == 0)
        for side, c in enumerate(op.input_values()))]
    assert pooling == []  # per ACTION block (16) the channel mean and the tap sums were MatMuls
    pools = [op.get_attributes() for op in ops if op.get_type_name() == "AvgPool"]
    assert sum(any(a["pads_begin"]) for a in pools) == 2 * 16  # the tap sums: padded windows, columns then rows
    assert len(pools) == 2 * 16 + 1  # and the classifier's spatial mean (``spatial_means_as_pools``)
    x = np.random.default_rng(1).standard_normal((2, 4, 3, 32, 32)).astype(np.float32)
    session = create_session(action_export, threads=1)
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    model.reshape([2, 4, 3, 32, 32])
    assert rel(compiled_output(model, x), want) < 1e-5


def test_action_poolings_are_not_quantized_and_end_the_excitation_branches(action_export):
    source = onnx.load(str(action_export))
    poolings = pooling_matmuls(source)
    assert len(poolings) == 2 * 16
    assert not poolings & {n.name for n in quantizable_nodes(source)}
    branches = set(gate_branches(source))
    sigmoids = [n for n in source.graph.node if n.op_type == "Sigmoid"]
    assert len(sigmoids) == 3 * 16 and all(s.name in branches for s in sigmoids)  # STE, CE, ME of every block
    squeezes = [n.name for n in source.graph.node if n.op_type == "Conv" and n.name in branches]
    assert len(squeezes) >= 5 * 16  # STE's conv3d, CE's squeeze/conv1d/expand, ME's squeeze and expand
