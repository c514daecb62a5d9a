"""Trust a labeler only as far as humans measured it: thresholds, bounds, ECE, the gate, its history, triage, the
audit, drift, and a curated dataset that never ships an unearned label. Constructed cases with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from workspaces.cli import app
from workspaces.config import load_config
from workspaces.curated import build_curated
from workspaces.errors import GateClosedError, RunFileError
from workspaces.judge import (calibrate, check_audit, clopper_pearson_lower, expected_calibration_error,
                              fit_threshold, gate_state, history, human_reference, load_labeler, run_drift, run_gate)
from workspaces.judge.calibrate import cross_fitted, wilson_interval
from workspaces.review.triage import audited, triage

LABELS = ["a", "b", "c"]


# ---- statistics on constructed cases ---------------------------------------------------------------------------

def test_clopper_pearson_lower_bound_known_values() -> None:
    assert clopper_pearson_lower(59, 59) == pytest.approx(0.05 ** (1 / 59))  # all right: (1 - alpha)^(1/n)
    assert clopper_pearson_lower(0, 10) == 0.0 and clopper_pearson_lower(0, 0) == 0.0
    from scipy.stats import binom

    lower = clopper_pearson_lower(95, 100)  # the p at which seeing >= 95 of 100 has probability 5%
    assert binom.sf(94, 100, lower) == pytest.approx(0.05, abs=1e-9)
    assert lower == pytest.approx(0.8977, abs=1e-3)  # = the lower end of the two-sided 90% exact interval
    assert 0 < clopper_pearson_lower(9, 10) < 0.9


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(10, 100)
    assert (low, high) == pytest.approx((0.0552, 0.1744), abs=1e-3)
    assert wilson_interval(0, 0) == (None, None)


def test_ece_and_reliability() -> None:
    confidence = np.full(10, 0.9)
    assert expected_calibration_error(confidence, np.array([1] * 9 + [0])) == pytest.approx(0.0)
    assert expected_calibration_error(confidence, np.array([1] * 5 + [0] * 5)) == pytest.approx(0.4)
    mixed = np.array([0.95] * 4 + [0.55] * 4)
    assert expected_calibration_error(mixed, np.array([1, 1, 1, 1, 1, 0, 0, 0])) == pytest.approx(
        (4 * 0.05 + 4 * 0.30) / 8)


def test_fit_threshold_accepts_the_most_items_that_keep_the_promise() -> None:
    # 100 items at 0.99 all right, 100 at 0.8 with 20 wrong, 100 at 0.5 half wrong
    confidence = np.r_[np.full(100, 0.99), np.full(100, 0.8), np.full(100, 0.5)]
    correct = np.r_[np.ones(100), np.r_[np.ones(80), np.zeros(20)], np.r_[np.ones(50), np.zeros(50)]].astype(bool)
    assert fit_threshold(confidence, correct, 0.95) == pytest.approx(0.99)  # 180/200 = 0.90 at 0.8: not enough
    assert fit_threshold(confidence, correct, 0.85, bound=False) == pytest.approx(0.8)  # 180/200 = 0.90
    assert fit_threshold(confidence, correct, 0.85, bound=True) == pytest.approx(0.8)  # lower bound ~0.86
    assert fit_threshold(confidence, correct, 0.999) is None  # 100/100 has lower bound 0.970


def test_cross_fitted_figures_are_measured_on_held_out_items() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, 3000)
    correct = rng.uniform(size=3000) < confidence  # perfectly calibrated
    labels = np.array(["a"] * 3000)
    result = cross_fitted(labels, confidence, correct, 0.9, folds=5, min_per_label=10_000, seed=0)
    # accepting confidence >= t gives precision (t + 1) / 2: 0.9 needs t = 0.8, the lower bound asks a bit more
    assert 0.8 < result["threshold"] < 0.9
    assert result["precision"] == pytest.approx((result["threshold"] + 1) / 2, abs=0.02)
    assert result["precision_lower"] == pytest.approx(0.9, abs=0.02)
    assert result["coverage"] == pytest.approx((1 - result["threshold"]) / 0.7, abs=0.03)
    assert result["accepted"] == round(result["coverage"] * 3000)


# ---- a constructed project: a CSV with a gold column, a labeler we control -------------------------------------

def _project(tmp_path: Path, n: int = 400, *, gate: dict | None = None) -> Path:
    rng = np.random.default_rng(1)
    gold = rng.choice(LABELS, n)
    pd.DataFrame({"id": [f"item-{i:04d}" for i in range(n)], "text": [f"text {i}" for i in range(n)],
                  "gold": gold, "truth": gold}).to_csv(tmp_path / "items.csv", index=False)
    config = {"name": "judge", "data": {"path": "items.csv"}, "fields": [{"name": "text"}],
              "questions": [{"name": "q", "kind": "label", "labels": {label: label for label in LABELS}}],
              "argilla": {"dataset": "judge", "workspace": "tests"}, "run_dir": str(tmp_path / "run"),
              "reference": {"gold_columns": {"q": "gold"}},
              "gate": gate or {"metric": "kappa", "min": 0.6, "target_precision": 0.95, "min_reference": 100},
              "calibration": {"target_precisions": [0.9], "bootstrap": 200}}
    path = tmp_path / "judge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _write_labels(config, quality: float, *, prompt_hash: str = "p1", reference_only: bool = False,
                  seed: int = 2) -> pd.DataFrame:
    """LLM-style labels: right with probability `quality`, confidence informative (high when right)."""
    rng = np.random.default_rng(seed)
    items = pd.read_csv(config.data.path, dtype=str)
    rows = []
    for item_id, gold in zip(items["id"], items["truth"]):  # the truth, also for items whose gold is hidden
        right = rng.uniform() < quality
        label = gold if right else rng.choice([x for x in LABELS if x != gold])
        confidence = float(rng.uniform(0.85, 1.0) if right else rng.uniform(0.34, 0.9))
        rest = (1 - confidence) / 2
        rows.append({"item_id": item_id, "question": "q", "label": label, "confidence": confidence,
                     "probabilities": json.dumps({x: (confidence if x == label else rest) for x in LABELS}),
                     "model": "scripted-llm", "prompt_hash": prompt_hash, "raw_output": "{}", "status": "ok",
                     "error": None, "run_id": "r", "labeled_at": "2026-01-01T00:00:00+00:00"})
    frame = pd.DataFrame(rows)
    config.run_path.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(config.run_path / "labels.parquet")
    return frame


def _hide_gold(config, keep: int) -> None:
    """Only the first `keep` items keep their gold label: the rest are unreviewed items the labeler must earn."""
    items = pd.read_csv(config.data.path, dtype=str)
    items.loc[keep:, "gold"] = None
    items.to_csv(config.data.path, index=False)


def test_reference_sources_are_counted(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path))
    _hide_gold(config, 300)
    reference = human_reference(config, "q")
    assert len(reference) == 300 and reference.counts() == {"gold-column": 300}
    assert len(reference.hash) == 16


def test_a_good_labeler_passes_and_its_history_is_append_only(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path))
    _write_labels(config, 0.97)
    result = calibrate(config, "llm")
    q = result["questions"]["q"]
    assert q["n"] == 400 and q["kappa"] > 0.9 and {t["target_precision"] for t in q["thresholds"]} == {0.9, 0.95}
    assert set(result) >= {"created", "reference", "questions"} and result["reference"]["n"] == 400
    assert {"count", "confidence", "accuracy"} <= set(q["reliability"][0])
    assert (config.run_path / "calibration.md").read_text().startswith("# Calibration")
    [decision] = run_gate(config, "llm")
    assert decision.decision == "pass", decision.reason
    first = (config.run_path / "gate_history.jsonl").read_text()
    run_gate(config, "llm")
    second = (config.run_path / "gate_history.jsonl").read_text()
    assert second.startswith(first) and len(second.splitlines()) == 2
    entry = json.loads(second.splitlines()[0])
    assert {"decision", "question", "metric", "value", "min", "threshold", "labeler", "time", "reason"} <= set(entry)


def test_a_weak_labeler_fails_the_gate_with_the_numbers_and_exit_7(tmp_path: Path) -> None:
    path = _project(tmp_path)
    config = load_config(path)
    _write_labels(config, 0.45)
    assert CliRunner().invoke(app, ["calibrate", str(path)]).exit_code == 0
    result = CliRunner().invoke(app, ["gate", str(path)])
    assert result.exit_code == GateClosedError.exit_code
    [entry] = history(config)
    assert entry.decision == "fail" and "kappa" in entry.reason and "below the minimum 0.6" in entry.reason
    assert "FAIL" in result.output


def test_calibrate_with_no_human_reference_says_so_and_exits_1(tmp_path: Path) -> None:
    """Issue 26.6: it exited 0 and printed "(0 items; )". Now one line names the question and the cause, as `gate`."""
    path = _project(tmp_path)
    config = load_config(path)
    _hide_gold(config, 0)
    _write_labels(config, 0.97)
    result = CliRunner().invoke(app, ["calibrate", str(path)])
    assert result.exit_code == 1, result.output
    flat = _flat(result.output)
    assert "q: no human reference" in flat and "0 items;" not in flat and "Traceback" not in result.output
    assert json.loads((config.run_path / "calibration.json").read_text())["questions"]["q"]["n"] == 0
    assert CliRunner().invoke(app, ["gate", str(path)]).exit_code == GateClosedError.exit_code  # and the gate refuses
    # the reference is there (items 0-199) but the labeler labeled none of it (only items 200-399): named too
    _project(tmp_path)
    _hide_gold(config, 200)
    labels = pd.read_parquet(config.run_path / "labels.parquet")
    labels[labels["item_id"] >= "item-0200"].to_parquet(config.run_path / "labels.parquet")
    result = CliRunner().invoke(app, ["calibrate", str(path)])
    assert result.exit_code == 1 and "labeled none of the 200 reference items" in _flat(result.output), result.output


def test_a_changed_prompt_invalidates_the_pass(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path))
    _write_labels(config, 0.97)
    calibrate(config, "llm")
    assert run_gate(config, "llm")[0].decision == "pass"
    identity = load_labeler(config, "llm", "q").identity
    assert gate_state(config, "q", identity).open
    _write_labels(config, 0.97, prompt_hash="p2")
    new = load_labeler(config, "llm", "q").identity
    state = gate_state(config, "q", new)
    assert not state.open and "labeler changed" in state.reason
    assert triage(config, "llm").counts["auto"] == 0


def test_routes_cover_every_item_once_and_the_audit_share_holds(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path, n=2000))
    _write_labels(config, 0.97)
    calibrate(config, "llm")
    run_gate(config, "llm")
    result = triage(config, "llm")
    routes = pd.read_parquet(config.run_path / "routes.parquet")
    assert sorted(routes["item_id"]) == sorted(pd.read_csv(config.data.path, dtype=str)["id"])
    assert routes["item_id"].is_unique
    eligible = routes[routes["route"].isin(["auto", "audit"])]
    share = (eligible["route"] == "audit").mean()
    assert len(eligible) > 500 and abs(share - 0.05) < 0.025
    assert (routes.loc[routes["route"] == "auto", "confidence"] >= routes.loc[routes["route"] == "auto",
                                                                               "threshold"]).all()
    assert result.counts["auto"] + result.counts["audit"] + result.counts["review"] == 2000
    again = triage(config, "llm")  # an item keeps its role
    assert again.routes.set_index("item_id")["route"].equals(result.routes.set_index("item_id")["route"])
    assert all(audited(i, 0.05, 0) for i in routes.loc[routes["route"] == "audit", "item_id"])


def test_disagreement_between_the_llm_and_the_student_goes_to_review(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path, n=600))
    llm = _write_labels(config, 0.97)
    calibrate(config, "llm")
    run_gate(config, "llm")
    student = llm.copy()
    flipped = student.index[:50]
    student.loc[flipped, "label"] = ["b" if x == "a" else "a" for x in student.loc[flipped, "label"]]
    student.assign(out_of_fold=True).to_parquet(config.run_path / "student_labels.parquet")
    routes = triage(config, "llm").routes.set_index("item_id")
    assert (routes.loc[student.loc[flipped, "item_id"], "route"] == "review").all()
    assert set(routes.loc[student.loc[flipped, "item_id"], "reason"]) == {"the LLM and the student disagree"}


def test_push_never_ships_an_unreviewed_label_without_an_open_gate(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path, n=600))
    _hide_gold(config, 300)  # 300 reference items, 300 items no human labeled
    _write_labels(config, 0.45)  # a bad labeler
    (config.run_path / "annotations.parquet").parent.mkdir(exist_ok=True)
    pd.DataFrame(columns=["record_id", "item_id", "question", "annotator", "value", "status",
                          "updated_at"]).to_parquet(config.run_path / "annotations.parquet")
    calibrate(config, "llm")
    assert run_gate(config, "llm")[0].decision == "fail"
    triage(config, "llm")
    curated = build_curated(config)
    rows = pd.concat(curated.splits.values()) if curated.splits else pd.DataFrame(columns=["q_source"])
    assert not set(rows["q_source"]) & {"auto-accepted", "llm-auto", "unverified"}
    assert curated.excluded["unreviewed"] == 300 and not curated.gates["q"]["open"]
    assert set(rows["q_source"]) == {"gold"} and len(rows) == 300  # the gold column's items are gold

    _write_labels(config, 0.98, prompt_hash="good")  # a good labeler: the gate opens, confident labels are accepted
    calibrate(config, "llm")
    [decision] = run_gate(config, "llm")
    assert decision.decision == "pass", decision.reason
    routes = triage(config, "llm").routes
    auto = set(routes.loc[routes["route"] == "auto", "item_id"])
    curated = build_curated(config)
    rows = pd.concat(curated.splits.values())
    accepted = rows[rows["q_source"] == "auto-accepted"]
    humans = set(human_reference(config, "q").labels)  # a human label always wins over the labeler's
    assert set(accepted["item_id"]) == auto - humans and len(auto - humans) > 50
    assert set(accepted["q_gate_id"]) == {decision.id}
    card_gate = curated.gates["q"]
    assert card_gate["open"] and card_gate["threshold"] == decision.threshold


def test_a_broken_promise_found_by_the_audit_closes_the_gate(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path, n=3000, gate={"metric": "kappa", "min": 0.6, "target_precision": 0.9,
                                                          "min_reference": 100}))
    _hide_gold(config, 1500)
    labels = _write_labels(config, 0.97)
    calibrate(config, "llm")
    assert run_gate(config, "llm")[0].decision == "pass"
    routes = triage(config, "llm").routes
    audit = routes[routes["route"] == "audit"]
    assert len(audit) >= 20
    # reviewers label the audited items: every label the labeler gave them is wrong
    rows = []
    for item_id, label in zip(audit["item_id"], audit["label"]):
        wrong = next(x for x in LABELS if x != label)
        rows.append({"record_id": item_id, "item_id": item_id, "question": "q", "annotator": "rev", "value": wrong,
                     "status": "submitted", "updated_at": pd.Timestamp("2026-01-02", tz="UTC")})
    pd.DataFrame(rows).to_parquet(config.run_path / "annotations.parquet")
    section = check_audit(config)
    figures = section["questions"]["q"]
    assert figures["audited"] == len(audit) and figures["error"] == 1.0 and "broken" in figures["verdict"]
    assert history(config)[-1].decision == "closed" and history(config)[-1].kind == "audit"
    assert triage(config, "llm").counts["auto"] == 0, "auto items go back to review"
    check_audit(config)
    assert sum(e.kind == "audit" for e in history(config)) == 1, "closed once"
    del labels


def test_drift_flags_a_deliberately_changed_prompt(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path, n=800))
    _write_labels(config, 0.97)
    calibrate(config, "llm")
    assert run_gate(config, "llm")[0].decision == "pass"
    [same] = run_drift(config)
    assert same.decision == "ok" and same.details["drift"] == "OK"
    _write_labels(config, 0.6, prompt_hash="a-worse-prompt", seed=5)
    [drifted] = run_drift(config)
    assert drifted.decision == "closed" and drifted.reason.startswith("DRIFT") and "kappa fell" in drifted.reason
    assert drifted.details["before"]["kappa"] > drifted.details["after"]["kappa"]


def test_drift_needs_a_passing_gate(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path))
    _write_labels(config, 0.5)
    with pytest.raises(RunFileError, match="no passing gate yet"):
        run_drift(config)


# ---- the reference's sources, what calibration never scores, per-label thresholds, ratings ----------------------

def _annotations(config, votes: list[tuple[str, str, str]]) -> None:
    """Synced responses as `curate sync` writes them: (item, annotator, value), all submitted."""
    rows = [{"record_id": item_id, "item_id": item_id, "question": "q", "annotator": annotator, "value": value,
             "status": "submitted", "updated_at": pd.Timestamp("2026-01-02", tz="UTC")}
            for item_id, annotator, value in votes]
    config.run_path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["record_id", "item_id", "question", "annotator", "value", "status",
                                "updated_at"]).to_parquet(config.run_path / "annotations.parquet")


def _other(label: str) -> str:
    return next(x for x in LABELS if x != label)


def _gold_ids_project(tmp_path: Path, gold: int, min_votes: int, **kwargs) -> tuple[Path, list[str], dict[str, str]]:
    """A project with no gold column: the first `gold` items listed in `hub.gold_ids_path`, the rest by consensus
    of synced votes. Returns (config path, item ids, true labels)."""
    path = _project(tmp_path, **kwargs)
    raw = yaml.safe_load(path.read_text())
    raw["reference"] = {"min_votes": min_votes}
    raw["hub"] = {"gold_ids_path": "gold.txt"}
    path.write_text(yaml.safe_dump(raw))
    items = pd.read_csv(tmp_path / "items.csv", dtype=str)
    ids, truth = items["id"].tolist(), dict(zip(items["id"], items["truth"]))
    (tmp_path / "gold.txt").write_text("\n".join(ids[:gold]) + "\n")
    return path, ids, truth


def test_reference_from_gold_ids_and_consensus_counts_each_source(tmp_path: Path) -> None:
    path, ids, truth = _gold_ids_project(tmp_path, 10, 2)  # no gold column: gold ids + consensus of synced votes
    config = load_config(path)
    votes = [(i, "ann1", truth[i]) for i in ids[:10]]  # gold: one vote is enough
    votes += [(i, a, truth[i]) for i in ids[10:30] for a in ("ann1", "ann2")]  # two humans agree
    votes += [(i, a, v) for i in ids[30:40] for a, v in (("ann1", truth[i]), ("ann2", _other(truth[i])))]  # a tie
    votes += [(i, "ann1", truth[i]) for i in ids[40:50]]  # one vote: below min_votes
    votes += [(i, a, v) for i in ids[50:55]
              for a, v in (("ann1", truth[i]), ("ann2", truth[i]), ("ann3", _other(truth[i])))]  # 2 of 3
    _annotations(config, votes)
    reference = human_reference(config, "q")
    assert reference.counts() == {"consensus": 25, "gold": 10}
    assert all(reference.labels[i] == truth[i] for i in reference.labels)
    assert not set(reference.labels) & set(ids[30:50])
    _write_labels(config, 0.97)
    result = calibrate(config, "llm")
    assert result["reference"]["sources"] == {"consensus": 25, "gold": 10} and result["reference"]["n"] == 35
    assert result["questions"]["q"]["n"] == 35
    assert "consensus 25" in (config.run_path / "calibration.md").read_text()


def test_calibration_on_the_gold_set_alone_when_the_config_says_so(tmp_path: Path) -> None:
    """`calibration.reference_sources: [gold]`: consensus items (e.g. chosen by active learning, hard ones where
    the labeler is wrong) still count as reference but do not measure the labeler; the gate sees the gold n."""
    path, ids, truth = _gold_ids_project(tmp_path, 200, 1, gate={"metric": "kappa", "min": 0.6,
                                                                  "target_precision": 0.9, "min_reference": 50})
    config = load_config(path)
    labels = _write_labels(config, 0.97).set_index("item_id")["label"]
    wrong = [i for i in ids[200:] if labels[i] == truth[i]][:150]  # humans "disagree" on 150 consensus items
    _annotations(config, [(i, "ann1", truth[i]) for i in ids[:200]] + [(i, "ann1", _other(labels[i])) for i in wrong])
    everything = calibrate(config, "llm")["questions"]["q"]
    assert everything["n"] == 350 and everything["kappa"] < 0.6
    gold_only = load_config(path).model_copy(update={"calibration": config.calibration.model_copy(
        update={"reference_sources": ["gold"]})})
    result = calibrate(gold_only, "llm")
    q = result["questions"]["q"]
    assert q["n"] == 200 and q["kappa"] > 0.9 and q["reference"]["measured_on"] == ["gold"]
    assert result["reference"]["sources"] == {"consensus": 150, "gold": 200}  # the reference itself is unchanged
    [decision] = run_gate(gold_only, "llm")
    assert decision.decision == "pass" and decision.n == 200


def test_calibration_never_scores_items_the_llm_was_prompted_on(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path))
    _write_labels(config, 0.97)
    ids = pd.read_csv(config.data.path, dtype=str)["id"].tolist()
    (config.run_path / "prompt_examples.json").write_text(json.dumps(
        {"q": {"p1": {"few_shot_path": str(config.data.path), "item_ids": ids[:30]}}}))
    q = calibrate(config, "llm")["questions"]["q"]
    assert q["n"] == 370 and q["reference"]["excluded_prompted_or_trained"] == 30
    scored = pd.read_parquet(config.run_path / "calibration_items.parquet")
    assert len(scored) == 370 and not set(scored["item_id"]) & set(ids[:30])


def test_a_class_that_cannot_keep_the_promise_gets_its_own_threshold() -> None:
    """'c' is wrong 30% of the time at every confidence: with enough items per label it is never accepted, and the
    held-out precision rises above what the global threshold alone gives."""
    rng = np.random.default_rng(0)
    n = 4000
    labels = rng.choice(["a", "b", "c"], n, p=[0.45, 0.45, 0.10])
    confidence = rng.uniform(0.5, 1.0, n)
    correct = np.where(labels == "c", rng.uniform(size=n) < 0.7, rng.uniform(size=n) < 0.995)
    global_only = cross_fitted(labels, confidence, correct, 0.95, folds=5, min_per_label=100_000, seed=0)
    per_label = cross_fitted(labels, confidence, correct, 0.95, folds=5, min_per_label=100, seed=0)
    assert global_only["per_label"] == {} and global_only["threshold"] is not None
    assert per_label["per_label"]["c"] is None and set(per_label["per_label"]) == {"a", "b", "c"}
    assert all(per_label["per_label"][x] >= per_label["threshold"] for x in ("a", "b"))
    assert per_label["precision"] > 0.99 > global_only["precision"]
    assert per_label["coverage"] < global_only["coverage"] - 0.05  # the c items are no longer accepted
    from workspaces.judge.calibrate import Policy

    policy = Policy(per_label["threshold"], per_label["per_label"])
    assert not policy.accepts(np.array(["c"] * 5), np.full(5, 0.999)).any()
    assert policy.accepts(np.array(["a"]), np.array([0.999]))[0]


def test_rating_questions_get_mae_and_mse(tmp_path: Path) -> None:
    n = 200
    gold = [1 + i % 5 for i in range(n)]
    pd.DataFrame({"id": [f"r-{i:03d}" for i in range(n)], "text": ["t"] * n, "gold": gold}).to_csv(
        tmp_path / "items.csv", index=False)
    config_path = tmp_path / "rating.yaml"
    config_path.write_text(yaml.safe_dump({
        "name": "rating", "data": {"path": "items.csv"}, "fields": [{"name": "text"}],
        "questions": [{"name": "r", "kind": "rating", "values": [1, 2, 3, 4, 5]}],
        "argilla": {"dataset": "rating", "workspace": "tests"}, "run_dir": str(tmp_path / "run"),
        "reference": {"gold_columns": {"r": "gold"}}}))
    config = load_config(config_path)
    config.run_path.mkdir(parents=True)
    guess = [g if i % 4 else (g + 2 if g <= 3 else g - 2) for i, g in enumerate(gold)]  # every 4th item off by 2
    pd.DataFrame({"item_id": [f"r-{i:03d}" for i in range(n)], "question": "r", "label": [str(v) for v in guess],
                  "confidence": 0.9, "probabilities": None, "model": "m", "prompt_hash": "p", "raw_output": "{}",
                  "status": "ok", "error": None}).to_parquet(config.run_path / "labels.parquet")
    q = calibrate(config, "llm")["questions"]["r"]
    assert q["n"] == n and q["accuracy"] == pytest.approx(0.75)
    assert q["mae"] == pytest.approx(0.5) and q["mse"] == pytest.approx(1.0)


# ---- the CLI: triage under a failed gate, drift when the labeler changed ---------------------------------------

def _flat(output: str) -> str:
    return " ".join(output.split())


def test_triage_under_a_failed_gate_routes_everything_to_review_and_exits_0(tmp_path: Path) -> None:
    path = _project(tmp_path)
    config = load_config(path)
    _write_labels(config, 0.45)
    result = CliRunner().invoke(app, ["triage", str(path)])
    assert result.exit_code == 0, result.output
    assert "gate closed: every item goes to human review" in _flat(result.output) and "FAIL" in result.output
    routes = pd.read_parquet(config.run_path / "routes.parquet")
    assert set(routes["route"]) == {"review"} and len(routes) == 400
    assert [e.decision for e in history(config)] == ["fail"]


def test_triage_runs_drift_first_when_the_labeler_changed(tmp_path: Path) -> None:
    path = _project(tmp_path, n=800)
    config = load_config(path)
    _write_labels(config, 0.97)
    calibrate(config, "llm")
    assert run_gate(config, "llm")[0].decision == "pass"
    _write_labels(config, 0.6, prompt_hash="a-worse-prompt", seed=5)
    result = CliRunner().invoke(app, ["triage", str(path)])
    assert result.exit_code == 0, result.output
    kinds = [(e.kind, e.decision) for e in history(config)]
    assert kinds == [("gate", "pass"), ("drift", "closed"), ("gate", "fail")], kinds
    assert "drift q: DRIFT" in _flat(result.output)
    assert triage(config, "llm").counts["auto"] == 0


# ---- the ensemble, unverified rows, and the card -----------------------------------------------------------------

def test_the_ensemble_averages_probabilities_and_sends_disagreements_to_review(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path, n=600))
    llm = _write_labels(config, 0.97)
    student = llm.copy()
    flipped = student.index[:40]
    student.loc[flipped, "label"] = [_other(x) for x in student.loc[flipped, "label"]]
    student["probabilities"] = [json.dumps({x: (0.9 if x == label else 0.05) for x in LABELS})
                                for label in student["label"]]
    student["confidence"] = 0.9
    student.assign(model="student:logreg", prompt_hash="s1", out_of_fold=True).to_parquet(
        config.run_path / "student_labels.parquet")
    ensemble = load_labeler(config, "ensemble", "q")
    assert ensemble.identity["backend"] == "ensemble" and ensemble.identity["student"]["prompt_hash"] == "s1"
    rows = ensemble.labels.set_index("item_id")
    for n in (0, 100):  # a disagreement and an agreement: the label is the argmax of the averaged probabilities
        item_id = llm.at[n, "item_id"]
        a, b = json.loads(llm.at[n, "probabilities"]), json.loads(student.at[n, "probabilities"])
        average = {x: (a[x] + b[x]) / 2 for x in LABELS}
        assert rows.at[item_id, "probabilities"] == pytest.approx(average)
        assert rows.at[item_id, "confidence"] == pytest.approx(max(average.values()))
        assert bool(rows.at[item_id, "agree"]) == (n >= 40)
    calibrate(config, "ensemble")
    run_gate(config, "ensemble")
    routes = triage(config, "ensemble").routes.set_index("item_id")
    disagree = llm.loc[flipped, "item_id"]
    assert (routes.loc[disagree, "route"] == "review").all()
    assert set(routes.loc[disagree, "reason"]) == {"the LLM and the student disagree"}


def test_unverified_labels_are_kept_only_when_the_config_asks(tmp_path: Path) -> None:
    path = _project(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["triage"] = {"keep_unverified": True}
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    _hide_gold(config, 200)
    _write_labels(config, 0.45)
    _annotations(config, [])
    calibrate(config, "llm")
    assert run_gate(config, "llm")[0].decision == "fail"
    triage(config, "llm")
    rows = pd.concat(build_curated(config).splits.values())
    assert (rows["q_source"] == "unverified").sum() == 200 and "auto-accepted" not in set(rows["q_source"])
    assert rows.loc[rows["q_source"] == "unverified", "q_gate_id"].isna().all()


def test_the_card_states_the_gate_threshold_promise_coverage_and_audit(tmp_path: Path) -> None:
    from workspaces.cli.agreement import report_with_sections
    from workspaces.curated.card import render_card

    config = load_config(_project(tmp_path, n=3000, gate={"metric": "kappa", "min": 0.6, "target_precision": 0.9,
                                                          "min_reference": 100}))
    _hide_gold(config, 1500)
    _write_labels(config, 0.97)
    calibrate(config, "llm")
    [decision] = run_gate(config, "llm")
    routes = triage(config, "llm").routes
    audit = routes[routes["route"] == "audit"]
    _annotations(config, [(i, "rev", label) for i, label in zip(audit["item_id"], audit["label"])])  # all right
    report, _ = report_with_sections(config, bootstrap=0)
    figures = report.sections["audit"]["questions"]["q"]
    assert figures["audited"] == len(audit) and figures["errors"] == 0 and figures["verdict"] == \
        "consistent with the promise"
    assert "Audit of auto-accepted labels" in (config.run_path / "report.md").read_text()
    curated = build_curated(config)
    card = render_card(config, curated, report)
    gate_section = card.split("## Gate: labels no human gave", 1)[1].split("\n## ", 1)[0]
    accepted = sum(counts.get("auto-accepted", 0) for counts in curated.counts_by_source("q").values())
    assert accepted > 500 and "**open**" in gate_section and f"| {accepted} |" in gate_section
    assert f"{decision.threshold:.3f}" in gate_section and "0.900" in gate_section
    assert f"{decision.coverage:.3f}" in gate_section and f"passed ({decision.id}" in gate_section
    assert f"{len(audit)} audited item(s) reviewed, observed error 0.000" in gate_section


# ---- a promise per label (gate.targets) ------------------------------------------------------------------------

def _write_split_labels(config) -> None:
    """Right and sure on every `a` item; a coin flip between `b` and `c` on the others (kappa stays low)."""
    rng = np.random.default_rng(5)
    items = pd.read_csv(config.data.path, dtype=str)
    rows = []
    for item_id, gold in zip(items["id"], items["truth"]):
        label = "a" if gold == "a" else str(rng.choice(["b", "c"]))
        confidence = 0.99 if label == "a" else float(rng.uniform(0.5, 0.99))
        rest = (1 - confidence) / 2
        rows.append({"item_id": item_id, "question": "q", "label": label, "confidence": confidence,
                     "probabilities": json.dumps({x: (confidence if x == label else rest) for x in LABELS}),
                     "model": "scripted-llm", "prompt_hash": "p1", "raw_output": "{}", "status": "ok",
                     "error": None, "run_id": "r", "labeled_at": "2026-01-01T00:00:00+00:00"})
    config.run_path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(config.run_path / "labels.parquet")


def test_per_label_targets_open_the_gate_for_the_label_that_keeps_its_promise(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path, n=600, gate={"target_precision": 0.95, "min_reference": 100,
                                                        "targets": {"q": {"a": 0.95, "b": 0.9}}}))
    _write_split_labels(config)
    q = calibrate(config, "llm")["questions"]["q"]
    assert q["kappa"] < 0.6  # the old fixed floor would have refused this labeler outright
    promises = q["label_promises"]
    assert set(promises) == {"a", "b"} and "c" not in promises
    assert promises["a"]["threshold"] is not None and promises["a"]["precision"] == 1.0
    assert promises["a"]["precision_lower"] >= 0.95 and promises["a"]["label_coverage"] > 0.7
    assert promises["b"]["threshold"] is None  # a coin flip never reaches 0.9
    [decision] = run_gate(config, "llm")
    assert decision.decision == "pass" and decision.per_label == {"a": promises["a"]["threshold"], "b": None}
    assert decision.target_precision == 0.95 and "b: no threshold keeps precision 0.9" in decision.reason
    routes = triage(config, "llm").routes
    accepted = routes[routes["route"].isin(["auto", "audit"])]
    assert len(accepted) > 100 and set(accepted["label"]) == {"a"}  # b and c stay with the humans
    assert (routes.loc[routes["label"] != "a", "route"] == "review").all()


def test_the_agreement_floor_is_an_explicit_guard(tmp_path: Path) -> None:
    config = load_config(_project(tmp_path, n=600, gate={"metric": "kappa", "min": 0.6, "min_reference": 100,
                                                        "targets": {"q": {"a": 0.95}}}))
    _write_split_labels(config)
    calibrate(config, "llm")
    [decision] = run_gate(config, "llm")
    assert decision.decision == "fail" and "below the minimum 0.6 (the gate.min guard)" in decision.reason
    assert decision.per_label == {"a": None}


def test_a_target_for_an_unknown_label_or_question_is_refused_naming_the_key(tmp_path: Path) -> None:
    from workspaces.errors import ConfigError

    with pytest.raises(ConfigError, match=r"gate\.targets\.q\.zzz: no such label of q"):
        load_config(_project(tmp_path, gate={"targets": {"q": {"zzz": 0.95}}}))
    with pytest.raises(ConfigError, match=r"gate\.targets\.nope: no such question"):
        load_config(_project(tmp_path, gate={"targets": {"nope": {"a": 0.95}}}))
    with pytest.raises(ConfigError, match=r"gate\.targets\.q\.a: 1\.5 is not a precision"):
        load_config(_project(tmp_path, gate={"targets": {"q": {"a": 1.5}}}))
