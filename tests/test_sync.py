"""Sync never loses a human response silently (issue 13): an append-only history of every response ever synced,
a refusal (exit 8) when responses disappear from the server, and safe concurrent runs. On the real server."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import argilla as rg
import pandas as pd
import pytest
import yaml

from workspaces.argilla_io.publish import get_dataset, publish
from workspaces.argilla_io.replay import ensure_user, record_ids, replay_recorded_labels, user_client
from workspaces.argilla_io.sync import sync
from workspaces.config import load_config
from workspaces.curated import build_curated
from workspaces.errors import DataLossError

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "convabuse_demo.yaml"


def _config_file(tmp_path: Path, dataset: str) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["data"].update(path=str(ROOT / "data" / "convabuse" / "valid.jsonl"), limit=24)
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["argilla"].update(dataset=dataset, workspace="tests")
    raw["run_dir"] = str(tmp_path / "run")
    path = tmp_path / f"{dataset}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture()
def synced_project(argilla_client: rg.Argilla, tmp_path: Path, request):
    path = _config_file(tmp_path, f"sync-{request.node.name[5:30].replace('_', '-')}")
    config = load_config(path)
    publish(config, argilla_client)
    replay_recorded_labels(config, argilla_client)
    first = sync(config, argilla_client)
    yield path, config, first
    dataset = get_dataset(argilla_client, config)
    if dataset is not None:
        dataset.delete()


def _curate(*args: str, server) -> subprocess.CompletedProcess:
    env = {**os.environ, "ARGILLA_API_URL": server.api_url, "ARGILLA_API_KEY": server.api_key}
    return subprocess.run([sys.executable, "-m", "workspaces", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_a_deleted_record_is_refused_named_and_kept_in_the_history(argilla_client, synced_project) -> None:
    path, config, first = synced_project
    snapshot = config.run_path / "annotations.parquet"
    before = snapshot.read_bytes()
    dataset = get_dataset(argilla_client, config)
    victim = next(iter(dataset.records(with_responses=True)))
    lost = sum(1 for r in victim.responses)  # response rows (per question) of the deleted record
    users = len({r.user_id for r in victim.responses})  # responses (per user) of the deleted record
    dataset.records.delete([victim])
    with pytest.raises(DataLossError, match=rf"no longer on .*{victim.id}.*--accept-deletions"):
        sync(config, argilla_client)
    assert snapshot.read_bytes() == before, "the snapshot must not change when responses would be lost"
    history = pd.read_parquet(config.run_path / "annotations_history.parquet")
    removed = history[history["event"] == "removed"]
    assert set(removed["item_id"]) == {victim.id} and len(removed) == lost
    accepted = sync(config, argilla_client, accept_deletions=True)
    assert accepted.removed == users >= 2
    assert victim.id not in set(pd.read_parquet(snapshot)["item_id"])
    again = pd.read_parquet(config.run_path / "annotations_history.parquet")
    assert len(again) == len(history), "accepting adds nothing new: the removal was already recorded once"
    assert victim.id in set(again.loc[again["event"] == "seen", "item_id"]), "its responses are still in the history"


def test_a_republished_dataset_is_refused_through_the_cli_and_push_keeps_the_human_labels(
        argilla_server, argilla_client, synced_project) -> None:
    path, config, first = synced_project
    curated_before = build_curated(config).rows
    get_dataset(argilla_client, config).delete()
    publish(config, argilla_client)  # same name, new id, no responses
    result = _curate("sync", str(path), server=argilla_server)
    assert result.returncode == DataLossError.exit_code, result.stdout + result.stderr
    assert "published again under a new id" in result.stderr and "annotations_history.parquet" in result.stderr
    assert "Traceback" not in result.stderr
    synced = pd.read_parquet(config.run_path / "annotations.parquet")
    assert len(synced) == first.rows, "the snapshot of the human responses is untouched"
    assert build_curated(config).rows == curated_before, "push still curates from the human responses"


def test_history_is_append_only_and_keeps_every_version(argilla_client, synced_project) -> None:
    path, config, first = synced_project
    history_path = config.run_path / "annotations_history.parquet"
    before = pd.read_parquet(history_path)
    assert len(before) == first.rows and set(before["event"]) == {"seen"}
    reviewer = ensure_user(argilla_client, "sync-reviewer", config.argilla.workspace)
    as_reviewer = user_client(argilla_client, reviewer)
    ids = record_ids(argilla_client, get_dataset(argilla_client, config))
    item = sorted(ids)[0]
    for value in ("yes", "no"):  # the same response edited: two versions
        reply = as_reviewer.api.http_client.post("/api/v1/me/responses/bulk", json={"items": [
            {"record_id": ids[item], "status": "submitted",
             "values": {"is_abusive": {"value": value}, "severity": {"value": 3}}}]})
        reply.raise_for_status()
        sync(config, argilla_client)
    after = pd.read_parquet(history_path)
    assert after.iloc[: len(before)].reset_index(drop=True).astype(str).equals(before.astype(str)), "append-only"
    mine = after[(after["annotator"] == "sync-reviewer") & (after["question"] == "is_abusive")]
    assert mine["value"].tolist() == ["yes", "no"]
    sync(config, argilla_client)
    assert len(pd.read_parquet(history_path)) == len(after), "an unchanged server adds nothing"


def test_concurrent_syncs_all_succeed_and_leave_no_temporary_files(argilla_client, synced_project) -> None:
    path, config, first = synced_project
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: sync(config, argilla_client), range(6)))
    assert {r.rows for r in results} == {first.rows}
    assert len(pd.read_parquet(config.run_path / "annotations.parquet")) == first.rows
    leftovers = [p.name for p in config.run_path.iterdir() if p.name.endswith(".tmp") or ".partial" in p.name]
    assert leftovers == []
