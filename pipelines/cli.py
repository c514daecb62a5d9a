"""Typer commands of the Distilabel side: `curate label`, `curate prefer`, `curate embed`.

Registered in `workspaces/cli.py`. Each shows a progress bar with items/s and ends with a summary.
"""

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, \
    TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from workspaces.config import ConfigError, load_config

__all__ = ["embed_command", "label_command", "prefer_command"]

console = Console(stderr=True)


class _RateColumn(ProgressColumn):
    """Items per second since the first item finished."""

    def render(self, task: Task) -> Text:
        started = task.fields.get("first_at")
        done = task.completed - task.fields.get("first_done", 0)
        if started is None or done <= 0:
            return Text("- items/s", style="progress.data.speed")
        return Text(f"{done / max(time.monotonic() - started, 1e-6):.2f} items/s", style="progress.data.speed")


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task_id = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            task = progress.tasks[0]
            if done > 0 and "first_at" not in task.fields:
                progress.update(task_id, first_at=time.monotonic(), first_done=done)
            progress.update(task_id, completed=done, total=total)

        yield update


def _load(config: Path):
    try:
        return load_config(config)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def label_command(
    config: Path = typer.Argument(..., help="Project config (YAML)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Label only the first N items."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Send previously failed rows to the model again."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Distilabel's logs."),
) -> None:
    """Label the config's items with its LLM (Distilabel): label, confidence and probabilities per item."""
    from .label import label_items
    from .llms import LLMSetupError

    project = _load(config)
    try:
        with _progress("label") as update:
            run = label_items(project, limit=limit, progress=update, retry_failed=retry_failed, verbose=verbose)
    except (ConfigError, LLMSetupError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    table = Table(title=f"curate label: {project.name}  ({run.model})")
    table.add_column("question")
    table.add_column("ok", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("label distribution (ok rows)")
    table.add_column("mean confidence", justify="right")
    for question, group in run.labels.groupby("question"):
        ok = group[group["status"] == "ok"]
        distribution = ", ".join(f"{k}: {v}" for k, v in ok["label"].value_counts().items())
        mean = f"{ok['confidence'].mean():.3f}" if len(ok) else "-"
        table.add_row(str(question), str(len(ok)), str(len(group) - len(ok)), distribution or "-", mean)
    console.print(table)
    errors = run.errors()
    if errors:
        console.print("failures: " + ", ".join(f"{k}: {v}" for k, v in errors.items()))
    rate = f", {run.items_per_second:.2f} items/s" if run.labeled else ""
    console.print(f"labeled {run.labeled} (skipped {run.skipped} already done) in {run.seconds:.1f}s{rate} "
                  f"-> {run.path}")


def prefer_command(
    config: Path = typer.Argument(..., help="Preference project config (YAML, task: preference)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Only the first N prompts."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Distilabel's logs."),
) -> None:
    """Build preference pairs: candidates per prompt, judge ratings, chosen/rejected/margin (Distilabel)."""
    from .llms import LLMSetupError
    from .prefer import prefer_items

    project = _load(config)
    try:
        with _progress("prefer") as update:
            run = prefer_items(project, limit=limit, progress=update, verbose=verbose)
    except (ConfigError, LLMSetupError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    report = run.report
    table = Table(title=f"curate prefer: {project.name}  ({run.model})")
    for column in ("pairs", "ok", "failed", "A chosen", "B chosen", "ties", "mean margin"):
        table.add_column(column, justify="right")
    table.add_row(*(str(report[k]) for k in ("pairs", "ok", "failed", "a_chosen", "b_chosen", "ties")),
                  f"{report['mean_margin']:.3f}" if report["mean_margin"] is not None else "-")
    console.print(table)
    if report.get("human_agreement") is not None:
        agreement = report["human_agreement"]
        console.print(f"judge vs human preference: agreement {agreement['rate']:.3f} on {agreement['compared']} "
                      f"non-tied pairs (ties: {agreement['judge_ties']}, failed: {agreement['failed']})")
    console.print(f"{run.seconds:.1f}s -> {run.path} (report: {run.report_path})")


def embed_command(
    config: Path = typer.Argument(..., help="Project config (YAML)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Embed only the first N items."),
) -> None:
    """Embed the items' text fields (sentence-transformers) into <run dir>/embeddings.parquet."""
    from .embed import embed_items

    project = _load(config)
    try:
        with _progress("embed") as update:
            run = embed_items(project, limit=limit, progress=update)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    rate = f" ({run.texts_per_second:.1f} texts/s)" if run.embedded else ""
    console.print(f"embedded {run.embedded} (kept {run.skipped}) with {run.model}, {run.dimensions}-d, "
                  f"in {run.seconds:.1f}s{rate} -> {run.path}")
