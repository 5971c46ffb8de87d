"""Accuracy as video recognition papers and mmaction2 report it, from labels and scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores (ties broken by class order)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``[true, predicted]`` counts."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> list[float | None]:
    """Recall of each class; None for a class with no videos in the set."""
    totals = matrix.sum(axis=1)
    return [float(matrix[c, c] / totals[c]) if totals[c] else None for c in range(len(matrix))]


def mean_class_accuracy(matrix: np.ndarray) -> float:
    """mmaction2's ``mean_class_accuracy``: the mean recall over the classes present in the labels."""
    present = [a for a in per_class_accuracy(matrix) if a is not None]
    return float(np.mean(present)) if present else float("nan")


def agreement(a: Sequence[int], b: Sequence[int]) -> float:
    """Fraction of videos on which two models give the same top-1 class."""
    return float(np.mean(np.asarray(a) == np.asarray(b))) if len(a) else float("nan")
