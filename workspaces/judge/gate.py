"""The gate: may a labeler's labels be accepted without human review? An append-only history of every decision.

Config `gate: {target_precision: 0.95, min_reference: 100}`. Per question, the gate decides on its promise: it passes
only when the calibration of the *current* labeler (same backend, model, prompt and label set as the labels on disk)
is on at least `min_reference` reference items AND the threshold fitted for `target_precision` has a cross-fitted
held-out precision whose 95% lower bound is at or above it. With `gate.targets` (`{is_abusive: {"no": 0.98,
"yes": 0.95}}`) each named label opens on its own promise, and only the labels that opened are accepted. The
agreement metric (`metric`, kappa by default) is always recorded; it vetoes only when the config sets the explicit
guard `gate.min`.

Every decision is appended to `gate_history.jsonl` (never rewritten): `id, kind, decision (pass / fail / closed),
question, metric, value, min, threshold, per_label, target_precision, precision, precision_lower, coverage, n,
labeler, reference_hash, time, reason`. A pass holds for that labeler identity until a later entry for the same
identity closes it (the audit or drift) or fails it; a labeler whose identity changed has no pass.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any, Literal, Optional

import pandas as pd
from pydantic import BaseModel, Field

from ..config import ProjectConfig
from ..ledger import record, require_intact
from ..rundir import (CALIBRATION, CALIBRATION_ITEMS, GATE_BASELINE, GATE_HISTORY, append_jsonl, read_json, read_jsonl,
                      read_table, write_table)
from .calibrate import labeler_questions
from .labeler import load_labeler

__all__ = ["GateDecision", "GateState", "append_decision", "gate_state", "history", "run_gate"]


class GateDecision(BaseModel):
    """One line of `gate_history.jsonl`."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    kind: Literal["gate", "audit", "drift"] = "gate"
    decision: Literal["pass", "fail", "closed", "ok"]
    question: str
    metric: Optional[str] = None
    value: Optional[float] = None
    min: Optional[float] = None
    threshold: Optional[float] = None
    per_label: dict[str, Optional[float]] = Field(default_factory=dict)
    target_precision: Optional[float] = None
    precision: Optional[float] = None
    precision_lower: Optional[float] = None
    coverage: Optional[float] = None
    n: Optional[int] = None
    labeler: dict[str, Any] = Field(default_factory=dict)
    labeler_kind: Optional[str] = None
    reference_hash: Optional[str] = None
    time: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def identity_key(self) -> str:
        return json.dumps(self.labeler, sort_keys=True)


class GateState(BaseModel):
    """Whether a question's gate is open now for a labeler identity, and the entry that says so."""

    question: str
    open: bool
    reason: str
    passed: Optional[GateDecision] = None  # the pass in force (open) or the last pass (closed since)


def history(config: ProjectConfig) -> list[GateDecision]:
    """Every entry of the gate history, oldest first."""
    return [GateDecision.model_validate(entry) for entry in read_jsonl(config.run_path, GATE_HISTORY)]


def append_decision(config: ProjectConfig, decision: GateDecision) -> GateDecision:
    """Append one decision to the history (the file is only ever appended to) and to the run's ledger."""
    require_intact(config.run_path)
    entry = decision.model_dump(mode="json")
    append_jsonl(GATE_HISTORY.path(config.run_path), entry)
    record(config.run_path, "gate", [(decision.id, entry)])
    return decision


def gate_state(config: ProjectConfig, question: str, identity: dict[str, Any]) -> GateState:
    """Is the gate open now for `question` and this labeler identity?"""
    key = json.dumps(identity, sort_keys=True)
    entries = [e for e in history(config) if e.question == question]
    passes = [i for i, e in enumerate(entries) if e.decision == "pass"]
    if not passes:
        return GateState(question=question, open=False, reason="no gate has passed for this question")
    mine = [i for i in passes if entries[i].identity_key == key]
    if not mine:
        last = entries[passes[-1]]
        return GateState(question=question, open=False, passed=last,
                         reason="the labeler changed since the last pass (model, prompt or label set): calibrate it "
                                "and run the gate again")
    since = entries[mine[-1]]
    later = [e for e in entries[mine[-1] + 1:] if e.identity_key == key and e.decision in ("fail", "closed")]
    if later:
        return GateState(question=question, open=False, passed=since,
                         reason=f"closed by a later {later[-1].kind} decision ({later[-1].id}): {later[-1].reason}")
    return GateState(question=question, open=True, passed=since, reason=f"passed ({since.id}, {since.time})")


def _guards(config: ProjectConfig, block: dict[str, Any], identity: dict[str, Any], n: int) -> list[str]:
    """Why the gate cannot pass whatever the thresholds say: another labeler's calibration, too few reference items,
    and (only when the config sets `gate.min`) the agreement guard."""
    gate = config.gate
    reasons = []
    if json.dumps(block.get("labeler"), sort_keys=True) != json.dumps(identity, sort_keys=True):
        reasons.append("the calibration is of another labeler version than the labels on disk: run `curate "
                       "calibrate` again")
    if n < gate.min_reference:
        reasons.append(f"only {n} reference items (min_reference {gate.min_reference})")
    value = block.get(gate.metric)
    if gate.min is not None and (value is None or value < gate.min):
        shown = "n/a" if value is None else f"{value:.3f}"
        reasons.append(f"{gate.metric} {shown} is below the minimum {gate.min:g} (the gate.min guard)")
    return reasons


def _decide_per_label(config: ProjectConfig, question: str, block: dict[str, Any],
                      decision: GateDecision) -> GateDecision:
    """`gate.targets`: each named label opens on its own cross-fitted promise; the decision passes when one does.

    `per_label` holds the threshold of every label that opened (None for the others, which stay with humans);
    `target_precision` is the weakest promise among them, which is what the audit then checks the pooled accepted
    items against."""
    targets = config.gate.targets[question]
    promises = block.get("label_promises") or {}
    guards = _guards(config, block, decision.labeler, decision.n or 0)
    opened, lines = {}, []
    for label, target in targets.items():
        promise = promises.get(str(label)) or {}
        lower = promise.get("precision_lower") or 0.0
        ok = not guards and promise.get("threshold") is not None and lower >= target
        if ok:
            opened[str(label)] = promise
        if ok:
            lines.append(f"{label}: open at {promise['threshold']:.3f} (held-out precision {promise['precision']:.3f}, "
                         f"lower bound {lower:.3f} >= {target:g}, {promise['accepted']} of {promise['n']} accepted)")
        elif promise.get("threshold") is None:
            lines.append(f"{label}: no threshold keeps precision {target:g} with evidence")
        elif lower < target:
            lines.append(f"{label}: closed: lower bound {lower:.3f} < {target:g}")
        else:
            lines.append(f"{label}: its promise holds (lower bound {lower:.3f} >= {target:g}), refused by the above")
    decision.per_label = {str(label): (opened[str(label)]["threshold"] if str(label) in opened else None)
                          for label in targets}
    decision.details = {"targets": {str(k): v for k, v in targets.items()}, "label_promises": promises}
    if opened:
        accepted = sum(p["accepted"] for p in opened.values())
        hits = sum(round(p["precision"] * p["accepted"]) for p in opened.values())
        decision.decision = "pass"
        decision.target_precision = min(targets[label] for label in opened)
        decision.precision = hits / accepted
        decision.precision_lower = min(p["precision_lower"] for p in opened.values())
        decision.coverage = sum(p["coverage"] for p in opened.values())
    else:
        decision.target_precision = min(targets.values())
    decision.reason = "; ".join(guards + lines)
    return decision


def _decide(config: ProjectConfig, question: str, block: dict[str, Any], identity: dict[str, Any], labeler: str,
            reference_hash: str) -> GateDecision:
    gate = config.gate
    value = block.get(gate.metric)
    n = int(block.get("n") or 0)
    decision = GateDecision(decision="fail", question=question, metric=gate.metric, value=value, min=gate.min,
                            target_precision=gate.target_precision, n=n, labeler=identity, labeler_kind=labeler,
                            reference_hash=reference_hash)
    if question in gate.targets:
        return _decide_per_label(config, question, block, decision)
    chosen = next((t for t in block.get("thresholds", []) if abs(t["target_precision"] - gate.target_precision) < 1e-9),
                  None)
    audit = (chosen or {}).get("audit") or {}
    if chosen is not None:
        decision.threshold, decision.per_label = chosen["threshold"], chosen.get("per_label") or {}
        decision.precision, decision.precision_lower = chosen["precision"], chosen["precision_lower"]
        decision.coverage = chosen["coverage"]
        if audit.get("audited"):  # audited items of this labeler came back: the pooled, anytime-valid bound
            decision.precision_lower = audit["precision_lower"]
            decision.details = {"audit_evidence": audit}
    lower = decision.precision_lower
    certified = chosen is not None and (chosen["threshold"] is not None
                                        or any(v is not None for v in (chosen.get("per_label") or {}).values()))
    reasons = _guards(config, block, identity, n)
    if not certified:
        reasons.append(f"no confidence threshold reaches precision {gate.target_precision:g} with evidence")
    elif (lower or 0.0) < gate.target_precision:
        reasons.append(f"the held-out precision's 95% lower bound {lower or 0.0:.3f} is below the "
                       f"target {gate.target_precision:g}")
    if reasons:
        decision.reason = "; ".join(reasons)
    else:
        assert chosen is not None
        shared = "none (class thresholds only)" if chosen["threshold"] is None else f"{chosen['threshold']:.3f}"
        own = len(chosen.get("per_class") or {})
        measured = "n/a" if value is None else f"{value:.3f}"
        guard = f" (>= the guard {gate.min:g})" if gate.min is not None else ""
        decision.decision = "pass"
        decision.reason = (f"{gate.metric} {measured}{guard} on {n} reference items; threshold "
                           f"{shared}{f' ({own} class(es) with their own)' if own else ''} keeps precision >= "
                           f"{gate.target_precision:g} (held-out {chosen['precision']:.3f}, lower bound "
                           f"{lower:.3f}{' with the audit evidence' if audit.get('audited') else ''}, "
                           f"coverage {chosen['coverage']:.1%})")
    return decision


def run_gate(config: ProjectConfig, labeler: Optional[str] = None) -> list[GateDecision]:
    """Decide every labeler question from `calibration.json`, append the decisions, keep the passing baseline.

    Raises:
        RunFileError: no calibration yet (run `curate calibrate`).
    """
    calibration = read_json(config.run_path, CALIBRATION)
    labeler = labeler or calibration.get("labeler") or config.triage.labeler
    decisions = []
    for question in labeler_questions(config):
        identity = load_labeler(config, labeler, question).identity
        block = calibration["questions"].get(question) or {}
        if calibration.get("labeler") != labeler:
            block = {**block, "labeler": {"calibrated": calibration.get("labeler")}}
        decision = append_decision(config, _decide(config, question, block, identity, labeler,
                                                   calibration["reference"]["hash"]))
        if decision.decision == "pass":
            _keep_baseline(config, question)
        decisions.append(decision)
    return decisions


def _keep_baseline(config: ProjectConfig, question: str) -> None:
    """The calibration items of a passing gate: drift compares the labeler's later scores against them."""
    items = read_table(config.run_path, CALIBRATION_ITEMS)
    assert items is not None
    baseline = read_table(config.run_path, GATE_BASELINE, required=False)
    keep = [] if baseline is None else [baseline[baseline["question"] != question]]
    write_table(GATE_BASELINE.path(config.run_path),
                pd.concat([*keep, items[items["question"] == question]], ignore_index=True))
