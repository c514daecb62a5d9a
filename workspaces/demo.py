"""`curate demo`: the whole loop on the embedded defaults, with real human labels replayed as real Argilla users."""

from __future__ import annotations

import json
import os
import secrets
from typing import Optional

from ._console import console, fail, progress_bar, stage
from pipelines import embed_items, label_items

from .config import ConfigError, ProjectConfig
from .connection import ConnectionFailed, connect
from .publish import PublishError, publish
from .push import PushError, push
from .replay import ReplayError, ensure_user, replay_recorded_labels
from .report import write_report
from .sync import SyncError, sync

__all__ = ["REVIEWER", "reviewer_login", "run_demo"]

REVIEWER = "reviewer"


def reviewer_login(config: ProjectConfig) -> tuple[str, str]:
    """The demo reviewer's username and password (generated once, kept in the run dir with 0600 permissions)."""
    path = config.run_path / "reviewer_login.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return data["username"], data["password"]
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(9)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"username": REVIEWER, "password": password}, handle)
    return REVIEWER, password


def run_demo(config: ProjectConfig, *, label: bool = True, repo_id: Optional[str] = None) -> dict[str, float]:
    """Run every stage, printing each stage's time; returns the timings.

    The curated dataset goes to a local folder (`hub.local_dir` or `<run dir>/curated`), or to the Hub when a
    `repo_id` is given.
    """
    from .cli import print_report

    timings: dict[str, float] = {}
    try:
        with stage("Argilla server", timings):
            client, info = connect()
            console.print(f"{'external' if info.external else 'embedded'} server at {info.api_url}"
                          f"{'' if info.external else (' (started)' if info.started else ' (reused)')}")
        if label and config.llm is not None:
            with stage("LLM labels", timings), progress_bar("Labelling", "items") as update:
                labelled = label_items(config, progress=update)
            console.print(f"{labelled.ok} ok, {labelled.failed} failed ({labelled.skipped} already labelled); "
                          + "; ".join(f"{question}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                                      for question, counts in labelled.distribution().items()))
        with stage("Embeddings", timings), progress_bar("Embedding", "texts") as update:
            embed_items(config, progress=update)
        with stage("Publish", timings), progress_bar("Publishing", "records") as update:
            published = publish(config, client, progress=update)
        console.print(f"{published.records} records, {published.suggestions} LLM suggestions in "
                      f"[bold]{published.dataset}[/] (workspace {published.workspace})")
        username, password = reviewer_login(config)
        ensure_user(client, username, config.argilla.workspace, password=password)
        with stage("Replay the recorded annotators as Argilla users", timings), \
                progress_bar("Submitting", "responses") as update:
            replayed = replay_recorded_labels(config, client, progress=update)
        console.print(f"{len(replayed.annotators)} annotators: {replayed.responses} responses submitted, "
                      f"{replayed.unchanged} already there ({replayed.values} values)")
        with stage("Sync", timings), progress_bar("Syncing", "records") as update:
            synced = sync(config, client, progress=update)
        console.print(f"{synced.responses} responses -> {synced.path}")
        with stage("Report", timings):
            report, report_path = write_report(config)
            print_report(report)
            console.print(f"report -> {report_path}")
        with stage("Push curated splits", timings):
            pushed = push(config, repo_id=repo_id)
        console.print(f"curated dataset -> [bold]{pushed.location}[/] ("
                      + ", ".join(f"{split} {n}" for split, n in pushed.rows.items())
                      + f"; excluded {sum(pushed.excluded.values())})")
    except (ConnectionFailed, ConfigError, PublishError, ReplayError, SyncError, PushError) as exc:
        raise fail(str(exc)) from None

    console.rule("[bold]Review it yourself")
    console.print(f"Argilla UI: [bold]{info.api_url}[/]  ->  dataset {published.dataset}\n{published.url}")
    console.print(f"reviewer login: [bold]{username}[/] / [bold]{password}[/]"
                  + ("" if info.external else f"   (owner: {info.owner_username} / {info.owner_password})"))
    console.print("times: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items()))
    return timings
