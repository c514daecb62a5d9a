"""`curate label`, `curate prefer`, `curate embed`: the Distilabel side. Each shows a progress bar with its rate and
ends with a summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ModelError
from ._app import ConfigArg, app, command, load
from .console import print_table, progress_bar, say


@command(app, "label")
def label_command(
    config: Path = ConfigArg,
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Label only the first N items."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Send previously failed rows to the model again."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Distilabel's logs."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS",
                                      help="Run on the Ray cluster at ADDRESS (host:port, ray://host:10001, auto) "
                                           "instead of the config's engine."),
) -> None:
    """Label the config's items with its LLM (Distilabel): label, confidence and probabilities per item.

    Exits 5 when no item could be labeled (every row failed).
    """
    from pipelines.label import label_items

    project = load(config)
    with progress_bar("Labelling", "items") as update:
        run = label_items(project, limit=limit, progress=update, retry_failed=retry_failed, verbose=verbose,
                          ray_address=ray)
    rows = []
    for question, group in run.labels.groupby("question"):
        ok = group[group["status"] == "ok"]
        distribution = ", ".join(f"{k}: {v}" for k, v in ok["label"].value_counts().items())
        mean = f"{ok['confidence'].mean():.3f}" if len(ok) else "-"
        rows.append([str(question), str(len(ok)), str(len(group) - len(ok)), distribution or "-", mean])
    print_table(f"curate label: {project.name}  ({run.model})",
                ["question", "ok", "failed", "label distribution (ok rows)", "mean confidence"], rows)
    errors = run.errors()
    if errors:
        say("failures: " + ", ".join(f"{k}: {v}" for k, v in errors.items()))
    rate = f", {run.items_per_second:.2f} items/s" if run.labeled else ""
    say(f"labeled {run.labeled} (skipped {run.skipped} already done) in {run.seconds:.1f}s{rate} -> {run.path}")
    if len(run.labels) and run.ok == 0:
        first = run.labels["error"].dropna().iloc[0] if run.labels["error"].notna().any() else "unknown"
        llm = project.llm
        where = f"the model server at {llm.base_url}" if llm is not None and llm.base_url else f"model {run.model}"
        raise ModelError(f"every one of {len(run.labels)} label rows failed with {where} (first reason: {first}); "
                         f"check that it answers, and the llm section of {config} (backend, model, base_url)")


@command(app, "prefer")
def prefer_command(
    config: Path = typer.Argument(..., help="Preference project config (YAML, task: preference)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Only the first N prompts."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Distilabel's logs."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS",
                                      help="Run on the Ray cluster at ADDRESS (host:port, ray://host:10001, auto) "
                                           "instead of the config's engine."),
) -> None:
    """Build preference pairs: candidates per prompt, judge ratings, chosen/rejected/margin (Distilabel)."""
    from pipelines.prefer import prefer_items

    project = load(config)
    with progress_bar("Judging", "rows") as update:
        run = prefer_items(project, limit=limit, progress=update, verbose=verbose, ray_address=ray)
    report = run.report
    print_table(f"curate prefer: {project.name}  ({run.model})",
                ["pairs", "ok", "failed", "A chosen", "B chosen", "ties", "mean margin"],
                [[*(str(report[k]) for k in ("pairs", "ok", "failed", "a_chosen", "b_chosen", "ties")),
                  f"{report['mean_margin']:.3f}" if report["mean_margin"] is not None else "-"]])
    if report.get("human_agreement") is not None:
        agreement = report["human_agreement"]
        say(f"judge vs human preference: agreement {agreement['rate']:.3f} on {agreement['compared']} non-tied pairs "
            f"(ties: {agreement['judge_ties']}, failed: {agreement['failed']})")
    say(f"{run.seconds:.1f}s -> {run.path} (report: {run.report_path})")


@command(app, "embed")
def embed_command(
    config: Path = ConfigArg,
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Embed only the first N items."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Distilabel's logs."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS",
                                      help="Run on the Ray cluster at ADDRESS (host:port, ray://host:10001, auto) "
                                           "instead of the config's engine."),
) -> None:
    """Embed the items' text fields (sentence-transformers) into <run dir>/embeddings.parquet."""
    from pipelines.embed import embed_items

    project = load(config)
    with progress_bar("Embedding", "texts") as update:
        run = embed_items(project, limit=limit, progress=update, ray_address=ray, verbose=verbose)
    rate = f" ({run.texts_per_second:.1f} texts/s)" if run.embedded else ""
    say(f"embedded {run.embedded} (kept {run.skipped}) with {run.model}, {run.dimensions}-d, "
        f"in {run.seconds:.1f}s{rate} -> {run.path}")
