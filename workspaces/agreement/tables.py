"""The human responses of one question as a coder table (`unit, annotator, value`): what alpha, the annotators'
agreement and Dawid-Skene read. A leaf of the package: the report and its sections both import it."""

from __future__ import annotations

import pandas as pd

from ..config import QuestionConfig, QuestionKind
from ..shapes import shape_of
from ..votes import counted

__all__ = ["human_table"]


def human_table(annotations: pd.DataFrame, question: QuestionConfig) -> pd.DataFrame:
    """Counted values (`workspaces.votes.counted`: submitted, not flagged) for one question as `unit, annotator,
    value`, typed for the question's scale."""
    rows = counted(annotations)
    rows = rows[rows["question"] == question.name]
    table = pd.DataFrame({"unit": rows["item_id"].astype(str), "annotator": rows["annotator"].astype(str),
                          "value": rows["value"]})
    if question.kind == QuestionKind.rating:
        table["value"] = table["value"].astype(float).astype(int)
    shape = shape_of(question)
    if shape.voted and not shape.single_choice:  # one canonical text per label set or span set; a value that
        table["value"] = [shape.canonical(v) for v in table["value"]]  # breaks the question is None (`invalid`)
    return table.reset_index(drop=True)
