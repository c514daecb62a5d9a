"""`curate demo` on the real embedded server: its review batch goes out with honeypots and suppressed items (no
suggestion on the server, even after the whole dataset is published again), and the report the demo prints shows the
honeypot accuracy of each recorded annotator and the anchoring table."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from support.annotator_view import annotator_records
from workspaces.argilla_io.publish import get_dataset
from workspaces.argilla_io.replay import ensure_user, user_client
from workspaces.config import load_config, slug
from workspaces.items import load_items, recorded_labels
from workspaces.votes import human_label

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "convabuse_demo.yaml"
ITEMS, BATCH = 150, 60


def _curate(*args: str, server) -> subprocess.CompletedProcess:
    env = {**os.environ, "ARGILLA_API_URL": server.api_url, "ARGILLA_API_KEY": server.api_key}
    return subprocess.run([sys.executable, "-m", "workspaces", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=1800)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, argilla_server, argilla_client):
    """The demo config on 150 items (batch of 60), scripted LLM labels on disk, `curate demo --no-label` run once."""
    tmp = tmp_path_factory.mktemp("demo-batch")
    raw = yaml.safe_load(DEMO.read_text())
    raw["data"].update(path=str(ROOT / "data" / "convabuse" / "valid.jsonl"), limit=ITEMS)
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["argilla"].update(dataset="demo-batch", workspace="demo-batch-tests")
    raw["selection"]["batch"] = BATCH
    raw["run_dir"] = str(tmp / "run")
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    config.run_path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = []
    for item_id in load_items(config)["item_id"]:  # a scripted labeler (the LLM is not what this test is about)
        label = str(rng.choice(["yes", "no"], p=[0.3, 0.7]))
        labels.append({"item_id": item_id, "question": "is_abusive", "label": label, "confidence": 0.8,
                       "probabilities": json.dumps({label: 0.8, "no" if label == "yes" else "yes": 0.2}),
                       "model": "scripted", "prompt_hash": "h", "raw_output": "{}", "status": "ok", "error": None})
    pd.DataFrame(labels).to_parquet(config.run_path / "labels.parquet")
    result = _curate("demo", "--config", str(path), "--no-label", server=argilla_server)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    yield path, config, result
    dataset = get_dataset(argilla_client, config)
    if dataset is not None:
        dataset.delete()


def _votes(config) -> pd.DataFrame:
    votes = recorded_labels(config, load_items(config))
    votes = votes[votes["question"] == "is_abusive"]
    return votes.assign(annotator=votes["annotator"].map(slug), value=votes["value"].astype(str))


def test_the_demo_publishes_a_selected_batch_with_honeypots_and_suppressed_items(demo) -> None:
    _, config, result = demo
    plan = pd.read_parquet(config.run_path / "review_plan.parquet")
    roles = plan["role"].value_counts().to_dict()
    assert roles["selected"] == BATCH and roles["honeypot"] == math.ceil(0.1 / 0.9 * BATCH)
    assert plan["suppressed"].sum() == len(plan) // 10
    honeypots = plan[plan["role"] == "honeypot"]
    assert sorted(honeypots["position"]) != list(range(len(honeypots))), "honeypots are not front-loaded"
    selection = [json.loads(line) for line in (config.run_path / "selection.jsonl").read_text().splitlines()]
    assert len(selection) == 1 and len(selection[0]["selected"]) == BATCH
    assert selection[0]["honeypots"] == roles["honeypot"] and selection[0]["suppressed"] == plan["suppressed"].sum()
    said = " ".join(result.stdout.split())
    assert f"{BATCH} selected + {roles['honeypot']} honeypots" in said
    assert f"{plan['suppressed'].sum()} of them without the LLM suggestion" in said
    assert "cold start" in said  # no human answer before the replay: k-center diversity


def test_suppressed_items_carry_no_suggestion_on_the_server_even_after_a_full_publish(demo, argilla_server,
                                                                                         argilla_client) -> None:
    path, config, _ = demo
    plan = pd.read_parquet(config.run_path / "review_plan.parquet").set_index("item_id")
    hidden = set(plan.index[plan["suppressed"]])
    viewer = ensure_user(argilla_client, "demo-batch-viewer", config.argilla.workspace)
    dataset_id = get_dataset(argilla_client, config).id

    def check() -> None:
        view = annotator_records(user_client(argilla_client, viewer), dataset_id)
        assert set(plan.index) <= set(view) and len(view) == ITEMS  # the batch, then the whole dataset
        for item_id, record in view.items():
            if item_id in hidden:
                assert not record.get("suggestions"), item_id
                assert "llm_confidence_is_abusive" not in (record.get("metadata") or {}), item_id
            else:
                assert record["suggestions"], item_id

    check()  # after the demo's batch publish and its whole-dataset publish
    again = _curate("publish", str(path), server=argilla_server)
    assert again.returncode == 0, again.stderr
    check()  # a later `curate publish` does not bring the suggestions back


def test_the_demo_report_shows_honeypot_accuracy_per_recorded_annotator_and_the_anchoring_table(demo) -> None:
    _, config, result = demo
    plan = pd.read_parquet(config.run_path / "review_plan.parquet")
    honeypots = set(plan.loc[plan["role"] == "honeypot", "item_id"])
    votes = _votes(config)
    question = config.question("is_abusive")
    expected: dict[str, list[int]] = {}
    for item_id, group in votes[votes["item_id"].isin(honeypots)].groupby("item_id"):
        for annotator, value in zip(group["annotator"], group["value"]):  # scored against the others' majority
            truth = human_label(question, group.loc[group["annotator"] != annotator, "value"].tolist()).label
            if truth is not None:
                entry = expected.setdefault(annotator, [0, 0])
                entry[0] += value == str(truth)
                entry[1] += 1
    report = json.loads((config.run_path / "report.json").read_text())
    table = {a["annotator"]: a for a in report["sections"]["honeypots"]["annotators"]}
    assert len(table) >= 3 and set(table) == set(expected)  # the recorded annotators, replayed as Argilla users
    for annotator, (right, seen) in expected.items():
        row = table[annotator]
        assert (row["correct"], row["seen"]) == (right, seen), annotator
        assert row["accuracy_low"] <= row["accuracy"] <= row["accuracy_high"] and row["paused"] is False

    routes = pd.read_parquet(config.run_path / "routes.parquet")
    measured = plan[~plan["item_id"].isin(set(routes.loc[routes["route"] != "review", "item_id"]))]
    on = votes.merge(measured[["item_id", "suppressed"]], on="item_id")
    agreement, accuracy = report["sections"]["anchoring"]["rows"]
    assert agreement["measure"] == "agreement with the labeler" and accuracy["measure"].startswith("accuracy")
    assert agreement["suppressed_n"] == int(on["suppressed"].sum()) > 0
    assert agreement["suggested_n"] == int((~on["suppressed"]).sum()) > 0
    for hidden, prefix in ((True, "suppressed"), (False, "suggested")):  # a vote is never scored against itself
        scores = []
        for _, group in on[on["suppressed"] == hidden].groupby("item_id"):
            for annotator, value in zip(group["annotator"], group["value"]):
                vote = human_label(question, group.loc[group["annotator"] != annotator, "value"].tolist())
                if vote.label is not None and vote.votes >= config.reference.min_votes:
                    scores.append(value == str(vote.label))
        assert accuracy[f"{prefix}_n"] == len(scores) > 0
        assert accuracy[prefix] == pytest.approx(float(np.mean(scores)))

    printed = " ".join(result.stdout.split())
    assert "Honeypots (is_abusive)" in printed and "Anchoring (is_abusive)" in printed
    assert all(annotator in printed for annotator in table)
    assert "0 by construction of a replay" in printed and "nobody is paused" in printed
