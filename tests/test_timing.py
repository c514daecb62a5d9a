"""Time on task (issue 25, item 3): sync times each response from the reviewer's previous one; a response faster
than a person reads the record is flagged, kept and never counted (votes, alpha, calibration, curation), and the
report counts it per reviewer; the replayed recorded raters carry no timing and say so. On the real server."""

from __future__ import annotations

import time
from pathlib import Path

import argilla as rg
import pandas as pd

from support.projects import convabuse_project
from workspaces.agreement import write_report
from workspaces.argilla_io._wire import Wire
from workspaces.argilla_io.publish import get_dataset, publish
from workspaces.argilla_io.replay import ensure_user, record_ids, replay_recorded_labels, user_client
from workspaces.argilla_io.sync import sync
from workspaces.config import load_config
from workspaces.items import load_items
from workspaces.judge.reference import human_votes
from workspaces.timing import response_timing, words_shown

WPS = 40.0  # words per second: the test's reader is fast, so the careful reviewer waits only a second or two


def _config(tmp_path: Path, dataset: str):
    return load_config(convabuse_project(tmp_path, dataset, timing={"enabled": True, "words_per_second": WPS,
                                                                     "session_break": 600}))


def test_gaps_between_a_reviewers_responses_decide_what_is_too_fast(tmp_path: Path) -> None:
    config = _config(tmp_path, "timing-unit")
    items = load_items(config).head(6)
    words = words_shown(config, items)
    assert (words > 5).all()
    start = pd.Timestamp("2026-01-01", tz="UTC")
    ids = items["item_id"].tolist()
    rows = []
    for n, item in enumerate(ids):  # "fast": 0.1 s apart; "slow": twice what reading needs; a break before the last
        rows.append({"item_id": item, "annotator": "fast", "question": "is_abusive", "value": "yes",
                     "status": "submitted", "updated_at": start + pd.Timedelta(seconds=0.1 * n)})
        offset = sum(2 * words[i] / WPS for i in ids[:n + 1]) + (1000 if n == 5 else 0)
        rows.append({"item_id": item, "annotator": "slow", "question": "is_abusive", "value": "no",
                     "status": "submitted", "updated_at": start + pd.Timedelta(seconds=offset)})
    frame = pd.DataFrame(rows)
    timing = pd.concat([frame, response_timing(config, frame, items)], axis=1)
    fast = timing[timing["annotator"] == "fast"].set_index("item_id")
    slow = timing[timing["annotator"] == "slow"].set_index("item_id")
    assert fast.loc[ids[0], "timing"] == "first-of-session" and not fast.loc[ids[0], "too_fast"]
    assert fast.loc[ids[1:], "too_fast"].all() and (fast.loc[ids[1:], "timing"] == "measured").all()
    assert not slow["too_fast"].any() and (slow.loc[ids[1:5], "timing"] == "measured").all()
    assert slow.loc[ids[5], "timing"] == "first-of-session"  # 1000 s idle: a new session, not timed
    assert (slow.loc[ids[1:5], "seconds"] >= slow.loc[ids[1:5], "min_seconds"]).all()


def test_a_fast_responder_is_excluded_and_counted_and_replayed_raters_are_untimed(
        argilla_client: rg.Argilla, tmp_path: Path) -> None:
    config = _config(tmp_path, "timing-server")
    try:
        publish(config, argilla_client)
        replay_recorded_labels(config, argilla_client)
        dataset = get_dataset(argilla_client, config)
        ids = record_ids(argilla_client, dataset)
        items = load_items(config).set_index("item_id")
        chosen = sorted(ids)[:5]
        need = words_shown(config, items.reset_index())[chosen]

        def answer(username: str, value: str, wait: float) -> None:
            wire = Wire(user_client(argilla_client, ensure_user(argilla_client, username, config.argilla.workspace)))
            for item in chosen:
                time.sleep(wait)
                assert not wire.submit_responses([{"record_id": ids[item], "status": "submitted", "values": {
                    "is_abusive": {"value": value}, "severity": {"value": 5 if value == "yes" else 1}}}])

        answer("speedy", "yes", 0.0)
        answer("careful", "no", float(need.max()) / WPS + 0.5)
        sync(config, argilla_client)
        synced = pd.read_parquet(config.run_path / "annotations.parquet")
        speedy = synced[synced["annotator"] == "speedy"].drop_duplicates("item_id").set_index("item_id")
        careful = synced[synced["annotator"] == "careful"].drop_duplicates("item_id").set_index("item_id")
        assert speedy.loc[chosen[1:], "too_fast"].all(), speedy[["seconds", "min_seconds", "timing"]]
        assert not careful["too_fast"].any() and (careful.loc[chosen[1:], "timing"] == "measured").all()
        replayed = synced[~synced["annotator"].isin(["speedy", "careful"])]
        assert len(replayed) and (replayed["timing"] == "untimed").all() and not replayed["too_fast"].any()

        votes = human_votes(config)  # the reference of calibration and the curated label
        assert set(votes.loc[votes["annotator"] == "speedy", "item_id"]) == {chosen[0]}
        assert set(votes.loc[votes["annotator"] == "careful", "item_id"]) == set(chosen)

        report, _ = write_report(config, bootstrap=0)
        rows = {a["annotator"]: a for a in report.sections["timing"]["annotators"]}
        assert rows["speedy"]["too_fast"] == 4 and rows["careful"]["too_fast"] == 0
        assert rows["careful"]["measured"] == 4 and rows["careful"]["median_seconds"] > 0
        assert all(a["untimed"] == a["responses"] for name, a in rows.items() if name not in ("speedy", "careful"))
        assert "Time on task" in report.to_markdown()
    finally:
        dataset = get_dataset(argilla_client, config)
        if dataset is not None:
            dataset.delete()
