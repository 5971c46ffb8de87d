"""Tables shared by the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from tamdeploy.console import out


def parity_table(title: str, comparisons: dict[str, Any], passed: bool | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("", "max abs", "max rel", "rel L2", "cosine", "top-1", "top-5"):
        table.add_column(column, justify="right" if column else "left")
    for label, c in comparisons.items():
        table.add_row(label, f"{c.max_abs_error:.3g}", f"{c.max_rel_error:.3g}", f"{c.rel_l2_error:.3g}",
                      f"{c.cosine_similarity:.9f}", f"{c.top1_agreement:.0%}", f"{c.top5_agreement:.0%}")
    if passed is not None:
        table.caption = "[green]PASS[/green]" if passed else "[red]FAIL[/red]"
    return table


def print_predictions(records: list[dict], top_k: int) -> None:
    """Video, top-1 label and score, the rest of the top-k: the table predict and client print."""
    table = Table(title_justify="left")
    table.add_column("video")
    table.add_column("top-1", justify="left")
    if top_k > 1:
        table.add_column("top-2" if top_k == 2 else f"top-2..{top_k}", justify="left")
    names = [Path(record["video"]).name for record in records]
    shared = {name for name in names if names.count(name) > 1}  # a/clip.mp4 and b/clip.mp4: show the paths
    for record, name in zip(records, names, strict=True):
        shown = [f"{escape(t['label'])} {t['score']:.3f}" for t in record["top_k"]]
        cells = [shown[0] if shown else "[red]failed[/red]"]
        if top_k > 1:
            cells.append(", ".join(shown[1:]))
        table.add_row(escape(record["video"] if name in shared else name), *cells)
    out.print(table)
