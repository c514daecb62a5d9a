"""Console helpers shared by the CLI commands: one rich console, progress bars, clean exits on user errors."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["console", "fail", "progress_bar", "stage"]

os.environ.setdefault("TQDM_DISABLE", "1")  # the Argilla SDK's own tqdm bars would interleave with ours

# wide enough for the report tables when the output is a file or a CI log (rich falls back to 80 columns there)
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
error_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear error and return the Exit to raise (`raise fail(...)`)."""
    error_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


class _RateColumn(TextColumn):
    def __init__(self, unit: str) -> None:
        super().__init__("")
        self.unit = unit

    def render(self, task):  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return f"{speed:,.0f} {self.unit}/s" if speed else ""


@contextlib.contextmanager
def progress_bar(description: str, unit: str = "items") -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar; yields a callback `(done, total)` to feed it."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(unit),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextlib.contextmanager
def stage(name: str, timings: Optional[dict[str, float]] = None) -> Iterator[None]:
    """Print a stage header and record its wall time in `timings`."""
    console.rule(f"[bold]{name}")
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    if timings is not None:
        timings[name] = elapsed
    console.print(f"[dim]{name}: {elapsed:.1f} s[/]")
