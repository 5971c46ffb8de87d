"""Figures for reports (PNG; bench plots also SVG or PDF, by suffix); matplotlib is optional
(``pip install "tamdeploy[plot]"``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tamdeploy.errors import TamdeployError
from tamdeploy.files import atomic_path, check_writable

if TYPE_CHECKING:
    from tamdeploy.deploy.bench.report import BenchReport


def new_figure(width: float, height: float):
    """A matplotlib Figure (no pyplot state), or the install hint."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise TamdeployError('plots need matplotlib: pip install "tamdeploy[plot]"') from e
    return Figure(figsize=(width, height), layout="constrained")


PLOT_FORMATS = ("png", "svg", "pdf")


def check_plot_path(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """``path`` if a plot can be written there (a format matplotlib writes, named by its suffix), checked
    before the measuring starts; ``inputs`` are never overwritten."""
    path = Path(path)
    check_writable(path, inputs)
    if path.suffix.lower().lstrip(".") not in PLOT_FORMATS:
        raise TamdeployError(f"cannot write the plot {path}: name it .png, .svg or .pdf (the format follows the "
                             f"suffix)")
    return path


def plot_bench(report: BenchReport, path: str | os.PathLike) -> Path:
    """Two panels: box plots of the latency samples per batch and runner (log scale), and throughput
    (clips/s) against batch size. Written to a temp file beside ``path``, then renamed over it."""
    fig = new_figure(13, 5)
    latency, scaling = fig.subplots(1, 2, width_ratios=(3, 2))
    colors = [f"C{i % 10}" for i in range(len(report.runners))]
    width = 0.8 / len(report.runners)
    for i, (runner, color) in enumerate(zip(report.runners, colors, strict=True)):
        positions = [g + (i - (len(report.runners) - 1) / 2) * width for g in range(len(report.batches))]
        data = [runner.at(b).samples_ms for b in report.batches]
        latency.boxplot(data, positions=positions, widths=width * 0.85, patch_artist=True, manage_ticks=False,
                        boxprops={"facecolor": color, "alpha": 0.6}, medianprops={"color": "black"},
                        flierprops={"marker": ".", "markersize": 2, "markeredgecolor": color})
        latency.plot([], [], color=color, linewidth=6, alpha=0.6, label=runner.label)
        throughput = [runner.at(b).clips_per_s for b in report.batches]
        scaling.plot(report.batches, throughput, marker="o", color=color, label=runner.label)
    latency.set_xticks(range(len(report.batches)), [f"batch {b}" for b in report.batches])
    latency.set_yscale("log")
    latency.set_ylabel("latency per call (ms, log scale)")
    latency.set_title("latency distribution")
    latency.legend(loc="upper left")
    latency.grid(axis="y", which="both", alpha=0.3)
    scaling.set_xscale("log", base=2)
    rates = [b.clips_per_s for r in report.runners for b in r.batches]
    if max(rates) > 20 * min(rates):
        scaling.set_yscale("log")
    scaling.set_xticks(report.batches, [str(b) for b in report.batches])
    scaling.minorticks_off()
    scaling.set_xlabel("batch (clips per call)")
    scaling.set_ylabel("clips/s (batch / median latency)")
    scaling.set_title("batch scaling")
    scaling.legend(loc="upper left")
    scaling.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lower().lstrip(".") or "png", dpi=110)
    return Path(path)
