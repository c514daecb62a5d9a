"""Calibration that spends its evidence well: class-conditional (Mondrian) thresholds with a shared fallback, the
audit's sequential (anytime-valid) test, audit items as calibration evidence, and the promise chosen for a final
accuracy. Constructed cases with known answers; the project helpers are test_judge's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_judge import LABELS, _hide_gold, _project, _write_labels
from workspaces.config import load_config
from workspaces.judge import calibrate, check_audit, history, run_gate
from workspaces.judge.calibrate import (Policy, cross_fitted, promise_for_final_accuracy, sequential_error_upper,
                                        sequential_evidence, wilson_interval)
from workspaces.review.triage import triage


# ---- class-conditional thresholds --------------------------------------------------------------------------------

def _two_kinds_of_class(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """'easy' is right at every confidence, 'hard' only near 1, 'sparse' has 30 items (right 99% of the time)."""
    rng = np.random.default_rng(seed)
    labels = np.array(["easy"] * 1500 + ["hard"] * 1500 + ["sparse"] * 30)
    confidence = rng.uniform(0.5, 1.0, len(labels))
    p_right = np.where(labels == "easy", 0.998, np.where(labels == "hard", 0.5 + 0.5 * (confidence - 0.5) / 0.5, 0.99))
    return labels, confidence, rng.uniform(size=len(labels)) < p_right


def test_a_class_with_its_own_evidence_gets_its_own_threshold_and_a_sparse_class_falls_back() -> None:
    labels, confidence, correct = _two_kinds_of_class()
    shared = cross_fitted(labels, confidence, correct, 0.95, folds=5, min_per_label=100_000, seed=0)
    mondrian = cross_fitted(labels, confidence, correct, 0.95, folds=5, min_per_label=100_000, seed=0,
                            per_class_min=200)
    assert set(mondrian["per_class"]) == {"easy", "hard"}, "only classes with 200 items get their own"
    assert "sparse" not in mondrian["per_label"], "the sparse class uses the shared threshold"
    assert mondrian["threshold"] == shared["threshold"]
    assert mondrian["per_label"]["easy"] < min(0.65, shared["threshold"] - 0.1), "the easy class is accepted lower"
    assert mondrian["per_label"]["hard"] > shared["threshold"] + 0.05, "the hard class needs a higher cut"
    # the promise is on the pooled held-out accepted items, with one exact bound
    assert mondrian["precision_lower"] >= 0.95 and mondrian["precision"] > shared["precision"]
    assert mondrian["coverage"] > shared["coverage"] + 0.05
    policy = Policy(mondrian["threshold"], mondrian["per_label"])
    cut = mondrian["threshold"]
    assert policy.accepts(np.array(["sparse", "sparse"]), np.array([cut, cut - 1e-6])).tolist() == [True, False]


def test_per_class_thresholds_are_off_by_default_and_change_nothing() -> None:
    labels, confidence, correct = _two_kinds_of_class(seed=1)
    before = cross_fitted(labels, confidence, correct, 0.95, folds=5, min_per_label=100, seed=0)
    after = cross_fitted(labels, confidence, correct, 0.95, folds=5, min_per_label=100, seed=0, per_class_min=None)
    assert before == after and "per_class" not in before


def test_a_class_whose_own_items_cannot_certify_a_threshold_uses_the_shared_one() -> None:
    """200 items all right give a Clopper-Pearson lower bound of 0.985 < 0.99: not enough for a cut of its own."""
    rng = np.random.default_rng(3)
    labels = np.array(["a"] * 3000 + ["b"] * 200)
    confidence = rng.uniform(0.5, 1.0, len(labels))
    correct = np.where(labels == "a", rng.uniform(size=len(labels)) < 0.999, True)
    fitted = Policy.fit(labels, confidence, correct, 0.99, min_per_label=100_000, per_class_min=150)
    assert fitted.own == {"a"} and "b" not in fitted.per_label and fitted.threshold is not None


# ---- the audit's sequential test ---------------------------------------------------------------------------------

def test_the_sequential_audit_keeps_its_level_however_often_it_is_checked() -> None:
    """A kept promise (error exactly the promised 5%), audit labels arriving in 25 rounds of 40, checked after each:
    the betting test closes the gate in at most 5% of the runs; a fixed-n Wilson interval checked every round does
    not keep its level (why the audit is sequential). The anytime-valid upper bound covers the truth at every look."""
    rng = np.random.default_rng(7)
    promised, runs, rounds, per_round = 0.05, 400, 25, 40
    sequential_closed = wilson_closed = not_covered = 0
    for _ in range(runs):
        wrong = np.cumsum(rng.uniform(size=rounds * per_round) < promised)
        looks = [(int(wrong[k * per_round - 1]), k * per_round) for k in range(1, rounds + 1)]
        sequential_closed += any(sequential_evidence(e, n, promised) >= 20 for e, n in looks)
        wilson_closed += any(wilson_interval(e, n)[0] > promised for e, n in looks)
        not_covered += any(sequential_error_upper(e, n) < promised for e, n in looks)
    assert sequential_closed / runs <= 0.05
    assert not_covered / runs <= 0.05
    assert wilson_closed / runs > 0.05


def test_the_sequential_audit_finds_a_broken_promise() -> None:
    assert sequential_evidence(30, 300, 0.05) >= 20  # 10% wrong against a 5% promise, 300 items
    assert sequential_evidence(16, 300, 0.05) < 20  # 5.3%: consistent
    assert sequential_error_upper(16, 554) == pytest.approx(0.054, abs=0.002)
    assert sequential_error_upper(0, 0) == 1.0 and sequential_error_upper(5, 5) == 1.0


def _annotate(config, answers: dict[str, str], day: str = "2026-01-02") -> None:
    pd.DataFrame({"record_id": list(answers), "item_id": list(answers), "question": "q", "annotator": "rev",
                  "value": list(answers.values()), "status": "submitted",
                  "updated_at": pd.Timestamp(day, tz="UTC")}).to_parquet(config.run_path / "annotations.parquet")


def test_audit_labels_arriving_over_rounds_close_the_gate_only_on_evidence(tmp_path: Path) -> None:
    """The labeler's audited labels are 40% wrong against a promised 10%: the first sync (5 audited, 2 wrong) is not
    yet evidence and the gate stays open; once the rest arrive the audit closes it."""
    config = load_config(_project(tmp_path, n=3000, gate={"metric": "kappa", "min": 0.6, "target_precision": 0.9,
                                                          "min_reference": 100}))
    _hide_gold(config, 1500)
    _write_labels(config, 0.97)
    calibrate(config, "llm")
    assert run_gate(config, "llm")[0].decision == "pass"
    audit = triage(config, "llm").routes.query("route == 'audit'")
    assert len(audit) >= 40
    answers = {item: (next(x for x in LABELS if x != label) if n % 5 < 2 else label)
               for n, (item, label) in enumerate(zip(audit["item_id"], audit["label"]))}
    first = dict(list(answers.items())[:5])
    _annotate(config, first)
    figures = check_audit(config)["questions"]["q"]
    assert figures["audited"] == 5 and figures["errors"] == 2 and figures["evidence"] < 20
    assert "consistent" in figures["verdict"] and history(config)[-1].decision == "pass"
    _annotate(config, answers, day="2026-01-03")
    figures = check_audit(config)["questions"]["q"]
    assert figures["audited"] == len(audit) and figures["evidence"] >= 20 and "broken" in figures["verdict"]
    assert history(config)[-1].kind == "audit" and history(config)[-1].decision == "closed"
    assert triage(config, "llm").counts["auto"] == 0


def test_audit_items_come_back_as_evidence_for_the_same_labeler(tmp_path: Path) -> None:
    """With `calibration.audit_evidence`, the audited items of the labeler in force (all right here) are pooled with
    its held-out accepted reference items, bounded by the confidence sequence, and the next gate uses that bound."""
    path = _project(tmp_path, n=3000, gate={"metric": "kappa", "min": 0.6, "target_precision": 0.9,
                                            "min_reference": 100})
    config = load_config(path)
    _hide_gold(config, 1500)
    _write_labels(config, 0.97)
    calibrate(config, "llm")
    first = run_gate(config, "llm")[0]
    audit = triage(config, "llm").routes.query("route == 'audit'")
    _annotate(config, dict(zip(audit["item_id"], audit["label"])))
    with_audit = config.model_copy(update={"calibration": config.calibration.model_copy(
        update={"audit_evidence": True})})
    block = next(t for t in calibrate(with_audit, "llm")["questions"]["q"]["thresholds"]
                 if t["target_precision"] == 0.9)
    evidence = block["audit"]
    assert 0 < evidence["audited"] <= len(audit) and evidence["audited_errors"] == 0
    assert evidence["pooled"] == block["accepted"] + evidence["audited"]
    expected = 1 - sequential_error_upper(evidence["pooled_errors"], evidence["pooled"])
    assert evidence["precision_lower"] == pytest.approx(expected)
    decision = run_gate(with_audit, "llm")[0]
    assert decision.decision == "pass" and decision.precision_lower == pytest.approx(expected)
    assert decision.details["audit_evidence"]["audited"] == evidence["audited"]
    assert first.precision_lower != decision.precision_lower
    # off (the default): no audit evidence, the same figures as before
    plain = next(t for t in calibrate(config, "llm")["questions"]["q"]["thresholds"] if t["target_precision"] == 0.9)
    assert "audit" not in plain and plain["precision_lower"] == block["precision_lower"]


# ---- the promise for a final accuracy ----------------------------------------------------------------------------

def test_the_promise_keeps_the_final_accuracy_whatever_share_is_accepted() -> None:
    items, humans, audit = 13_083, 1_600, 0.05
    promise = promise_for_final_accuracy(0.98, items, humans, audit)
    assert promise == pytest.approx(1 - 0.02 * items / ((items - humans) * 0.95))
    most_auto = (items - humans) * (1 - audit)
    for auto in (most_auto, most_auto / 2):  # humans right, auto labels at exactly the promise
        assert 1 - (1 - promise) * auto / items >= 0.98 - 1e-12
    assert promise_for_final_accuracy(0.98, items, 0, 0.0) == pytest.approx(0.98)


# ---- no held-back label leaks into calibration ------------------------------------------------------------------

def test_calibration_measures_only_items_humans_labeled(tmp_path: Path) -> None:
    """The data's `truth` column holds every label but is no reference: calibration (and so every threshold) sees
    only the 600 items whose gold is visible, never the held-back ones."""
    config = load_config(_project(tmp_path, n=1500))
    _hide_gold(config, 600)
    _write_labels(config, 0.9)
    q = calibrate(config, "llm")["questions"]["q"]
    measured = pd.read_parquet(config.run_path / "calibration_items.parquet")["item_id"]
    visible = set(pd.read_csv(config.data.path, dtype=str).dropna(subset=["gold"])["id"])
    assert q["n"] == 600 and set(measured) == visible
