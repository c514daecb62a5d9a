"""Dawid-Skene (crowd-kit) recovers a planted bad annotator on synthetic data, and the report carries it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workspaces.agreement.consensus import dawid_skene
from workspaces.config import QuestionConfig
from workspaces.votes import human_label

QUESTION = QuestionConfig(name="q", kind="label", labels={"a": "", "b": "", "c": ""})


def _crowd(seed: int = 0) -> tuple[pd.DataFrame, dict[str, str]]:
    rng = np.random.default_rng(seed)
    truth = {f"u{i}": str(rng.choice(["a", "b", "c"])) for i in range(300)}
    skills = {"good1": 0.9, "good2": 0.85, "good3": 0.8, "bad": 0.2}  # bad answers at random (worse than chance)
    rows = []
    for unit, label in truth.items():
        for annotator, skill in skills.items():
            answer = label if rng.uniform() < skill else str(rng.choice([x for x in "abc" if x != label]))
            rows.append({"unit": unit, "annotator": annotator, "value": answer})
    return pd.DataFrame(rows), truth


def test_dawid_skene_finds_the_bad_annotator_and_beats_the_majority() -> None:
    table, truth = _crowd()
    result = dawid_skene(table, QUESTION)
    assert result is not None
    assert min(result.skill, key=result.skill.get) == "bad"
    assert result.skill["bad"] < 0.4 < 0.7 < min(v for k, v in result.skill.items() if k != "bad")
    ds_accuracy = np.mean([result.labels[u] == t for u, t in truth.items()])
    majority = {u: human_label(QUESTION, g["value"].tolist()).label for u, g in table.groupby("unit")}
    majority_accuracy = np.mean([majority[u] == t for u, t in truth.items()])
    assert ds_accuracy >= majority_accuracy and ds_accuracy > 0.9
    assert all(0 <= c <= 1 for c in result.confidence.values())
    for d in result.disagreements:
        assert d["majority"] != d["dawid_skene"]
