"""TAMAggregate on OpenVINO: an ONNX-frontend conversion extension that turns every
``tamdeploy::TAMAggregate`` node into OpenVINO ops as the node is read, so the default export (the
custom node with its model-local function, which OpenVINO's ONNX reader refuses on its own) loads
with no re-export, in FP32, FP16 and INT8 Q/DQ graphs alike (the converter sees the node's inputs
after they are converted, whatever their type).

The formulation stays 4-D on X's own ``[N*T, C, H, W]`` layout, which OpenVINO's CPU plugin keeps in
the blocked layout of the convolutions around it::

    W_j[n*T+t, c] = kernel[n, c, j] * local[n, c, t+j-P]     (0 where t+j-P falls outside the clip)
    Y = sum_j W_j * X shifted by (j - P) frames along the N*T axis

The shift is a Slice and a Concat with one zero frame; a weight that is zero across a clip border makes
the frames of neighbouring clips harmless, so the batch stays dynamic. Measured against the other
exact formulations inside TANet-R50 (OpenVINO 2026.4, batch 1, 8x224x224, bf16 on an AMX CPU, 30 rounds
interleaved): TANet / TSN 1.26 with this one, 1.47 with the function body inlined (a banded MatMul
that needs transposes and layout reorders), 1.43 with VariadicSplit shifts, 1.62 with shifts along a
[N, T, C, H*W] view, 1.79 with a grouped convolution; Pad with negative pads was no faster and Gather
slower (benchmarks/results/tam_openvino_formulations-2026-11-30-xeon-amx-cpu2.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tamdeploy.plugins.contract import TAM_DOMAIN, TAM_OP_TYPE


def ints(ops: Any, values: list[int]) -> Any:
    """An i64 constant (axes, bounds, shapes) built with the opset module ``ops``."""
    return ops.constant(np.array(values, dtype=np.int64))


def _zero_like(ops: Any, like: Any) -> Any:
    return ops.convert_like(ops.constant(np.array(0.0, dtype=np.float32)), like)


def _tap_weights(ops: Any, kernel: Any, local: Any, t: int, k: int, channels: int) -> list[Any]:
    """W_j as [N*T, C, 1, 1] for each tap j."""
    p = (k - 1) // 2
    local_tc = ops.transpose(local, ints(ops, [0, 2, 1]))  # [N, T, C]
    kernel_kc = ops.transpose(kernel, ints(ops, [0, 2, 1]))  # [N, K, C]
    weights = []
    for j in range(k):
        shift = j - p
        tap = ops.slice(kernel_kc, ints(ops, [j]), ints(ops, [j + 1]), ints(ops, [1]), ints(ops, [1]))
        source = local_tc
        if shift:  # local of the source frame t+shift, zero where that frame is outside the clip
            used = ops.slice(local_tc, ints(ops, [max(0, shift)]), ints(ops, [min(t, t + shift)]),
                             ints(ops, [1]), ints(ops, [1]))
            source = ops.pad(used, ints(ops, [0, max(0, -shift), 0]), ints(ops, [0, max(0, shift), 0]),
                             "constant", _zero_like(ops, local))
        w = ops.multiply(source, tap)  # [N, T, C]
        weights.append(ops.reshape(w, ints(ops, [-1, channels, 1, 1]), special_zero=False))
    return weights


def tam_aggregate_ov(x: Any, kernel: Any, local: Any, num_segments: int, kernel_size: int) -> Any:
    """Y of the TAMAggregate contract as an OpenVINO node, from OpenVINO outputs x, kernel, local."""
    import openvino.opset13 as ops

    t, k = num_segments, kernel_size
    channels = x.get_partial_shape()[1]
    if not channels.is_static:
        raise ValueError("TAMAggregate on OpenVINO needs a static channel count")
    weights = _tap_weights(ops, kernel, local, t, k, channels.get_length())
    p = (k - 1) // 2
    huge = np.iinfo(np.int64).max
    first = ops.slice(x, ints(ops, [0]), ints(ops, [1]), ints(ops, [1]), ints(ops, [0]))
    zero_frame = ops.multiply(first, _zero_like(ops, x))
    y = ops.multiply(x, weights[p])
    for j in range(k):
        shift = j - p
        if shift < 0:  # frame t reads t+shift: zero frames first, then X without its last frames
            kept = ops.slice(x, ints(ops, [0]), ints(ops, [shift]), ints(ops, [1]), ints(ops, [0]))
            y = ops.add(y, ops.multiply(ops.concat([zero_frame] * -shift + [kept], 0), weights[j]))
        elif shift > 0:
            kept = ops.slice(x, ints(ops, [shift]), ints(ops, [huge]), ints(ops, [1]), ints(ops, [0]))
            y = ops.add(y, ops.multiply(ops.concat([kept] + [zero_frame] * shift, 0), weights[j]))
    return y


def tam_conversion_extension() -> Any:
    """The ONNX-frontend extension for ``tamdeploy::TAMAggregate``; register it on the ``openvino.Core``
    that reads the model (``core.add_extension``) or pass it to ``openvino.convert_model(extension=...)``."""
    from openvino.frontend.onnx import ConversionExtension

    def convert(node: Any) -> list[Any]:
        x, kernel, local = (node.get_input(i) for i in range(3))
        y = tam_aggregate_ov(x, kernel, local, int(node.get_attribute("num_segments")),
                             int(node.get_attribute("kernel_size")))
        return [y.output(0)]

    return ConversionExtension(TAM_OP_TYPE, TAM_DOMAIN, convert)
