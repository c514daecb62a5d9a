"""One human-label rule (`workspaces.votes.human_label`) for every stage: the labeler figures of the report describe
exactly the labels the curated dataset publishes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score

from workspaces.agreement import write_report
from workspaces.config import QuestionConfig, load_config
from workspaces.curated import build_curated
from workspaces.items import load_items, recorded_labels
from workspaces.votes import human_label, strict_majority, vote_table

ROOT = Path(__file__).resolve().parents[1]
LABEL = QuestionConfig(name="q", kind="label", labels={"a": "", "b": "", "c": ""})
RATING = QuestionConfig(name="r", kind="rating", values=[1, 2, 3, 4, 5])
NOMINAL_RATING = QuestionConfig(name="r", kind="rating", values=[1, 2, 3], level="nominal")


@pytest.mark.parametrize("values, label, no_majority", [
    (["a", "a", "b"], "a", False), (["a", "b"], None, True), (["a", "b", "c"], None, True), (["c"], "c", False),
    ([], None, False), (["a", "a", "b", "b"], None, True), (["b", "b", "b", "a"], "b", False)])
def test_label_questions_take_the_strict_majority(values, label, no_majority) -> None:
    vote = human_label(LABEL, values)
    assert (vote.label, vote.no_majority, vote.votes) == (label, no_majority, len(values))
    assert vote.label == strict_majority(values)


@pytest.mark.parametrize("values, label", [([1, 2, 5], 2), ([1, 1, 3, 4], 1), ([4], 4), (["3", "5"], 3),
                                           ([5, 5, 1], 5), ([2, 4, 4, 5], 4)])
def test_ordinal_ratings_take_the_lower_median(values, label) -> None:
    vote = human_label(RATING, values)
    assert vote.label == label and not vote.no_majority
    assert vote.agreement == pytest.approx([int(v) for v in values].count(label) / len(values))


def test_nominal_ratings_take_the_strict_majority() -> None:
    assert human_label(NOMINAL_RATING, [1, 2, 3]).label is None
    assert human_label(NOMINAL_RATING, [2, 2, 3]).label == 2


TEXT = QuestionConfig(name="t", kind="text")


@pytest.mark.parametrize("question", [LABEL, RATING, NOMINAL_RATING, TEXT], ids=["label", "ordinal", "nominal", "text"])
@pytest.mark.parametrize("seed", range(6))
def test_vote_table_is_human_label_on_every_group(question, seed) -> None:
    """The vectorised rule (report, push) and the per-item rule give the same label, votes, agreement and
    no-majority flag on random tables: 1-6 votes per unit, missing votes, ratings given as text."""
    rng = np.random.default_rng(seed)
    scale = {"label": ["a", "b", "c"], "rating": [1, 2, 3, 4, 5] if question is RATING else [1, 2, 3],
             "text": ["x", "y"]}[question.kind.value]
    rows = []
    for unit in range(300):
        for annotator in range(int(rng.integers(1, 7))):
            value = scale[int(rng.integers(0, min(len(scale), 1 + unit % 4)))]  # some units near-unanimous
            if rng.random() < 0.08:
                value = None  # an empty vote counts for nothing
            elif question.kind.value == "rating" and rng.random() < 0.3:
                value = str(value)
            rows.append({"unit": f"u{unit:03d}", "annotator": f"a{annotator}", "value": value})
    table = pd.DataFrame(rows)
    votes = vote_table(table, question).set_index("unit")
    grouped = table.groupby("unit")["value"].apply(list)
    expected = {unit: human_label(question, values) for unit, values in grouped.items()}
    counted = {unit for unit, vote in expected.items() if vote.votes}
    assert set(votes.index) == counted
    for unit in counted:
        vote, row = expected[unit], votes.loc[unit]
        assert (row["label"], int(row["votes"]), bool(row["no_majority"])) == (vote.label, vote.votes,
                                                                               vote.no_majority), unit
        assert (row["agreement"] is None) == (vote.agreement is None), unit
        if vote.agreement is not None:
            assert row["agreement"] == pytest.approx(vote.agreement), unit


def test_report_labeler_figures_describe_the_curated_labels(tmp_path: Path) -> None:
    """Severity has items where the strict majority and the median differ (e.g. votes 1, 2, 5): the report's
    accuracy and kappa of the labeler must be computed against the very labels the curated dataset publishes."""
    config = load_config(ROOT / "configs" / "convabuse_demo.yaml")
    config = config.model_copy(update={"run_dir": tmp_path / "run", "data": config.data.model_copy(
        update={"limit": 300}), "llm": config.llm.model_copy(update={"questions": ["is_abusive", "severity"]}),
        "hub": config.hub.model_copy(update={"exclude_no_majority": False})})  # keep every item: same item sets
    items = load_items(config)
    recorded = recorded_labels(config, items)
    (tmp_path / "run").mkdir()
    annotations = recorded.assign(record_id=recorded["item_id"], status="submitted", value=recorded["value"].astype(str),
                                  updated_at=pd.Timestamp("2026-01-01T00:00:00Z"))
    annotations.to_parquet(tmp_path / "run" / "annotations.parquet")
    rng = np.random.default_rng(7)
    labels = []
    for item_id in items["item_id"]:
        for question, choices in (("is_abusive", ["yes", "no"]), ("severity", ["1", "2", "3", "4", "5"])):
            label = str(rng.choice(choices))
            labels.append({"item_id": item_id, "question": question, "label": label, "confidence": 0.7,
                           "probabilities": json.dumps({label: 0.7}), "model": "m", "prompt_hash": "h",
                           "raw_output": "{}", "status": "ok", "error": None})
    pd.DataFrame(labels).to_parquet(tmp_path / "run" / "labels.parquet")
    severity_votes = recorded[recorded["question"] == "severity"].groupby("item_id")["value"].agg(list)
    differs = [i for i, v in severity_votes.items() if strict_majority(v) != human_label(RATING, v).label]
    assert len(differs) > 20, "the sample must exercise the difference between majority and median"

    report, _ = write_report(config, bootstrap=0)
    curated = pd.concat(build_curated(config).splits.values()).set_index("item_id")
    llm = pd.DataFrame(labels).set_index(["question", "item_id"])["label"]
    for question in ("is_abusive", "severity"):
        final = curated[question].dropna()
        final = final[curated.loc[final.index, f"{question}_source"] != "gold"]
        guess = llm.loc[question].loc[final.index]
        human = final.astype(int).astype(str) if question == "severity" else final.astype(str)
        judge = report.judge[question]
        assert judge.n == len(final)
        assert judge.accuracy == pytest.approx(accuracy_score(human, guess))
        labels_order = [str(v) for v in config.question(question).allowed_values]
        assert judge.cohen_kappa == pytest.approx(cohen_kappa_score(human, guess, labels=labels_order))
