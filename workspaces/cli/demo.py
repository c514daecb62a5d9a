"""`curate demo`: the whole loop on the embedded defaults, with real human labels replayed as real Argilla users."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Optional

import typer

from ..config import ProjectConfig
from ..rundir import REVIEWER_LOGIN, read_json, write_json
from ._app import app, command, load
from .agreement import print_report, report_with_sections
from .console import console, progress_bar, say, stage

__all__ = ["REVIEWER", "reviewer_login", "run_demo"]

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


def run_demo(config: ProjectConfig, *, label: bool = True, repo_id: Optional[str] = None) -> dict[str, float]:
    """Run every stage, printing each stage's time; returns the timings.

    The curated dataset goes to a local folder (`hub.local_dir` or `<run dir>/curated`), or to the Hub when a
    `repo_id` is given. Any known failure ends as one `CurateError` message (the command prints it).
    """
    from pipelines import embed_items, label_items

    from ..argilla_io.connection import connect
    from ..argilla_io.publish import publish
    from ..argilla_io.replay import ensure_user, replay_recorded_labels
    from ..argilla_io.sync import sync
    from ..curated import push
    from ..judge import calibrate, run_gate
    from ..review.triage import triage

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
    with stage("Publish", timings), progress_bar("Publishing", "records") as update:
        published = publish(config, client, progress=update)
    say(f"{published.records} records, {published.suggestions} LLM suggestions in {published.dataset} "
        f"(workspace {published.workspace})")
    username, password = reviewer_login(config)
    ensure_user(client, username, config.argilla.workspace, password=password)
    with stage("Replay the recorded annotators as Argilla users", timings), \
            progress_bar("Submitting", "responses") as update:
        replayed = replay_recorded_labels(config, client, progress=update)
    say(f"{len(replayed.annotators)} annotators: {replayed.responses} responses submitted, "
        f"{replayed.unchanged} already there ({replayed.values} values)")
    with stage("Sync", timings), progress_bar("Syncing", "records") as update:
        synced = sync(config, client, progress=update)
    say(f"{synced.responses} responses -> {synced.path}")
    if config.llm is not None and (config.run_path / "labels.parquet").is_file():
        with stage("Calibrate, gate and triage the LLM judge", timings):
            calibration = calibrate(config, "llm")
            for question, q in calibration["questions"].items():
                say(f"{question}: on {q['n']} human reference items, accuracy {_f(q['accuracy'])}, Cohen's kappa "
                    f"{_f(q['kappa'])}, alpha {_f(q['alpha'])}, ECE {_f(q['ece'])}")
            for decision in run_gate(config, "llm"):
                say(f"gate {decision.question}: {decision.decision.upper()} - {decision.reason}",
                    style="green" if decision.decision == "pass" else "red")
            routed = triage(config, "llm")
            say(f"routes: auto {routed.counts['auto']}, audit {routed.counts['audit']}, review "
                f"{routed.counts['review']}" + ("" if routed.gate_open else
                                               " (the gate is closed: no label is accepted without a human)"))
    with stage("Report", timings):
        report, report_path = report_with_sections(config)
        print_report(report)
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
    """The whole loop on the embedded defaults: server, LLM labels, publish, real annotators, sync, report, push."""
    project = load(config)
    if limit is not None:
        project = project.model_copy(update={"data": project.data.model_copy(update={"limit": limit})})
    run_demo(project, label=label, repo_id=repo_id)
