"""How far a labeler is trusted, measured on the human reference: calibrate -> gate (-> drift), and the audit that
keeps checking the promise.

Reads labels (`labels.parquet`, `student_labels.parquet`) and the human reference from the run dir; writes
`calibration.json` / `calibration.md` and appends to `gate_history.jsonl` (never rewritten).
"""

from .audit import check_audit
from .calibrate import (NoReferenceError, calibrate, clopper_pearson_lower, expected_calibration_error, fit_threshold,
                        labeler_questions, require_reference, review_question)
from .drift import run_drift
from .gate import GateDecision, GateState, gate_state, history, run_gate
from .labeler import LABELERS, LabelerLabels, load_labeler
from .reference import Reference, human_reference, human_votes, leave_one_out

__all__ = [
    "GateDecision",
    "GateState",
    "LABELERS",
    "LabelerLabels",
    "NoReferenceError",
    "Reference",
    "calibrate",
    "check_audit",
    "clopper_pearson_lower",
    "expected_calibration_error",
    "fit_threshold",
    "gate_state",
    "history",
    "human_reference",
    "human_votes",
    "leave_one_out",
    "labeler_questions",
    "review_question",
    "load_labeler",
    "require_reference",
    "run_drift",
    "run_gate",
]
