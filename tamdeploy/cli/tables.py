"""Tables shared by the commands."""

from __future__ import annotations

from typing import Any

from rich.table import Table


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
