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
