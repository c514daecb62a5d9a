"""`curate triage`: route every item to `auto`, `audit` or `review`, and write `<run dir>/routes.parquet`.

- `auto`: the gate of every question the labeler answers is open now, and each label's confidence reaches the
  threshold the gate recorded (the label's own threshold where calibration fitted one); never shown to reviewers;
- `audit`: a seeded random share (`triage.audit_share`, 5-15%) of the would-be-`auto` items, sent to review so the
  promise keeps being checked; the choice is a stable hash of the item id and the seed, so re-running triage keeps an
  item's role;
- `review`: everything else: a closed gate, a low confidence, a failed or missing label, and every item where the LLM
  and the student disagree (when both labeled it).

Routes live in the run dir only: nothing stored on the Argilla server tells an audit item from a review item.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from ..config import ProjectConfig
from ..errors import RunFileError
from ..items import load_items
from ..judge.calibrate import Policy, labeler_questions
from ..judge.gate import GateState, gate_state
from ..judge.labeler import LabelerLabels, load_labeler
from ..ledger import record, require_intact
from ..rundir import ROUTES, write_table

__all__ = ["ROUTE_COLUMNS", "Triage", "audited", "triage"]

ROUTE_COLUMNS = ["item_id", "question", "route", "eligible", "label", "confidence", "threshold", "gate_id",
                 "labeler", "reason"]


def audited(item_id: str, share: float, seed: int) -> bool:
    """A stable pseudo-random draw: True for about `share` of the items, the same each time for an item."""
    digest = hashlib.blake2b(f"{seed}:{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


@dataclass
class Triage:
    """What `triage` decided."""

    routes: pd.DataFrame
    states: dict[str, GateState]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def gate_open(self) -> bool:
        return bool(self.states) and all(state.open for state in self.states.values())


def _other(config: ProjectConfig, labeler: str, question: str) -> Optional[LabelerLabels]:
    """The other labeler's labels, for the disagreement rule (None when it has none)."""
    other = {"llm": "student", "student": "llm"}.get(labeler)
    if other is None:
        return None
    try:
        return load_labeler(config, other, question)
    except RunFileError:
        return None


def triage(config: ProjectConfig, labeler: Optional[str] = None) -> Triage:
    """Route every item (see the module docstring) and write `routes.parquet` (one row per item and question)."""
    labeler = labeler or config.triage.labeler
    items = load_items(config)["item_id"].tolist()
    rows = []
    states: dict[str, GateState] = {}
    eligible_items = set(items)
    for question in labeler_questions(config):
        labels = load_labeler(config, labeler, question)
        state = gate_state(config, question, labels.identity)
        states[question] = state
        by_item = labels.labels.set_index("item_id")
        other = _other(config, labeler, question)
        other_labels = other.labels.set_index("item_id")["label"] if other is not None else None
        policy = Policy(state.passed.threshold, state.passed.per_label) if state.open and state.passed else None
        for item_id in items:
            row = {"item_id": item_id, "question": question, "label": None, "confidence": None,
                   "threshold": state.passed.threshold if state.open and state.passed else None,
                   "gate_id": state.passed.id if state.open and state.passed else None,
                   "labeler": labels.identity_key, "eligible": False, "reason": ""}
            if item_id not in by_item.index:
                row["reason"] = "no label" if item_id not in labels.failed else "the labeler failed on it"
            else:
                label, confidence = str(by_item.at[item_id, "label"]), float(by_item.at[item_id, "confidence"])
                row.update(label=label, confidence=confidence)
                disagree = ("agree" in by_item.columns and not bool(by_item.at[item_id, "agree"])) or (
                    other_labels is not None and item_id in other_labels.index and str(other_labels[item_id]) != label)
                if disagree:
                    row["reason"] = "the LLM and the student disagree"
                elif policy is None:
                    row["reason"] = f"gate closed: {state.reason}"
                elif not policy.accepts(np.array([label]), np.array([confidence]))[0]:
                    row["reason"] = "confidence below the threshold"
                else:
                    row["eligible"] = True
            if not row["eligible"]:
                eligible_items.discard(item_id)
            rows.append(row)
    frame = pd.DataFrame(rows, columns=[c for c in ROUTE_COLUMNS if c != "route"])
    share, seed = config.triage.audit_share, config.triage.seed

    def route(item_id: str) -> str:
        if item_id not in eligible_items:
            return "review"
        return "audit" if audited(item_id, share, seed) else "auto"

    routes = {item_id: route(item_id) for item_id in items}
    frame.insert(2, "route", frame["item_id"].map(routes))
    frame.loc[(frame["route"] == "audit"), "reason"] = "audit: a random share of the would-be-auto items"
    require_intact(config.run_path)
    write_table(ROUTES.path(config.run_path), frame[ROUTE_COLUMNS])
    record(config.run_path, "route", ((f"{row['item_id']}|{row['question']}", row) for row in
                                      frame[ROUTE_COLUMNS].to_dict(orient="records")))
    counts = pd.Series(routes).value_counts().to_dict()
    return Triage(routes=frame[ROUTE_COLUMNS], states=states,
                  counts={k: int(counts.get(k, 0)) for k in ("auto", "audit", "review")})
