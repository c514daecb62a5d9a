"""The one console stack of the CLI: a rich console, progress bars with rates, stage timers, and errors.

Everything the CLI prints goes through here. Messages that carry user text (errors, paths, values) are printed as
plain text, never parsed as rich markup, so `^[a-z0-9_-]+$` in an error stays `^[a-z0-9_-]+$`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Callable, Iterator, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, \
    TimeElapsedColumn
from rich.table import Table
from rich.text import Text

__all__ = ["console", "error_console", "print_error", "print_table", "progress_bar", "say", "stage", "warn"]

os.environ.setdefault("TQDM_DISABLE", "1")  # the Argilla SDK's own tqdm bars would interleave with ours

# wide enough for tables when the output is a file or a CI log (rich falls back to 80 columns there)
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
error_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)


def say(message: str, style: Optional[str] = None) -> None:
    """Print `message` as plain text (no markup parsing)."""
    console.print(Text(message, style=style or ""), soft_wrap=True)


def warn(message: str) -> None:
    """A warning on stderr, as plain text."""
    error_console.print(Text("warning: ", style="bold yellow") + Text(message), soft_wrap=True)


def print_error(message: str) -> None:
    """One clear error on stderr, as plain text."""
    error_console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)


def print_table(title: str, columns: list[str], rows: list[list[str]], note: Optional[str] = None) -> None:
    """A rich table of text cells (cells are plain text)."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))
    console.print(table)
    if note:
        say(note)


class _RateColumn(ProgressColumn):
    """Units per second since the first unit finished."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        started = task.fields.get("first_at")
        done = task.completed - task.fields.get("first_done", 0)
        if started is None or done <= 0:
            return Text(f"- {self.unit}/s", style="progress.data.speed")
        return Text(f"{done / max(time.monotonic() - started, 1e-6):,.1f} {self.unit}/s", style="progress.data.speed")


@contextlib.contextmanager
def progress_bar(description: str, unit: str = "items") -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar; yields a callback `(done, total)` to feed it."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(unit),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task_id = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            task = bar.tasks[0]
            if done > 0 and "first_at" not in task.fields:
                bar.update(task_id, first_at=time.monotonic(), first_done=done)
            bar.update(task_id, completed=done, total=total)

        yield update


@contextlib.contextmanager
def stage(name: str, timings: Optional[dict[str, float]] = None) -> Iterator[None]:
    """Print a stage header and record its wall time in `timings`."""
    console.rule(Text(name, style="bold"))
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    if timings is not None:
        timings[name] = elapsed
    console.print(Text(f"{name}: {elapsed:.1f} s", style="dim"))
