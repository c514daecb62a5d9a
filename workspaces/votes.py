"""The one rule that turns human votes into an item's human label.

Used by every stage that needs "what did the humans say": the few-shot examples of the LLM prompt, the judge figures
of the report, the human reference of calibration and the curated dataset. So the figures published about a labeler
always describe the label that is pushed.

- label questions (and any question measured at the nominal level): the **strict majority**, the value more than
  half of the votes share; ties and pluralities give no label (`no_majority`);
- rating questions at the ordinal/interval/ratio level: the **lower median** of the votes (for an even count the
  lower of the two middle values), so the label stays on the scale; always defined when there is a vote;
- text questions: never voted on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Union

import pandas as pd

from .config import AlphaLevel, QuestionConfig, QuestionKind

__all__ = ["HumanLabel", "human_label", "human_labels", "strict_majority"]

Value = Union[str, int]


@dataclass(frozen=True)
class HumanLabel:
    """The humans' label of one item for one question.

    Attributes:
        label: the label, or None (no vote, no majority, or a text question).
        votes: how many votes were counted.
        agreement: the share of votes equal to `label` (None without a label).
        no_majority: True when there were votes for a label question but no strict majority.
    """

    label: Optional[Value]
    votes: int
    agreement: Optional[float]
    no_majority: bool = False


def strict_majority(values: Sequence[Any]) -> Optional[Any]:
    """The value more than half of `values` share, or None (ties and pluralities are no majority)."""
    if not values:
        return None
    value, count = Counter(values).most_common(1)[0]
    return value if count * 2 > len(values) else None


def _by_median(question: QuestionConfig) -> bool:
    return question.kind == QuestionKind.rating and question.alpha_level != AlphaLevel.nominal


def human_label(question: QuestionConfig, values: Iterable[Any]) -> HumanLabel:
    """The humans' label for `values` (one vote per annotator), by the question's rule (module docstring)."""
    votes = [v for v in values if v is not None and not (isinstance(v, float) and pd.isna(v))]
    if question.kind == QuestionKind.text or not votes:
        return HumanLabel(label=None, votes=len(votes), agreement=None)
    if _by_median(question):
        ordered = sorted(int(float(v)) for v in votes)
        label: Optional[Value] = ordered[(len(ordered) - 1) // 2]
        numeric = [int(float(v)) for v in votes]
        return HumanLabel(label=label, votes=len(votes), agreement=numeric.count(label) / len(votes))
    if question.kind == QuestionKind.rating:
        votes = [int(float(v)) for v in votes]
    label = strict_majority(votes)
    if label is None:
        return HumanLabel(label=None, votes=len(votes), agreement=None, no_majority=True)
    return HumanLabel(label=label, votes=len(votes), agreement=votes.count(label) / len(votes))


def human_labels(table: pd.DataFrame, question: QuestionConfig, *, min_votes: int = 1,
                 unit: str = "unit") -> dict[str, HumanLabel]:
    """`{unit: HumanLabel}` for a tidy `unit, annotator, value` table, keeping units with >= `min_votes` votes and a
    label."""
    result: dict[str, HumanLabel] = {}
    for key, group in table.groupby(unit, sort=True):
        vote = human_label(question, group["value"].tolist())
        if vote.label is not None and vote.votes >= min_votes:
            result[str(key)] = vote
    return result
