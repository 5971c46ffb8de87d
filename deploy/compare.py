"""Numerical comparison of two model outputs: the numbers every parity report prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """Candidate vs reference over a batch of [N, classes] logits (or any [N, ...] output).

    ``max_rel_error`` divides by max(|reference|, 1e-3 * rms(reference)) elementwise so that logits
    near zero do not make it meaningless; ``rel_l2_error`` = ||a - b|| / ||b|| is the pass criterion.
    Top-k agreement is the fraction of samples whose top-k class *sets* are identical.
    """

    samples: int
    max_abs_error: float
    mean_abs_error: float
    max_rel_error: float
    rel_l2_error: float
    cosine_similarity: float
    top1_agreement: float
    top5_agreement: float

    def to_dict(self) -> dict:
        return asdict(self)


def _topk_sets(x: np.ndarray, k: int) -> list[frozenset[int]]:
    k = min(k, x.shape[1])
    idx = np.argsort(-x, axis=1, kind="stable")[:, :k]
    return [frozenset(row.tolist()) for row in idx]


def compare(candidate: np.ndarray, reference: np.ndarray) -> Comparison:
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"output shapes differ: {a.shape} vs {b.shape}")
    diff = np.abs(a - b)
    rms = float(np.sqrt(np.mean(b * b))) if b.size else 0.0
    denom = np.maximum(np.abs(b), max(1e-3 * rms, 1e-30))
    norm_a, norm_b = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    cosine = float(np.dot(a.ravel(), b.ravel()) / (norm_a * norm_b)) if norm_a and norm_b else float(
        norm_a == norm_b)
    flat_a, flat_b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    top1 = float(np.mean(np.argmax(flat_a, 1) == np.argmax(flat_b, 1)))
    top5 = float(np.mean([x == y for x, y in zip(_topk_sets(flat_a, 5), _topk_sets(flat_b, 5), strict=True)]))
    return Comparison(
        samples=int(a.shape[0]),
        max_abs_error=float(diff.max()) if diff.size else 0.0,
        mean_abs_error=float(diff.mean()) if diff.size else 0.0,
        max_rel_error=float((diff / denom).max()) if diff.size else 0.0,
        rel_l2_error=float(np.linalg.norm(a - b) / norm_b) if norm_b else float(np.linalg.norm(a - b)),
        cosine_similarity=cosine,
        top1_agreement=top1,
        top5_agreement=top5,
    )
