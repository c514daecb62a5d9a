"""Human effort where it counts, on the real server: `curate select` publishes a batch with honeypots and suppressed
items that an annotator cannot tell apart; the honeypot rule pauses a careless reviewer for real; the report shows
honeypot accuracy per annotator, anchoring and Dawid-Skene skills."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import argilla as rg
import numpy as np
import pandas as pd
import pytest
import yaml

from support.annotator_view import annotator_records, record_shape
from workspaces.argilla_io.annotators import paused
from workspaces.argilla_io.publish import get_dataset
from workspaces.argilla_io.replay import ensure_user, record_ids, replay_recorded_labels, user_client
from workspaces.config import load_config
from workspaces.items import load_items, recorded_labels
from workspaces.votes import human_label

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "convabuse_demo.yaml"


def _curate(*args: str, server) -> subprocess.CompletedProcess:
    env = {**os.environ, "ARGILLA_API_URL": server.api_url, "ARGILLA_API_KEY": server.api_key}
    return subprocess.run([sys.executable, "-m", "workspaces", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory, argilla_server):
    """240 ConvAbuse items, 40 of them gold (recorded unanimous labels), LLM labels on disk, embeddings."""
    tmp = tmp_path_factory.mktemp("review")
    raw = yaml.safe_load(DEMO.read_text())
    raw["data"].update(path=str(ROOT / "data" / "convabuse" / "valid.jsonl"), limit=240)
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["argilla"].update(dataset="review-select", workspace="review-tests", min_submitted=1)
    raw["run_dir"] = str(tmp / "run")
    raw["metadata"] = [m for m in raw["metadata"] if m["name"] != "n_annotators"]
    raw["honeypots"] = {"share": 0.1, "min_seen": 3, "min_accuracy": 0.7}
    raw["suppression"] = {"every": 4}
    raw["selection"] = {"batch": 45, "strategy": "default"}
    path = tmp / "review.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    items = load_items(config)
    votes = recorded_labels(config, items)
    question = config.question("is_abusive")
    unanimous = [i for i, g in votes[votes["question"] == "is_abusive"].groupby("item_id")
                 if len(g) >= 3 and g["value"].nunique() == 1]
    (tmp / "gold.txt").write_text("\n".join(unanimous[:40]) + "\n")
    raw["hub"]["gold_ids_path"] = str(tmp / "gold.txt")
    raw["reference"] = {"recorded": False}  # the loop has seen no human label yet except the gold set's
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    rng = np.random.default_rng(0)
    config.run_path.mkdir(parents=True)
    labels = []
    for item_id in items["item_id"]:
        label = str(rng.choice(["yes", "no"], p=[0.3, 0.7]))
        labels.append({"item_id": item_id, "question": "is_abusive", "label": label, "confidence": 0.8,
                       "probabilities": json.dumps({label: 0.8, "no" if label == "yes" else "yes": 0.2}),
                       "model": "scripted", "prompt_hash": "h", "raw_output": "{}", "status": "ok", "error": None})
    pd.DataFrame(labels).to_parquet(config.run_path / "labels.parquet")
    assert _curate("embed", str(path), server=argilla_server).returncode == 0
    result = _curate("select", str(path), server=argilla_server)
    assert result.returncode == 0, result.stdout + result.stderr
    yield path, config, result, set(unanimous[:40])
    client = rg.Argilla(api_url=argilla_server.api_url, api_key=argilla_server.api_key)
    dataset = get_dataset(client, config)
    if dataset is not None:
        dataset.delete()


def test_a_batch_mixes_honeypots_at_random_positions_and_suppresses_every_nth(project) -> None:
    path, config, result, gold = project
    plan = pd.read_parquet(config.run_path / "review_plan.parquet")
    assert oct(os.stat(config.run_path / "review_plan.parquet").st_mode & 0o777) == "0o600"
    honeypots = plan[plan["role"] == "honeypot"]
    assert (plan["role"] == "selected").sum() == 45 and set(honeypots["item_id"]) <= gold
    share = len(honeypots) / len(plan)
    assert 0.05 <= share <= 0.15
    positions = sorted(honeypots["position"])
    assert positions != list(range(len(positions))), "honeypots are not front-loaded"
    assert plan["suppressed"].sum() == len(plan) // 4
    selection = [json.loads(line) for line in (config.run_path / "selection.jsonl").read_text().splitlines()]
    assert selection[0]["strategy"] == "margin" and len(selection[0]["selected"]) == 45
    assert "honeypots" in result.stdout


def test_an_annotator_cannot_tell_honeypots_and_sees_no_suggestion_on_suppressed_items(project, argilla_client):
    path, config, _, _ = project
    plan = pd.read_parquet(config.run_path / "review_plan.parquet").set_index("item_id")
    annotator = ensure_user(argilla_client, "review-annotator", config.argilla.workspace)
    view = annotator_records(user_client(argilla_client, annotator), get_dataset(argilla_client, config).id)
    assert set(view) == set(plan.index)
    shown = {role: {record_shape(view[i]) for i in plan.index[(plan["role"] == role) & ~plan["suppressed"]]}
             for role in ("selected", "honeypot")}
    assert len(shown["selected"]) == 1 and shown["honeypot"] == shown["selected"]
    for item_id in plan.index[plan["suppressed"]]:
        record = view[item_id]
        assert not record.get("suggestions") and "llm_confidence_is_abusive" not in (record.get("metadata") or {})
    for item_id in plan.index[~plan["suppressed"]]:
        assert view[item_id]["suggestions"], item_id


def test_the_pause_rule_stops_a_careless_reviewer_for_real(project, argilla_server, argilla_client) -> None:
    path, config, _, gold = project
    plan = pd.read_parquet(config.run_path / "review_plan.parquet")
    honeypots = plan.loc[plan["role"] == "honeypot", "item_id"].tolist()
    items = load_items(config)
    truth = {i: human_label(config.question("is_abusive"), g["value"].tolist()).label for i, g in
             recorded_labels(config, items).query("question == 'is_abusive'").groupby("item_id")}
    dataset = get_dataset(argilla_client, config)
    ids = record_ids(argilla_client, dataset)
    careless = ensure_user(argilla_client, "careless-reviewer", config.argilla.workspace)
    careful = ensure_user(argilla_client, "careful-reviewer", config.argilla.workspace)
    for user, wrong in ((careless, True), (careful, False)):
        own = user_client(argilla_client, user)
        answers = [{"record_id": ids[i], "status": "submitted", "values": {
            "is_abusive": {"value": ("no" if truth[i] == "yes" else "yes") if wrong else truth[i]},
            "severity": {"value": 1}}} for i in honeypots]
        reply = own.api.http_client.post("/api/v1/me/responses/bulk", json={"items": answers})
        reply.raise_for_status()
    result = _curate("sync", str(path), server=argilla_server)
    assert result.returncode == 0, result.stderr
    assert "careless-reviewer paused" in result.stderr and "careful-reviewer" not in result.stderr
    assert "careless-reviewer" in paused(config)
    blocked = user_client(argilla_client, careless).api.http_client.post("/api/v1/me/responses/bulk", json={
        "items": [{"record_id": ids[plan["item_id"].iloc[0]], "status": "submitted",
                   "values": {"is_abusive": {"value": "yes"}, "severity": {"value": 1}}}]})
    refused = blocked.status_code >= 400 or all(item.get("error") for item in blocked.json()["items"])
    assert refused, "a paused annotator's submit must be refused"
    synced = pd.read_parquet(config.run_path / "annotations.parquet")
    assert synced.loc[synced["annotator"] == "careless-reviewer", "paused"].all()

    report = _curate("report", str(path), server=argilla_server)
    assert report.returncode == 0, report.stderr
    saved = json.loads((config.run_path / "report.json").read_text())
    by_annotator = {a["annotator"]: a for a in saved["sections"]["honeypots"]["annotators"]}
    assert by_annotator["careless-reviewer"]["accuracy"] == 0.0 and by_annotator["careless-reviewer"]["paused"]
    assert by_annotator["careful-reviewer"]["accuracy"] == 1.0
    assert by_annotator["careful-reviewer"]["seen"] == len(honeypots)
    agreement = saved["sections"]["anchoring"]["rows"][0]
    assert agreement["measure"] == "agreement with the labeler"
    suppressed_honeypots = int(plan.loc[plan["role"] == "honeypot", "suppressed"].sum())
    assert agreement["suppressed_n"] == 2 * suppressed_honeypots  # the two reviewers answered every honeypot
    assert agreement["suggested_n"] == 2 * (len(honeypots) - suppressed_honeypots)
    assert "Honeypots" in (config.run_path / "report.md").read_text()


def test_annotators_pause_and_resume_from_the_cli(project, argilla_server, argilla_client) -> None:
    """`curate annotators pause` takes a reviewer out of the workspace for real (their submit is refused) and records
    why in the run dir only; `resume` lets them back in."""
    path, config, _, _ = project
    plan = pd.read_parquet(config.run_path / "review_plan.parquet")
    ids = record_ids(argilla_client, get_dataset(argilla_client, config))
    reviewer = user_client(argilla_client, ensure_user(argilla_client, "cli-paused", config.argilla.workspace))

    def submit(item_id: str):
        return reviewer.api.http_client.post("/api/v1/me/responses/bulk", json={"items": [{
            "record_id": ids[item_id], "status": "submitted",
            "values": {"is_abusive": {"value": "no"}, "severity": {"value": 1}}}]})

    def refused(reply) -> bool:
        return reply.status_code >= 400 or all(item.get("error") for item in reply.json()["items"])

    stopped = _curate("annotators", "pause", str(path), "cli-paused", "--reason", "spot check", server=argilla_server)
    assert stopped.returncode == 0, stopped.stderr
    assert paused(config)["cli-paused"]["reason"] == "spot check"
    assert refused(submit(plan["item_id"].iloc[1])), "a paused annotator's submit must be refused"
    listed = _curate("annotators", "list", str(path), server=argilla_server)
    assert listed.returncode == 0 and "cli-paused" in listed.stdout and "spot check" in listed.stdout
    resumed = _curate("annotators", "resume", str(path), "cli-paused", server=argilla_server)
    assert resumed.returncode == 0, resumed.stderr
    assert "cli-paused" not in paused(config)
    assert not refused(submit(plan["item_id"].iloc[2])), "a resumed annotator can submit again"


def test_watch_pauses_a_failing_honeypot_reviewer_within_seconds_and_ends_equal_to_a_full_sync(
        project, argilla_server, argilla_client, tmp_path) -> None:
    """Issue 25.9: `curate watch` on the server's real, signed webhooks: a reviewer who fails the honeypots is paused
    within 10 s of their responses; a forged, a foreign and a replayed event are rejected and counted; the webhook is
    gone afterwards; and the table the watch kept equals a full sync."""
    import re
    import signal
    import threading
    import time
    from datetime import datetime, timezone

    import httpx
    from standardwebhooks.webhooks import Webhook

    from workspaces.argilla_io.sync import ANNOTATION_COLUMNS, sync

    path, config, _, _ = project
    plan = pd.read_parquet(config.run_path / "review_plan.parquet")
    honeypots = plan.loc[plan["role"] == "honeypot", "item_id"].tolist()
    truth = {i: human_label(config.question("is_abusive"), g["value"].tolist()).label for i, g in
             recorded_labels(config, load_items(config)).query("question == 'is_abusive'").groupby("item_id")}
    env = {**os.environ, "ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key,
           "COLUMNS": "400"}
    watch = subprocess.Popen([sys.executable, "-m", "workspaces", "watch", str(path), "--seconds", "180"], env=env,
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(watch.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("watching" in line for line in lines):
            assert watch.poll() is None and time.monotonic() < deadline, watch.stderr.read() if watch.poll() else lines
            time.sleep(0.2)
        url = re.search(r" on (http://\S+) ", next(line for line in lines if "watching" in line)).group(1)
        [hook] = [w for w in argilla_client.webhooks if w.url == url]

        # bad input: a forged signature, a signed event about another dataset, and that event sent again
        stamp = datetime.now(timezone.utc)
        forged = httpx.post(url, content=b'{"type": "response.created", "data": {}}', headers={
            "webhook-id": "msg_forged", "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl"})
        assert forged.status_code == 401
        body = json.dumps({"type": "response.created", "timestamp": stamp.isoformat(),
                           "data": {"record": {"dataset": {"id": "00000000-0000-0000-0000-000000000000"}}}})
        signed = {"webhook-id": "msg_foreign", "webhook-timestamp": str(int(stamp.timestamp())),
                  "webhook-signature": Webhook(hook.secret).sign("msg_foreign", stamp, body)}
        assert httpx.post(url, content=body, headers=signed).status_code == 422
        assert httpx.post(url, content=body, headers=signed).status_code == 409

        # a reviewer gets every honeypot wrong: paused within 10 s, by the watch alone
        ids = record_ids(argilla_client, get_dataset(argilla_client, config))
        careless = ensure_user(argilla_client, "watched-careless", config.argilla.workspace)
        answers = [{"record_id": ids[i], "status": "submitted", "values": {
            "is_abusive": {"value": "no" if truth[i] == "yes" else "yes"}, "severity": {"value": 1}}}
            for i in honeypots]
        started = time.monotonic()
        user_client(argilla_client, careless).api.http_client.post(
            "/api/v1/me/responses/bulk", json={"items": answers}).raise_for_status()
        while "watched-careless" not in paused(config):
            assert time.monotonic() - started < 10, lines
            time.sleep(0.2)
        assert time.monotonic() - started < 10
    finally:
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=60)
    said = " ".join(lines) + out
    assert watch.returncode == 0, err[-3000:]
    assert "watched-careless paused" in err and "bad signature 1" in said and "unknown dataset 1" in said
    assert "replayed 1" in said and re.search(r"accepted \d+", said)
    assert not [w for w in argilla_client.webhooks if w.url == url]  # the watch removed its webhook

    watched = pd.read_parquet(config.run_path / "annotations.parquet")
    full = sync(config, argilla_client, path=tmp_path / "full.parquet")
    assert full.removed == 0
    again = pd.read_parquet(tmp_path / "full.parquet")
    key = [*ANNOTATION_COLUMNS, "paused"]
    ordered = [c for c in key if c != "updated_at"]
    assert watched[key].sort_values(ordered).reset_index(drop=True).equals(
        again[key].sort_values(ordered).reset_index(drop=True))
