"""Honeypots: how often each reviewer agrees with the known label of the gold items mixed into their batches, and the
pause rule.

Per annotator: honeypots answered, accuracy with a 95% Wilson interval, and Cohen's kappa against the reference. The
reference of a honeypot is its gold label; for a consensus honeypot (a project with no gold items) it is the label
of the *other* annotators' votes, so nobody is scored against their own answer. An annotator below
`honeypots.min_accuracy` after at least `honeypots.min_seen` honeypots is to be paused (`curate sync` pauses them on
the server; their responses then stop counting towards consensus).
"""

from __future__ import annotations

from typing import Any, Optional

import pandas as pd
from sklearn.metrics import cohen_kappa_score

from ..config import ProjectConfig
from ..judge import human_reference, human_votes, leave_one_out, review_question
from ..judge.calibrate import wilson_interval
from ..rundir import ANNOTATIONS, PAUSED, read_json, read_table
from ..shapes import shape_of
from .plan import read_plan

__all__ = ["honeypot_section", "pause_decisions", "to_pause"]


def honeypot_section(config: ProjectConfig) -> Optional[dict[str, Any]]:
    """The report's honeypot section: per annotator, accuracy and kappa on honeypots (None without honeypots)."""
    plan = read_plan(config)
    honeypots = set(plan.loc[plan["role"] == "honeypot", "item_id"])
    annotations = read_table(config.run_path, ANNOTATIONS, required=False)
    if not honeypots or annotations is None:
        return None
    asked = review_question(config)
    if asked is None:
        return None
    question = config.question(asked)
    votes = human_votes(config)
    votes = votes[votes["question"] == question.name]
    reference = human_reference(config, question.name, votes=votes)
    submitted = annotations[(annotations["status"] == "submitted") & (annotations["question"] == question.name)
                            & annotations["item_id"].isin(honeypots)]
    shape = shape_of(question)
    per_annotator: dict[str, dict[str, list[str]]] = {}
    truth_for = leave_one_out(reference, question, votes)  # gold, else the others' label (consensus honeypots)
    for row in submitted.itertuples(index=False):
        truth = truth_for(row.item_id, row.annotator)
        if truth is None:
            continue
        entry = per_annotator.setdefault(row.annotator, {"truth": [], "answer": []})
        entry["truth"].append(str(truth))
        entry["answer"].append(shape.canonical(row.value) or str(row.value))  # tags in one order
    labels = [str(v) for v in question.allowed_values]
    annotators = []
    for annotator, entry in sorted(per_annotator.items()):
        n = len(entry["truth"])
        right = sum(a == t for a, t in zip(entry["answer"], entry["truth"]))
        low, high = wilson_interval(right, n)
        # one label only, or label sets (no one label per answer): kappa is undefined
        defined = shape.single_choice and n > 1 and len(set(entry["truth"]) | set(entry["answer"])) > 1
        kappa = cohen_kappa_score(entry["truth"], entry["answer"], labels=labels) if defined else float("nan")
        annotators.append({"annotator": annotator, "seen": n, "correct": right, "accuracy": right / n if n else None,
                           "accuracy_low": low, "accuracy_high": high,
                           "kappa": None if pd.isna(kappa) else float(kappa)})
    spec = config.honeypots
    return {"question": question.name, "honeypots": len(honeypots),
            "min_seen": spec.min_seen if spec else None, "min_accuracy": spec.min_accuracy if spec else None,
            "annotators": annotators}


def to_pause(config: ProjectConfig, section: Optional[dict[str, Any]]) -> list[str]:
    """Annotators the pause rule stops: at least `min_seen` honeypots answered and accuracy below `min_accuracy`."""
    if section is None or config.honeypots is None:
        return []
    rule = config.honeypots
    return [a["annotator"] for a in section["annotators"]
            if a["seen"] >= rule.min_seen and a["accuracy"] is not None and a["accuracy"] < rule.min_accuracy]


def pause_decisions(config: ProjectConfig) -> list[tuple[str, str]]:
    """`(annotator, reason)` of every annotator the pause rule stops now who is not paused yet (none without
    `honeypots`). Deciding only: `curate demo` and `curate annotators` pause them on the server."""
    if config.honeypots is None:
        return []
    section = honeypot_section(config)
    already = set((read_json(config.run_path, PAUSED, required=False) or {}).get("paused", {}))
    decisions = []
    for annotator in to_pause(config, section):
        if annotator in already:
            continue
        assert section is not None
        stats = next(a for a in section["annotators"] if a["annotator"] == annotator)
        decisions.append((annotator, f"honeypot accuracy {stats['accuracy']:.2f} on {stats['seen']} honeypots, "
                                     f"below {config.honeypots.min_accuracy}"))
    return decisions
