"""The audit: do the labels accepted without review keep the precision the threshold promised?

A random share of the would-be-`auto` items is routed `audit` and reviewed by humans like any other item. Once
reviewed, their observed error (labeler label != the humans' label, by `votes.human_label`) is compared with the
promise (1 - target precision) through a two-sided 95% Wilson interval. When the interval's lower bound is above the
promised error — evidence that the promise is broken, not a small sample's width — the audit appends a `closed`
entry to the gate history, and the next triage sends every `auto` item back to review.
"""

from __future__ import annotations

from typing import Any, Optional

from ..config import ProjectConfig
from ..rundir import ROUTES, read_table
from ..votes import human_label
from .calibrate import wilson_interval
from .gate import GateDecision, append_decision, history
from .reference import human_votes

__all__ = ["check_audit"]


def check_audit(config: ProjectConfig, *, close: bool = True) -> Optional[dict[str, Any]]:
    """The audit section of the report (None when nothing was routed `audit`); closes a broken gate when `close`."""
    routes = read_table(config.run_path, ROUTES, required=False)
    if routes is None or not (routes["route"] == "audit").any():
        return None
    votes = human_votes(config)
    entries = {e.id: e for e in history(config)}
    section: dict[str, Any] = {"questions": {}}
    for question, rows in routes[routes["route"] == "audit"].groupby("question"):
        spec = config.question(str(question))
        mine = votes[votes["question"] == question]
        humans = {item: group["value"].tolist() for item, group in mine.groupby("item_id")}
        audited = errors = 0
        examples = []
        for row in rows.itertuples(index=False):
            vote = human_label(spec, humans.get(row.item_id, []))
            if vote.label is None:
                continue
            audited += 1
            if str(vote.label) != str(row.label):
                errors += 1
                examples.append(row.item_id)
        gate_ids = [g for g in rows["gate_id"].dropna().unique()]
        gate = entries.get(gate_ids[-1]) if gate_ids else None
        promised = None if gate is None or gate.target_precision is None else 1 - gate.target_precision
        low, high = wilson_interval(errors, audited)
        figures: dict[str, Any] = {"routed": int(len(rows)), "audited": audited, "errors": errors,
                                   "error": errors / audited if audited else None, "error_low": low,
                                   "error_high": high, "promised_error": promised,
                                   "gate_id": gate.id if gate else None, "examples": examples[:10]}
        if not audited:
            figures["verdict"] = "no audited item has a human label yet"
        elif promised is not None and low is not None and low > promised:
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
                               f"[{low:.3f}, {high:.3f}]) against a promised error of at most {promised:.3f}",
                        details={"gate_id": gate.id, "error_low": low, "error_high": high}))
        else:
            figures["verdict"] = "consistent with the promise"
        section["questions"][str(question)] = figures
    return section
