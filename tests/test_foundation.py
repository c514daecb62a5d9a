"""The foundation slice end to end on the real embedded Argilla server with the real ConvAbuse annotators.

publish (twice) -> replay the 8 recorded annotators as Argilla users -> a reviewer drafts/discards in the API ->
sync -> compare item by item with the source file -> alpha from the synced table == alpha from the source.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import argilla as rg
import pandas as pd
import pytest
import yaml

from support import free_port
from workspaces.agreement import krippendorff_alpha
from workspaces.config import load_config
from workspaces.items import load_items, recorded_labels
from workspaces.argilla_io.publish import PublishError, get_dataset, publish
from workspaces.argilla_io.replay import ensure_user, record_ids, replay_recorded_labels, user_client
from workspaces.agreement import human_table, read_report, write_report
from workspaces.argilla_io.sync import sync

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "convabuse_demo.yaml"


def _project_file(tmp_path: Path, dataset: str, **overrides) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["data"]["path"] = str(ROOT / "data" / "convabuse" / "valid.jsonl")
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["argilla"].update(dataset=dataset, workspace="tests")
    raw["run_dir"] = str(tmp_path / "run")
    raw.update(overrides)
    path = tmp_path / f"{dataset}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def replayed(argilla_client: rg.Argilla, tmp_path_factory):
    """The whole ConvAbuse valid sample published twice and replayed; a reviewer adds a draft and a discard."""
    tmp_path = tmp_path_factory.mktemp("foundation")
    config = load_config(_project_file(tmp_path, "foundation-convabuse"))
    first = publish(config, argilla_client)
    second = publish(config, argilla_client)
    replay = replay_recorded_labels(config, argilla_client)
    reviewer = ensure_user(argilla_client, "test-reviewer", config.argilla.workspace)
    as_reviewer = user_client(argilla_client, reviewer)
    dataset = get_dataset(argilla_client, config)
    ids = record_ids(argilla_client, dataset)
    items = load_items(config)["item_id"].tolist()
    reply = as_reviewer.api.http_client.post("/api/v1/me/responses/bulk", json={"items": [
        {"record_id": ids[items[0]], "status": "draft", "values": {"is_abusive": {"value": "yes"}}},
        {"record_id": ids[items[1]], "status": "discarded"},
    ]})
    reply.raise_for_status()
    assert not [i for i in reply.json()["items"] if i.get("error")]
    synced = sync(config, argilla_client)
    yield {"config": config, "first": first, "second": second, "replay": replay, "synced": synced,
           "dataset": dataset, "items": items}
    dataset.delete()


def test_publish_twice_keeps_one_record_per_item(replayed) -> None:
    first, second, dataset = replayed["first"], replayed["second"], replayed["dataset"]
    assert first.created and not second.created
    assert first.records == second.records == 831
    assert dataset.progress()["total"] == 831
    server_ids = [r.id for r in dataset.records(with_responses=False, with_suggestions=False)]
    assert sorted(server_ids) == sorted(replayed["items"])


def test_sync_returns_every_replayed_response_with_its_user_and_value(replayed) -> None:
    config = replayed["config"]
    synced = pd.read_parquet(replayed["synced"].path)
    assert list(synced.columns) == ["record_id", "item_id", "question", "annotator", "value", "status", "updated_at",
                                    "paused", "guideline_hash", "unqualified", "seconds", "min_seconds", "timing",
                                    "too_fast"]
    assert set(synced["guideline_hash"]) == {config.guideline_hash}
    recorded = synced["annotator"] != "test-reviewer"  # the replayed raters have no real timing; the reviewer has
    assert (synced.loc[recorded, "timing"] == "untimed").all() and "untimed" not in set(synced.loc[~recorded, "timing"])
    assert not synced[["unqualified", "too_fast"]].any().any()  # no qualification, timing not enabled: all count
    source = recorded_labels(config, load_items(config))
    source = source.assign(annotator=source["annotator"].str.lower(), value=source["value"].astype(str))
    submitted = synced[synced["status"] == "submitted"]
    key = ["item_id", "question", "annotator"]
    merged = source.merge(submitted[key + ["value"]], on=key, how="outer", suffixes=("_source", "_argilla"),
                          indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    assert (merged["value_source"] == merged["value_argilla"]).all()
    assert len(submitted) == len(source) == 2 * 2443
    assert submitted["updated_at"].notna().all()


def test_sync_keeps_drafts_and_discards_and_counts_per_status(replayed) -> None:
    result = replayed["synced"]
    assert result.by_status == {"submitted": 2443, "draft": 1, "discarded": 1}
    assert result.responses == 2445
    synced = pd.read_parquet(result.path)
    reviewer = synced[synced["annotator"] == "test-reviewer"]
    assert set(reviewer["status"]) == {"draft", "discarded"}
    draft = reviewer[reviewer["status"] == "draft"]
    assert draft[["question", "value"]].values.tolist() == [["is_abusive", "yes"]]


def test_alpha_from_synced_table_equals_alpha_from_source(replayed) -> None:
    config = replayed["config"]
    synced = pd.read_parquet(replayed["synced"].path)
    source = recorded_labels(config, load_items(config))
    for name in ("is_abusive", "severity"):
        question = config.question(name)
        from_argilla = krippendorff_alpha(human_table(synced, question), question.alpha_level,
                                          value_domain=question.allowed_values, bootstrap=0)
        rows = source[source["question"] == name]
        direct = krippendorff_alpha(pd.DataFrame({"unit": rows["item_id"], "annotator": rows["annotator"],
                                                  "value": rows["value"]}), question.alpha_level,
                                    value_domain=question.allowed_values, bootstrap=0)
        assert from_argilla.alpha == pytest.approx(direct.alpha, abs=1e-12)
        assert (from_argilla.units, from_argilla.annotators, from_argilla.pairable) == \
               (direct.units, direct.annotators, direct.pairable)


def test_report_files(replayed) -> None:
    config = replayed["config"]
    report, path = write_report(config, bootstrap=200)
    saved = json.loads(path.read_text())
    assert saved == report.model_dump(mode="json")
    assert read_report(config) == report  # the typed report reads back identical
    q = saved["questions"]
    assert q["is_abusive"]["level"] == "nominal" and q["severity"]["level"] == "ordinal"
    assert q["severity"]["alpha_interval"] is not None
    assert q["is_abusive"]["ci95"][0] < q["is_abusive"]["alpha"] < q["is_abusive"]["ci95"][1]
    assert {a["annotator"] for a in saved["annotators"]["is_abusive"]} == {f"annotator{i}" for i in range(1, 9)}
    markdown = path.with_suffix(".md").read_text()
    assert "Krippendorff" in markdown and f"{q['severity']['alpha']:.3f}" in markdown


def test_changed_questions_are_refused_clearly(replayed, argilla_client, tmp_path: Path) -> None:
    raw_path = _project_file(tmp_path, "foundation-convabuse")
    raw = yaml.safe_load(raw_path.read_text())
    raw["questions"] = raw["questions"][:1]
    raw["human_labels"]["values"].pop("severity")
    raw_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PublishError, match="questions .* on the server.*new dataset.*--recreate"):
        publish(load_config(raw_path), argilla_client)


def test_config_changes_are_applied_or_refused_never_ignored(argilla_client, tmp_path: Path) -> None:
    """Titles, descriptions and the guideline change on the server; a changed label set is refused, naming it."""
    path = _project_file(tmp_path, "settings-changes", data={**yaml.safe_load(DEMO.read_text())["data"],
                                                             "path": str(ROOT / "data/convabuse/valid.jsonl"),
                                                             "limit": 5})
    config = load_config(path)
    publish(config, argilla_client)
    raw = yaml.safe_load(path.read_text())
    raw["guidelines"] = "New guideline: judge the user turn only."
    raw["fields"][3]["title"] = "The user turn (judge this)"
    raw["questions"][0]["labels"]["yes"] = "Insults, threats or harassment (new wording)."
    raw["questions"][0]["description"] = "Judge the user turn only."  # the label descriptions still reach reviewers
    path.write_text(yaml.safe_dump(raw))
    changed = publish(load_config(path), argilla_client)
    assert {"guidelines", "field 'user' title", "question 'is_abusive' description"} <= set(changed.changes)
    dataset = get_dataset(argilla_client, load_config(path))
    assert dataset.settings.guidelines == "New guideline: judge the user turn only."
    assert dataset.settings.fields["user"].title == "The user turn (judge this)"
    description = dataset.settings.questions["is_abusive"].description
    assert "Judge the user turn only." in description and "new wording" in description
    assert publish(load_config(path), argilla_client).changes == []  # in line now: nothing to change

    raw["questions"][0]["labels"] = {"yes": "abusive", "no": "not abusive", "unsure": "cannot tell"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PublishError, match=r"question 'is_abusive' has options .*'yes'.* on the server, .*'unsure'"):
        publish(load_config(path), argilla_client)
    recreated = publish(load_config(path), argilla_client, recreate=True)
    assert recreated.created and "--recreate" in recreated.changes[0]
    labels = get_dataset(argilla_client, load_config(path)).settings.questions["is_abusive"].labels
    assert list(labels) == list(load_config(path).question("is_abusive").labels)
    assert "unsure" in labels
    get_dataset(argilla_client, load_config(path)).delete()


def test_unreachable_server_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    project = _project_file(tmp_path, "unreachable")
    env = {**os.environ, "ARGILLA_API_URL": f"http://127.0.0.1:{free_port()}", "ARGILLA_API_KEY": "nope"}
    for command in ("sync", "publish"):
        run = subprocess.run([sys.executable, "-m", "workspaces", command, str(project)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode != 0
        assert "cannot reach Argilla" in run.stderr + run.stdout
    assert not (tmp_path / "run").exists()
