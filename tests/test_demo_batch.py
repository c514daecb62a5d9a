"""`curate demo` on the real embedded server: the label loop's batches (a random gold set, an active-learning batch,
the audit) go out with honeypots and suppressed items, the recorded annotators answer exactly those items and their
responses sync back exactly, the held-back items never reach the server, and the report holds the loop's figures,
the honeypot accuracy of each recorded annotator and the anchoring table."""

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
from datasets import load_dataset

from workspaces.agreement import krippendorff_alpha
from workspaces.argilla_io.publish import get_dataset
from workspaces.argilla_io.replay import ensure_user, user_client
from workspaces.config import load_config, slug
from workspaces.items import load_items, recorded_labels
from workspaces.votes import human_label

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "convabuse.yaml"
ITEMS, GOLD, BATCH = 500, 100, 60


def _curate(*args: str, server) -> subprocess.CompletedProcess:
    env = {**os.environ, "ARGILLA_API_URL": server.api_url, "ARGILLA_API_KEY": server.api_key}
    return subprocess.run([sys.executable, "-m", "workspaces", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=1800)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, argilla_server, argilla_client):
    """The main job's config on 500 items (a gold set of 100, one active-learning round of 60), `curate demo` run
    once with the real local LLM as the second tier."""
    tmp = tmp_path_factory.mktemp("demo-batch")
    raw = yaml.safe_load(DEMO.read_text())
    raw["data"].update(path=str(ROOT / "data" / "convabuse" / "pool.jsonl"), limit=ITEMS)
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["argilla"].update(dataset="demo-batch", workspace="demo-batch-tests")
    raw["selection"].update(gold=GOLD, batch=BATCH, rounds=1)
    raw["gate"]["min_reference"] = 50
    raw.pop("qualification")  # these checks compare with every recorded annotator (qualification: test_qualification)
    raw["run_dir"] = str(tmp / "run")
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    result = _curate("demo", "--config", str(path), server=argilla_server)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    yield path, config, result
    dataset = get_dataset(argilla_client, config)
    if dataset is not None:
        dataset.delete()


def _votes(config) -> pd.DataFrame:
    votes = recorded_labels(config, load_items(config))
    votes = votes[votes["question"] == "is_abusive"]
    return votes.assign(annotator=votes["annotator"].map(slug), value=votes["value"].astype(str))


def test_the_demo_sends_a_gold_set_then_an_active_learning_batch_then_the_audit(demo) -> None:
    _, config, result = demo
    plan = pd.read_parquet(config.run_path / "review_plan.parquet")
    selection = [json.loads(line) for line in (config.run_path / "selection.jsonl").read_text().splitlines()]
    assert [s["strategy"] for s in selection][:2] == ["random (gold set)", "margin"]
    first, second = (plan[plan["batch"] == s["batch"]] for s in selection[:2])
    gold = set((config.run_path / "gold_ids.txt").read_text().split())
    assert set(first.loc[first["role"] == "selected", "item_id"]) == gold and len(gold) == GOLD
    assert (second["role"] == "selected").sum() == BATCH
    for batch in (first, second):
        roles = batch["role"].value_counts().to_dict()
        assert roles["honeypot"] == math.ceil(0.1 / 0.9 * (len(batch) - roles["honeypot"]))
        honeypots = batch[batch["role"] == "honeypot"]
        assert sorted(honeypots["position"]) != list(range(len(honeypots))), "honeypots are not front-loaded"
    assert plan["item_id"].is_unique
    said = " ".join(result.stdout.split())
    assert f"{GOLD} selected + {math.ceil(0.1 / 0.9 * GOLD)} honeypots" in said
    assert f"a random gold set of {GOLD}" in said and "least sure items" in said


def test_every_replayed_response_syncs_back_exactly_and_only_reviewed_items_reach_the_server(
        demo, argilla_client) -> None:
    _, config, _ = demo
    plan = pd.read_parquet(config.run_path / "review_plan.parquet")
    reviewed = set(plan["item_id"])
    synced = pd.read_parquet(config.run_path / "annotations.parquet")
    synced = synced[synced["status"] == "submitted"]
    recorded = recorded_labels(config, load_items(config))
    recorded = recorded[recorded["item_id"].isin(reviewed)]
    key = ["item_id", "question", "annotator", "value"]
    assert sorted(map(tuple, synced[key].astype(str).values.tolist())) == sorted(map(tuple, recorded.assign(
        annotator=recorded["annotator"].map(slug))[key].astype(str).values.tolist()))
    on_server = set(annotator_records(argilla_client, get_dataset(argilla_client, config).id))
    assert on_server == reviewed and len(reviewed) < ITEMS  # the held-back items never went out


def test_suppressed_items_carry_no_suggestion_on_the_server_even_after_a_full_publish(demo, argilla_server,
                                                                                         argilla_client) -> None:
    path, config, _ = demo
    plan = pd.read_parquet(config.run_path / "review_plan.parquet").set_index("item_id")
    hidden = set(plan.index[plan["suppressed"]])
    first = set(plan.index[plan["batch"] == plan["batch"].iloc[0]])  # published before any student existed
    viewer = ensure_user(argilla_client, "demo-batch-viewer", config.argilla.workspace)
    dataset_id = get_dataset(argilla_client, config).id

    def check() -> None:
        view = annotator_records(user_client(argilla_client, viewer), dataset_id)
        assert set(plan.index) <= set(view)
        for item_id, record in view.items():
            if item_id in hidden:
                assert not record.get("suggestions"), item_id
                assert "llm_confidence_is_abusive" not in (record.get("metadata") or {}), item_id
            elif item_id in plan.index and item_id not in first:
                assert record["suggestions"], item_id  # the student's answer, its id as Argilla's agent

    check()  # after the demo's batches
    again = _curate("publish", str(path), server=argilla_server)
    assert again.returncode == 0, again.stderr
    check()  # a later `curate publish` (the items still routed to review) does not bring the suggestions back


def test_the_report_holds_the_loop_figures_and_alpha_on_the_reviewed_items(demo) -> None:
    _, config, result = demo
    report = json.loads((config.run_path / "report.json").read_text())
    loop = report["sections"]["loop"]
    plan = pd.read_parquet(config.run_path / "review_plan.parquet")
    assert loop["human_labels"]["items"] == plan["item_id"].nunique() and loop["items"] == ITEMS
    assert loop["multiplier"] == pytest.approx(loop["curated_items"] / loop["human_labels"]["items"])
    curated = load_dataset(str(config.run_path / "curated"), cache_dir=str(config.run_path / "hf-cache"))
    assert sum(len(split) for split in curated.values()) == loop["curated_items"]
    tiers = {t["labeler"]: t for t in loop["tiers"]}
    assert set(tiers) == {"student", "llm", "humans"} and tiers["humans"]["decided"] == len(set(plan["item_id"]))
    assert tiers["llm"]["items_labelled"] == GOLD and tiers["llm"]["gates"]["is_abusive"]["decision"] in (
        "pass", "fail")
    held = loop["held_back"]["is_abusive"]
    routes = pd.read_parquet(config.run_path / "routes.parquet")
    auto = set(routes.loc[routes["route"] == "auto", "item_id"]) - set(plan["item_id"])
    assert held["overall"]["auto"] == len(auto) == tiers["student"]["decided"]
    assert "The promise, measured on held-back labels" in (config.run_path / "report.md").read_text()
    card = (config.run_path / "curated" / "README.md").read_text()
    assert "The label loop" in card and "amplification" in card
    # alpha equals alpha computed independently from the source, on the items the humans reviewed
    source = recorded_labels(config, load_items(config))
    question = config.question("is_abusive")
    rows = source[(source["question"] == "is_abusive") & source["item_id"].isin(set(plan["item_id"]))]
    direct = krippendorff_alpha(pd.DataFrame({"unit": rows["item_id"], "annotator": rows["annotator"],
                                              "value": rows["value"]}), question.alpha_level,
                                value_domain=question.allowed_values, bootstrap=0)
    assert report["questions"]["is_abusive"]["alpha"] == pytest.approx(direct.alpha, abs=1e-9)
    printed = " ".join(result.stdout.split())
    assert "human labels:" in printed and "amplification:" in printed and "reviewer login:" in printed


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
    gold = set((config.run_path / "gold_ids.txt").read_text().split())
    for hidden, prefix in ((True, "suppressed"), (False, "suggested")):  # a vote is never scored against itself
        scores = []
        for item_id, group in on[on["suppressed"] == hidden].groupby("item_id"):
            for annotator, value in zip(group["annotator"], group["value"]):
                if item_id in gold:  # a gold item is scored against its gold label (all its recorded votes)
                    vote = human_label(question, group["value"].tolist())
                    if vote.label is not None:
                        scores.append(value == str(vote.label))
                    continue
                vote = human_label(question, group.loc[group["annotator"] != annotator, "value"].tolist())
                if vote.label is not None and vote.votes >= config.reference.min_votes:
                    scores.append(value == str(vote.label))
        assert accuracy[f"{prefix}_n"] == len(scores) > 0
        assert accuracy[prefix] == pytest.approx(float(np.mean(scores)))

    printed = " ".join(result.stdout.split())
    assert "Honeypots (is_abusive)" in printed and "Anchoring (is_abusive)" in printed
    assert all(annotator in printed for annotator in table)
    assert "0 by construction of a replay" in printed and "nobody is paused" in printed
