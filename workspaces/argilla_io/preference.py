"""Publishing a preference project (`task: preference`) to Argilla.

One record per prompt (id = item id): the prompt and both responses as fields; a rating question per response and
the `preference` label question (A / B / tie / both-bad), each suggested by the LLM judge with `value`, `score` (the
judge's probability of that value) and `agent` (the judge model); a `rationale` text question suggested with the
judge's rationales. Margin, judge model and (when known) the humans' preferred response are metadata, so reviewers
can sort by how close the judge found a pair. Reads `<run dir>/preferences.parquet` (`curate prefer`). A pair whose
item has no consent (`data.consent_column`, `items.check_consent`) is never published, and is counted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional

import argilla as rg
import pandas as pd

from ..config import PAIR_FIELDS, ProjectConfig, QuestionKind, TaskKind
from ..errors import ConfigError
from ..items import NO_CONSENT, check_consent, load_items
from ..rundir import PREFERENCES, read_table
from .publish import PublishResult, log_records
from .records import display_text

__all__ = ["build_preference_records", "build_preference_settings", "publish_preferences"]

Progress = Callable[[int, int], None]


def _check(config: ProjectConfig) -> None:
    if config.task != TaskKind.preference or config.preference is None:
        raise ConfigError(f"{config.source_path}: publishing preferences needs `task: preference` and a "
                          f"`preference` section")


def build_preference_settings(config: ProjectConfig) -> rg.Settings:
    """Fields (prompt, response A, response B), the config's rating / preference / rationale questions, metadata."""
    _check(config)
    spec = config.preference
    assert spec is not None
    prompt = next(f for f in config.fields if f.name == spec.prompt_field)
    shown = {f.name: f for f in config.fields}
    fields = [rg.TextField(name=prompt.name, title=prompt.title or prompt.name, use_markdown=True)]
    fields += [rg.TextField(name=name, title=(shown[name].title if name in shown and shown[name].title else
                                              f"Response {name[-1].upper()}"), use_markdown=True)
               for name in PAIR_FIELDS]
    questions: list[Any] = []
    for question in config.questions:
        title = question.title or question.name
        if question.kind == QuestionKind.rating:
            questions.append(rg.RatingQuestion(name=question.name, title=title, values=list(question.values or []),
                                               description=question.description, required=question.required))
        elif question.kind == QuestionKind.label:
            description = question.description or "\n".join(f"- **{k}**: {v}"
                                                            for k, v in (question.labels or {}).items())
            questions.append(rg.LabelQuestion(name=question.name, title=title, labels=list(question.labels or {}),
                                              description=description, required=question.required))
        else:
            questions.append(rg.TextQuestion(name=question.name, title=title, description=question.description,
                                             required=question.required))
    metadata: list[Any] = [
        rg.FloatMetadataProperty(name="judge_margin", title="Judge margin: E[rating A] - E[rating B]"),
        rg.TermsMetadataProperty(name="judge_model", title="Judge model"),
    ]
    if spec.human_preferred:
        metadata.append(rg.TermsMetadataProperty(name="human_preferred", title="Preferred by the original raters"))
    for meta in config.metadata:
        title = meta.title or meta.name
        metadata.append(rg.IntegerMetadataProperty(name=meta.name, title=title) if meta.kind == "integer" else
                        rg.FloatMetadataProperty(name=meta.name, title=title) if meta.kind == "float" else
                        rg.TermsMetadataProperty(name=meta.name, title=title))
    return rg.Settings(fields=fields, questions=questions, metadata=metadata, guidelines=config.guidelines or None,
                       allow_extra_metadata=config.argilla.allow_extra_metadata,
                       distribution=rg.TaskDistribution(min_submitted=config.argilla.min_submitted))


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def build_preference_records(config: ProjectConfig, preferences: pd.DataFrame,
                             items: Optional[pd.DataFrame] = None) -> tuple[list[rg.Record], int]:
    """One record per prompt with the judge's suggestions; returns the records and the number of suggestions."""
    _check(config)
    spec = config.preference
    assert spec is not None
    by_id = {str(r["item_id"]): r for r in items.to_dict(orient="records")} if items is not None else {}
    records, attached = [], 0
    for row in preferences.to_dict(orient="records"):
        item_id = str(row["item_id"])
        fields = {spec.prompt_field: display_text(str(row["prompt"]))}
        for name in PAIR_FIELDS:
            text = _clean(row.get(name))
            fields[name] = display_text(str(text)) if text is not None and str(text).strip() else "(empty response)"
        suggestions = []
        if row.get("status") == "ok":
            agent = str(row["judge_model"])
            for question, key in zip(spec.rating_questions, ("a", "b")):
                suggestions.append(rg.Suggestion(question_name=question, value=int(row[f"rating_{key}"]),
                                                 score=float(row[f"confidence_{key}"]), agent=agent, type="model"))
            suggestions.append(rg.Suggestion(question_name=spec.preference_question, value=str(row["preference"]),
                                             score=float(row["preference_score"]), agent=agent, type="model"))
            rationales = [f"{slot}: {text}" for slot, text in (("A", _clean(row.get("rationale_a"))),
                                                                ("B", _clean(row.get("rationale_b")))) if text]
            if rationales:
                suggestions.append(rg.Suggestion(question_name=spec.rationale_question, value="\n".join(rationales),
                                                 agent=agent, type="model"))
        metadata: dict[str, Any] = {"judge_model": str(row.get("judge_model"))}
        margin = _clean(row.get("margin"))
        if margin is not None:
            metadata["judge_margin"] = float(margin)
        if spec.human_preferred and _clean(row.get("human_preferred")):
            metadata["human_preferred"] = str(row["human_preferred"])
        item = by_id.get(item_id, {})
        for meta in config.metadata:
            value = _clean(item.get(meta.source_column))
            if value is not None:
                metadata[meta.name] = int(value) if meta.kind == "integer" else \
                    float(value) if meta.kind == "float" else str(value)
        attached += len(suggestions)
        records.append(rg.Record(id=item_id, fields=fields, metadata=metadata, suggestions=suggestions or None))
    return records, attached


def publish_preferences(config: ProjectConfig, client: rg.Argilla, *, preferences_path: Optional[Path] = None,
                        batch_size: int = 256, progress: Optional[Progress] = None) -> PublishResult:
    """Create (or update) the preference dataset and log one record per prompt (idempotent: ids are item ids).

    Args:
        config: a `task: preference` project.
        client: an Argilla client (owner or admin).
        preferences_path: default `<run dir>/preferences.parquet`.
        batch_size: records per bulk request.
        progress: called with (records sent, total).

    Returns:
        What was published; pairs whose item has no consent are in `skipped` and counted in `no_consent`.

    Raises:
        ConfigError: not a preference config, or no preferences file yet.
        PublishError: the dataset exists with other questions.
    """
    _check(config)
    preferences = read_table(preferences_path or config.run_path, PREFERENCES)
    items = load_items(config)
    consent = check_consent(config, items)  # a pair without consent never becomes a record
    ids = preferences["item_id"].astype(str)
    withheld = ids.isin(set(consent.problems))
    if config.data.consent_column is not None:  # a pair whose item is no longer in the data: consent unknown
        withheld |= ~ids.isin(set(items["item_id"]))
    records, attached = build_preference_records(config, preferences[~withheld], consent.valid)
    result = log_records(config, client, build_preference_settings(config), records, suggestions=attached,
                         batch_size=batch_size, progress=progress)
    result.skipped = {item_id: consent.problems.get(item_id, f"{NO_CONSENT}: not an item of {config.data.path} "
                                                             "(consent unknown)")
                      for item_id in sorted(set(ids[withheld]))}
    result.no_consent = len(result.skipped)
    return result

