"""The constants that carry ACTION-Net's pooled statistics in an export, torch-free.

The ACTION rewrite (``rewrites.action_forward``) pools with two MatMuls against constants, the form
ONNX Runtime runs fastest: the channel mean ``[1, C] (all 1/C) @ xs[N*T, C, H*W]`` and the tap sums
``xs[N*T, C, H*W] @ tap_matrix(H, W)``. Two readers must recognise them as poolings, not as layers:
the INT8 pass (a pooling is not quantized, and it ends a gate branch) and the OpenVINO reader, which
turns them back into reductions that its CPU plugin runs in the convolutions' blocked layout.
"""

from __future__ import annotations

import numpy as np

TAPS = 9  # a 3x3 'same' convolution's taps, tap (a, b) at index a*3 + b


def lines_read(size: int) -> list[list[float]]:
    """[size][3]: 1 where a 3x3 'same' conv's tap offset -1, 0, +1 reads that row (or column); offset -1
    never reads the last line, +1 never the first."""
    return [[float(i != size - 1), 1.0, float(i != 0)] for i in range(size)]


def tap_matrix(h: int, w: int) -> np.ndarray:
    """[H*W, 9] float32: 1 where tap (a, b) of a 3x3 'same' conv reads pixel (i, j)."""
    rows, cols = np.array(lines_read(h), np.float32), np.array(lines_read(w), np.float32)
    return np.einsum("ia,jb->ijab", rows, cols).reshape(h * w, TAPS)


def tap_matrix_shape(weight: np.ndarray) -> tuple[int, int] | None:
    """(H, W) when ``weight`` is ``tap_matrix(H, W)`` for some H, W, else None."""
    if weight.ndim != 2 or weight.shape[1] != TAPS:
        return None
    hw = weight.shape[0]
    for h in range(1, hw + 1):
        if hw % h == 0 and np.array_equal(weight, tap_matrix(h, hw // h)):
            return h, hw // h
    return None


def is_channel_pooling_row(weight: np.ndarray) -> bool:
    """Whether ``weight`` is a [1, C] row of one value: a channel sum scaled (the mean when 1/C)."""
    return weight.ndim == 2 and weight.shape[0] == 1 and weight.size > 1 and bool(np.all(weight == weight.flat[0]))


def is_pooling_constant(weight: np.ndarray, left: bool) -> bool:
    """Whether a MatMul with the constant ``weight`` as its left (``left``) or right operand pools."""
    return is_channel_pooling_row(weight) if left else tap_matrix_shape(weight) is not None
