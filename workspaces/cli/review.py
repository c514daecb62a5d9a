"""`curate select`, `curate simulate`: what humans label next, in Argilla and in a simulation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..review.select import STRATEGIES
from ._app import ConfigArg, app, command, load
from .console import console, print_table, progress_bar, say


@command(app, "select")
def select_command(
    config: Path = ConfigArg,
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Items to select (default selection.batch)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help=f"One of {', '.join(STRATEGIES)}."),
    seed: Optional[int] = typer.Option(None, help="Seed (default selection.seed)."),
) -> None:
    """Pick the next batch for human review, mix in audit items and honeypots, and publish it to Argilla.

    Only the planned items are published (record id = item id), in random order; every Nth goes without the
    suggestion when `suppression` is configured. What each item is stays in the run dir (review_plan.parquet).
    """
    from ..argilla_io.publish import publish
    from ..review.plan import plan_batch, read_plan, record_batch
    from ..review.select import select_items
    from .argilla import client

    project = load(config)
    spec = project.selection
    seed = spec.seed if seed is None else seed
    with console.status("Selecting..."):
        selection = select_items(project, batch=batch or spec.batch, strategy=strategy or spec.strategy, seed=seed,
                                 exclude=set(read_plan(project)["item_id"]))
        plan = plan_batch(project, selection, seed=seed)
    owner = client()
    with progress_bar("Publishing", "records") as update:
        result = publish(project, owner, item_ids=plan.item_ids, suppressed=plan.suppressed, progress=update)
    record_batch(project, plan, selection)
    print_table(f"{project.name}: batch {plan.batch} ({selection.strategy})",
                ["selected", "audit", "honeypots", "without suggestion", "published"],
                [[str(plan.count("selected")), str(plan.count("audit")), str(plan.count("honeypot")),
                  str(len(plan.suppressed)), str(result.records)]])
    say(result.url)


@command(app, "simulate")
def simulate_command(
    config: Path = ConfigArg,
    oracle: str = typer.Option(..., "--oracle", help="The data column that answers like a human."),
    strategy: Optional[list[str]] = typer.Option(None, "--strategy", help="Repeatable; default: default and random."),
    seeds: int = typer.Option(3, help="Repetitions with different seeds."),
    seed_size: int = typer.Option(100, help="Labeled items before the first selection."),
    batch: int = typer.Option(25, help="Items per round."),
    budget: int = typer.Option(3000, help="The most oracle labels a run may spend."),
    target: Optional[list[float]] = typer.Option(None, "--target", help="Accuracy targets (default 0.85 0.88 0.90)."),
    eval_split: Optional[str] = typer.Option(None, help="Split value to evaluate on (default test; 'random': 20%)."),
    as_json: Optional[Path] = typer.Option(None, "--json", help="Write the curves and label costs here."),
) -> None:
    """The active-learning loop in memory with a data column as the human: labels needed per accuracy target."""
    from ..review.simulate import TARGETS, simulate

    project = load(config)
    strategies = strategy or ["default", "random"]
    targets = sorted(target or TARGETS)
    with progress_bar("Simulating", "labels") as update:
        spent = {"n": 0}

        def progress(name: str, seed: int, labels: int, accuracy: float) -> None:
            spent["n"] += 1
            update(spent["n"], 0)

        results = simulate(project, oracle, strategies=strategies, seeds=seeds, seed_size=seed_size, batch=batch,
                           budget=budget, targets=targets, eval_split=eval_split, progress=progress)
    keys = [f"{t:.2f}" for t in targets]
    random = next((r for r in results if r.strategy == "random"), None)
    rows = []
    for result in results:
        row = [result.strategy]
        for key in keys:
            n = result.labels_to[key]
            saving = ""
            if random is not None and result is not random and n and random.labels_to[key]:
                saving = f" ({1 - n / random.labels_to[key]:+.0%} vs random)".replace("+", "-", 1) \
                    if n < random.labels_to[key] else f" ({n / random.labels_to[key] - 1:+.0%} vs random)"
            row.append("not reached" if n is None else f"{n:,.0f}{saving}")
        rows.append(row)
    print_table(f"{project.name}: human labels to reach each accuracy (mean over {seeds} seeds, batch {batch})",
                ["strategy", *[f"{float(k):.0%}" for k in keys]], rows)
    if as_json is not None:
        as_json.write_text(json.dumps([r.to_json() for r in results], indent=2))
        say(f"curves -> {as_json}")
