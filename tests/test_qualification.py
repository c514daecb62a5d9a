"""Qualification (issue 25, item 1): a reviewer's responses count only once they agree with gold on a batch of their
own, published to a dataset only they can open; the recorded raters qualify on their own recorded answers; the
standing, with its Wilson interval, is in the report. On the real server."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import argilla as rg
import pandas as pd
import pytest

from support.projects import convabuse_project
from workspaces.agreement import write_report
from workspaces.argilla_io._wire import Wire
from workspaces.argilla_io.publish import get_dataset, publish
from workspaces.argilla_io.qualification import (fetch_qualification_answers, publish_qualification,
                                                  qualification_config)
from workspaces.argilla_io.replay import ensure_user, record_ids, replay_recorded_labels, user_client
from workspaces.argilla_io.sync import sync
from workspaces.config import load_config
from workspaces.items import load_items
from workspaces.judge.reference import human_reference, human_votes
from workspaces.review.qualification import (_truth, next_batch, qualification_question, qualification_section,
                                             standing, update_standing)

BATCH = 10


def _config(tmp_path: Path, dataset: str, limit: Optional[int] = 80, min_agreement: float = 0.95):
    # the scripted reviewer answers in bursts: only qualification decides here
    return load_config(convabuse_project(tmp_path, dataset, limit=limit, timing={"enabled": False},
                                         qualification={"batch": BATCH, "min_agreement": min_agreement}))


def test_recorded_raters_qualify_on_their_own_answers_scored_against_the_others(tmp_path: Path) -> None:
    config = _config(tmp_path, "qual-recorded", limit=None)
    rows = standing(config)
    assert len(rows) == 8 and all(r["evidence"] == "answers in the project" for r in rows.values())
    for row in rows.values():
        assert row["scored"] >= BATCH and row["wilson_low"] < row["accuracy"] < row["wilson_high"]
        assert (row["status"] == "qualified") == (row["accuracy"] >= 0.95)
    assert {r["status"] for r in rows.values()} == {"qualified", "failed"}  # the 95% bar is not a formality
    lenient = standing(_config(tmp_path, "qual-recorded", limit=None, min_agreement=0.8))
    assert all(r["status"] == "qualified" for r in lenient.values())


def test_an_unqualified_reviewer_moves_neither_alpha_nor_calibration_until_a_passed_batch(
        argilla_client: rg.Argilla, tmp_path: Path) -> None:
    config = _config(tmp_path, "qual-server")
    question = qualification_question(config)
    truth, _ = _truth(config, load_items(config), question)
    newbie = "qual-newbie"
    try:
        publish(config, argilla_client)
        replay_recorded_labels(config, argilla_client)
        sync(config, argilla_client)
        update_standing(config)
        alpha_before = write_report(config, bootstrap=0)[0].questions[question].alpha
        reference_before = human_reference(config, question)

        # the newbie answers three records of the project before qualifying: kept, flagged, not counted
        dataset = get_dataset(argilla_client, config)
        ids = record_ids(argilla_client, dataset)
        own = Wire(user_client(argilla_client, ensure_user(argilla_client, newbie, config.argilla.workspace)))
        answered = sorted(ids)[:3]
        assert not own.submit_responses([{"record_id": ids[i], "status": "submitted", "values": {
            "is_abusive": {"value": "yes"}, "severity": {"value": 5}}} for i in answered])
        sync(config, argilla_client)

        # the first batch: in a dataset of the newbie's own workspace, nowhere in the project's
        first = next_batch(config, newbie)
        assert len(first) == BATCH and all(truth(i, newbie) is not None for i in first)
        name = publish_qualification(config, argilla_client, newbie, first)
        mine = qualification_config(config, newbie)
        own_dataset = get_dataset(argilla_client, mine)
        assert own_dataset is not None and own_dataset.name == name
        assert mine.argilla.workspace != config.argilla.workspace
        assert {u.username for u in argilla_client.workspaces(mine.argilla.workspace).users} >= {newbie}
        assert next_batch(config, newbie) == first  # unanswered: the same batch again
        records = list(own_dataset.records(with_suggestions=True))
        assert sorted(r.id for r in records) == sorted(first) and not any(list(r.suggestions) for r in records)

        def answer(batch: list[str], right: int) -> None:
            qual_ids = record_ids(argilla_client, get_dataset(argilla_client, mine))
            items = []
            for n, item in enumerate(batch):
                value = truth(item, newbie) if n < right else ("no" if truth(item, newbie) == "yes" else "yes")
                items.append({"record_id": qual_ids[item], "status": "submitted",
                              "values": {"is_abusive": {"value": value}, "severity": {"value": 3}}})
            assert not own.submit_responses(items)

        answer(first, right=BATCH // 2)
        answers = fetch_qualification_answers(config, argilla_client, [newbie], question)
        rows = update_standing(config, answers)
        assert rows[newbie]["status"] == "failed" and rows[newbie]["scored"] == BATCH
        assert rows[newbie]["accuracy"] == pytest.approx(0.5) and rows[newbie]["wilson_high"] < 0.95
        synced = pd.read_parquet(config.run_path / "annotations.parquet")
        assert synced.loc[synced["annotator"] == newbie, "unqualified"].all()
        assert newbie not in set(human_votes(config)["annotator"])
        assert write_report(config, bootstrap=0)[0].questions[question].alpha == pytest.approx(alpha_before)
        assert human_reference(config, question).hash == reference_before.hash

        # failed: another batch of new gold items; all right this time, and the newbie's responses count
        second = next_batch(config, newbie)
        assert len(second) == BATCH and not set(second) & set(first)
        publish_qualification(config, argilla_client, newbie, second)
        answer(second, right=BATCH)
        rows = update_standing(config, fetch_qualification_answers(config, argilla_client, [newbie], question))
        assert rows[newbie]["status"] == "qualified" and rows[newbie]["evidence"] == "qualification batch 2"
        assert set(human_votes(config).query("annotator == @newbie")["item_id"]) == set(answered)
        report, _ = write_report(config, bootstrap=0,
                                 extra_sections={"qualification": qualification_section(config)})
        assert report.questions[question].alpha != pytest.approx(alpha_before)
        shown = {r["annotator"]: r for r in report.sections["qualification"]["reviewers"]}
        assert shown[newbie]["status"] == "qualified" and "Qualification" in report.to_markdown()
        assert next_batch(config, newbie) == []  # qualified: no more batches
    finally:
        for project in (config, qualification_config(config, newbie)):
            leftover = get_dataset(argilla_client, project)
            if leftover is not None:
                leftover.delete()
