"""Export-time rewrites (MMDeploy style): forwards swapped in only while exporting.

Modules are recognised by structure, not by class, so the official TANet / mmaction2 TAM classes and
ACTION-Net's ``Action`` inside a user's own network are rewritten too. The rewritten forwards compute
the same function with ops that export with a dynamic batch: TAM's data-dependent grouped conv (whose
group count would follow the batch) becomes the ``tamdeploy::tam_aggregate`` op, and ACTION-Net's
permute copies disappear (its trained shift is that op with a static kernel and a unit gate).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import tamdeploy.plugins.tam_op  # noqa: F401  (registers torch.ops.tamdeploy.tam_aggregate)
from tamdeploy.errors import ExportError
from tamdeploy.exporters.action_stats import tap_matrix

ACTION_PARTS = ("net", "action_shift", "action_p1_conv1", "action_p2_squeeze", "action_p2_conv1",
                "action_p2_expand", "action_p3_squeeze", "action_p3_bn1", "action_p3_conv1",
                "action_p3_expand")


@dataclass(frozen=True)
class Rewrite:
    name: str
    matches: Callable[[nn.Module], bool]
    forward: Callable[..., torch.Tensor]


_REWRITES: list[Rewrite] = []


def register_rewrite(name: str, matches: Callable[[nn.Module], bool]):
    """Register ``forward(module, x)`` as the export-time forward of modules that ``matches``."""

    def wrap(forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        _REWRITES.append(Rewrite(name, matches, forward))
        return forward

    return wrap


def num_segments_of(module: nn.Module) -> int:
    """T, under the official (``n_segment``) or mmaction2 / tamdeploy (``num_segments``) name."""
    for attr in ("num_segments", "n_segment"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    raise ExportError(f"{type(module).__name__} has no num_segments / n_segment attribute")


def is_tam(module: nn.Module) -> bool:
    g, l_ = getattr(module, "G", None), getattr(module, "L", None)
    return (isinstance(g, nn.Sequential) and isinstance(l_, nn.Sequential)
            and isinstance(g[-1], nn.Softmax) and isinstance(l_[-1], nn.Sigmoid))


def is_action(module: nn.Module) -> bool:
    return all(isinstance(getattr(module, part, None), nn.Module) for part in ACTION_PARTS)


def _tam_kernel_size(module: nn.Module) -> int:
    linears = [m for m in module.G if isinstance(m, nn.Linear)]
    return linears[-1].out_features


def _check_tam_geometry(module: nn.Module, k: int) -> None:
    stride = getattr(module, "adaptive_convolution_stride", getattr(module, "stride", 1))
    padding = getattr(module, "adaptive_convolution_padding", getattr(module, "padding", (k - 1) // 2))
    if stride != 1 or padding != (k - 1) // 2:
        raise ExportError(f"TAM with stride {stride} and padding {padding} cannot be exported: the "
                          f"TAMAggregate op implements stride 1 and 'same' padding {(k - 1) // 2}")


@register_rewrite("tam", is_tam)
def tam_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    t = num_segments_of(self)
    k = _tam_kernel_size(self)
    _check_tam_geometry(self, k)
    c = x.shape[1]
    pooled = x.mean(dim=(2, 3)).view(-1, t, c).transpose(1, 2)  # (N, C, T), no copy of x
    kernel = self.G(pooled.reshape(-1, t)).view(-1, c, k)
    local = self.L(pooled)
    return torch.ops.tamdeploy.tam_aggregate(x, kernel, local)


@register_rewrite("action", is_action)
def action_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    t = num_segments_of(self)
    nt, c, h, w = x.shape
    shift = self.action_shift.weight  # (C, 1, K): trained depthwise temporal kernel
    kernel = shift.view(1, c, shift.shape[-1]).expand(nt // t, c, shift.shape[-1])
    unit_gate = torch.ones_like(shift[:, 0, :1]).view(1, c, 1).expand(nt // t, c, t)
    xs = torch.ops.tamdeploy.tam_aggregate(x, kernel, unit_gate)

    # spatio-temporal excitation: only the 1-channel mean is permuted. The mean is a MatMul with 1/C:
    # ONNX Runtime's ReduceMean over the channel axis took twice as long
    mean = (_per_channel(1.0 / c, c, xs) @ xs.view(nt, c, h * w)).view(-1, t, 1, h, w).transpose(1, 2)
    ste = torch.sigmoid(self.action_p1_conv1(mean)).transpose(1, 2).reshape(nt, 1, h, w)

    # channel excitation on pooled (N*T, C) features
    sums = _tap_sums(xs)
    squeezed = self.action_p2_squeeze((sums[..., 4] * _per_channel(1.0 / (h * w), c, xs)).view(nt, c, 1, 1))
    r = squeezed.shape[1]
    temporal = torch.relu(self.action_p2_conv1(squeezed.view(-1, t, r).transpose(1, 2)))
    ce = torch.sigmoid(self.action_p2_expand(temporal.transpose(1, 2).reshape(nt, r, 1, 1)))

    # motion excitation: d[t] = mean(conv(x3))[t+1] - mean(x3)[t], pooled before the difference
    moved, still = _motion_means(self, xs, sums)
    r3 = moved.shape[-1]
    diff = F.pad(moved.view(-1, t, r3)[:, 1:] - still.view(-1, t, r3)[:, :-1], (0, 0, 0, 1))
    me = torch.sigmoid(self.action_p3_expand(diff.reshape(nt, r3, 1, 1)))

    # x*ste + x + x*ce + x + x*me + x == x * (ste + ce + me + 3)
    return self.net(xs * (ste + (ce + me + _per_channel(3.0, c, xs).view(1, c, 1, 1))))


def _per_channel(value: float, c: int, like: torch.Tensor) -> torch.Tensor:
    """[1, C] filled with ``value``, exported as one constant. Used in place of scalars too: ONNX Runtime
    broadcasts a scalar over an [N*T, C, 1, 1] tensor slowly (an Add of a scalar took 200 us for 8K
    elements, of a [1, C, 1, 1] tensor 9 us)."""
    return torch.full((1, c), value, dtype=like.dtype, device=like.device)


def _read_by_taps(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """[H*W, 9]: ``action_stats.tap_matrix``, which the INT8 pass and the OpenVINO reader recognise as a pooling.

    Built from a Python list, so that export records one constant rather than the ops that would make it.
    """
    return torch.tensor(tap_matrix(h, w).tolist(), dtype=like.dtype, device=like.device)


def _tap_sums(x: torch.Tensor) -> torch.Tensor:
    """[NT, C, 9]: per tap (a, b) of a 3x3 'same' conv, at index a*3 + b, the sum of the pixels of ``x``
    that tap reads; 4, the centre tap, is the sum of all pixels.

    One MatMul that reads x once, [NT, C, H*W] @ [H*W, 9], which ONNX Runtime runs as a single GEMM.
    (Rows and columns as two MatMuls, [3, H] @ (x @ [W, 3]), cost 15 of ACTION-R50's 577 ms: the
    second ran as one tiny GEMM per frame and channel, and transposing it instead was slower still.)
    """
    h, w = x.shape[-2:]
    return x.flatten(2) @ _read_by_taps(h, w, x)


def _is_motion_linear(self: nn.Module) -> bool:
    """ME's squeeze conv, BN and depthwise conv are the affine maps whose means _motion_means derives."""
    sq, bn, dw = self.action_p3_squeeze, self.action_p3_bn1, self.action_p3_conv1
    return (isinstance(sq, nn.Conv2d) and sq.kernel_size == (1, 1) and sq.stride == (1, 1) and sq.groups == 1
            and sq.padding in ((0, 0), 0)
            and isinstance(bn, nn.BatchNorm2d) and not bn.training and bn.running_var is not None
            and isinstance(dw, nn.Conv2d) and dw.kernel_size == (3, 3) and dw.stride == (1, 1)
            and dw.padding == (1, 1) and dw.dilation == (1, 1) and dw.padding_mode == "zeros"
            and dw.groups == dw.in_channels == dw.out_channels == sq.out_channels)


def _motion_means(self: nn.Module, xs: torch.Tensor, sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[NT, r] spatial means of dwconv(x3) and of x3, x3 = BN(squeeze(xs)).

    Squeeze and BN are affine per pixel and the depthwise conv sums its taps, so both means are linear
    in ``sums`` (``_tap_sums(xs)``) plus constants: the full-resolution squeeze, BN and depthwise
    conv never run. Other ME layouts take the direct path.
    """
    sq, bn, dw = self.action_p3_squeeze, self.action_p3_bn1, self.action_p3_conv1
    h, w = xs.shape[2:]
    if not _is_motion_linear(self):
        x3 = bn(sq(xs))
        return dw(x3).mean(dim=(2, 3)), x3.mean(dim=(2, 3))
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    offset = -bn.running_mean * scale + (bn.bias if bn.bias is not None else 0.0)
    if sq.bias is not None:
        offset = offset + sq.bias * scale
    taps = dw.weight.flatten(1)  # [r, 9]
    read = _read_by_taps(h, w, xs).sum(0)  # pixels per tap
    # per pixel x3 = scale * (W_sq xs) + offset, so x3 summed over tap j's pixels is scale * W_sq sums_j
    # + offset * read_j, and mean(dwconv(x3)) = sum_j taps_j * (x3 summed over tap j's pixels) / hw
    # [r, C] @ [NT, C, 9] as the squeeze conv over a 3x3 image of tap sums: ONNX Runtime runs a MatMul with
    # the constant on the left as one small GEMM per frame, a conv as one GEMM with packed weights
    z = F.conv2d(sums.view(-1, sums.shape[1], 3, 3), sq.weight).flatten(2)
    moved = (z * (taps * (scale / (h * w))[:, None])).sum(-1) + (taps @ read) * offset / (h * w)
    if dw.bias is not None:
        moved = moved + dw.bias
    still = z[..., 4] * (scale / (h * w)) + offset
    return moved, still


@contextmanager
def export_rewrites(model: nn.Module) -> Iterator[list[tuple[str, str]]]:
    """Swap in the export forwards; yields [(module path, rewrite name)]; restores on exit."""
    patched: list[tuple[nn.Module, object]] = []
    applied: list[tuple[str, str]] = []
    missing = object()
    try:
        for path, module in model.named_modules():
            rewrite = next((r for r in _REWRITES if r.matches(module)), None)
            if rewrite is None:
                continue
            patched.append((module, module.__dict__.get("forward", missing)))
            module.forward = types.MethodType(rewrite.forward, module)
            applied.append((path, rewrite.name))
        yield applied
    finally:
        for module, previous in patched:
            if previous is missing:
                del module.forward
            else:
                module.forward = previous
