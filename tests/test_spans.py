"""The span shape (workspaces/shapes.py `SpanShape`) on the vendored WNUT-17 sentences: config, checks, the IOB2
layout, and the round trip publish -> a reviewer's spans -> sync -> report -> curated -> Hub folder on a real
Argilla server, with the same character offsets at the end."""

from __future__ import annotations

import json
from pathlib import Path

import argilla as rg
import numpy as np
import pandas as pd
import pytest
import yaml
from datasets import load_dataset

from workspaces.agreement import write_report
from workspaces.argilla_io._wire import Wire
from workspaces.argilla_io.publish import get_dataset, publish
from workspaces.argilla_io.replay import ensure_user, record_ids, replay_recorded_labels, user_client
from workspaces.argilla_io.sync import sync
from workspaces.config import QuestionConfig, load_config
from workspaces.curated import build_curated, push
from workspaces.errors import ConfigError
from workspaces.rundir import ANNOTATIONS, STUDENT_LABELS, read_table, write_table
from workspaces.shapes import ShapeValueError, iob2_names, iob2_tags, shape_of, span_f1, spans_from_tags
from workspaces.votes import human_label

ROOT = Path(__file__).resolve().parents[1]
WNUT = ROOT / "configs" / "wnut17_entities.yaml"
SENTENCES = ROOT / "data" / "wnut17" / "sentences.jsonl"
ENTITIES = QuestionConfig(name="entities", kind="span", field="text", labels={"person": "", "location": ""})


@pytest.mark.parametrize("stored, why", [
    ('[{"start": 0, "end": 4, "label": "city"}]', "unknown label 'city'"),
    ('[{"start": 5, "end": 5, "label": "person"}]', "offsets 5..5"),
    ('[{"start": -1, "end": 3, "label": "person"}]', "offsets -1..3"),
    ('[{"start": 0, "end": 6, "label": "person"}, {"start": 4, "end": 9, "label": "location"}]',
     "overlapping spans 0..6 (person) and 4..9 (location)"),
    ('{"start": 0}', "not a list of spans"),
    ("[[1, 2]]", "not a span"),
])
def test_a_span_answer_that_breaks_the_question_is_refused_by_name(stored: str, why: str) -> None:
    with pytest.raises(ShapeValueError) as caught:
        shape_of(ENTITIES).parse(stored)
    assert "question 'entities'" in str(caught.value) and why in str(caught.value)


def test_spans_are_canonical_checked_against_the_text_and_voted_by_majority() -> None:
    shape = shape_of(ENTITIES)
    ticked = [{"label": "location", "end": 20, "start": 14}, {"start": 0, "end": 4, "label": "person"}]
    value = shape.parse(ticked)
    assert value == ((0, 4, "person"), (14, 20, "location"))
    assert shape.canonical(json.dumps(ticked)) == shape.dump(value)
    assert shape.parse(shape.dump(value)) == value and shape.parse("[]") == ()  # no entity: a valid answer
    with pytest.raises(ShapeValueError, match="outside the text of 10 characters"):
        shape.check_text(value, "Anna lives")
    vote = human_label(ENTITIES, [shape.dump(value), shape.dump(value[:1]), shape.dump(((0, 4, "location"),))])
    assert vote.label == ((0, 4, "person"),)  # 2 of 3 marked Anna as a person; Paris only once
    assert shape.distance(value, value[:1]) == pytest.approx(1 - span_f1(value, value[:1])) == pytest.approx(1 / 3)


@pytest.mark.parametrize("change, why", [
    ({"field": None}, "a span question needs `field`"),
    ({"field": "body"}, "'body' is not one of the fields"),
    ({"redaction": True}, "redaction would change that text"),
])
def test_a_span_config_that_cannot_hold_is_refused_by_name(tmp_path: Path, change: dict, why: str) -> None:
    raw = yaml.safe_load(WNUT.read_text())
    raw["data"]["path"] = str(SENTENCES)
    if "field" in change:
        raw["questions"][0]["field"] = change["field"]
    if change.get("redaction"):
        raw["redaction"] = {"enabled": True}
    path = tmp_path / "wnut.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=why):
        load_config(path)


def test_the_vendored_spans_give_back_the_released_iob2_tags_of_every_sentence() -> None:
    """An independent check of the vendoring and of the Hub layout: the character spans of data/wnut17, turned into
    IOB2 tags over the whitespace tokens, equal the tags WNUT-17 released, sentence by sentence."""
    config = load_config(WNUT)
    shape = shape_of(config.question("entities"))
    rows = [json.loads(line) for line in SENTENCES.open(encoding="utf-8")]
    assert len(rows) == 5690 and sum(len(r["annotations"][0]["entities"]) for r in rows) == 3890
    for row in rows:
        spans = shape.parse(row["annotations"][0]["entities"])
        shape.check_text(spans, row["text"])
        assert iob2_tags(row["text"], spans) == row["ner_tags"], row["id"]
        assert spans_from_tags(row["text"], row["ner_tags"]) == spans  # and back
        text = row["text"]
        assert all((a == 0 or text[a - 1] == " ") and (b == len(text) or text[b] == " ") for a, b, _ in spans)


@pytest.fixture()
def wnut(tmp_path: Path, request) -> Path:
    raw = yaml.safe_load(WNUT.read_text())
    rows = [json.loads(line) for line in SENTENCES.open(encoding="utf-8")]
    picked = [r for r in rows if r["split"] == "validation" and r["annotations"][0]["entities"]][:12]
    data = tmp_path / "sentences.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in picked))
    raw["data"]["path"] = str(data)
    raw["argilla"].update(dataset=f"spans-{request.node.name[5:28].replace('_', '-')}", workspace="tests")
    raw["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "wnut.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_spans_go_publish_reviewer_sync_report_curated_and_back_with_the_same_offsets(
        argilla_client: rg.Argilla, wnut: Path) -> None:
    config = load_config(wnut)
    shape = shape_of(config.question("entities"))
    items = [json.loads(line) for line in config.data.path.open()]
    config.run_path.mkdir(parents=True, mode=0o700)
    agreeing, extra = items[0], items[1]
    # the triage labeler (the student, in this config) suggests the spans of one sentence, one score per span
    first = agreeing["annotations"][0]["entities"][0]
    suggested = shape.parse([first])
    write_table(STUDENT_LABELS.path(config.run_path), pd.DataFrame([{
        "item_id": agreeing["id"], "question": "entities", "label": shape.dump(suggested), "confidence": 0.61,
        "probabilities": json.dumps({f"{first['start']}:{first['end']}:{first['label']}": 0.8}),
        "model": "student:crf", "prompt_hash": "h", "raw_output": None, "status": "ok", "error": None, "run_id": "r",
        "labeled_at": "now", "out_of_fold": False}]))
    try:
        publish(config, argilla_client)
        dataset = get_dataset(argilla_client, config)
        question = dataset.settings.questions["entities"]
        assert isinstance(question, rg.SpanQuestion) and question.field == "text"
        assert sorted(question.labels) == sorted(config.question("entities").labels)
        record = next(r for r in dataset.records(with_suggestions=True) if r.id == agreeing["id"])
        suggestion = record.suggestions["entities"]
        assert [(v["start"], v["end"], v["label"]) for v in suggestion.value] == list(suggested)
        assert suggestion.score == [0.8] and suggestion.agent == "student:crf"
        assert record.metadata["llm_confidence_entities"] == pytest.approx(0.61)  # the item's least sure token
        replay_recorded_labels(config, argilla_client)  # the released annotation, as user `wnut17`
        reviewer = ensure_user(argilla_client, "spans-reviewer", "tests")
        ids = record_ids(argilla_client, dataset)
        # the reviewer marks the same spans on one sentence (listed backwards), and one span more on another
        same = list(reversed(agreeing["annotations"][0]["entities"]))
        text = extra["text"]
        taken = {(e["start"], e["end"]) for e in extra["annotations"][0]["entities"]}
        start = next(i for i in range(len(text) - 3) if text[i].isalpha() and (i == 0 or text[i - 1] == " ")
                     and not any(a <= i < b or a < i + 3 <= b for a, b in taken))
        more = [*extra["annotations"][0]["entities"], {"start": start, "end": start + 3, "label": "product"}]
        assert Wire(user_client(argilla_client, reviewer)).submit_responses([
            {"record_id": ids[agreeing["id"]], "status": "submitted", "values": {"entities": {"value": same}}},
            {"record_id": ids[extra["id"]], "status": "submitted", "values": {"entities": {"value": more}}},
        ]) == []
        sync(config, argilla_client)
    finally:
        leftover = get_dataset(argilla_client, config)
        if leftover is not None:
            leftover.delete()

    annotations = read_table(config.run_path, ANNOTATIONS)
    mine = annotations[annotations["annotator"] == "spans-reviewer"].set_index("item_id")["value"]
    assert shape.parse(mine[extra["id"]]) == shape.parse(more)  # the offsets the reviewer marked, unchanged

    report, _ = write_report(config, bootstrap=50)
    block = report.questions["entities"]
    # token-level alpha over IOB2 tags: the two coders on every token of the two sentences they both answered
    import krippendorff

    names = iob2_names(config.question("entities"))
    coders = []
    for who, spans_of in (("wnut17", lambda item: item["annotations"][0]["entities"]),
                          ("spans-reviewer", lambda item: same if item is agreeing else more)):
        coders.append([names.index(tag) for item in (agreeing, extra)
                       for tag in iob2_tags(item["text"], shape.parse(spans_of(item)))])
    expected = krippendorff.alpha(reliability_data=coders, level_of_measurement="nominal")
    assert block.distance == "iob2-tokens" and block.invalid == 0 and block.units == len(coders[0])
    assert block.alpha == pytest.approx(expected) and block.alpha < 1  # the extra span: one coder only

    curated = build_curated(config)
    dataset_dict = curated.to_dataset_dict(config)
    rows = {r["item_id"]: r for split in dataset_dict.values() for r in split}
    names = iob2_names(config.question("entities"))
    for item in items:  # every sentence: the recorded spans are the curated spans (a strict majority of 1 or 2)
        row = rows[item["id"]]
        expected = [{"start": e["start"], "end": e["end"], "label": e["label"]}
                    for e in sorted(item["annotations"][0]["entities"], key=lambda e: (e["start"], e["end"]))]
        assert row["entities"] == expected, item["id"]
        assert row["tokens"] == item["tokens"] and [names[i] for i in row["ner_tags"]] == item["ner_tags"]
    assert rows[extra["id"]]["entities_source"] == "human-consensus"  # the extra span had 1 vote of 2: left out

    out = wnut.parent / "published"
    push(config, to=out)
    # a cache of its own: `datasets` gave this test the features of another test's folder of the same name
    loaded = load_dataset(str(out), cache_dir=str(wnut.parent / "hf-cache"))
    features = loaded["train"].features
    assert type(features["ner_tags"].feature).__name__ == "ClassLabel" and features["ner_tags"].feature.names == names
    back = {r["item_id"]: r["entities"] for split in loaded.values() for r in split}
    assert back == {item_id: r["entities"] for item_id, r in rows.items()}  # the same character offsets
    card = (out / "README.md").read_text()
    assert "token-classification" in card and "CC-BY-4.0" in card


def test_curate_demo_runs_the_span_project_end_to_end(tmp_path: Path, argilla_server, argilla_client) -> None:
    import os
    import subprocess
    import sys

    raw = yaml.safe_load(WNUT.read_text())
    raw["data"].update(path=str(SENTENCES), limit=60)
    raw["argilla"].update(dataset="demo-spans", workspace="demo-spans-tests")
    raw["selection"] = {"batch": 20}
    raw["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "wnut.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    env = {**os.environ, "ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key}
    try:
        result = subprocess.run([sys.executable, "-m", "workspaces", "demo", "--config", str(path)],
                                capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    finally:
        dataset = get_dataset(argilla_client, config)
        if dataset is not None:
            dataset.delete()
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    reviewed = set(pd.read_parquet(config.run_path / "review_plan.parquet")["item_id"])
    said = " ".join(result.stdout.split())
    assert 20 <= len(reviewed) < 60  # the batch (and its honeypots) went to review; the other items were held back
    assert f"1 recorded annotators submitted {len(reviewed)} responses" in said
    assert "the student (student:crf(" in said and "gate entities:" in said and "routes: auto" in said
    loaded = load_dataset(str(config.run_path / "curated"), cache_dir=str(tmp_path / "hf-cache"))
    rows = [r for split in loaded.values() for r in split]
    assert {r["item_id"] for r in rows} == reviewed and all(len(r["ner_tags"]) == len(r["tokens"]) for r in rows)
    recorded = {json.loads(line)["id"]: json.loads(line) for line in SENTENCES.open(encoding="utf-8")}
    assert all(r["entities"] == sorted(recorded[r["item_id"]]["annotations"][0]["entities"],
                                       key=lambda e: (e["start"], e["end"])) for r in rows)


def test_the_crf_student_labels_spans_and_calibration_gives_entity_level_figures(tmp_path: Path) -> None:
    """The CRF student on 700 WNUT-17 sentences: its spans parse and carry one score each, the item's confidence is
    never above a span's score, reference items are scored out of fold, and calibrate's entity-level figures equal
    exact span matching computed here from the span sets."""
    from pipelines.student import run_student
    from workspaces.judge import calibrate, human_reference, run_gate
    from workspaces.review.triage import triage
    from workspaces.rundir import CALIBRATION_ITEMS

    raw = yaml.safe_load(WNUT.read_text())
    raw["data"].update(path=str(SENTENCES), limit=700)
    raw["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "wnut.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    shape = shape_of(config.question("entities"))
    reference = human_reference(config, "entities")
    run = run_student(config, reference.labels, "entities")
    assert run.identity["classifier"] == "crf" and len(run.labels) == 700 and run.labels["out_of_fold"].all()
    for row in run.labels.itertuples():
        spans = shape.parse(row.label)
        scores = json.loads(row.probabilities)
        assert sorted(scores) == sorted(f"{a}:{b}:{c}" for a, b, c in spans)
        assert all(row.confidence <= score + 1e-12 for score in scores.values()) and 0 < row.confidence <= 1
    q = calibrate(config, "student")["questions"]["entities"]
    items = read_table(config.run_path, CALIBRATION_ITEMS)
    truth = [set(shape.parse(v)) for v in items["reference"]]
    guess = [set(shape.parse(v)) for v in items["label"]]
    hits = sum(len(t & g) for t, g in zip(truth, guess))
    precision, recall = hits / sum(map(len, guess)), hits / sum(map(len, truth))
    assert q["span_precision"] == pytest.approx(precision) and q["span_recall"] == pytest.approx(recall)
    assert q["span_f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert q["overlap_f1"] >= q["span_f1"]  # overlapping counts every exact match and more
    assert q["accuracy"] == pytest.approx(np.mean([t == g for t, g in zip(truth, guess)]))
    assert q["kappa"] is None and q["alpha"] is not None and 0 < q["alpha"] < 1  # token alpha, CRF as a coder
    assert set(q["per_class"]) <= set(config.question("entities").labels)
    [decision] = run_gate(config, "student")
    routed = triage(config, "student")
    if decision.decision != "pass":
        assert routed.counts["auto"] == 0 and routed.counts["review"] == 700
    else:  # auto only above the item-level threshold
        auto = routed.routes[routed.routes["route"] == "auto"]
        assert (auto["confidence"] >= decision.threshold).all()
