"""The confusion matrix as a picture: where a model's mistakes go, per class."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tamdeploy.deploy.bench.plots import new_figure
from tamdeploy.files import atomic_path

if TYPE_CHECKING:
    from tamdeploy.deploy.predict.evaluate import ModelScore

_MAX_TICK_LABELS = 40  # beyond this (Kinetics: 400 classes) names would overlap; the axes show indices


def plot_confusion(model: ModelScore, names: list[str] | None, path: str | os.PathLike) -> Path:
    """Rows: true class, columns: predicted, each row normalised to the class's videos (recall on the
    diagonal); written atomically."""
    matrix = model.confusion.astype(np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    n = len(matrix)
    side = min(14.0, 4.0 + 0.3 * n)
    fig = new_figure(side + 1.5, side)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true class's videos")
    if n <= _MAX_TICK_LABELS:
        labels = names or [str(i) for i in range(n)]
        ax.set_xticks(range(n), labels, rotation=90)
        ax.set_yticks(range(n), labels)
        if n <= 12:
            for (row, col), value in np.ndenumerate(model.confusion):
                if value:
                    ax.text(col, row, str(value), ha="center", va="center",
                            color="white" if share[row, col] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{model.label}: top-1 {model.top1:.1%}, mean class accuracy {model.mean_class_accuracy:.1%}")
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=110)
    return Path(path)
