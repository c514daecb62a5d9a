"""Guideline versions (issue 25, item 4): every synced response carries the guideline version it was given under;
publishing a changed guideline lists the items labelled under the earlier one; agreement is reported per version.
On the real server."""

from __future__ import annotations

import json
from pathlib import Path

import argilla as rg
import pandas as pd
import yaml

from support.projects import convabuse_project
from workspaces.agreement import write_report
from workspaces.argilla_io._wire import Wire
from workspaces.argilla_io.publish import get_dataset, publish
from workspaces.argilla_io.replay import ensure_user, record_ids, replay_recorded_labels, user_client
from workspaces.argilla_io.sync import sync
from workspaces.config import load_config



def test_a_guideline_change_keeps_old_answers_on_their_version_and_lists_them(
        argilla_client: rg.Argilla, tmp_path: Path) -> None:
    path = convabuse_project(tmp_path, "guideline-versions")
    raw = yaml.safe_load(path.read_text())
    config = load_config(path)
    try:
        publish(config, argilla_client)
        replay_recorded_labels(config, argilla_client)
        sync(config, argilla_client)
        first = pd.read_parquet(config.run_path / "annotations.parquet")
        assert set(first["guideline_hash"]) == {config.guideline_hash}

        raw["guidelines"] += "\nA threat against a third person is abusive even when it is phrased as a joke."
        path.write_text(yaml.safe_dump(raw))
        changed = load_config(path)
        assert changed.guideline_hash != config.guideline_hash
        result = publish(changed, argilla_client)
        assert "guidelines" in result.changes
        answered = set(first.loc[first["status"] == "submitted", "item_id"])
        assert set(result.earlier_guidelines) == answered and len(answered) > 10
        [entry] = [json.loads(line) for line in (config.run_path / "guideline_changes.jsonl").read_text().splitlines()]
        assert entry["from"] == [config.guideline_hash] and entry["to"] == changed.guideline_hash

        # a reviewer answers three records under the new text; the replayed answers keep their version
        dataset = get_dataset(argilla_client, changed)
        ids = record_ids(argilla_client, dataset)
        fresh = sorted(ids)[:3]
        own = Wire(user_client(argilla_client, ensure_user(argilla_client, "guideline-rev", "tests")))
        assert not own.submit_responses([{"record_id": ids[i], "status": "submitted", "values": {
            "is_abusive": {"value": "no"}, "severity": {"value": 1}}} for i in fresh])
        sync(changed, argilla_client)
        now = pd.read_parquet(changed.run_path / "annotations.parquet")
        mine = now[now["annotator"] == "guideline-rev"]
        assert set(mine["guideline_hash"]) == {changed.guideline_hash} and set(mine["item_id"]) == set(fresh)
        assert set(now.loc[now["annotator"] != "guideline-rev", "guideline_hash"]) == {config.guideline_hash}

        report, _ = write_report(changed, bootstrap=0)
        versions = {v["guideline_hash"]: v for v in report.sections["guideline_versions"]["versions"]}
        assert versions[changed.guideline_hash]["current"] and versions[changed.guideline_hash]["responses"] == 3
        assert not versions[config.guideline_hash]["current"]
        assert versions[config.guideline_hash]["alpha"]["is_abusive"] is not None
        assert "Agreement per guideline version" in report.to_markdown()
    finally:
        dataset = get_dataset(argilla_client, config)
        if dataset is not None:
            dataset.delete()
