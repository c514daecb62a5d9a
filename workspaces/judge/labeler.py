"""A labeler's labels as the judge sees them: the LLM (`labels.parquet`), the student (`student_labels.parquet`) or
their ensemble, with the identity that a gate decision is tied to.

Identity = backend + model + prompt/template hash + label-set hash. A different model, prompt or label set is a
different labeler: a gate passed by one never lets the other's labels through.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal, Optional

import pandas as pd

from ..config import ProjectConfig
from ..errors import RunFileError
from ..rundir import LABELS, PROMPT_EXAMPLES, STUDENT_LABELS, read_json, read_table

__all__ = ["LABELERS", "LabelerLabels", "Labeler", "label_set_hash", "load_labeler"]

Labeler = Literal["llm", "student", "ensemble"]
LABELERS: tuple[str, ...] = ("llm", "student", "ensemble")
_COLUMNS = ["item_id", "question", "label", "confidence", "probabilities", "model", "prompt_hash", "status"]


def label_set_hash(labels: list[str]) -> str:
    """A short hash of a question's label set."""
    return hashlib.sha256(json.dumps([str(v) for v in labels]).encode()).hexdigest()[:12]


@dataclass
class LabelerLabels:
    """One question's labels from one labeler.

    `labels` has one row per labeled item: item_id, label, confidence, probabilities (dict), and, for the ensemble,
    `agree` (the LLM and the student gave the same label). `failed` lists items the labeler failed on.
    """

    labeler: str
    question: str
    identity: dict[str, Any]
    labels: pd.DataFrame
    failed: list[str]
    excluded: set[str]  # items the labeler was prompted or trained on: never scored

    @property
    def identity_key(self) -> str:
        """The identity as one comparable string."""
        return json.dumps(self.identity, sort_keys=True)


def _probabilities(value: Any) -> Optional[dict[str, float]]:
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items()}
    if isinstance(value, str) and value:
        return {str(k): float(v) for k, v in json.loads(value).items()}
    return None


def _one(config: ProjectConfig, file: Any, backend: str, question: str) -> LabelerLabels:
    frame = read_table(config.run_path, file, columns=_COLUMNS)
    assert frame is not None
    rows = frame[frame["question"] == question]
    if rows.empty:
        raise RunFileError(f"{file.path(config.run_path)}: no labels for question {question!r}; run "
                           f"`{file.command} CONFIG` for it")
    ok = rows[rows["status"] == "ok"].copy()
    versions = sorted({(str(m), str(h)) for m, h in zip(ok["model"], ok["prompt_hash"])})
    spec = config.question(question)
    identity = {"backend": backend,
                "model": versions[0][0] if len(versions) == 1 else [m for m, _ in versions],
                "prompt_hash": versions[0][1] if len(versions) == 1 else [h for _, h in versions],
                "label_set_hash": label_set_hash([str(v) for v in spec.allowed_values])}
    ok["probabilities"] = [_probabilities(p) for p in ok["probabilities"]]
    ok["label"] = ok["label"].astype(str)
    labels = ok[["item_id", "label", "confidence", "probabilities"]].reset_index(drop=True)
    excluded: set[str] = set()
    if backend == "llm":
        examples = read_json(config.run_path, PROMPT_EXAMPLES, required=False) or {}
        for record in (examples.get(question) or {}).values():
            pool = record.get("few_shot_path")
            if pool and str(config.data.path) == str(pool):  # prompted with items of this very data file
                excluded |= set(record.get("item_ids") or [])
    return LabelerLabels(labeler=backend, question=question, identity=identity, labels=labels,
                         failed=sorted(set(rows["item_id"]) - set(ok["item_id"])), excluded=excluded)


def load_labeler(config: ProjectConfig, labeler: str, question: str) -> LabelerLabels:
    """One question's labels from `labeler` (llm, student or ensemble).

    Raises:
        RunFileError: the labeler's file is missing or lacks the question (names the command to run).
    """
    if labeler == "llm":
        return _one(config, LABELS, "llm", question)
    if labeler == "student":
        return _one(config, STUDENT_LABELS, "student", question)
    if labeler != "ensemble":
        raise ValueError(f"unknown labeler {labeler!r}; choose one of {LABELERS}")
    llm, student = _one(config, LABELS, "llm", question), _one(config, STUDENT_LABELS, "student", question)
    merged = llm.labels.merge(student.labels, on="item_id", suffixes=("_llm", "_student"))
    rows = []
    for row in merged.itertuples(index=False):
        a, b = row.probabilities_llm or {row.label_llm: 1.0}, row.probabilities_student or {row.label_student: 1.0}
        keys = sorted(set(a) | set(b))
        average = {k: (a.get(k, 0.0) + b.get(k, 0.0)) / 2 for k in keys}
        label = max(average, key=lambda k: (average[k], k == row.label_llm))
        rows.append({"item_id": row.item_id, "label": label, "confidence": average[label], "probabilities": average,
                     "agree": row.label_llm == row.label_student})
    labels = pd.DataFrame(rows, columns=["item_id", "label", "confidence", "probabilities", "agree"])
    identity = {"backend": "ensemble", "llm": llm.identity, "student": student.identity,
                "label_set_hash": llm.identity["label_set_hash"]}
    failed = sorted((set(llm.failed) | set(student.failed) | set(llm.labels["item_id"]) ^ set(
        student.labels["item_id"])) - set(labels["item_id"]))
    return LabelerLabels(labeler="ensemble", question=question, identity=identity, labels=labels, failed=failed,
                         excluded=llm.excluded | student.excluded)
