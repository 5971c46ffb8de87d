"""Per-architecture export configs (Optimum style): input name, layout and output name.

Adding an input convention is one small entry here, not edits across the exporter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tamdeploy.models.config import ModelConfig


@dataclass(frozen=True)
class ExportConfig:
    input_name: str
    layout: str
    output_name: str = "logits"

    def random_input(self, cfg: ModelConfig, batch: int, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn((batch, *cfg.input_shape), generator=g)


VIDEO = ExportConfig(input_name="video", layout="NTCHW")
IMAGE = ExportConfig(input_name="image", layout="NCHW")


def export_config_for(cfg: ModelConfig) -> ExportConfig:
    return VIDEO if cfg.is_video else IMAGE
