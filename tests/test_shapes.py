"""Question shapes (workspaces/shapes.py): the multi_label shape through config, votes, agreement, Argilla and the
curated dataset, on the vendored GoEmotions sample and a real Argilla server."""

from __future__ import annotations

import json
import random
from pathlib import Path

import argilla as rg
import pandas as pd
import pytest
import yaml
from datasets import load_dataset
from nltk.metrics import agreement as nltk_agreement
from nltk.metrics.distance import masi_distance as nltk_masi

from workspaces.agreement import masi_alpha, write_report
from workspaces.argilla_io._wire import Wire
from workspaces.argilla_io.publish import get_dataset, publish
from workspaces.argilla_io.replay import ensure_user, record_ids, replay_recorded_labels, user_client
from workspaces.argilla_io.sync import sync
from workspaces.config import QuestionConfig, load_config
from workspaces.curated import build_curated, push
from workspaces.errors import ConfigError
from workspaces.rundir import ANNOTATIONS, LABELS, REPORT_MD, read_table, write_table
from workspaces.shapes import ShapeValueError, masi_distance, shape_of
from workspaces.votes import human_label, vote_table

ROOT = Path(__file__).resolve().parents[1]
GOEMOTIONS = ROOT / "configs" / "goemotions_tags.yaml"
TAGS = QuestionConfig(name="tags", kind="multi_label", labels={"a": "", "b": "", "c": "", "d": ""}, min=1, max=3)


# ---- the shape, without a server ----------------------------------------------------------------------------------

@pytest.mark.parametrize("stored, why", [
    ('["a", "zz"]', "unknown label(s) ['zz']"),
    ("[]", "at least 1 must be picked"),
    ('["a", "b", "c", "d"]', "at most 3 may be picked"),
    ('["a", "a"]', "more than once"),
    ("a, b", "not a JSON list"),
    ('{"a": 1}', "not a list of labels"),
])
def test_a_multi_label_value_that_breaks_the_question_is_refused_by_name(stored: str, why: str) -> None:
    with pytest.raises(ShapeValueError) as caught:
        shape_of(TAGS).parse(stored)
    assert "question 'tags'" in str(caught.value) and why in str(caught.value)


def test_multi_label_values_are_canonical_and_round_trip() -> None:
    shape = shape_of(TAGS)
    assert shape.parse('["c", "a"]') == ("a", "c") == shape.parse(["a", "c"])  # label order, not pick order
    assert shape.parse(shape.dump(("a", "c"))) == ("a", "c")


def test_the_human_label_of_a_multi_label_question_is_the_per_label_majority() -> None:
    vote = human_label(TAGS, ['["a", "b"]', '["a"]', '["a", "c"]'])
    assert vote.label == ("a",) and vote.votes == 3 and vote.agreement == pytest.approx(1 / 3)
    split = human_label(TAGS, ['["a"]', '["b"]'])  # no label held by more than half: an empty set, below `min: 1`
    assert split.label is None and split.no_majority
    optional = TAGS.model_copy(update={"min": None})  # where an empty answer is allowed, it is the human label
    assert human_label(optional, ['["a"]', '["b"]']).label == ()
    table = pd.DataFrame({"unit": ["u1", "u1", "u1", "u2"], "value": ['["a", "b"]', '["b", "a"]', '["c"]', '["d"]']})
    by_unit = vote_table(table, TAGS).set_index("unit")
    assert by_unit.loc["u1", "label"] == ("a", "b") and by_unit.loc["u2", "label"] == ("d",)
    assert by_unit.loc["u1", "votes"] == 3


def test_config_errors_name_the_multi_label_problem(tmp_path: Path) -> None:
    raw = yaml.safe_load(GOEMOTIONS.read_text())
    raw["questions"][0].update(min=3, max=2)
    raw["data"]["path"] = str(ROOT / "data" / "goemotions" / "comments.jsonl")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"questions\[emotions\].*`min` \(3\) is more than `max` \(2\)"):
        load_config(path)
    with pytest.raises(ValueError, match="`min`/`max` picks are for multi_label questions"):
        QuestionConfig(name="q", kind="label", labels={"a": "", "b": ""}, max=1)


@pytest.mark.parametrize("a, b", [((), ()), (("a",), ("a",)), (("a",), ("a", "b")), (("a", "b"), ("b", "c")),
                                  (("a",), ("b",)), (("a", "b", "c"), ("a",))])
def test_masi_distance_matches_nltk(a: tuple, b: tuple) -> None:
    expected = 0.0 if not a and not b else nltk_masi(set(a), set(b))
    assert masi_distance(a, b) == pytest.approx(expected)


def test_masi_alpha_matches_an_independent_computation() -> None:
    """Our alpha (the `krippendorff` package, MASI distance) against nltk's AnnotationTask.alpha on the same data."""
    rng = random.Random(7)
    labels = ["a", "b", "c", "d"]
    rows = []
    for unit in range(60):
        truth = set(rng.sample(labels, rng.randint(1, 2)))
        for annotator in rng.sample(["r1", "r2", "r3", "r4"], rng.randint(2, 4)):
            picks = set(truth) if rng.random() < 0.6 else set(rng.sample(labels, rng.randint(1, 3)))
            rows.append({"unit": f"u{unit}", "annotator": annotator, "value": json.dumps(sorted(picks))})
    table = pd.DataFrame(rows)
    ours = masi_alpha(table, bootstrap=200, seed=0)
    task = nltk_agreement.AnnotationTask(
        data=[(r["annotator"], r["unit"], frozenset(json.loads(r["value"]))) for r in rows], distance=nltk_masi)
    assert ours.alpha == pytest.approx(task.alpha(), abs=1e-9)
    assert ours.distance == "masi" and ours.units == 60
    low, high = ours.ci95
    assert low < ours.alpha < high


# ---- the real loop on GoEmotions ----------------------------------------------------------------------------------

@pytest.fixture()
def goemotions(tmp_path: Path, request) -> Path:
    raw = yaml.safe_load(GOEMOTIONS.read_text())
    items = [json.loads(line) for line in (ROOT / "data" / "goemotions" / "comments.jsonl").open()]
    fits = [i for i in items if all(len(a["emotions"]) <= 3 for a in i["annotations"])]
    picked = [i for i in fits if i["n_raters"] >= 2][:20] + [i for i in fits if i["n_raters"] == 1][:10]
    data = tmp_path / "comments.jsonl"
    data.write_text("".join(json.dumps(i) + "\n" for i in picked))
    raw["data"]["path"] = str(data)
    raw["questions"][0]["max"] = 3
    raw["triage"] = {"labeler": "llm"}  # the scripted labeler below writes labels.parquet: its answers are suggested
    raw["argilla"].update(dataset=f"shapes-{request.node.name[5:28].replace('_', '-')}", workspace="tests")
    raw["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "goemotions.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_multi_label_goes_publish_reply_sync_report_and_curated(argilla_client: rg.Argilla, goemotions: Path) -> None:
    config = load_config(goemotions)
    items = [json.loads(line) for line in config.data.path.open()]
    suggested = items[25]["id"]
    config.run_path.mkdir(parents=True, mode=0o700)
    write_table(LABELS.path(config.run_path), pd.DataFrame([{
        "item_id": suggested, "question": "emotions", "label": json.dumps(["joy", "love"]), "confidence": 0.7,
        "probabilities": json.dumps({"joy": 0.9, "love": 0.7, "anger": 0.01}), "model": "test-labeler",
        "prompt_hash": "h", "raw_output": "", "status": "ok", "error": None, "run_id": "r", "labeled_at": "now"}]))
    try:
        publish(config, argilla_client)
        dataset = get_dataset(argilla_client, config)
        question = dataset.settings.questions["emotions"]
        assert isinstance(question, rg.MultiLabelQuestion) and len(question.labels) == 28
        assert "Pick 1 to 3 labels." in question.description
        record = next(r for r in dataset.records(with_suggestions=True) if r.id == suggested)
        suggestion = record.suggestions["emotions"]
        assert suggestion.value == ["joy", "love"] and suggestion.score == [0.9, 0.7]

        replay_recorded_labels(config, argilla_client)
        # a reviewer of our own ticks two tags on an item that a recorded rater labelled
        reviewer = ensure_user(argilla_client, "shapes-reviewer", "tests")
        as_reviewer = user_client(argilla_client, reviewer)
        target = items[0]["id"]
        server_id = record_ids(argilla_client, dataset)[target]
        assert Wire(as_reviewer).submit_responses([{"record_id": server_id, "status": "submitted",
                                                    "values": {"emotions": {"value": ["sadness", "anger"]}}}]) == []
        # and one response that breaks `max: 3` (Argilla has no such limit): counted as invalid, never guessed
        breaker = ensure_user(argilla_client, "shapes-breaker", "tests")
        assert Wire(user_client(argilla_client, breaker)).submit_responses([{
            "record_id": server_id, "status": "submitted",
            "values": {"emotions": {"value": ["joy", "love", "anger", "fear"]}}}]) == []
        sync(config, argilla_client)
    finally:
        leftover = get_dataset(argilla_client, config)
        if leftover is not None:
            leftover.delete()

    annotations = read_table(config.run_path, ANNOTATIONS)
    mine_rows = annotations[(annotations["annotator"] == "shapes-reviewer")]
    assert json.loads(mine_rows["value"].iloc[0]) in (["sadness", "anger"], ["anger", "sadness"])

    report, _ = write_report(config, bootstrap=100)
    markdown = REPORT_MD.path(config.run_path).read_text()
    assert "| emotions | masi |" in markdown and "emotions: alpha per label (1 response(s)" in markdown
    block = report.questions["emotions"]
    assert block.distance == "masi" and block.invalid == 1
    assert block.units >= 20 and block.alpha is not None
    assert set(block.per_label) == set(config.question("emotions").labels)
    # the report's alpha is the MASI alpha of exactly the submitted valid label sets
    valid = annotations[(annotations["status"] == "submitted") & (annotations["annotator"] != "shapes-breaker")]
    table = pd.DataFrame({"unit": valid["item_id"], "annotator": valid["annotator"], "value": valid["value"]})
    assert block.alpha == pytest.approx(masi_alpha(table, bootstrap=0).alpha)
    judge = report.judge["emotions"]  # the one suggestion, against the one recorded rater's picks
    recorded = items[25]["annotations"][0]["emotions"]
    assert judge.n == 1 and judge.accuracy == float(sorted(recorded) == ["joy", "love"])

    curated = build_curated(config)
    assert any("1 response(s) to 'emotions' break the question" in n and "shapes-breaker" in n for n in curated.notes)
    dataset_dict = curated.to_dataset_dict(config)
    feature = dataset_dict["train"].features["emotions"]
    assert type(feature).__name__ == "List" and type(feature.feature).__name__ == "ClassLabel"
    names = feature.feature.names
    rows = {r["item_id"]: r for split in dataset_dict.values() for r in split}
    expected = human_label(config.question("emotions"),
                           annotations[(annotations["item_id"] == target) & (annotations["status"] == "submitted")
                                       & (annotations["annotator"] != "shapes-breaker")]["value"].tolist()).label
    assert [names[i] for i in rows[target]["emotions"]] == list(expected)
    single = items[25]["id"]  # one recorded rater: the curated label is exactly their picks
    recorded = [a["emotions"] for a in items[25]["annotations"]][0]
    assert sorted(names[i] for i in rows[single]["emotions"]) == sorted(recorded)
    assert rows[single]["emotions_source"] == "llm-reviewed"

    # pushed to a folder and loaded back with `datasets`: the same label sets, as Sequence(ClassLabel)
    out = goemotions.parent / "published"
    push(config, to=out)
    loaded = load_dataset(str(out), cache_dir=str(goemotions.parent / "hf-cache"))
    assert loaded["train"].features["emotions"] == feature
    back = {r["item_id"]: r["emotions"] for split in loaded.values() for r in split}
    assert back == {item_id: r["emotions"] for item_id, r in rows.items()}
    assert "multi_label" in (out / "README.md").read_text()


def test_a_multi_label_decision_is_sure_only_when_every_label_is() -> None:
    shape = shape_of(TAGS)  # min 1, max 3
    assert shape.decide({"a": 0.9, "b": 0.02, "c": 0.05, "d": 0.01}) == (("a",), pytest.approx(0.9))
    picked, sure = shape.decide({"a": 0.99, "b": 0.55, "c": 0.01, "d": 0.01})
    assert picked == ("a", "b") and sure == pytest.approx(0.55)  # b's decision is the least sure
    picked, sure = shape.decide({"a": 0.2, "b": 0.3, "c": 0.1, "d": 0.05})  # none reaches 0.5: top up to min 1
    assert picked == ("b",) and sure == pytest.approx(0.3)
    assert shape.decide({"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6})[0] == ("a", "b", "c")  # cut to max 3
    assert shape.decide({"a": 0.4, "b": 0.2, "c": 0.1, "d": 0.1}, {"a": 0.35})[0] == ("a",)  # a per-label threshold
