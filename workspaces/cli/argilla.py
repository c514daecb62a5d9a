"""`curate publish`, `curate sync`: the loop's exchanges with Argilla."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..config import ProjectConfig, TaskKind
from ._app import ConfigArg, app, command, load
from .console import console, progress_bar, say, warn

if TYPE_CHECKING:
    import argilla as rg


def client():
    """An owner client for the server in use (an `ArgillaError` ends the command with exit 4)."""
    from ..argilla_io.connection import connect

    with console.status("Connecting to Argilla..."):
        return connect()[0]


@command(app, "publish")
def publish_command(
    config: Path = ConfigArg,
    labels: Optional[Path] = typer.Option(None, help="LLM labels parquet (default: <run dir>/labels.parquet if any)."),
    embeddings: Optional[Path] = typer.Option(None, help="Item vectors parquet (default: <run dir>/embeddings.parquet)."),
    recreate: bool = typer.Option(False, "--recreate", help="Delete the dataset and publish it again when the config "
                                                            "changed in a way Argilla cannot apply (sync first)."),
) -> None:
    """Create/update the Argilla dataset from CONFIG and log its items (idempotent: record ids = item ids).

    A pair from data columns (`task: preference`, `candidates: columns`) is an item like any other: its responses
    are the fields `response_a` / `response_b` and the judge's answers are suggestions from `labels.parquet`
    (`curate prefer`). Pairs whose responses the LLM wrote (`candidates: generate`) are published from
    `preferences.parquet`.
    """
    from ..argilla_io.preference import publish_preferences
    from ..argilla_io.publish import publish

    project = load(config)
    owner = client()
    with progress_bar("Publishing", "records") as update:
        if project.task == TaskKind.preference and project.preference and project.preference.candidates == "generate":
            result = publish_preferences(project, owner, progress=update)
        else:
            result = publish(project, owner, labels_path=labels, embeddings_path=embeddings, recreate=recreate,
                             progress=update)
    for change in result.changes:
        say(f"settings: {change}")
    if result.earlier_guidelines:
        warn(f"the guidelines changed: {len(result.earlier_guidelines)} items were labelled under an earlier version "
             f"(e.g. {', '.join(result.earlier_guidelines[:3])}; all in guideline_changes.jsonl); the report's "
             "agreement per guideline version shows whether the change helped")
    verb = "created" if result.created else "updated"
    say(f"{verb} dataset {result.dataset} in workspace {result.workspace}: {result.records} records, "
        f"{result.suggestions} suggestions{', vectors' if result.vectors else ''}\n{result.url}")
    if result.skipped:
        reasons: dict[str, int] = {}
        for reason in result.skipped.values():
            reasons[reason.split(":")[0]] = reasons.get(reason.split(":")[0], 0) + 1
        warn(f"{len(result.skipped)} item(s) not published (" + ", ".join(f"{k} {v}" for k, v in reasons.items())
             + "), e.g. " + "; ".join(f"{i}: {r}" for i, r in list(result.skipped.items())[:3]))
    if result.failed:
        warn(f"{len(result.failed)} record(s) refused by the server, e.g. "
             + "; ".join(f"{i}: {r}" for i, r in list(result.failed.items())[:3]))
    if result.records == 0:
        from ..errors import ConfigError

        raise ConfigError(f"nothing was published: {config} gives no publishable item "
                          f"({len(result.skipped)} skipped, {len(result.failed)} refused)")


@command(app, "sync")
def sync_command(
    config: Path = ConfigArg,
    accept_deletions: bool = typer.Option(False, "--accept-deletions",
                                          help="Accept that responses of the last sync are gone from the server "
                                               "(they stay in annotations_history.parquet)."),
) -> None:
    """Pull every response (submitted, draft, discarded) into <run dir>/annotations.parquet; never lose one."""
    from ..argilla_io.sync import sync

    project = load(config)
    owner = client()
    with progress_bar("Syncing", "records") as update:
        result = sync(project, owner, accept_deletions=accept_deletions, progress=update)
    counts = ", ".join(f"{status} {n}" for status, n in sorted(result.by_status.items())) or "none"
    say(f"{result.responses} responses on {result.records} records ({counts}) -> {result.path}")
    if result.removed:
        warn(f"{result.removed} response(s) of the last sync are gone from the server (accepted), e.g. "
             + "; ".join(result.removed_examples) + f"; they are kept in {result.history}")
    for annotator, reason in apply_pause_rule(project, owner):
        warn(f"{annotator} paused: {reason}; their responses no longer count")
    for annotator, row in apply_qualification(project, owner).items():
        if row["status"] != "qualified":
            warn(f"{annotator} is {row['status']} ({row['evidence']}: {row['correct']} of {row['scored']} agree with "
                 "gold): their responses do not count yet")


def apply_qualification(project: ProjectConfig, owner: "rg.Argilla") -> dict[str, dict]:
    """Read the qualification answers from the server and update every reviewer's standing (flags the synced
    responses of those not qualified); {} without a `qualification` section."""
    from ..argilla_io.qualification import fetch_qualification_answers
    from ..review.qualification import qualification_question, reviewers_qualifying, update_standing

    if project.qualification is None:
        return {}
    answers = fetch_qualification_answers(project, owner, reviewers_qualifying(project),
                                          qualification_question(project))
    return update_standing(project, answers)


def apply_pause_rule(project: ProjectConfig, owner: "rg.Argilla") -> list[tuple[str, str]]:
    """The honeypot pause rule after a sync: pause (on the server) every annotator it stops who is not paused yet;
    returns (username, reason) of those just paused (none without `honeypots` in the config)."""
    from ..argilla_io.annotators import pause_annotator
    from ..review.honeypots import pause_decisions

    stopped = pause_decisions(project)
    for annotator, reason in stopped:
        pause_annotator(owner, project, annotator, reason)
    return stopped


@command(app, "watch")
def watch_command(
    config: Path = ConfigArg,
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Stop after this many seconds (default: until "
                                                                     "Ctrl-C)."),
    port: int = typer.Option(0, "--port", help="Listener port on 127.0.0.1 (default: a free one)."),
    retriage_every: int = typer.Option(50, "--retriage-every", help="Re-run calibrate, gate and triage once this many "
                                                                    "new responses count."),
) -> None:
    """A live loop on Argilla webhooks: each signed response event syncs the table, applies the pause rule and
    qualification within seconds, and re-runs calibrate -> gate -> triage when enough new evidence counts."""
    import signal
    import time

    from ..argilla_io.publish import get_dataset
    from ..argilla_io.sync import sync
    from ..argilla_io.webhooks import WebhookReceiver, describe, register_webhook
    from ..errors import ArgillaError

    project = load(config)
    owner = client()
    dataset = get_dataset(owner, project)
    if dataset is None:
        raise ArgillaError(f"dataset {project.argilla.dataset!r} is not published: run `curate publish {config}` first")
    receiver = WebhookReceiver(str(dataset.id), port=port).start()
    webhook = register_webhook(owner, receiver.url)
    receiver.secret = webhook.secret
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stop from outside ends as Ctrl-C does
    sync(project, owner)
    counted = _counted_responses(project)
    say(f"watching {project.argilla.dataset} on {receiver.url} (webhook {webhook.id}); {counted} responses count")
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while deadline is None or time.monotonic() < deadline:
            events = receiver.drain(timeout=0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic())))
            if not events:
                continue
            result = sync(project, owner)
            users = sorted({e["user"] for e in events if e["user"]})
            say(f"{len(events)} event(s) from {', '.join(users) or 'unknown users'}: synced {result.responses} "
                f"responses ({result.ledgered} new or changed)")
            for annotator, reason in apply_pause_rule(project, owner):
                warn(f"{annotator} paused: {reason}; their responses no longer count")
            apply_qualification(project, owner)
            now = _counted_responses(project)
            if now - counted >= retriage_every:
                counted = now
                _retriage(project)
    except KeyboardInterrupt:
        pass
    finally:
        webhook.delete()
        receiver.stop()
        say(f"stopped; events: {describe(receiver.counts)}")


def _counted_responses(project: ProjectConfig) -> int:
    """Responses that count now (submitted, not flagged), as in the synced table."""
    from ..rundir import ANNOTATIONS, read_table
    from ..votes import counted

    synced = read_table(project.run_path, ANNOTATIONS, required=False)
    return 0 if synced is None else int(counted(synced).drop_duplicates(["item_id", "annotator"]).shape[0])


def _retriage(project: ProjectConfig) -> None:
    """Calibrate, gate and triage the project's labeler again on the new evidence (skipped, said, without labels)."""
    from ..errors import CurateError
    from ..judge import calibrate, run_gate
    from ..review.triage import triage

    labeler = project.triage.labeler
    try:
        calibrate(project, labeler)
        decisions = run_gate(project, labeler)
        counts = triage(project, labeler).counts
    except CurateError as exc:
        warn(f"re-triage skipped: {exc}")
        return
    say("new evidence: " + ", ".join(f"gate {d.question} {d.decision}" for d in decisions)
        + f"; routes auto {counts['auto']}, audit {counts['audit']}, review {counts['review']}")
