"""The curated split of a preference project, in TRL's conventions: `prompt`, `chosen`, `rejected`.

A pair is an item (`items.with_pair_columns`): `build_curated` resolves its `preference` question like any label
(human majority, gold, or the judge's answer under an open gate) and this module lays each decided pair out for DPO /
reward-model training:

- `prompt`, `chosen`, `rejected`: strings (`hub.dpo_format: standard`, the default), or lists of `{role, content}`
  messages (`conversational`: the prompt's `Human:` / `Assistant:` turns as user / assistant messages, each reply
  one assistant message);
- `score_chosen`, `score_rejected`: the humans' rating of each reply (their median) when they rated it, else the
  judge's rating;
- provenance per row: `source` (who decided: `gold`, `human-single`, `human-consensus`, `llm-reviewed` or
  `auto-accepted`), `n_annotators` and `agreement` of the humans, `gate_id` (the pair gate that let a judge's choice
  through; None when a human decided), `judge_confidence`, `judge_model`, `judge_prompt_hash`, `guideline_hash`;
- pairs decided `tie` or `both-bad` are left out and counted (with pairs with no majority, counted by
  `build_curated`);
- train / test by prompt (`GroupShuffleSplit`, `hub.test_size`, `hub.seed`): no prompt is in two splits.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import numpy as np
import pandas as pd
import pyarrow as pa

from ..config import PAIR_FIELDS, ProjectConfig

__all__ = ["pair_features", "pair_tables", "to_messages"]

_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


def to_messages(prompt: str) -> list[dict[str, str]]:
    """An HH-style transcript (`Human: ...` / `Assistant: ...` turns) as chat messages; any other text is one user
    message. A trailing `Assistant:` cue is dropped (the reply is the completion)."""
    parts = _TURN.split(re.sub(r"\n\nAssistant:?\s*$", "", prompt))
    if len(parts) < 3 or parts[0].strip():
        return [{"role": "user", "content": prompt.strip()}]
    messages = [{"role": "user" if who == "Human" else "assistant", "content": text.strip()}
                for who, text in zip(parts[1::2], parts[2::2])]
    return messages


def _conversational(config: ProjectConfig) -> bool:
    return config.hub.dpo_format == "conversational"


def pair_features(config: ProjectConfig) -> Any:
    """The `datasets.Features` of a curated pair row."""
    from datasets import Features, List, Value

    text: Any = List({"role": Value("string"), "content": Value("string")}) if _conversational(config) else \
        Value("string")
    return Features({
        "item_id": Value("string"), "prompt": text, "chosen": text, "rejected": text,
        "score_chosen": Value("float64"), "score_rejected": Value("float64"), "chosen_slot": Value("string"),
        "source": Value("string"), "n_annotators": Value("int64"), "agreement": Value("float64"),
        "annotators": List(Value("string")), "gate_id": Value("string"), "judge_confidence": Value("float64"),
        "judge_model": Value("string"), "judge_prompt_hash": Value("string"), "guideline_hash": Value("string"),
    })


def _score(row: dict[str, Any], question: str) -> Optional[float]:
    for column in (question, f"{question}_llm_label"):
        value = row.get(column)
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            return float(value)
    return None


def _pair_row(config: ProjectConfig, row: dict[str, Any]) -> Optional[dict[str, Any]]:
    spec = config.preference
    assert spec is not None
    q = spec.preference_question
    choice = row.get(q)
    if choice not in ("A", "B"):
        return None
    win, lose = (0, 1) if choice == "A" else (1, 0)
    responses = [str(row[name] or "") for name in PAIR_FIELDS]
    prompt = str(row[spec.prompt_field] or "")
    if _conversational(config):
        shown: dict[str, Any] = {"prompt": to_messages(prompt),
                                 "chosen": [{"role": "assistant", "content": responses[win].strip()}],
                                 "rejected": [{"role": "assistant", "content": responses[lose].strip()}]}
    else:
        shown = {"prompt": prompt, "chosen": responses[win], "rejected": responses[lose]}
    ratings = spec.rating_questions
    return {"item_id": row["item_id"], **shown,
            "score_chosen": _score(row, ratings[win]), "score_rejected": _score(row, ratings[lose]),
            "chosen_slot": choice, "source": row[f"{q}_source"], "n_annotators": len(row[f"{q}_annotators"] or []),
            "agreement": row[f"{q}_agreement"], "annotators": list(row[f"{q}_annotators"] or []),
            "gate_id": row[f"{q}_gate_id"], "judge_confidence": row[f"{q}_llm_confidence"],
            "judge_model": row[f"{q}_llm_model"], "judge_prompt_hash": row[f"{q}_llm_prompt_hash"],
            "guideline_hash": row["guideline_hash"]}


def pair_tables(config: ProjectConfig, items: pa.Table, excluded: dict[str, int], notes: list[str]
                ) -> dict[str, pa.Table]:
    """The curated items (rows of `build_curated`, every split) as prompt-disjoint train / test pair tables;
    `excluded` gains the counts of pairs decided tie or both-bad."""
    from sklearn.model_selection import GroupShuffleSplit

    spec = config.preference
    assert spec is not None
    decided = items.column(spec.preference_question).to_pylist()
    excluded["tie"] = sum(v == "tie" for v in decided)
    excluded["both_bad"] = sum(v == "both-bad" for v in decided)
    rows = [r for r in (_pair_row(config, row) for row in items.to_pylist()) if r is not None]
    schema = pair_features(config).arrow_schema
    frame = pd.DataFrame(rows, columns=schema.names)
    groups = frame["prompt"].map(str)
    if groups.nunique() < 2:
        if len(frame):
            notes.append(f"only {groups.nunique()} distinct prompt(s): every pair is in train, no test split")
        parts = {"train": frame}
    else:
        splitter = GroupShuffleSplit(n_splits=1, test_size=config.hub.test_size, random_state=config.hub.seed)
        train, test = next(splitter.split(frame, groups=groups))
        parts = {"train": frame.iloc[np.sort(train)], "test": frame.iloc[np.sort(test)]}
    return {name: pa.Table.from_pandas(part, schema=schema, preserve_index=False) for name, part in parts.items()}
