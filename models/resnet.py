"""ResNet backbones with the optional SE / TAM / ACTION blocks, as image or TSN-style video networks.

Parameter names follow torchvision (``conv1``, ``layer1.0.bn2``, ``fc``), so checkpoints of the
original projects map onto this model by renaming prefixes only.
"""

from __future__ import annotations

import torch
from torch import nn

from tamdeploy.models.config import BLOCK_KINDS, ModelConfig
from tamdeploy.models.modules import TAM, Action, SELayer

DEPTH_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, block: str, num_segments: int | None,
                 tam_kernel_size: int = 3) -> None:
        super().__init__()
        width_out = planes * self.expansion
        conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.conv1: nn.Module = Action(conv1, num_segments) if block == "action" else conv1
        self.bn1 = nn.BatchNorm2d(planes)
        if block == "tam":
            self.tam = TAM(planes, num_segments, kernel_size=tam_kernel_size)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width_out)
        if block == "se":
            self.se = SELayer(width_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != width_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, width_out, 1, stride=stride, bias=False), nn.BatchNorm2d(width_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        if hasattr(self, "tam"):
            out = self.tam(out)
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if hasattr(self, "se"):
            out = self.se(out)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Bottleneck ResNet. Video models (``num_segments`` set) take [N, T, 3, H, W] and average the
    per-frame logits over T (TSN consensus); image models take [N, 3, H, W]."""

    def __init__(self, config: ModelConfig, dropout: float = 0.0) -> None:
        super().__init__()
        if config.block not in BLOCK_KINDS:
            raise ValueError(f"unknown block kind {config.block!r}; expected one of {BLOCK_KINDS}")
        self.config = config
        self.num_segments = config.num_segments
        base = max(16, int(round(64 * config.width)))
        self.conv1 = nn.Conv2d(3, base, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = base
        stages = DEPTH_BLOCKS[config.depth]
        # ACTION-Net (after TSM) wraps every other block when layer3 has >= 23 blocks (R101)
        action_every = 2 if config.block == "action" and stages[2] >= 23 else 1
        for i, blocks in enumerate(stages):
            planes = base * 2**i
            layer = []
            for b in range(blocks):
                stride = 2 if (i > 0 and b == 0) else 1
                kind = config.block if b % action_every == 0 else "plain"
                layer.append(Bottleneck(inplanes, planes, stride, kind, config.num_segments,
                                        config.tam_kernel_size))
                inplanes = planes * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_segments is not None:
            n = x.shape[0]
            x = x.reshape((-1,) + tuple(x.shape[2:]))
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if self.num_segments is not None:
            x = x.view(n, self.num_segments, -1).mean(1)
        return x
