"""Three changes to a model as OpenVINO reads it (``adapt_model``), all for OpenVINO's CPU plugin.

1. ACTION-Net's pooled statistics as reductions (``pooled_statistics_as_reductions``).

The export pools ACTION-Net's shifted block input ``xs`` with MatMuls against constants
(``exporters.action_stats``), the form ONNX Runtime runs fastest. OpenVINO's CPU plugin keeps ``xs`` in
the blocked layout of the convolutions; a MatMul needs it planar, so each one cost a layout reorder of
the whole tensor and a MatMul kernel that packs it. As reductions on ``xs`` itself the statistics read
it once in its own layout:

- channel mean ``[1, C] (v) @ xs[N*T, C, H*W]`` -> ``ReduceSum(xs, C) * v``
- tap sums ``xs[N*T, C, H*W] @ tap_matrix(H, W)``: tap (a, b) of a 3x3 'same' conv reads an H x W window
  of ``xs`` padded by one line, so two AvgPools of padded windows (columns, then rows) give all nine.

The same sums in another order: exact up to float rounding (2e-7 relative on ACTION-Net-R50's logits).
OpenVINO's per-node profile of ACTION-Net-R50 INT8 (batch 1, 8x224x224, 2 threads, AMX CPU), time in the
statistics' nodes: the MatMuls 30 ms (24 of it layout reorders); the sum of all pixels, border rows and
columns and corners, combined (reference-kernel slices and a Concat) 32 ms; one AvgPool of full 3 x 3
windows 31 ms; the separable AvgPools 20 ms (with the channel sums).

2. Spatial means (``ReduceMean`` over H and W: TAM's pooling, the classifier's) as global AvgPools
   (``spatial_means_as_pools``): on INT8 inputs OpenVINO's AvgPool kernel took 0.9 ms where ReduceMean took
   2.8 ms for TANet-R50's 17 means (per-node profile, batch 1, 8x224x224, AMX CPU).

3. A reduction over the last axis keeps its dimension and is squeezed after (``separate_last_axis_reductions``):
   OpenVINO 2026.4's CPU plugin fuses an elementwise op with a constant into the reduction before it and
   broadcasts the constant along the wrong axis when the reduced axis is the last one: ``ReduceSum([8, 4, 9],
   axis -1) + b[4]`` added ``b[n]`` to row n (0.61 relative error; openvinotoolkit/openvino#23616 reported the
   pattern for batch 1 in 2024). ACTION-Net's motion excitation has it (ME's means plus the BatchNorm offset),
   which made ACTION-Net differ from PyTorch by 1e-3..1e-2 on OpenVINO in FP32. The Squeeze between them keeps
   the two apart; ``tests/deploy/runners/test_openvino_graph.py`` checks the bug's pattern with and without.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tamdeploy.exporters.action_stats import TAPS, is_channel_pooling_row, tap_matrix_shape
from tamdeploy.plugins.tam_openvino import ints


def tap_sums(ops: Any, x: Any, h: int, w: int) -> Any:
    """[N*T, C, 9] tap sums of ``x`` [N*T, C, H, W] (``exporters.action_stats.tap_matrix``'s MatMul)."""
    # a window of H x W over x padded by one line is one tap's pixels; separable: columns, then rows
    columns = ops.avg_pool(x, [1, 1], [0, 1], [0, 1], [1, w], exclude_pad=False)  # [N*T, C, H, 3]
    pooled = ops.avg_pool(columns, [1, 1], [1, 0], [1, 0], [h, 1], exclude_pad=False)  # [N*T, C, 3, 3]
    sums = ops.multiply(pooled, ops.convert_like(ops.constant(np.array(h * w, np.float32)), x))
    return ops.reshape(sums, ints(ops, [0, 0, TAPS]), special_zero=True)


def _constant(output: Any) -> np.ndarray | None:
    node = output.get_node()
    return node.get_data() if node.get_type_name() == "Constant" else None


def _unflattened(output: Any) -> Any | None:
    """The 4-D tensor that a Reshape to [N*T, C, H*W] flattened, else None."""
    node = output.get_node()
    if node.get_type_name() != "Reshape":
        return None
    source = node.input_value(0)
    shape = source.get_partial_shape()
    if not (shape.rank.is_static and shape.rank.get_length() == 4 and all(d.is_static for d in list(shape)[1:])):
        return None
    return source


def adapt_model(model: Any) -> None:
    """The changes of this module, in place, on an ``openvino.Model`` just read (its types inferred once, after
    all three)."""
    changed = pooled_statistics_as_reductions(model)
    changed += spatial_means_as_pools(model)
    changed += separate_last_axis_reductions(model)
    if changed:
        model.validate_nodes_and_infer_types()


def spatial_means_as_pools(model: Any) -> int:
    """Each ReduceMean over H and W of a 4-D tensor with static H, W becomes an AvgPool of one H x W window
    (reshaped to drop H and W when the mean did not keep them); returns how many changed (``adapt_model`` infers
    the new types)."""
    import openvino.opset13 as ops

    changed = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "ReduceMean":
            continue
        shape = node.input_value(0).get_partial_shape()
        axes = _constant(node.input_value(1))
        if axes is None or not shape.rank.is_static or shape.rank.get_length() != 4:
            continue
        if sorted(int(a) % 4 for a in axes.ravel()) != [2, 3] or not (shape[2].is_static and shape[3].is_static):
            continue
        window = [shape[2].get_length(), shape[3].get_length()]
        pooled = ops.avg_pool(node.input_value(0), [1, 1], [0, 0], [0, 0], window, exclude_pad=False)
        if not node.get_attributes().get("keep_dims"):
            pooled = ops.reshape(pooled, ints(ops, [0, 0]), special_zero=True)
        node.output(0).replace(pooled.output(0))
        changed += 1
    return changed


_REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2")


def separate_last_axis_reductions(model: Any) -> int:
    """Each reduction over the last axis without kept dims becomes the reduction with kept dims and a Squeeze
    (the fusion bug in the module doc); returns how many changed (``adapt_model`` infers the new types)."""
    import openvino.opset13 as ops

    changed = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() not in _REDUCTIONS or node.get_attributes().get("keep_dims"):
            continue
        rank = node.input_value(0).get_partial_shape().rank
        axes = _constant(node.input_value(1))
        if not rank.is_static or axes is None or rank.get_length() < 2:
            continue
        last = rank.get_length() - 1
        if sorted(int(a) % rank.get_length() for a in axes.ravel()) != [last]:
            continue
        reduce = getattr(ops, _snake(node.get_type_name()))
        kept = reduce(node.input_value(0), ints(ops, [last]), keep_dims=True)
        node.output(0).replace(ops.squeeze(kept, ints(ops, [last])).output(0))
        changed += 1
    return changed


def _snake(type_name: str) -> str:
    """ReduceSum -> reduce_sum, ReduceL2 -> reduce_l2: the opset function of a reduction."""
    return "reduce_" + type_name[len("Reduce"):].lower()


def pooled_statistics_as_reductions(model: Any) -> int:
    """Replace ACTION-Net's pooling MatMuls in ``model`` (an ``openvino.Model``) by reductions, in place;
    returns how many were replaced, 0 for networks without them (``adapt_model`` infers the new types)."""
    import openvino.opset13 as ops

    replaced = 0
    for node in model.get_ordered_ops():
        attributes = node.get_attributes() if node.get_type_name() == "MatMul" else None
        if attributes is None or attributes.get("transpose_a") or attributes.get("transpose_b"):
            continue
        left, right = node.input_value(0), node.input_value(1)
        row, taps = _constant(left), _constant(right)
        if taps is not None and (hw := tap_matrix_shape(taps)) is not None:
            x = _unflattened(left)
            if x is None or tuple(d.get_length() for d in list(x.get_partial_shape())[2:]) != hw:
                continue
            new = tap_sums(ops, x, *hw)
        elif row is not None and is_channel_pooling_row(row):
            x = _unflattened(right)
            if x is None or x.get_partial_shape()[1].get_length() != row.shape[1]:
                continue
            scale = ops.convert_like(ops.constant(np.array(row.flat[0], np.float32)), x)
            summed = ops.multiply(ops.reduce_sum(x, ints(ops, [1]), keep_dims=True), scale)
            new = ops.reshape(summed, ints(ops, [0, 1, -1]), special_zero=True)
        else:
            continue
        node.output(0).replace(new.output(0))
        replaced += 1
    return replaced
