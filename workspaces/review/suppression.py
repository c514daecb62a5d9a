"""Draft suppression: how much does showing the labeler's suggestion steer the reviewers?

Items published without a suggestion (`review_plan.parquet`, `suppressed`) are compared with the items published
with one: the reviewers' agreement with the labeler's label, and their accuracy against the human reference
(gold labels, or the consensus of the other annotators' votes: a vote is never scored against itself), each on
suggested vs suppressed items (items above the gate's threshold, which always go without a suggestion, are left out),
with the difference and a bootstrap 95% interval over votes. A higher agreement with the labeler on suggested items
at equal accuracy is the anchoring effect of suggestions, as a number.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..config import ProjectConfig
from ..judge import human_reference, human_votes, leave_one_out, load_labeler, review_question
from ..errors import RunFileError
from ..rundir import ANNOTATIONS, ROUTES, read_table
from .plan import read_plan

__all__ = ["anchoring_section"]


def _bootstrap_difference(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> Optional[list[float]]:
    if len(a) < 2 or len(b) < 2:
        return None
    rng = np.random.default_rng(seed)
    diffs = [rng.choice(a, len(a)).mean() - rng.choice(b, len(b)).mean() for _ in range(resamples)]
    return [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]


def anchoring_section(config: ProjectConfig, *, resamples: int = 1000, seed: int = 0) -> Optional[dict[str, Any]]:
    """The report's anchoring table (None without suppressed items or labels)."""
    plan = read_plan(config)
    routes = read_table(config.run_path, ROUTES, required=False)
    if routes is not None:  # items above the threshold always go without a suggestion: not part of the measure
        plan = plan[~plan["item_id"].isin(set(routes.loc[routes["route"].isin(["audit", "auto"]), "item_id"]))]
    annotations = read_table(config.run_path, ANNOTATIONS, required=False)
    if annotations is None or plan.empty or not plan["suppressed"].any():
        return None
    question = review_question(config)
    if question is None:
        return None
    try:
        labeler = load_labeler(config, config.triage.suggested_by, question).labels.set_index("item_id")["label"]
    except RunFileError:
        return None
    votes = human_votes(config)
    reference = human_reference(config, question, votes=votes)
    reference_without = leave_one_out(reference, config.question(question), votes[votes["question"] == question],
                                      min_votes=config.reference.min_votes)
    suppressed = dict(zip(plan["item_id"], plan["suppressed"].astype(bool)))
    rows = annotations[(annotations["status"] == "submitted") & (annotations["question"] == question)
                       & annotations["item_id"].isin(set(suppressed)) & annotations["item_id"].isin(set(labeler.index))]
    agree = {True: [], False: []}
    right = {True: [], False: []}
    for row in rows.itertuples(index=False):
        hidden = suppressed[row.item_id]
        agree[hidden].append(float(str(row.value) == str(labeler[row.item_id])))
        truth = reference_without(row.item_id, row.annotator)
        if truth is not None:
            right[hidden].append(float(str(row.value) == truth))
    section: dict[str, Any] = {"question": question, "rows": []}
    for name, values in (("agreement with the labeler", agree), ("accuracy against the reference", right)):
        shown, hidden = np.array(values[False]), np.array(values[True])
        section["rows"].append({
            "measure": name, "suggested": float(shown.mean()) if len(shown) else None, "suggested_n": len(shown),
            "suppressed": float(hidden.mean()) if len(hidden) else None, "suppressed_n": len(hidden),
            "difference": float(shown.mean() - hidden.mean()) if len(shown) and len(hidden) else None,
            "ci95": _bootstrap_difference(shown, hidden, resamples, seed)})
    return section
