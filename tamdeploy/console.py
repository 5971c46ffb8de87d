"""Terminal output shared by the commands: results on stdout, messages and progress on stderr."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text


class _Console(Console):
    """rich exits 1 when the reader of its output goes away (`| head`), which our exit codes read as "parity
    failed": the BrokenPipeError goes on to the command's handler instead (exit 141, quietly)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


out = _Console(soft_wrap=True)
err = _Console(stderr=True, soft_wrap=True)

# Library messages name parameters in backticks (`tam_op`, `calib=PATH`); the CLI installs a rewrite that
# shows them as its flags (--tam-op, --calib PATH). Without the CLI they print as they are.
_rewrite: Callable[[str], str] = str


def set_message_rewrite(rewrite: Callable[[str], str]) -> None:
    global _rewrite
    _rewrite = rewrite

T = TypeVar("T")


def print_json(data: Any) -> None:
    """Machine-readable result on stdout (plain print: rich would wrap or colour it)."""
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(_rewrite(message))}", highlight=False)


def info(message: str) -> None:
    err.print(escape(_rewrite(message)), highlight=False)


def error(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(_rewrite(message))}", highlight=False)


def key_value_table(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, str(value))
    return table


class RateColumn(ProgressColumn):
    """Items per second ("12.5 videos/s"), from rich's own speed estimate."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} {self.unit}/s" if task.speed else "", style="progress.data.speed")


@contextmanager
def progress_bar(enabled: bool = True, unit: str | None = None) -> Iterator[Progress]:
    """A rich progress bar on stderr; ``enabled=False`` (e.g. with --json) keeps it quiet, and so does a
    stderr that is not a terminal (a log file or a pipe would get a blank line where the bar was).
    ``unit`` ("videos") adds the rate."""
    rate = [RateColumn(unit)] if unit else []
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *rate,
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
        disable=not enabled or not err.is_terminal,
    )
    with progress:
        yield progress


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    with progress_bar(enabled) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


@contextmanager
def stages(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr naming the step that runs now, with the time spent on it and in all; yields
    ``stage(name)`` to call as each step starts (quiet with --json)."""
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        TextColumn("[dim]total {task.fields[total_elapsed]}"), console=err, transient=True,
                        disable=not enabled or not err.is_terminal)
    started = time.perf_counter()
    current: list = []

    def stage(name: str) -> None:
        total = f"{time.perf_counter() - started:.0f}s"
        if current:
            progress.remove_task(current.pop())
        current.append(progress.add_task(name, total=None, total_elapsed=total))

    with progress:
        yield stage


@contextmanager
def status(message: str, enabled: bool = True) -> Iterator[None]:
    """A spinner on stderr for work without a known length (quiet with --json)."""
    if not enabled:
        yield
        return
    with err.status(escape(message)):
        yield
