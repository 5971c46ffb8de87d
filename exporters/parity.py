"""The parity check every export runs: the ONNX on ONNX Runtime vs the original PyTorch model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tamdeploy.compare import TOLERANCES, Comparison, compare
from tamdeploy.exporters.configs import ExportConfig
from tamdeploy.models.config import ModelConfig
from tamdeploy.onnx_runtime import create_session

PARITY_BATCHES = (1, 3)
FP32 = TOLERANCES["fp32"]


@dataclass(frozen=True)
class ParityResult:
    per_batch: dict[int, Comparison]
    overall: Comparison
    rel_l2_limit: float
    passed: bool

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "criterion": f"relative L2 error <= {self.rel_l2_limit:g} and identical top-5 at every batch",
            "overall": self.overall.to_dict(),
            "per_batch": {str(b): c.to_dict() for b, c in self.per_batch.items()},
        }


def check_export_parity(onnx_path: str | Path, model: nn.Module, config: ModelConfig, ecfg: ExportConfig,
                        batches: tuple[int, ...] = PARITY_BATCHES, seed: int = 0) -> ParityResult:
    """Run both on the same seeded random inputs at each batch size; FP32 must agree to rel L2 1e-5
    with identical top-5 sets (export-time rewrites are off: this is the user's original model)."""
    session = create_session(onnx_path)
    per_batch: dict[int, Comparison] = {}
    outs, refs = [], []
    model.eval()
    for i, batch in enumerate(batches):
        x = ecfg.random_input(config, batch, seed=seed + i)
        with torch.no_grad():
            ref = model(x).float().numpy()
        out = session.run([ecfg.output_name], {ecfg.input_name: x.numpy()})[0]
        per_batch[batch] = compare(out, ref)
        outs.append(out)
        refs.append(ref)
    overall = compare(np.concatenate(outs), np.concatenate(refs))
    passed = all(check.passed for c in per_batch.values() for check in FP32.judge(c))
    return ParityResult(per_batch=per_batch, overall=overall, rel_l2_limit=FP32.rel_l2_max, passed=passed)
