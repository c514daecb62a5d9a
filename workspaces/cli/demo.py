"""`curate demo`: the whole loop on the embedded defaults, with real human labels replayed as real Argilla users."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..config import ProjectConfig
from ..rundir import REVIEWER_LOGIN, read_json, write_json
from ._app import app, command, load
from .agreement import print_report, report_with_sections
from .console import console, progress_bar, say, stage

if TYPE_CHECKING:
    import pandas as pd

    from ..agreement import Report
    from ..review.plan import ReviewBatch
    from ..review.select import Selection

__all__ = ["REVIEWER", "plan_review_batch", "reviewer_login", "run_demo"]

REVIEWER = "reviewer"


def reviewer_login(config: ProjectConfig) -> tuple[str, str]:
    """The demo reviewer's username and password (generated once, kept in the run dir with 0600 permissions)."""
    data = read_json(config.run_path, REVIEWER_LOGIN, required=False)
    if data:
        return data["username"], data["password"]
    password = secrets.token_urlsafe(9)
    write_json(REVIEWER_LOGIN.path(config.run_path), {"username": REVIEWER, "password": password})
    return REVIEWER, password


def _f(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def plan_review_batch(config: ProjectConfig
                      ) -> tuple["pd.DataFrame", Optional["ReviewBatch"], Optional["Selection"]]:
    """The demo's review batch: `(plan rows, new ReviewBatch or None, its Selection or None)`.

    A run dir that already planned batches keeps them (a re-run publishes the same items the same way). Otherwise
    the batch is selected as at the start of a project, before any human answered (`reference.recorded: false`: the
    recorded annotators answer only in the replay that follows), so with no human label yet the selection is a cold
    start (k-center diversity); honeypots come from the items whose recorded human consensus is known.
    """
    from ..items import load_items
    from ..review.plan import plan_batch, read_plan
    from ..review.select import select_items

    before = read_plan(config)
    if len(before):
        return before[before["item_id"].isin(set(load_items(config)["item_id"]))], None, None
    spec = config.selection
    unseen = config.model_copy(update={"reference": config.reference.model_copy(update={"recorded": False})})
    selection = select_items(unseen, batch=spec.batch, strategy=spec.strategy, seed=spec.seed)
    batch = plan_batch(config, selection, seed=spec.seed)
    return batch.plan, batch, selection


def _describe_batch(config: ProjectConfig, plan: "pd.DataFrame", selection: Optional["Selection"]) -> str:
    roles = plan["role"].value_counts().to_dict()
    counts = (f"{roles.get('selected', 0)} selected + {roles.get('honeypot', 0)} honeypots"
              + (f" + {roles['audit']} audit items" if roles.get("audit") else "")
              + f" = {len(plan)} items in random order, {int(plan['suppressed'].sum())} of them without the LLM "
              f"suggestion")
    if selection is None:
        return (f"{plan['batch'].nunique()} batch(es) already planned in this run dir: {counts} (published again as "
                "planned)")
    how = selection.strategy
    if how in ("margin", "entropy", "hybrid") and not any(selection.scores):
        how += " (a cold start: no human label yet, so k-center diversity in embedding space)"
    rules = []
    if config.honeypots is not None:
        rules.append(f"honeypots {config.honeypots.share:.0%} of the batch, items whose recorded consensus is known")
    if config.suppression is not None:
        rules.append(f"every {config.suppression.every}th item without the suggestion")
    return (f"batch {plan['batch'].iloc[0]}, strategy {how}: {counts}" + (f" ({'; '.join(rules)})" if rules else "")
            + ". Which item is which is only in review_plan.parquet, never on the server.")


def _describe_review(report: "Report") -> list[str]:
    """What the demo's honeypot and anchoring tables say, in words."""
    lines = []
    honeypots = report.sections.get("honeypots")
    if honeypots:
        seen = [a["seen"] for a in honeypots["annotators"]]
        stopped = [a["annotator"] for a in honeypots["annotators"] if a.get("paused")]
        lines.append(f"honeypots: {len(honeypots['annotators'])} recorded annotators answered {min(seen)}-{max(seen)} "
                     f"of the {honeypots['honeypots']} honeypots; "
                     + (f"paused by the rule: {', '.join(stopped)}" if stopped else
                        f"nobody is below {honeypots['min_accuracy']} after {honeypots['min_seen']} honeypots, "
                        "so nobody is paused"))
    anchoring = report.sections.get("anchoring")
    if anchoring:
        agree = anchoring["rows"][0]
        difference = "n/a" if agree["difference"] is None else f"{agree['difference']:+.3f}"
        lines.append(f"anchoring: agreement with the LLM {_f(agree['suggested'])} with the suggestion shown vs "
                     f"{_f(agree['suppressed'])} suppressed (difference {difference}). The recorded annotators "
                     "labelled without any LLM suggestion and are replayed as they were, so the true effect here is "
                     "0 by construction of a replay; what the table shows is sampling noise between the two item "
                     "sets. With live reviewers, the same table measures how much the suggestion anchors them.")
    return lines


def run_demo(config: ProjectConfig, *, label: bool = True, repo_id: Optional[str] = None) -> dict[str, float]:
    """Run every stage, printing each stage's time; returns the timings.

    The curated dataset goes to a local folder (`hub.local_dir` or `<run dir>/curated`), or to the Hub when a
    `repo_id` is given. Any known failure ends as one `CurateError` message (the command prints it).
    """
    from pipelines import embed_items, label_items

    from ..argilla_io.annotators import paused
    from ..argilla_io.connection import connect
    from ..argilla_io.publish import publish
    from ..argilla_io.replay import ensure_user, replay_recorded_labels
    from ..argilla_io.sync import sync
    from ..config import slug
    from ..curated import push
    from ..items import load_items, recorded_labels
    from ..judge import calibrate, run_gate
    from ..review.plan import record_batch
    from ..review.triage import triage
    from .argilla import apply_pause_rule
    from .judge import train_student

    timings: dict[str, float] = {}
    with stage("Argilla server", timings):
        client, info = connect()
        say(f"{'external' if info.external else 'embedded'} server at {info.api_url}"
            f"{'' if info.external else (' (started)' if info.started else ' (reused)')}")
    if label and config.llm is not None:
        with stage("LLM labels", timings), progress_bar("Labelling", "items") as update:
            labelled = label_items(config, progress=update)
        say(f"{labelled.ok} ok, {labelled.failed} failed ({labelled.skipped} already labelled); "
            + "; ".join(f"{question}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                        for question, counts in labelled.distribution().items()))
    with stage("Embeddings", timings), progress_bar("Embedding", "texts") as update:
        embed_items(config, progress=update)
    with stage("Select a review batch (active learning) with honeypots and suppression", timings):
        plan, batch, selection = plan_review_batch(config)
        if len(plan):
            with progress_bar("Publishing the batch", "records") as update:
                first = publish(config, client, item_ids=plan.sort_values("position")["item_id"].tolist(),
                                suppressed=plan.loc[plan["suppressed"].astype(bool), "item_id"].tolist(),
                                progress=update)
            if batch is not None:
                record_batch(config, batch, selection)
            say(_describe_batch(config, plan, selection))
            say(f"published first, so reviewers meet it first: {first.records} records, {first.suggestions} LLM "
                f"suggestions")
        else:
            say("no item left to select")
    with stage("Publish", timings), progress_bar("Publishing", "records") as update:
        published = publish(config, client, progress=update)
    say(f"{published.records} records, {published.suggestions} LLM suggestions in {published.dataset} "
        f"(workspace {published.workspace})" + ("; the batch's suppressed items stay without one" if len(plan) else ""))
    username, password = reviewer_login(config)
    ensure_user(client, username, config.argilla.workspace, password=password)
    stopped = paused(config)
    recorded = None
    if stopped:  # a paused annotator stays out: their recorded labels are not submitted again
        recorded = recorded_labels(config, load_items(config))
        recorded = recorded[~recorded["annotator"].map(slug).isin(set(stopped))]
        say(f"left out (paused by the honeypot rule): {', '.join(sorted(stopped))}")
    with stage("Replay the recorded annotators as Argilla users", timings), \
            progress_bar("Submitting", "responses") as update:
        replayed = replay_recorded_labels(config, client, labels=recorded, progress=update)
    say(f"{len(replayed.annotators)} annotators: {replayed.responses} responses submitted, "
        f"{replayed.unchanged} already there ({replayed.values} values)")
    with stage("Sync", timings), progress_bar("Syncing", "records") as update:
        synced = sync(config, client, progress=update)
    say(f"{synced.responses} responses -> {synced.path}")
    if config.honeypots is not None:
        for annotator, reason in apply_pause_rule(config, client):
            say(f"{annotator} paused by the honeypot rule: {reason}; removed from workspace "
                f"{config.argilla.workspace}, their responses no longer count", style="red")
    labeler = config.triage.labeler
    if labeler in ("student", "ensemble"):
        with stage("Train the student on the human labels", timings):
            for question, _, run in train_student(config):
                say(f"{question}: trained on {run.trained_on} human reference items, labelled "
                    f"{int((run.labels['status'] == 'ok').sum())} items ({run.identity['classifier']}, "
                    f"{run.identity['features']})")
    if labeler != "llm" or (config.llm is not None and (config.run_path / "labels.parquet").is_file()):
        with stage(f"Calibrate, gate and triage the {labeler} labeler", timings):
            calibration = calibrate(config, labeler)
            for question, q in calibration["questions"].items():
                say(f"{question}: on {q['n']} human reference items, accuracy {_f(q['accuracy'])}"
                    + (" (exact set)" if "hamming_loss" in q else "")
                    + f", Cohen's kappa {_f(q['kappa'])}" + (" (mean per label)" if "hamming_loss" in q else "")
                    + f", alpha {_f(q['alpha'])}, ECE {_f(q['ece'])}")
            for decision in run_gate(config, labeler):
                say(f"gate {decision.question}: {decision.decision.upper()} - {decision.reason}",
                    style="green" if decision.decision == "pass" else "red")
            routed = triage(config, labeler)
            say(f"routes: auto {routed.counts['auto']}, audit {routed.counts['audit']}, review "
                f"{routed.counts['review']}" + ("" if routed.gate_open else
                                               " (the gate is closed: no label is accepted without a human)"))
    with stage("Report", timings):
        report, report_path = report_with_sections(config)
        print_report(report)
        for line in _describe_review(report):
            say(line)
        say(f"report -> {report_path}")
    with stage("Push curated splits", timings):
        pushed = push(config, repo_id=repo_id)
    say(f"curated dataset -> {pushed.location} (" + ", ".join(f"{split} {n}" for split, n in pushed.rows.items())
        + "; excluded " + (", ".join(f"{k.replace('_', ' ')} {v}" for k, v in pushed.excluded.items() if v) or "none")
        + ")")
    sources = {s for counts in pushed.by_source.values() for s in counts}
    say("labels no human gave: " + ("none (every label in the dataset comes from humans)"
                                    if not sources & {"auto-accepted", "unverified"} else
                                    "auto-accepted under an open gate (see the card's 'Gate' section)"))

    console.rule("Review it yourself")
    say(f"Argilla UI: {info.api_url}  ->  dataset {published.dataset}\n{published.url}")
    say(f"reviewer login: {username} / {password}   (owner credentials: "
        f"{'ARGILLA_API_KEY' if info.external else str(info.home) + '/credentials.json'})")
    say("times: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items()))
    return timings


@command(app, "demo")
def demo_command(
    config: Path = typer.Option(Path("configs/convabuse_demo.yaml"), help="Demo project config."),
    label: bool = typer.Option(True, help="Label the items with the local LLM first (suggestions)."),
    limit: Optional[int] = typer.Option(None, help="Only the first N items (quick look)."),
    repo_id: Optional[str] = typer.Option(None, "--repo-id", help="Also push the curated splits to this Hub repo."),
) -> None:
    """The whole loop on the embedded defaults: server, LLM labels, a review batch with honeypots and suppressed
    items, publish, real annotators, sync (and the pause rule), report, push."""
    project = load(config)
    if limit is not None:
        project = project.model_copy(update={"data": project.data.model_copy(update={"limit": limit})})
    run_demo(project, label=label, repo_id=repo_id)
