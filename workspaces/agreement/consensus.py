"""Consensus that knows its annotators: Dawid-Skene (crowd-kit) next to the strict majority.

Dawid-Skene estimates each annotator's confusion matrix and each item's posterior over the labels by EM; an
annotator's skill is the probability that they give the true label (the diagonal of their confusion matrix weighted
by the label priors). The curated label can come from it (`consensus: {method: dawid-skene}`), with the posterior as
the item's confidence. The report lists the items where majority and Dawid-Skene disagree and each annotator's skill.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import pandas as pd

from ..config import QuestionConfig
from ..votes import vote_table

__all__ = ["Consensus", "dawid_skene"]


@dataclass
class Consensus:
    """Dawid-Skene's labels, posteriors and annotator skills for one question."""

    question: str
    labels: dict[str, str] = field(default_factory=dict)  # unit -> label
    confidence: dict[str, float] = field(default_factory=dict)  # unit -> posterior of the label
    skill: dict[str, float] = field(default_factory=dict)  # annotator -> P(gives the true label)
    disagreements: list[dict[str, Any]] = field(default_factory=list)  # units where majority != Dawid-Skene

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question, "skill": self.skill, "disagreements": self.disagreements,
                "units": len(self.labels)}


def dawid_skene(table: pd.DataFrame, question: QuestionConfig, *, n_iter: int = 100) -> Optional[Consensus]:
    """Dawid-Skene over a tidy `unit, annotator, value` table (None when there is nothing to aggregate)."""
    from crowdkit.aggregation import DawidSkene

    table = table.dropna(subset=["value"])
    if table.empty or table["value"].nunique() < 2:
        return None
    frame = pd.DataFrame({"task": table["unit"].astype(str), "worker": table["annotator"].astype(str),
                          "label": table["value"].astype(str)})
    with warnings.catch_warnings():  # crowd-kit 1.4 under pandas 3: deprecation notices nobody here can act on
        warnings.filterwarnings("ignore", module=r"crowdkit\..*")
        model = DawidSkene(n_iter=n_iter).fit(frame)
    result = Consensus(question=question.name)
    probas = model.probas_
    labels = model.labels_
    rows = probas.index.get_indexer(labels.index)
    columns = probas.columns.get_indexer(labels.to_numpy())
    posterior = probas.to_numpy()[rows, columns]
    units = labels.index.map(str)
    result.labels = dict(zip(units, labels.map(str)))
    result.confidence = dict(zip(units, map(float, posterior)))
    priors = model.priors_
    for worker in frame["worker"].unique():
        errors = model.errors_.loc[worker]
        result.skill[str(worker)] = float(sum(priors[k] * errors.loc[k, k] for k in priors.index
                                              if k in errors.index and k in errors.columns))
    majority = vote_table(frame.rename(columns={"task": "unit", "label": "value"}), question, keys=("unit",))
    majority = majority[majority["label"].notna()]
    for unit, label in zip(majority["unit"], majority["label"]):
        unit, label = str(unit), str(label)
        if label != result.labels.get(unit):
            result.disagreements.append({"unit": unit, "majority": label, "dawid_skene": result.labels[unit],
                                         "posterior": result.confidence[unit]})
    return result
