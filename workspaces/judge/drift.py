"""`curate drift`: has the labeler moved since its last passing calibration? The gold set is the drift anchor.

Re-scores the labels on disk on the reference items of the last passing gate (`gate_baseline.parquet`, the same items
and reference labels) and compares with the scores at the pass: Cohen's kappa, ECE and per-class F1 before and after,
each with a paired bootstrap 95% interval of the difference. DRIFT when kappa or a class's F1 dropped, or ECE rose,
with an interval that excludes no change, or when the labeler can no longer be scored on the anchor; a DRIFT line
closes the pass in the gate history, an OK line records the check. Triage runs it when the labeler identity changed.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Optional

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score, f1_score

from ..config import ProjectConfig
from ..errors import RunFileError
from ..rundir import GATE_BASELINE, read_table
from ..shapes import shape_of
from .calibrate import expected_calibration_error, labeler_questions
from .gate import GateDecision, append_decision, gate_state, history
from .labeler import load_labeler

__all__ = ["run_drift"]


def _metrics(reference: np.ndarray, labels: np.ndarray, confidence: np.ndarray, classes: list[str]) -> dict[str, Any]:
    correct = reference == labels
    kappa = cohen_kappa_score(reference, labels, labels=classes) if len(reference) else float("nan")
    f1 = f1_score(reference, labels, labels=classes, average=None, zero_division=0) if len(reference) else []
    return {"kappa": None if np.isnan(kappa) else float(kappa),
            "ece": expected_calibration_error(confidence, correct),
            "f1": {c: float(v) for c, v in zip(classes, f1)}}


def _bootstrap(before: pd.DataFrame, after: pd.DataFrame, classes: list[str], resamples: int, seed: int
               ) -> dict[str, Any]:
    """Paired bootstrap of after - before over the anchor items: 95% intervals for kappa, ECE and each class's F1."""
    rng = np.random.default_rng(seed)
    n = len(before)
    draws: dict[str, list[float]] = {"kappa": [], "ece": []}
    f1_draws: dict[str, list[float]] = {c: [] for c in classes}
    ref = before["reference"].astype(str).to_numpy()
    b_lab, a_lab = before["label"].astype(str).to_numpy(), after["label"].astype(str).to_numpy()
    b_conf, a_conf = before["confidence"].astype(float).to_numpy(), after["confidence"].astype(float).to_numpy()
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        mb = _metrics(ref[idx], b_lab[idx], b_conf[idx], classes)
        ma = _metrics(ref[idx], a_lab[idx], a_conf[idx], classes)
        if mb["kappa"] is not None and ma["kappa"] is not None:
            draws["kappa"].append(ma["kappa"] - mb["kappa"])
        if mb["ece"] is not None and ma["ece"] is not None:
            draws["ece"].append(ma["ece"] - mb["ece"])
        for c in classes:
            f1_draws[c].append(ma["f1"][c] - mb["f1"][c])

    def interval(values: list[float]) -> Optional[list[float]]:
        return None if not values else [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]

    return {"kappa": interval(draws["kappa"]), "ece": interval(draws["ece"]),
            "f1": {c: interval(v) for c, v in f1_draws.items()}}


def run_drift(config: ProjectConfig) -> list[GateDecision]:
    """Compare the labels on disk with the last passing calibration, per question; append DRIFT / OK lines.

    Raises:
        RunFileError: no gate has passed yet (nothing to compare with).
    """
    baseline = read_table(config.run_path, GATE_BASELINE, required=False)
    if baseline is None or baseline.empty:
        raise RunFileError(f"{GATE_BASELINE.path(config.run_path)}: no passing gate yet, so no anchor to compare with; "
                           "run `curate calibrate` and `curate gate` first")
    passes = {e.question: e for e in history(config) if e.decision == "pass"}
    decisions = []
    for question in labeler_questions(config):
        before = baseline[baseline["question"] == question].set_index("item_id")
        passed = passes.get(question)
        if before.empty or passed is None:
            continue
        labels = load_labeler(config, passed.labeler_kind or config.triage.labeler, question)
        current = labels.labels.set_index("item_id")
        common = [i for i in before.index if i in current.index]
        classes = [str(v) for v in config.question(question).allowed_values]
        after = before.loc[common, ["reference"]].assign(label=current.loc[common, "label"].astype(str),
                                                         confidence=current.loc[common, "confidence"].astype(float))
        before = before.loc[common]
        if not shape_of(config.question(question)).single_choice:  # label sets: each set seen is a class (exact-set)
            classes = sorted({*before["reference"].astype(str), *before["label"].astype(str), *after["label"]})
        ref = before["reference"].astype(str).to_numpy()
        m_before = _metrics(ref, before["label"].astype(str).to_numpy(), before["confidence"].to_numpy(float), classes)
        m_after = _metrics(ref, after["label"].to_numpy(), after["confidence"].to_numpy(float), classes)
        ci = _bootstrap(before, after, classes, config.calibration.bootstrap, config.calibration.seed) \
            if len(common) >= 2 and config.calibration.bootstrap else {"kappa": None, "ece": None, "f1": {}}
        changed = labels.identity_key != passed.identity_key
        reasons = []
        if len(common) < len(baseline[baseline["question"] == question]) / 2:
            reasons.append(f"only {len(common)} of the anchor items still have a label")
        if ci["kappa"] and ci["kappa"][1] < 0:
            reasons.append(f"kappa fell {m_before['kappa']:.3f} -> {m_after['kappa']:.3f} (95% CI of the change "
                           f"[{ci['kappa'][0]:.3f}, {ci['kappa'][1]:.3f}])")
        if ci["ece"] and ci["ece"][0] > 0:
            reasons.append(f"ECE rose {m_before['ece']:.3f} -> {m_after['ece']:.3f}")
        fallen = [c for c, interval in (ci["f1"] or {}).items() if interval and interval[1] < 0]
        if fallen:
            reasons.append("F1 fell for " + ", ".join(fallen[:5]) + ("..." if len(fallen) > 5 else ""))
        drift = bool(reasons)
        note = " (the labeler changed since the pass: " + ("new version" if changed else "same version") + ")"
        decision = GateDecision(
            kind="drift", decision="closed" if drift else "ok", question=question, labeler=passed.labeler,
            labeler_kind=passed.labeler_kind, n=len(common), metric="kappa", value=m_after["kappa"],
            reason=("DRIFT: " + "; ".join(reasons) if drift else "OK: no significant change on the anchor") + note,
            details={"drift": "DRIFT" if drift else "OK", "before": m_before, "after": m_after, "ci": ci,
                     "current_labeler": json.loads(labels.identity_key), "pass_id": passed.id})
        decisions.append(append_decision(config, decision))
        if drift and changed:  # also close the pass of the new version, should one exist
            state = gate_state(config, question, labels.identity)
            if state.open:
                append_decision(config, decision.model_copy(update={"id": uuid.uuid4().hex[:12],
                                                                     "labeler": labels.identity}))
    return decisions
