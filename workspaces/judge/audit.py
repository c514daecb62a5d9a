"""The audit: do the labels accepted without review keep the precision the threshold promised?

A random share of the would-be-`auto` items is routed `audit` and reviewed by humans like any other item. Once
reviewed, their observed error (labeler label != the humans' label, by `votes.human_label`) is tested against the
promise (1 - target precision) by betting (`calibrate.sequential_evidence`, a test supermartingale): audit labels
arrive over many syncs and the audit is checked after each one (every `curate report`), so a fixed-n interval checked
again and again would close a kept promise more often than its 5%. The betting wealth is valid at every look: when it
reaches 20 (1/alpha, alpha = 0.05) the promise is broken with evidence, the audit appends a `closed` entry to the gate
history, and the next triage sends every `auto` item back to review. The report also gives the error's fixed-n 95%
Wilson interval and its anytime-valid upper bound.
"""

from __future__ import annotations

from typing import Any, Optional

from ..config import ProjectConfig
from ..rundir import ROUTES, read_table
from .calibrate import audit_items, sequential_error_upper, sequential_evidence, wilson_interval
from .gate import GateDecision, append_decision, history
from .reference import human_votes

__all__ = ["AUDIT_ALPHA", "check_audit"]

AUDIT_ALPHA = 0.05  # the audit closes a kept promise with probability at most this, however often it is checked


def check_audit(config: ProjectConfig, *, close: bool = True) -> Optional[dict[str, Any]]:
    """The audit section of the report (None when nothing was routed `audit`); closes a broken gate when `close`."""
    routes = read_table(config.run_path, ROUTES, required=False)
    if routes is None or not (routes["route"] == "audit").any():
        return None
    votes = human_votes(config)
    entries = {e.id: e for e in history(config)}
    section: dict[str, Any] = {"questions": {}}
    for question, rows in routes[routes["route"] == "audit"].groupby("question"):
        reviewed = audit_items(config, str(question), votes, routes=routes)  # the audit items humans have labeled
        wrong = ~reviewed["correct"].astype(bool)
        audited, errors, examples = len(reviewed), int(wrong.sum()), reviewed.loc[wrong, "item_id"].tolist()
        gate_ids = [g for g in rows["gate_id"].dropna().unique()]
        gate = entries.get(gate_ids[-1]) if gate_ids else None
        promised = None if gate is None or gate.target_precision is None else 1 - gate.target_precision
        low, high = wilson_interval(errors, audited)
        evidence = None if promised is None else sequential_evidence(errors, audited, promised)
        figures: dict[str, Any] = {"routed": int(len(rows)), "audited": audited, "errors": errors,
                                   "error": errors / audited if audited else None, "error_low": low,
                                   "error_high": high, "error_upper_sequential": sequential_error_upper(
                                       errors, audited, 1 - AUDIT_ALPHA) if audited else None,
                                   "evidence": evidence, "promised_error": promised,
                                   "gate_id": gate.id if gate else None, "examples": examples[:10]}
        if not audited:
            figures["verdict"] = "no audited item has a human label yet"
        elif evidence is not None and evidence >= 1 / AUDIT_ALPHA:
            figures["verdict"] = "the promise is broken: the gate is closed and auto items go back to review"
            if close and gate is not None:
                already = any(e.decision == "closed" and e.kind == "audit" and e.details.get("gate_id") == gate.id
                              for e in entries.values())
                if not already:
                    append_decision(config, GateDecision(
                        kind="audit", decision="closed", question=str(question), labeler=gate.labeler,
                        labeler_kind=gate.labeler_kind, target_precision=gate.target_precision,
                        threshold=gate.threshold, n=audited, value=figures["error"],
                        reason=f"audit: {errors} of {audited} audited labels wrong (95% interval "
                               f"[{low:.3f}, {high:.3f}]; betting evidence {evidence:.3g} >= {1 / AUDIT_ALPHA:g}) "
                               f"against a promised error of at most {promised:.3f}",
                        details={"gate_id": gate.id, "error_low": low, "error_high": high, "evidence": evidence}))
        else:
            figures["verdict"] = "consistent with the promise"
        section["questions"][str(question)] = figures
    return section
