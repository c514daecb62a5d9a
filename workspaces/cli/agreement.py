"""`curate report`, `curate agreement`: what humans agreed on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..agreement import MarkdownTable, Report, krippendorff_alpha, read_tidy_table
from ..config import AlphaLevel
from ._app import ConfigArg, app, command, load
from .console import console, print_table, say


def show_table(table: MarkdownTable) -> None:
    """A report table on the console (the same table report.md and the card render)."""
    print_table(table.title, table.columns, table.rows, table.note)


def print_report(report: Report) -> None:
    """Every table of the report on the console."""
    for table in report.tables():
        show_table(table)


def report_with_sections(project, *, bootstrap: int = 1000, extra: Optional[dict] = None):
    """The report with the sections other stages compute: the audit (which closes a broken gate), honeypots and
    anchoring, and any `extra` ones (the demo's `loop`)."""
    from ..agreement import write_report
    from ..judge import check_audit
    from ..review.honeypots import honeypot_section
    from ..review.qualification import qualification_section
    from ..review.suppression import anchoring_section

    extra = {"audit": check_audit(project), "honeypots": honeypot_section(project),
             "anchoring": anchoring_section(project), "qualification": qualification_section(project),
             **(extra or {})}
    if extra["honeypots"]:
        from ..argilla_io.annotators import paused

        stopped = paused(project)
        for row in extra["honeypots"]["annotators"]:
            row["paused"] = row["annotator"] in stopped
    return write_report(project, bootstrap=bootstrap, extra_sections=extra)


@command(app, "report")
def report_command(
    config: Path = ConfigArg,
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95% CI (0: none)."),
) -> None:
    """Agreement report from the synced table -> <run dir>/report.json and report.md."""
    project = load(config)
    with console.status("Computing agreement..."):
        report, path = report_with_sections(project, bootstrap=bootstrap)
    print_report(report)
    say(f"report -> {path} and {path.with_suffix('.md')}")


@command(app, "agreement")
def agreement_command(
    file: Path = typer.Argument(..., help="csv / jsonl / parquet with columns unit, annotator, value."),
    level: AlphaLevel = typer.Option(AlphaLevel.nominal, "--level", help="Level of measurement."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95% CI (0: none)."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Krippendorff's alpha for any tidy table (missing values are absent rows)."""
    result = krippendorff_alpha(read_tidy_table(file), level, bootstrap=bootstrap, seed=seed)
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json")))
        return
    ci = "n/a" if result.ci95 is None else f"[{result.ci95[0]:.3f}, {result.ci95[1]:.3f}]"
    alpha = "n/a" if result.alpha is None else f"{result.alpha:.4f}"
    say(f"alpha ({result.level.value}) = {alpha}  95% CI {ci}  units {result.units}, annotators {result.annotators}, "
        f"pairable values {result.pairable}")
