"""The labeling prompt: guideline + label descriptions + few-shot examples, and its hash (the labeler identity).

Few-shot examples are items of `llm.few_shot_path` whose recorded humans give a label by the one human-label rule
(`workspaces.votes.human_label`, at least two votes), balanced over labels, and never an item being labeled (by id
or by identical text), so calibration never scores the labeler on an item it was prompted with.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd

from workspaces.config import LLMConfig, ProjectConfig, QuestionConfig, QuestionKind
from workspaces.errors import ConfigError
from workspaces.items import load_items, recorded_labels
from workspaces.votes import human_label

__all__ = ["LABEL_SEPARATOR", "LabelSpec", "TEMPLATE_VERSION", "build_label_spec", "build_label_specs", "item_text",
           "label_set_hash"]

LABEL_SEPARATOR = "::"  # `emotions::joy`: the yes/no sub-question of one label of a multi_label question

TEMPLATE_VERSION = "label-v1"
_DOCS = "See pipelines/README.md."


def label_set_hash(labels: Sequence[str]) -> str:
    """A short hash of a label set (part of a labeler's identity)."""
    return hashlib.sha256(json.dumps(list(labels)).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class LabelSpec:
    """Everything the LLM is told for one question: system prompt, allowed labels, few-shot examples, JSON key."""

    question: str
    labels: List[str]
    system: str
    examples: List[tuple[str, str]] = field(default_factory=list)
    example_ids: List[str] = field(default_factory=list)  # the examples' item ids in `llm.few_shot_path`
    key: str = "label"

    @property
    def schema(self) -> Dict[str, Any]:
        """JSON schema of the answer (constrains generation where the backend supports it)."""
        return {"type": "object", "properties": {self.key: {"type": "string", "enum": list(self.labels)}},
                "required": [self.key]}

    def prefix(self) -> List[Dict[str, str]]:
        """System message + few-shot turns: the part of every prompt that does not depend on the item."""
        messages = [{"role": "system", "content": self.system}]
        for text, label in self.examples:
            messages.append({"role": "user", "content": text})
            messages.append({"role": "assistant", "content": json.dumps({self.key: label})})
        return messages

    @property
    def prompt_hash(self) -> str:
        """Hash of the rendered template, guideline, label descriptions and few-shot examples."""
        payload = json.dumps({"template": TEMPLATE_VERSION, "messages": self.prefix(), "schema": self.schema},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def item_text(config: ProjectConfig, row: Dict[str, Any]) -> str:
    """An item as the LLM sees it: one `Title: value` line per non-empty field (`llm.fields`, default all)."""
    shown = set(config.llm.fields) if config.llm is not None and config.llm.fields else None
    lines = []
    for spec in config.fields:
        if shown is not None and spec.name not in shown:
            continue
        value = row.get(spec.source_column)
        if value is None or (isinstance(value, float) and pd.isna(value)) or not str(value).strip():
            continue
        lines.append(f"{spec.title or spec.name}: {str(value).strip()}")
    return "\n".join(lines)


def _label_values(question: QuestionConfig) -> Dict[str, str]:
    if question.kind == QuestionKind.label:
        return dict(question.labels or {})
    if question.kind == QuestionKind.rating:
        return {str(v): "" for v in question.values or []}
    raise ConfigError(f"llm.questions: {question.name!r} is a text question; the LLM answers label, rating and "
                      "multi_label questions")


def _system_prompt(config: ProjectConfig, question: QuestionConfig, values: Dict[str, str]) -> str:
    lines = [config.guidelines.strip()] if config.guidelines.strip() else []
    lines.append(f"Question: {question.title or question.name}")
    if question.description:
        lines.append(question.description.strip())
    lines.append("Allowed labels:")
    for value, description in values.items():
        lines.append(f'- "{value}": {description}' if description else f'- "{value}"')
    choices = ", ".join(f'"{v}"' for v in values)
    lines.append(f'Reply with a JSON object {{"label": ...}} whose label is one of {choices}, and nothing else.')
    return "\n".join(lines)


def _few_shot(config: ProjectConfig, question: QuestionConfig, values: Sequence[str], exclude: set[str],
              exclude_texts: set[str]) -> List[tuple[str, str, str]]:
    """(text, label, item id) of each example."""
    llm = config.llm or LLMConfig()
    if llm.few_shot == 0 or llm.few_shot_path is None:
        return []
    pool_config = config.model_copy(update={"data": config.data.model_copy(
        update={"path": llm.few_shot_path, "where": {}, "limit": None})})
    pool = load_items(pool_config)
    if config.human_labels is None or question.name not in config.human_labels.values:
        raise ConfigError(f"{config.source_path}: llm.few_shot_path needs human_labels for {question.name!r} "
                          f"(few-shot examples are items with a clear human majority). {_DOCS}")
    votes = recorded_labels(config, pool)
    votes = votes[votes["question"] == question.name]
    by_label: Dict[str, List[str]] = {str(v): [] for v in values}
    for item_id, group in votes.groupby("item_id", sort=True):
        vote = human_label(question, group["value"].tolist())
        if vote.votes >= 2 and vote.label is not None and str(vote.label) in by_label:
            by_label[str(vote.label)].append(str(item_id))
    rows = {row["item_id"]: row for row in pool.to_dict(orient="records")}
    rng = random.Random(llm.few_shot_seed)
    queues = {}
    for label, ids in by_label.items():
        ids = [i for i in ids if i not in exclude and item_text(config, rows[i]) not in exclude_texts]
        rng.shuffle(ids)
        queues[label] = ids
    examples: List[tuple[str, str, str]] = []
    while len(examples) < llm.few_shot and any(queues.values()):
        for label in values:
            if queues.get(label) and len(examples) < llm.few_shot:
                item_id = queues[label].pop()
                examples.append((item_text(config, rows[item_id]), label, item_id))
    return examples


def build_label_spec(config: ProjectConfig, question_name: str, items: Optional[pd.DataFrame] = None) -> LabelSpec:
    """The prompt for one question: guideline, label descriptions and few-shot examples.

    Few-shot examples come from `llm.few_shot_path` items with a human label (`votes.human_label`, at least two
    votes), balanced over labels, and never one of `items` (by id or by identical text).
    """
    question = config.question(question_name)
    values = _label_values(question)
    exclude: set[str] = set()
    exclude_texts: set[str] = set()
    if items is not None:
        exclude = set(items["item_id"].astype(str))
        exclude_texts = {item_text(config, row) for row in items.to_dict(orient="records")}
    examples = _few_shot(config, question, list(values), exclude, exclude_texts)
    return LabelSpec(question=question.name, labels=list(values), system=_system_prompt(config, question, values),
                     examples=[(text, label) for text, label, _ in examples],
                     example_ids=[item_id for _, _, item_id in examples])





def _yes_no_prompt(config: ProjectConfig, question: QuestionConfig, label: str, description: str) -> str:
    lines = [config.guidelines.strip()] if config.guidelines.strip() else []
    lines.append(f"Question: {question.title or question.name}")
    lines.append(f'Consider one label only: "{label}"' + (f" ({description.strip()})" if description else "") + ".")
    lines.append("Does it apply to the text?")
    lines.append('Reply with a JSON object {"label": ...} whose label is "yes" or "no", and nothing else.')
    return "\n".join(lines)


def build_label_specs(config: ProjectConfig, question_name: str, items: Optional[pd.DataFrame] = None
                      ) -> List[LabelSpec]:
    """The prompts that answer one question. A label or rating question is one prompt (`build_label_spec`). A
    multi_label question is one yes/no prompt per label (spec `question` = `name::label`), so that each label gets
    its own probability from the model's token probabilities of "yes" and "no": the per-label probabilities that
    the item-level decision (`MultiLabelShape.decide`) needs. Scoring whole label sets would need their likelihood
    over 2^labels sets; a yes/no per label costs one prompt per label and stays exact. No few-shot examples for the
    yes/no prompts yet."""
    question = config.question(question_name)
    if question.kind != QuestionKind.multi_label:
        return [build_label_spec(config, question_name, items)]
    return [LabelSpec(question=f"{question.name}{LABEL_SEPARATOR}{label}", labels=["yes", "no"],
                      system=_yes_no_prompt(config, question, label, description))
            for label, description in (question.labels or {}).items()]
