"""Active-learning strategies against brute-force versions, and `curate simulate --json` on real embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from workspaces.cli import app
from workspaces.review.select import kcenter_greedy, select_batch, uncertainty

ROOT = Path(__file__).resolve().parents[1]


def _brute_kcenter(X: np.ndarray, k: int, selected: list[int], first: int | None) -> list[int]:
    picks: list[int] = []
    chosen = list(selected)
    for i in range(k):
        if not chosen:
            pick = first
        else:
            distance = [min(float(((X[j] - X[c]) ** 2).sum()) for c in chosen) if j not in chosen else -1.0
                        for j in range(len(X))]
            pick = int(np.argmax(distance))
        picks.append(pick)
        chosen.append(pick)
    return picks


def test_kcenter_equals_brute_force_farthest_first() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 8))
    assert kcenter_greedy(X, 15, np.array([3, 40])).tolist() == _brute_kcenter(X, 15, [3, 40], None)
    cold = kcenter_greedy(X, 10, seed=5)
    assert cold.tolist() == _brute_kcenter(X, 10, [], int(cold[0]))
    assert len(set(cold)) == 10


def test_kcenter_respects_candidates() -> None:
    X = np.random.default_rng(1).normal(size=(50, 4))
    picks = kcenter_greedy(X, 5, np.array([0]), candidates=np.arange(10, 20))
    assert set(picks) <= set(range(10, 20)) and len(set(picks)) == 5


def test_uncertainty_strategies_equal_sorted_uncertainty() -> None:
    rng = np.random.default_rng(2)
    proba = rng.dirichlet(np.ones(5), size=200)
    X = rng.normal(size=(200, 3))
    labeled = np.zeros(200, dtype=bool)
    labeled[:30] = True
    for kind in ("margin", "entropy"):
        chosen, scores = select_batch(X, batch=12, strategy=kind, labeled=labeled, proba=proba)
        top = np.sort(proba[30:], axis=1)
        brute = 1 - (top[:, -1] - top[:, -2]) if kind == "margin" else -(proba[30:] * np.log(proba[30:])).sum(1)
        assert sorted(chosen.tolist()) == sorted((np.argsort(-brute)[:12] + 30).tolist())
        assert np.allclose(scores, uncertainty(proba[chosen], kind))


def test_hybrid_is_diverse_among_the_uncertain_and_never_picks_labeled() -> None:
    rng = np.random.default_rng(3)
    proba = rng.dirichlet(np.ones(4), size=300)
    X = rng.normal(size=(300, 6))
    labeled = np.zeros(300, dtype=bool)
    labeled[::7] = True
    chosen, _ = select_batch(X, batch=10, strategy="hybrid", labeled=labeled, proba=proba, hybrid_pool=4)
    shortlist = set(np.flatnonzero(~labeled)[np.argsort(-uncertainty(proba[~labeled], "margin"))[:40]])
    assert set(chosen) <= shortlist and not labeled[chosen].any() and len(set(chosen)) == 10


def test_cold_start_uses_diversity_and_random_is_reproducible() -> None:
    X = np.random.default_rng(4).normal(size=(100, 5))
    labeled = np.zeros(100, dtype=bool)
    labeled[:5] = True
    cold, _ = select_batch(X, batch=6, strategy="margin", labeled=labeled, proba=None)
    assert cold.tolist() == kcenter_greedy(X, 6, np.arange(5), candidates=np.arange(5, 100)).tolist()
    first, _ = select_batch(X, batch=6, strategy="random", labeled=labeled, seed=9)
    again, _ = select_batch(X, batch=6, strategy="random", labeled=labeled, seed=9)
    assert first.tolist() == again.tolist() and not labeled[first].any()
    with pytest.raises(ValueError, match="unknown strategy"):
        select_batch(X, batch=2, strategy="magic")


def test_simulate_json_has_the_promised_format(tmp_path: Path) -> None:
    """On 8 BANKING77 intents (real MiniLM embeddings), the default strategy and random, two seeds."""
    data = pd.read_csv(ROOT / "data" / "banking77" / "intents.csv", dtype=str)
    intents = sorted(data["gold_intent"].unique())[:8]
    data[data["gold_intent"].isin(intents)].to_csv(tmp_path / "small.csv", index=False)
    raw = yaml.safe_load((ROOT / "configs" / "banking77_intents.yaml").read_text())
    raw["data"]["path"] = str(tmp_path / "small.csv")
    raw["questions"][0]["labels"] = {i: i for i in intents}
    raw["run_dir"] = str(tmp_path / "run")
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "curves.json"
    result = CliRunner().invoke(app, ["simulate", str(tmp_path / "small.yaml"), "--oracle", "gold_intent", "--seeds",
                                      "2", "--seed-size", "16", "--batch", "16", "--budget", "300", "--json",
                                      str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert [entry["strategy"] for entry in payload] == ["default", "random"]
    for entry in payload:
        assert set(entry) == {"strategy", "curves", "labels_to"} and set(entry["labels_to"]) == {"0.85", "0.88", "0.90"}
        assert [c["seed"] for c in entry["curves"]] == [0, 1]
        for curve in entry["curves"]:
            labels = [p["labels"] for p in curve["points"]]
            assert labels[0] == 16 and labels == sorted(labels) and all(0 <= p["accuracy"] <= 1 for p in curve["points"])
        reached = entry["labels_to"]["0.85"]
        assert reached is None or 16 <= reached <= 300
    assert "vs random" in result.output or "not reached" in result.output
    assert (tmp_path / "run" / "embeddings.parquet").is_file()
