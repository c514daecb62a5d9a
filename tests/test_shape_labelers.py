"""The labeler half of the loop for tag sets (multi_label), on the vendored GoEmotions sample: human votes in one
spelling, the one-vs-rest student on real embeddings, calibration with exact-set and per-label figures, an item-level
gate and triage, uncertainty sampling, and `curate demo --config configs/goemotions_tags.yaml` on a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from datasets import load_dataset
from sklearn.metrics import f1_score, hamming_loss
from sklearn.preprocessing import MultiLabelBinarizer

from pipelines import embed_items
from pipelines.student import MultiLabelStudent, run_student, student_features
from workspaces.config import load_config
from workspaces.items import load_items
from workspaces.judge import calibrate, human_reference, human_votes, run_gate
from workspaces.review.select import select_items
from workspaces.review.triage import triage
from workspaces.rundir import (ANNOTATIONS, CALIBRATION_ITEMS, CALIBRATION_MD, EMBEDDINGS, STUDENT_LABELS, read_table,
                              write_table)
from workspaces.shapes import shape_of

ROOT = Path(__file__).resolve().parents[1]
GOEMOTIONS = ROOT / "configs" / "goemotions_tags.yaml"


def _config(tmp: Path, limit: int, **update):
    raw = yaml.safe_load(GOEMOTIONS.read_text())
    raw["data"].update(path=str(ROOT / "data" / "goemotions" / "comments.jsonl"), limit=limit)
    raw["run_dir"] = str(tmp / "run")
    for key, value in update.items():
        raw[key] = {**(raw.get(key) or {}), **value}
    path = tmp / "goemotions.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """600 GoEmotions comments embedded with the config's real encoder, and the student trained on their recorded
    raters' labels."""
    config = _config(tmp_path_factory.mktemp("tags"), 600)
    embed_items(config)
    reference = human_reference(config, "emotions")
    run = run_student(config, reference.labels, "emotions")
    return config, reference, run


def test_votes_are_kept_in_one_spelling_and_a_broken_answer_is_counted_not_guessed(tmp_path: Path) -> None:
    config = _config(tmp_path, 40)
    config.run_path.mkdir(parents=True, mode=0o700)
    item = "eew5j0j"  # "That game hurt.", one recorded rater: sadness
    write_table(ANNOTATIONS.path(config.run_path), pd.DataFrame([
        {"record_id": "r1", "item_id": item, "question": "emotions", "annotator": "rev-a", "status": "submitted",
         "value": json.dumps(["sadness", "disappointment"]), "updated_at": "2026-12-07T10:00:00"},  # ticked backwards
        {"record_id": "r1", "item_id": item, "question": "emotions", "annotator": "rev-b", "status": "submitted",
         "value": "[]", "updated_at": "2026-12-07T10:00:01"},  # breaks `min: 1`
    ]))
    votes = human_votes(config)
    mine = votes[votes["item_id"] == item].set_index("annotator")["value"].to_dict()
    assert mine["rev-a"] == '["disappointment", "sadness"]'  # the labels' order, whatever order they were ticked in
    assert "rev-b" not in mine and votes.attrs["invalid"] == {"emotions": 1}
    assert mine["rater1"] == '["sadness"]'  # a recorded list, stored as JSON
    reference = human_reference(config, "emotions", votes=votes)
    # the per-label majority of the 2 valid votes: sadness 2 of 2, disappointment 1 of 2 (not more than half)
    assert reference.labels[item] == '["sadness"]'


def test_the_one_vs_rest_student_answers_with_the_shapes_decision_and_beats_the_majority_set(embedded) -> None:
    config, reference, run = embedded
    shape = shape_of(config.question("emotions"))
    ok = run.labels[run.labels["status"] == "ok"]
    assert len(ok) == 600 and run.identity["classifier"] == "one-vs-rest-logistic-regression"
    for row in ok.itertuples():
        probabilities = json.loads(row.probabilities)
        assert set(probabilities) == set(config.question("emotions").labels)
        value, sure = shape.decide(probabilities)
        assert row.label == shape.dump(value) and row.confidence == pytest.approx(sure)
        assert len(shape.parse(row.label)) >= 1  # `min: 1` holds for every answer
        picked = set(value)  # the least sure label decision: p for a picked label (even one topped up), else 1 - p
        assert sure == pytest.approx(min(p if label in picked else 1 - p for label, p in probabilities.items()))
    assert set(ok.loc[ok["out_of_fold"], "item_id"]) == set(reference.labels)
    oof = ok[ok["out_of_fold"]]
    truth = [json.loads(reference.labels[i]) for i in oof["item_id"]]
    guess = [json.loads(v) for v in oof["label"]]
    binarizer = MultiLabelBinarizer(classes=list(config.question("emotions").labels)).fit([])
    common = Counter(map(tuple, truth)).most_common(1)[0][0]
    student = f1_score(binarizer.transform(truth), binarizer.transform(guess), average="micro")
    majority = f1_score(binarizer.transform(truth), binarizer.transform([common] * len(truth)), average="micro")
    assert student > majority  # out of fold, the student tells more than "always the commonest set"


def test_calibration_of_tag_sets_gives_exact_set_per_label_micro_macro_and_hamming_figures(embedded) -> None:
    config, _, _ = embedded
    q = calibrate(config, "student")["questions"]["emotions"]
    items = read_table(config.run_path, CALIBRATION_ITEMS)
    labels = list(config.question("emotions").labels)
    binarizer = MultiLabelBinarizer(classes=labels).fit([])
    truth = binarizer.transform([json.loads(v) for v in items["reference"]])
    guess = binarizer.transform([json.loads(v) for v in items["label"]])
    assert q["n"] == len(items) > 500
    assert q["accuracy"] == pytest.approx(float((truth == guess).all(axis=1).mean()))  # exact set
    assert q["micro_f1"] == pytest.approx(f1_score(truth, guess, average="micro"))
    assert q["macro_f1"] == pytest.approx(f1_score(truth, guess, average="macro", zero_division=0))
    assert q["hamming_loss"] == pytest.approx(hamming_loss(truth, guess))
    assert set(q["per_class"]) == set(labels)
    neutral = q["per_class"]["neutral"]
    assert neutral["support"] == int(truth[:, labels.index("neutral")].sum()) and neutral["brier"] is not None
    defined = [c["kappa"] for c in q["per_class"].values() if c["kappa"] is not None]
    assert q["kappa"] == pytest.approx(np.mean(defined))
    assert q["alpha"] is not None and -1 <= q["alpha"] <= 1  # MASI alpha with the student as one more coder
    assert "exact-set accuracy" in CALIBRATION_MD.path(config.run_path).read_text()


def test_an_item_is_auto_accepted_only_when_every_label_decision_is_sure(tmp_path: Path) -> None:
    """Routing with a scripted labeler on disk (what is tested is the gate and triage, not a model): 180 reference
    items answered right with every label sure, 30 with one label at p = 0.6, wrongly picked. The gate certifies
    the item-level threshold above 0.6, so those 30 go to review however sure the other 27 labels are."""
    config = _config(tmp_path, 400, gate={"metric": "accuracy", "min": 0.5, "min_reference": 100})
    config.run_path.mkdir(parents=True, mode=0o700)
    shape = shape_of(config.question("emotions"))
    labels = list(config.question("emotions").labels)
    reference = human_reference(config, "emotions")
    ids = sorted(reference.labels)[:210]
    rows, shaky = [], set(ids[:30])
    for item_id in ids:
        truth = set(json.loads(reference.labels[item_id]))
        p = {label: 0.99 if label in truth else 0.01 for label in labels}
        if item_id in shaky:
            extra = next(label for label in labels if label not in truth)
            p[extra] = 0.6  # one unsure label: the decision picks it, and the set is wrong
        value, sure = shape.decide(p)
        rows.append({"item_id": item_id, "question": "emotions", "label": shape.dump(value), "confidence": sure,
                     "probabilities": json.dumps(p), "model": "scripted", "prompt_hash": "h", "raw_output": None,
                     "status": "ok", "error": None, "run_id": "r", "labeled_at": "now", "out_of_fold": True})
    write_table(STUDENT_LABELS.path(config.run_path), pd.DataFrame(rows))
    q = calibrate(config, "student")["questions"]["emotions"]
    assert q["accuracy"] == pytest.approx(180 / 210)
    [decision] = run_gate(config, "student")
    assert decision.decision == "pass", decision.reason
    assert decision.threshold > 0.6
    routed = triage(config, "student").routes.set_index("item_id")
    assert (routed.loc[sorted(shaky), "route"] == "review").all()
    assert set(routed.loc[sorted(shaky), "reason"]) == {"confidence below the threshold"}
    sure_items = [i for i in ids if i not in shaky]
    assert set(routed.loc[sure_items, "route"]) <= {"auto", "audit"}
    assert (routed.loc[sure_items, "route"] == "auto").any()
    assert set(routed.loc[sorted(set(routed.index) - set(ids)), "route"]) == {"review"}  # no label: a human's


def test_uncertainty_sampling_asks_about_the_comments_whose_tags_are_least_sure(embedded) -> None:
    config, reference, _ = embedded
    selection = select_items(config, batch=10, strategy="entropy", seed=0)
    assert len(selection.item_ids) == 10 and not set(selection.item_ids) & set(reference.labels)
    assert selection.scores == sorted(selection.scores, reverse=True) and selection.scores[0] > 0
    # the same student, refitted here: every picked comment is at least as uncertain as every one left
    embeddings = read_table(config.run_path, EMBEDDINGS, columns=["item_id", "vector"])
    vectors = dict(zip(embeddings["item_id"], embeddings["vector"]))
    items = load_items(config)
    items = items[items["item_id"].isin(set(vectors))].reset_index(drop=True)
    X = np.stack([np.asarray(vectors[i], dtype=np.float32) for i in items["item_id"]])
    features = student_features(config, items, X)
    shape = shape_of(config.question("emotions"))
    known = {i: shape.parse(v) for i, v in reference.labels.items()}
    rows = [n for n, i in enumerate(items["item_id"]) if i in known]
    model = MultiLabelStudent(question=config.question("emotions")).fit(
        features[rows], [known[items["item_id"][n]] for n in rows])
    scores = dict(zip(items["item_id"], model.uncertainty(model.predict_proba(features), "entropy")))
    left = [scores[i] for i in items["item_id"] if i not in known and i not in set(selection.item_ids)]
    assert min(scores[i] for i in selection.item_ids) >= max(left) - 1e-9
    assert [scores[i] for i in selection.item_ids] == pytest.approx(selection.scores)


def test_curate_demo_runs_the_tag_loop_end_to_end(tmp_path: Path, argilla_server, argilla_client) -> None:
    config = _config(tmp_path, 150, argilla={"dataset": "demo-tags", "workspace": "demo-tags-tests"},
                     selection={"batch": 40})
    env = {**os.environ, "ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key}
    try:
        result = subprocess.run([sys.executable, "-m", "workspaces", "demo", "--config", str(config.source_path)],
                                capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    finally:
        from workspaces.argilla_io.publish import get_dataset

        dataset = get_dataset(argilla_client, config)
        if dataset is not None:
            dataset.delete()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    said = " ".join(out.split())
    assert "the student (student:ovr-logreg(" in said and "retrained on every human label" in said
    assert "(exact set)" in said and "(mean per label)" in said and "gate emotions:" in said and "routes: auto" in said
    assert "honeypots" in said and "measured precision of the labels no human gave (emotions" in said
    curated = load_dataset(str(config.run_path / "curated"), cache_dir=str(tmp_path / "hf-cache"))
    split = next(iter(curated.values()))
    feature = split.features["emotions"]
    assert feature.feature.names == list(config.question("emotions").labels)  # a Sequence of ClassLabel
    assert all(len(row) >= 1 for row in split["emotions"])


def test_simulate_takes_a_list_column_as_the_oracle_and_scores_exact_sets(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (ROOT / "data" / "goemotions" / "comments.jsonl").open()]
    rows = [r for r in rows if r["n_raters"] == 1][:500]
    for r in rows:
        r["tags"] = r["annotations"][0]["emotions"]  # one rater's answer as the oracle: a list column
    data = tmp_path / "tags.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = _config(tmp_path, 500)
    config = config.model_copy(update={"data": config.data.model_copy(update={"path": data})})
    from workspaces.review.simulate import simulate

    [result] = simulate(config, "tags", strategies=("default",), seeds=1, seed_size=100, batch=100, budget=300,
                        targets=(0.99,))
    points = result.curves[0]["points"]
    assert [p["labels"] for p in points] == [100, 200, 300]
    assert all(0.05 < p["accuracy"] < 0.9 for p in points)  # exact-set accuracy of 28 tags: neither 0 nor free
    assert result.labels_to == {"0.99": None}

    rows[3]["tags"] = ["joy", "not-an-emotion"]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from workspaces.errors import ConfigError

    with pytest.raises(ConfigError, match="oracle column 'tags'.*not-an-emotion"):
        simulate(config, "tags", strategies=("default",), seeds=1, seed_size=100, batch=100, budget=200)


@pytest.mark.slow
def test_the_llm_answers_tags_with_one_yes_no_probability_per_label(tmp_path: Path) -> None:
    """The real local model (SmolLM2-135M) through `curate label`: one yes/no prompt per label, and one folded row
    per comment whose probabilities are the model's p("yes") and whose answer is the shape's decision."""
    raw = yaml.safe_load(GOEMOTIONS.read_text())
    raw["data"]["path"] = str(ROOT / "data" / "goemotions" / "comments.jsonl")
    keep = ["anger", "joy", "sadness", "neutral"]
    raw["questions"][0]["labels"] = {k: v for k, v in raw["questions"][0]["labels"].items() if k in keep}
    raw["llm"] = {"backend": "local", "batch_size": 8}
    raw["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "tags.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = subprocess.run([str(Path(sys.executable).parent / "curate"), "label", str(path), "--limit", "3"],
                            capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    config = load_config(path)
    from pipelines.label import read_labels

    labels = read_labels(config.run_path)
    answers = labels[labels["question"].str.startswith("emotions::")]
    folded = labels[labels["question"] == "emotions"].set_index("item_id")
    assert len(answers) == 3 * 4 and set(answers["question"]) == {f"emotions::{k}" for k in keep}
    assert len(folded) == 3 and (folded["status"] == "ok").all(), folded[["status", "error"]]
    shape = shape_of(config.question("emotions"))
    for item_id, row in folded.iterrows():
        mine = answers[answers["item_id"] == item_id].set_index("question")
        expected = {k: mine.at[f"emotions::{k}", "probabilities"]["yes"] for k in keep}
        assert row["probabilities"] == pytest.approx(expected)  # the model's own p("yes") of each label
        value, sure = shape.decide(expected)
        assert row["label"] == shape.dump(value) and row["confidence"] == pytest.approx(sure)
    assert len({json.dumps(p, sort_keys=True) for p in folded["probabilities"]}) == 3  # not a constant
