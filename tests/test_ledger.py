"""The tamper-evident decision ledger (issue 25, item 6): every synced response, gate decision, route and pushed row
is appended to a hash-chained `ledger.jsonl`; `curate verify` names the first broken entry; a broken chain stops
sync, gate, triage and push until it is restored or re-based; the card carries the head. On the real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import argilla as rg
import pandas as pd
import pytest

from support.projects import convabuse_project
from workspaces.argilla_io._wire import Wire
from workspaces.argilla_io.publish import get_dataset, publish
from workspaces.argilla_io.replay import ensure_user, record_ids, replay_recorded_labels, user_client
from workspaces.argilla_io.sync import sync
from workspaces.config import load_config
from workspaces.curated import push
from workspaces.judge.calibrate import calibrate
from workspaces.judge.gate import run_gate
from workspaces.ledger import GENESIS, LedgerError, head, rebase, record, verify
from workspaces.review.triage import triage

ROOT = Path(__file__).resolve().parents[1]


def _entries(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "ledger.jsonl").read_text().splitlines()]


def _flip_one_byte(path: Path, line: int) -> None:
    """Change one character inside a value of the 1-based `line` (a digit or letter of the data, not the JSON)."""
    lines = path.read_bytes().split(b"\n")
    text = lines[line - 1]
    at = text.index(b'"data":') + 20
    while not chr(text[at]).isalnum():
        at += 1
    swapped = b"x" if text[at:at + 1] != b"x" else b"y"
    lines[line - 1] = text[:at] + swapped + text[at + 1:]
    path.write_bytes(b"\n".join(lines))


# ---- the chain --------------------------------------------------------------------------------------------------

def test_the_chain_links_each_entry_to_the_last_and_appends_only_what_changed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert verify(run).ok and head(run).hash == GENESIS  # no ledger yet: nothing to check
    first = [("a|q", {"route": "review"}), ("b|q", {"route": "auto", "confidence": float("nan")})]
    assert record(run, "route", first) == 2
    assert record(run, "route", [("a|q", {"route": "review"}), ("b|q", {"route": "auto", "confidence": None})]) == 0
    assert record(run, "route", [("a|q", {"route": "auto"})]) == 1  # a changed decision is a new entry
    entries = _entries(run)
    assert [e["seq"] for e in entries] == [0, 1, 2] and entries[0]["prev"] == GENESIS
    assert all(later["prev"] == earlier["hash"] for earlier, later in zip(entries, entries[1:]))
    found = verify(run)
    assert found.ok and found.entries == 3 and found.head.hash == entries[-1]["hash"] == head(run).hash


def test_one_edited_byte_in_the_middle_fails_verify_at_that_entry_and_stops_every_writer(tmp_path: Path) -> None:
    run = tmp_path / "run"
    record(run, "response", [(f"item-{i}|rev", {"status": "submitted", "values": {"q": str(i % 3)}})
                             for i in range(9)])
    _flip_one_byte(run / "ledger.jsonl", 5)
    found = verify(run)
    assert not found.ok and found.broken_at == 5 and "edited" in found.reason, found
    with pytest.raises(LedgerError, match="at entry 5.*--rebase"):
        record(run, "gate", [("g1", {"decision": "pass"})])
    assert len(_entries(run)) == 9  # nothing was appended to the broken chain


def test_a_cut_short_or_deleted_ledger_is_told_from_one_never_written(tmp_path: Path) -> None:
    run = tmp_path / "run"
    record(run, "gate", [(f"g{i}", {"decision": "fail"}) for i in range(4)])
    path = run / "ledger.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    found = verify(run)
    assert not found.ok and "cut short" in found.reason and found.entries == 3
    path.unlink()
    found = verify(run)
    assert not found.ok and "missing" in found.reason and "4 entries" in found.reason


def test_a_rebase_keeps_the_broken_ledger_and_records_its_head(tmp_path: Path) -> None:
    run = tmp_path / "run"
    record(run, "gate", [(f"g{i}", {"decision": "fail"}) for i in range(4)])
    old_head = head(run)
    _flip_one_byte(run / "ledger.jsonl", 2)
    old, new = rebase(run, "restored from a backup that was not available")
    assert not old.ok and old.broken_at == 2
    [first] = _entries(run)
    assert first["kind"] == "rebase" and first["prev"] == GENESIS and new.entries == 1
    assert first["data"]["old_head"] == {"entries": old_head.entries, "hash": old_head.hash}
    kept = run / first["data"]["kept_as"]
    assert kept.is_file() and len(kept.read_text().splitlines()) == 4
    assert verify(run).ok
    assert record(run, "gate", [("g0", {"decision": "fail"})]) == 1  # the new chain starts from nothing


# ---- the stages, on the real server ---------------------------------------------------------------------------------

def _config_file(tmp_path: Path, dataset: str) -> Path:
    # every replayed rater counts here: this test is about the ledger
    return convabuse_project(tmp_path, dataset, hub={"local_dir": str(tmp_path / "curated")}, qualification=None)


def _curate(*args: str, server) -> subprocess.CompletedProcess:
    env = {**os.environ, "ARGILLA_API_URL": server.api_url, "ARGILLA_API_KEY": server.api_key}
    return subprocess.run([sys.executable, "-m", "workspaces", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_sync_gate_triage_and_push_ledger_their_decisions_and_a_tampered_ledger_stops_push(
        argilla_server, argilla_client: rg.Argilla, tmp_path: Path) -> None:
    path = _config_file(tmp_path, "ledger-loop")
    config = load_config(path)
    run = config.run_path
    try:
        publish(config, argilla_client)
        replay_recorded_labels(config, argilla_client)
        first = sync(config, argilla_client)
        responses = [e for e in _entries(run) if e["kind"] == "response"]
        snapshot = pd.read_parquet(run / "annotations.parquet")
        assert first.ledgered == len(responses) == snapshot.groupby(["item_id", "annotator"]).ngroups > 24
        assert sync(config, argilla_client).ledgered == 0  # nothing changed on the server: nothing appended

        # a new reviewer answers one record: exactly that response is appended
        dataset = get_dataset(argilla_client, config)
        item_id, record_id = sorted(record_ids(argilla_client, dataset).items())[0]
        own = user_client(argilla_client, ensure_user(argilla_client, "ledger-rev", config.argilla.workspace))
        assert not Wire(own).submit_responses([{"record_id": record_id, "status": "submitted",
                                                "values": {"is_abusive": {"value": "yes"},
                                                           "severity": {"value": 4}}}])
        assert sync(config, argilla_client).ledgered == 1
        last = _entries(run)[-1]
        assert last["kind"] == "response" and last["key"] == f"{item_id}|ledger-rev"
        assert last["data"]["values"] == {"is_abusive": "yes", "severity": "4"} and last["data"]["updated_at"]

        # the gate and triage of a labeler (the human majority with a confidence, so every stage runs for real)
        majority = snapshot[snapshot["question"] == "is_abusive"].groupby("item_id")["value"].agg(
            lambda v: v.value_counts().index[0])
        pd.DataFrame([{"item_id": i, "question": "is_abusive", "label": v, "confidence": 0.9,
                       "probabilities": json.dumps({v: 0.9, ("no" if v == "yes" else "yes"): 0.1}),
                       "model": "scripted", "prompt_hash": "p", "raw_output": "{}", "status": "ok", "error": None,
                       "run_id": "r", "labeled_at": "2026-01-01T00:00:00+00:00"} for i, v in majority.items()]
                     ).to_parquet(run / "labels.parquet")
        calibrate(config, "llm")
        [decision] = run_gate(config, "llm")
        routes = triage(config, "llm").routes
        kinds = pd.Series([e["kind"] for e in _entries(run)]).value_counts()
        assert kinds["gate"] == 1 and kinds["route"] == len(routes) == 24
        gate_entry = next(e for e in _entries(run) if e["kind"] == "gate")
        assert gate_entry["key"] == decision.id and gate_entry["data"]["decision"] == decision.decision

        pushed = push(config)
        rows = [e for e in _entries(run) if e["kind"] == "push"]
        assert len(rows) == sum(pushed.rows.values()) > 0 and {r["data"]["version"] for r in rows} == {pushed.version}
        card = (tmp_path / "curated" / "README.md").read_text()
        assert pushed.ledger_head in card and len(pushed.ledger_head) == 64
        assert push(config) and len([e for e in _entries(run) if e["kind"] == "push"]) == len(rows)  # same version

        # one byte edited in the middle: verify names that entry (exit 3), and push refuses until a rebase
        middle = len(_entries(run)) // 2
        _flip_one_byte(run / "ledger.jsonl", middle)
        checked = _curate("verify", str(path), server=argilla_server)
        assert checked.returncode == 3 and f"at entry {middle}" in checked.stdout + checked.stderr, checked
        refused = _curate("push", str(path), server=argilla_server)
        assert refused.returncode == 3 and "ledger is broken" in refused.stdout + refused.stderr
        with pytest.raises(LedgerError):
            sync(config, argilla_client)
        rebased = _curate("verify", str(path), "--rebase", "--reason", "test", server=argilla_server)
        assert rebased.returncode == 0, rebased.stderr
        assert _curate("verify", str(path), server=argilla_server).returncode == 0
        assert sync(config, argilla_client).ledgered == first.ledgered + 1  # the new chain records every response
    finally:
        dataset = get_dataset(argilla_client, config)
        if dataset is not None:
            dataset.delete()
