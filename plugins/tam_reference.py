"""TAM aggregation written the way the original TANet code computes it.

This is the independent formulation that the fused op and the ONNX body are checked against:
permute to [N, C, T, H, W], multiply by the local activation, then a grouped 2-D convolution with
one data-dependent temporal kernel per (clip, channel), and permute back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def tam_aggregate_reference(x: torch.Tensor, kernel: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Y [N*T, C, H, W] from x [N*T, C, H, W], kernel [N, C, K] and local [N, C, T] (TANet's TAM.forward)."""
    nt, c, h, w = x.shape
    n, _, k = kernel.shape
    t = local.shape[-1]
    new_x = x.view(n, t, c, h, w).permute(0, 2, 1, 3, 4).contiguous()
    new_x = new_x * local.view(n, c, t, 1, 1)
    out = F.conv2d(
        new_x.view(1, n * c, t, h * w),
        kernel.view(n * c, 1, k, 1),
        bias=None,
        stride=(1, 1),
        padding=((k - 1) // 2, 0),
        groups=n * c,
    )
    out = out.view(n, c, t, h, w)
    return out.permute(0, 2, 1, 3, 4).contiguous().view(nt, c, h, w)
