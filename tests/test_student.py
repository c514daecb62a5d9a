"""The student labeler: out-of-fold scores never come from a model that saw the item; the output has the schema of
labels.parquet; real MiniLM embeddings of BANKING77 queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

from pipelines.label import LABEL_COLUMNS
from pipelines.student import StudentClassifier, out_of_fold_proba
from workspaces.cli import app
from workspaces.config import load_config
from workspaces.judge import load_labeler

ROOT = Path(__file__).resolve().parents[1]


def test_out_of_fold_scores_never_see_their_own_item() -> None:
    """Random labels on random points: a model that memorises (large C) is perfect in-sample and at chance out of
    fold. If a row were scored by a model trained on it, the out-of-fold accuracy would be near 1."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 600))  # more dimensions than points: a linear model can memorise them
    y = rng.choice(["a", "b", "c", "d"], 400)
    memoriser = StudentClassifier(C=1e6, class_weight=None)
    in_sample = (np.array(memoriser.model_copy().fit(X, y).classes_)[
        memoriser.model_copy().fit(X, y).predict_proba(X).argmax(1)] == y).mean()
    oof = out_of_fold_proba(X, y, folds=5, classifier=memoriser)
    out_of_fold = (np.array(sorted(set(y)))[oof.argmax(1)] == y).mean()
    assert in_sample > 0.99 and out_of_fold < 0.4
    assert np.allclose(oof.sum(axis=1), 1.0)


def test_curate_student_writes_labels_in_the_labels_schema(tmp_path: Path) -> None:
    data = pd.read_csv(ROOT / "data" / "banking77" / "intents.csv", dtype=str)
    intents = sorted(data["gold_intent"].unique())[:5]
    small = data[data["gold_intent"].isin(intents)].groupby("gold_intent").head(40)
    small.to_csv(tmp_path / "small.csv", index=False)
    raw = yaml.safe_load((ROOT / "configs" / "banking77_intents.yaml").read_text())
    raw["data"]["path"] = str(tmp_path / "small.csv")
    raw["questions"][0]["labels"] = {i: i for i in intents}
    raw["run_dir"] = str(tmp_path / "run")
    gold = small.copy()
    gold.loc[gold.groupby("gold_intent").cumcount() >= 20, "gold_intent"] = None  # half the items have a reference
    gold.rename(columns={"gold_intent": "known"}).merge(small[["id", "gold_intent"]], on="id").to_csv(
        tmp_path / "small.csv", index=False)
    raw["reference"] = {"gold_columns": {"intent": "known"}}
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    assert runner.invoke(app, ["embed", str(tmp_path / "small.yaml")]).exit_code == 0
    result = runner.invoke(app, ["student", str(tmp_path / "small.yaml")])
    assert result.exit_code == 0, result.output
    labels = pd.read_parquet(tmp_path / "run" / "student_labels.parquet")
    assert list(labels.columns) == [*LABEL_COLUMNS, "out_of_fold"]
    assert len(labels) == 200 and (labels["status"] == "ok").all()
    known = pd.read_csv(tmp_path / "small.csv", dtype=str).set_index("id")["known"].dropna()
    assert set(labels.loc[labels["out_of_fold"], "item_id"]) == set(known.index)
    truth = small.set_index("id")["gold_intent"]
    rest = labels[~labels["out_of_fold"]]
    assert (rest["label"].to_numpy() == truth.loc[rest["item_id"]].to_numpy()).mean() > 0.8
    student = load_labeler(load_config(tmp_path / "small.yaml"), "student", "intent")
    assert student.identity["backend"] == "student" and student.labels["probabilities"].iloc[0].keys() == set(intents)
    calibrated = runner.invoke(app, ["calibrate", str(tmp_path / "small.yaml"), "--labeler", "student"])
    assert calibrated.exit_code == 0, calibrated.output


def test_a_warm_fit_starts_from_the_last_rounds_coefficients() -> None:
    """simulate refits the student every round: a warm fit (same classes) converges in fewer solver iterations to
    nearly the cold fit's predictions; a round that adds a new class falls back to a cold fit."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 40)) * 3
    y = rng.choice(list("abcde"), 600)
    X = centres[[ord(v) - ord("a") for v in y]] + rng.normal(size=(600, 40))
    student = StudentClassifier(C=10.0)
    first = student.model_copy().fit(X[:500], y[:500])
    warm = student.model_copy().fit(X[:550], y[:550], warm_from=first)
    cold = student.model_copy().fit(X[:550], y[:550])
    assert warm._model.n_iter_[0] < cold._model.n_iter_[0]
    assert (warm.predict_proba(X).argmax(1) == cold.predict_proba(X).argmax(1)).mean() > 0.98
    fewer = student.model_copy().fit(X[:500][y[:500] != "e"], y[:500][y[:500] != "e"])
    again = student.model_copy().fit(X[:550], y[:550], warm_from=fewer)  # class "e" is new: cold
    assert again.classes_ == list("abcde") and again._model.n_iter_[0] == cold._model.n_iter_[0]


def test_the_neighbour_blend_mixes_each_item_with_its_nearest_items_only() -> None:
    """Two tight clusters: with k=2 each item's features become half its own and half the mean over itself and its
    two nearest (cosine) items, all from its own cluster; with neighbours=0 the features are the embeddings."""
    from pipelines.student import StudentFeatures

    E = np.array([[1.0, 0.0], [0.99, 0.14], [0.98, 0.2], [0.0, 1.0], [0.14, 0.99], [0.2, 0.98]])
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    plain = StudentFeatures(chars=False, embedding_weight=1.0, neighbours=0).build(E)
    assert np.allclose(plain, E)
    blended = StudentFeatures(chars=False, embedding_weight=1.0, neighbours=2, smoothing=0.5).build(E)
    expected = np.vstack([0.5 * E[i] + 0.5 * E[[0, 1, 2] if i < 3 else [3, 4, 5]].mean(axis=0) for i in range(6)])
    assert np.allclose(blended, expected)
    with_chars = StudentFeatures(neighbours=2, min_df=1).build(E, ["top up", "top up card", "top up now",
                                                                    "pin blocked", "pin is blocked", "blocked pin"])
    assert with_chars.shape[0] == 6 and with_chars.shape[1] > 2
