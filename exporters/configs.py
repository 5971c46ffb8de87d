"""Per-architecture export configs (Optimum style): input name, layout, dynamic axes, tolerances.

Adding an input convention is one small entry here, not edits across the exporter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tamdeploy.models.resnet import ModelConfig


@dataclass(frozen=True)
class ExportConfig:
    input_name: str
    layout: str
    output_name: str = "logits"
    # FP32 parity: relative L2 error of the logits and identical top-5 class sets
    fp32_rel_l2: float = 1e-5

    def sample_shape(self, cfg: ModelConfig) -> tuple[int, ...]:
        s = cfg.input_size
        if self.layout == "NTCHW":
            return (cfg.num_segments, 3, s, s)
        return (3, s, s)

    def random_input(self, cfg: ModelConfig, batch: int, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn((batch, *self.sample_shape(cfg)), generator=g)


VIDEO = ExportConfig(input_name="video", layout="NTCHW")
IMAGE = ExportConfig(input_name="image", layout="NCHW")


def export_config_for(cfg: ModelConfig) -> ExportConfig:
    return VIDEO if cfg.is_video else IMAGE
