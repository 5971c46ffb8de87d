"""The building blocks, written to compute exactly what the originals compute.

- ``SELayer``: senet.pytorch's squeeze-and-excitation layer.
- ``Action``: ACTION-Net's module (shift + STE + CE + ME) wrapping a bottleneck's conv1.
- ``TAM``: TANet's Temporal Adaptive Module (official code and mmaction2 share this maths).

State-dict names match the originals so their checkpoints load by renaming prefixes only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SELayer(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(W2 relu(W1 avgpool(x)))."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        y = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * y


def initial_shift_weight(channels: int, shift_div: int = 8) -> torch.Tensor:
    """ACTION-Net's shift initialisation: fold channels take t+1, the next fold t-1, the rest stay."""
    fold = channels // shift_div
    weight = torch.zeros(channels, 1, 3)
    weight[:fold, 0, 2] = 1.0
    weight[fold : 2 * fold, 0, 0] = 1.0
    weight[2 * fold :, 0, 1] = 1.0
    return weight


class Action(nn.Module):
    """ACTION-Net's module around a conv (``net``): out = net(STE(xs) + CE(xs) + ME(xs)), xs = shift(x).

    The shift is a depthwise temporal Conv1d that is *trained*, so loaded weights are used as they are.
    """

    def __init__(self, net: nn.Conv2d, num_segments: int, shift_div: int = 8) -> None:
        super().__init__()
        self.net = net
        self.num_segments = num_segments
        cin = net.in_channels
        r = cin // 16
        self.in_channels = cin
        self.reduced_channels = r
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.relu = nn.ReLU(inplace=True)
        self.sigmoid = nn.Sigmoid()
        self.action_shift = nn.Conv1d(cin, cin, 3, padding=1, groups=cin, bias=False)
        with torch.no_grad():
            self.action_shift.weight.copy_(initial_shift_weight(cin, shift_div))
        # spatio-temporal excitation
        self.action_p1_conv1 = nn.Conv3d(1, 1, 3, padding=1, bias=False)
        # channel excitation
        self.action_p2_squeeze = nn.Conv2d(cin, r, 1, bias=False)
        self.action_p2_conv1 = nn.Conv1d(r, r, 3, padding=1, bias=False)
        self.action_p2_expand = nn.Conv2d(r, cin, 1, bias=False)
        # motion excitation
        self.action_p3_squeeze = nn.Conv2d(cin, r, 1, bias=False)
        self.action_p3_bn1 = nn.BatchNorm2d(r)
        self.action_p3_conv1 = nn.Conv2d(r, r, 3, padding=1, groups=r, bias=False)
        self.action_p3_expand = nn.Conv2d(r, cin, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        t = self.num_segments
        n = nt // t
        # temporal shift: (n, h, w, c, t) so that Conv1d runs along t
        xs = x.view(n, t, c, h, w).permute(0, 3, 4, 2, 1).contiguous().view(n * h * w, c, t)
        xs = self.action_shift(xs)
        xs = xs.view(n, h, w, c, t).permute(0, 4, 3, 1, 2).contiguous().view(nt, c, h, w)

        # STE: channel mean -> 3D conv over (t, h, w) -> sigmoid
        p1 = xs.view(n, t, c, h, w).transpose(2, 1).contiguous().mean(1, keepdim=True)
        p1 = self.action_p1_conv1(p1).transpose(2, 1).contiguous().view(nt, 1, h, w)
        p1 = xs * self.sigmoid(p1) + xs

        # CE: pool -> squeeze -> temporal conv -> relu -> expand -> sigmoid
        p2 = self.action_p2_squeeze(self.avg_pool(xs))
        r = p2.shape[1]
        p2 = p2.view(n, t, r).transpose(2, 1).contiguous()
        p2 = self.relu(self.action_p2_conv1(p2))
        p2 = p2.transpose(2, 1).contiguous().view(nt, r, 1, 1)
        p2 = xs * self.sigmoid(self.action_p2_expand(p2)) + xs

        # ME: d[t] = conv(x3)[t+1] - x3[t], zero for the last t
        x3 = self.action_p3_bn1(self.action_p3_squeeze(xs))
        h3, w3 = x3.shape[2:]
        cur = x3.view(n, t, r, h3, w3)[:, : t - 1]
        nxt = self.action_p3_conv1(x3).view(n, t, r, h3, w3)[:, 1:]
        p3 = F.pad(nxt - cur, (0, 0, 0, 0, 0, 0, 0, 1)).view(nt, r, h3, w3)
        p3 = self.action_p3_expand(self.avg_pool(p3))
        p3 = xs * self.sigmoid(p3) + xs

        return self.net(p1 + p2 + p3)


class TAM(nn.Module):
    """TANet's Temporal Adaptive Module on [N*T, C, H, W].

    Global branch G: (N*C, T) -> softmax kernel of size K; local branch L: (N, C, T) -> sigmoid gate.
    Output: the gated input convolved along T with each (clip, channel)'s own kernel.
    Accepts mmaction2's argument names (``num_segments``, ``adaptive_kernel_size``, ...).
    """

    def __init__(
        self,
        in_channels: int,
        num_segments: int,
        alpha: int = 2,
        beta: int = 4,
        kernel_size: int = 3,
        conv1d_kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        *,
        adaptive_kernel_size: int | None = None,
        adaptive_convolution_stride: int | None = None,
        adaptive_convolution_padding: int | None = None,
    ) -> None:
        super().__init__()
        if adaptive_kernel_size is not None:
            kernel_size = adaptive_kernel_size
        if adaptive_convolution_stride is not None:
            stride = adaptive_convolution_stride
        if adaptive_convolution_padding is not None:
            padding = adaptive_convolution_padding
        if padding is None:
            padding = (kernel_size - 1) // 2
        self.in_channels = in_channels
        self.num_segments = num_segments
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.G = nn.Sequential(
            nn.Linear(num_segments, num_segments * alpha, bias=False),
            nn.BatchNorm1d(num_segments * alpha),
            nn.ReLU(inplace=True),
            nn.Linear(num_segments * alpha, kernel_size, bias=False),
            nn.Softmax(-1),
        )
        self.L = nn.Sequential(
            nn.Conv1d(in_channels, in_channels // beta, conv1d_kernel_size, padding=conv1d_kernel_size // 2,
                      bias=False),
            nn.BatchNorm1d(in_channels // beta),
            nn.ReLU(inplace=True),
            nn.Conv1d(in_channels // beta, in_channels, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        t = self.num_segments
        n = nt // t
        x5 = x.view(n, t, c, h, w).permute(0, 2, 1, 3, 4).contiguous()
        pooled = F.adaptive_avg_pool2d(x5.view(n * c, t, h, w), (1, 1)).view(-1, t)
        kernel = self.G(pooled).view(n * c, 1, -1, 1)
        local = self.L(pooled.view(n, c, t)).view(n, c, t, 1, 1)
        y = F.conv2d((x5 * local).view(1, n * c, t, h * w), kernel, stride=(self.stride, 1),
                     padding=(self.padding, 0), groups=n * c)
        return y.view(n, c, t, h, w).permute(0, 2, 1, 3, 4).contiguous().view(nt, c, h, w)
