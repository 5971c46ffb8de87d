"""Accuracy as video recognition papers and mmaction2 report it, from labels and scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores (ties broken by class order). A row
    with a NaN or infinite score is a miss: a model that overflowed has not found the class."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hits = np.any(top == labels[:, None], axis=1) & np.isfinite(scores).all(axis=1)
    return float(np.mean(hits))


def top1(scores: np.ndarray) -> np.ndarray:
    """The best class per row; -1 for a row with a NaN or infinite score."""
    best = np.argmax(scores, axis=1) if scores.size else np.zeros(len(scores), dtype=np.int64)
    return np.where(np.isfinite(scores).all(axis=1), best, -1)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``[true, predicted]`` counts; rows predicted -1 (non-finite scores) are in no column."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    valid = predicted >= 0
    np.add.at(matrix, (labels[valid], predicted[valid]), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> list[float | None]:
    """Recall of each class; None for a class with no videos in the set."""
    totals = matrix.sum(axis=1)
    return [float(matrix[c, c] / totals[c]) if totals[c] else None for c in range(len(matrix))]


def mean_class_accuracy(matrix: np.ndarray) -> float:
    """mmaction2's ``mean_class_accuracy``: the mean recall over the classes that occur in the labels *or*
    the predictions, a class only ever predicted counting 0 (``mmaction/evaluation/functional/accuracy.py``)."""
    truth, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    classes = np.flatnonzero((truth > 0) | (predicted > 0))
    if not len(classes):
        return float("nan")
    return float(np.mean([matrix[c, c] / truth[c] if truth[c] else 0.0 for c in classes]))


def agreement(a: Sequence[int], b: Sequence[int]) -> float:
    """Fraction of videos on which two models give the same top-1 class."""
    return float(np.mean(np.asarray(a) == np.asarray(b))) if len(a) else float("nan")
