"""The Distilabel components of the label pipeline: ask (with logprobs), score (label probabilities), checkpoint.

No `from __future__ import annotations` here: Distilabel reads the `StepInput` annotation of `process` at run time.
"""

import json
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import pandas as pd
from distilabel.steps import Step, StepInput
from distilabel.steps.tasks import Task
from pydantic import Field, PrivateAttr

from .checkpoint import write_part
from .scoring import AnswerError, label_probabilities, parse_answer

if TYPE_CHECKING:
    from distilabel.steps.typing import StepOutput
    from distilabel.typing import ChatType

__all__ = ["ClassifyWithLogprobs", "LabelProbabilities", "TASK_NAME", "WriteLabelCheckpoint", "WriteRows"]

TASK_NAME = "classify"


class ClassifyWithLogprobs(Task):
    """Asks the LLM for one label per item, as JSON, keeping the model's token log-probabilities.

    The prompt is the question's system message (guideline + label descriptions), its few-shot turns, then the item.
    `format_output` never raises, so Distilabel keeps the `llm_<name>_logprobs` column on every row; a failed model
    call (an exception for the whole batch) becomes rows with `generation=None` and `model_error` set.

    Input columns:
        - text (`str`): the item as shown to the LLM.

    Output columns:
        - generation (`str | None`): the raw answer.
        - model_error (`str | None`): why the model call failed.
        - model_name (`str`): the model id.
        - llm_<name>_logprobs (`list`): per generated token, its top-k `{token, logprob}`.
    """

    prefix_messages: List[Dict[str, str]] = Field(default_factory=list)

    @property
    def inputs(self) -> List[str]:
        return ["text"]

    @property
    def outputs(self) -> List[str]:
        return ["generation", "model_error", "model_name"]

    def format_input(self, input: Dict[str, Any]) -> "ChatType":
        return [*self.prefix_messages, {"role": "user", "content": input["text"]}]

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return {"generation": output, "model_error": None}

    def _generate(self, inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        rows: List[Dict[str, Any]] = []
        for batch in super().process(inputs):
            rows.extend(batch)
        return rows

    def _failed(self, row: Dict[str, Any], exc: BaseException) -> Dict[str, Any]:
        message = f"model error: {type(exc).__name__}: {exc}"[:500]
        self._logger.warning(f"{message}\n{traceback.format_exc(limit=3)}")
        try:
            name = self.llm.model_name
        except Exception:  # noqa: BLE001
            name = None
        return {**row, "generation": None, "model_error": message, "model_name": name,
                f"llm_{self.name}_logprobs": None}

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        """Generates answers. When the model fails on the batch, each item is asked alone, so one bad item (too long
        for the context window, say) fails with its own reason and the others are still labeled."""
        try:
            yield self._generate(list(inputs))
            return
        except Exception as exc:  # noqa: BLE001 - every model failure becomes a failed row with its reason
            if len(inputs) == 1:
                yield [self._failed(inputs[0], exc)]
                return
        rows = []
        for row in inputs:
            try:
                rows.extend(self._generate([row]))
            except Exception as exc:  # noqa: BLE001
                rows.append(self._failed(row, exc))
        yield rows


class LabelProbabilities(Step):
    """Turns an answer + its logprobs into `label`, `probabilities` (JSON), `confidence`, `status`, `error`.

    Off-label answers, broken JSON, model errors and answers whose log-probabilities do not cover the label are
    `status='failed'` rows with the reason in `error`; nothing is guessed.

    Input columns:
        - generation (`str | None`), model_error (`str | None`), llm_<task>_logprobs (`list | None`).

    Output columns:
        - label (`str | None`), confidence (`float | None`), probabilities (`str | None`, a JSON object),
          status (`str`), error (`str | None`), raw_output (`str | None`), answer_fields (`str | None`, the
          parsed JSON object).
    """

    labels: List[str]
    key: str = "label"
    logprobs_column: str = f"llm_{TASK_NAME}_logprobs"
    lenient: bool = False

    @property
    def inputs(self) -> List[str]:
        return ["generation"]

    @property
    def outputs(self) -> List[str]:
        return ["label", "confidence", "probabilities", "status", "error", "raw_output", "answer_fields"]

    def score(self, row: Dict[str, Any]) -> Dict[str, Any]:
        """The label columns for one row (pure: used by `process` and in tests)."""
        generation = row.get("generation")
        result: Dict[str, Any] = {"label": None, "confidence": None, "probabilities": None, "status": "failed",
                                  "error": None, "raw_output": generation, "answer_fields": None}
        if row.get("model_error"):
            result["error"] = row["model_error"]
            return result
        try:
            answer, obj = parse_answer(generation, self.labels, key=self.key, lenient=self.lenient)
            result["answer_fields"] = json.dumps(obj, ensure_ascii=False)
            steps = row.get(self.logprobs_column)
            probabilities = label_probabilities(generation or "", steps, self.labels, answer, key=self.key)
        except AnswerError as exc:
            result["error"] = str(exc)
            return result
        result.update(label=answer, confidence=probabilities[answer], status="ok",
                      probabilities=json.dumps(probabilities))
        return result

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        yield [{**row, **self.score(row)} for row in inputs]


class _CheckpointSink(Step):
    """Writes each batch's rows to `<directory>/<run_id>-<n>-<rows>.parquet` (atomic): the stage's resume checkpoint
    and its output (folded by `checkpoint.consolidate`). The last step of its pipeline, it hands nothing on: the
    rows are in the parts, so Distilabel neither ships them back to its main process nor writes and reloads them as
    a Distiset (`engine.run_pipeline` returns none)."""

    directory: str
    run_id: str
    _count: int = PrivateAttr(default=0)

    @property
    def outputs(self) -> List[str]:
        return []

    def rows(self, inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The checkpoint rows of one batch."""
        raise NotImplementedError

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        rows = self.rows(list(inputs))
        if rows:
            self._count += 1
            write_part(Path(self.directory), self.run_id, self._count, rows)
        yield []


class WriteLabelCheckpoint(_CheckpointSink):
    """Appends every finished batch of labels to `<directory>/<run_id>-<n>-<rows>.parquet`, so a killed run resumes.

    Input columns:
        - item_id, question, label, confidence, probabilities, model_name, status, error, raw_output.

    Output columns:
        - (none: the rows are in the checkpoint parts)
    """

    prompt_hash: str
    extra_columns: List[str] = Field(default_factory=list)

    @property
    def inputs(self) -> List[str]:
        return ["item_id", "question", "label", "confidence", "probabilities", "status", "error"]

    def rows(self, inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        return [{
            "item_id": str(row["item_id"]), "question": row["question"], "label": row.get("label"),
            "confidence": row.get("confidence"), "probabilities": row.get("probabilities"),
            "model": row.get("model_name"), "prompt_hash": self.prompt_hash, "raw_output": row.get("raw_output"),
            "status": row.get("status") or "failed", "error": row.get("error"), "run_id": self.run_id,
            "labeled_at": pd.Timestamp.now(tz="UTC").isoformat(),
            **{column: row.get(column) for column in self.extra_columns},
        } for row in inputs]


class WriteRows(_CheckpointSink):
    """Writes each batch's `columns` to `<directory>/<run_id>-<n>-<rows>.parquet` (atomic), for resuming.

    Input columns:
        - the `columns` listed.

    Output columns:
        - (none: the rows are in the checkpoint parts)
    """

    columns: List[str] = Field(default_factory=list)

    @property
    def inputs(self) -> List[str]:
        return list(self.columns)

    def rows(self, inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        return [{column: row.get(column) for column in self.columns} for row in inputs]
