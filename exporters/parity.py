"""The parity check every export runs: the ONNX on ONNX Runtime vs the original PyTorch model."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tamdeploy.compare import TOLERANCES, Comparison, compare, fails_on_rel_l2_alone, rounding_limit, rounding_note
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
    note: str | None = None  # the limit was widened to FP32's own rounding (``rounding_limit``)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "criterion": f"relative L2 error <= {self.rel_l2_limit:.3g} and identical top-5 at every batch",
            "overall": self.overall.to_dict(),
            "per_batch": {str(b): c.to_dict() for b, c in self.per_batch.items()},
            "note": self.note,
        }


def check_export_parity(onnx_path: str | Path, model: nn.Module, config: ModelConfig, ecfg: ExportConfig,
                        batches: tuple[int, ...] = PARITY_BATCHES, seed: int = 0) -> ParityResult:
    """Run both on the same seeded random inputs at each batch size; FP32 must agree to rel L2 1e-5
    with identical top-5 sets (export-time rewrites are off: this is the user's original model)."""
    session = create_session(onnx_path)
    per_batch: dict[int, Comparison] = {}
    inputs, outs, refs = [], [], []
    model.eval()
    for i, batch in enumerate(batches):
        x = ecfg.random_input(config, batch, seed=seed + i)
        with torch.no_grad():
            ref = model(x).float().numpy()
        out = session.run([ecfg.output_name], {ecfg.input_name: x.numpy()})[0]
        per_batch[batch] = compare(out, ref)
        inputs.append(x)
        outs.append(out)
        refs.append(ref)
    overall = compare(np.concatenate(outs), np.concatenate(refs))
    tolerance, note = FP32, None
    if fails_on_rel_l2_alone(check for c in per_batch.values() for check in FP32.judge(c)):
        own = _rel_l2_from_float64(model, inputs, refs)
        widened = rounding_limit(FP32, own) if own is not None else None
        if widened is not None:
            tolerance, note = widened, rounding_note(ecfg.output_name, own, widened, FP32)
    passed = all(check.passed for c in per_batch.values() for check in tolerance.judge(c))
    return ParityResult(per_batch=per_batch, overall=overall, rel_l2_limit=tolerance.rel_l2_max, passed=passed,
                        note=note)


def _rel_l2_from_float64(model: nn.Module, inputs: list[torch.Tensor], refs: list[np.ndarray]) -> float | None:
    """How far PyTorch FP32's outputs (``refs``) are from the same network in float64 on the same inputs."""
    try:
        exact = copy.deepcopy(model).double()
        with torch.no_grad():
            got = [exact(x.double()).numpy() for x in inputs]
    except Exception:  # a user's network with an op that has no float64 kernel: judged at the usual limit
        return None
    return compare(np.concatenate(refs).astype(np.float64), np.concatenate(got)).rel_l2_error
