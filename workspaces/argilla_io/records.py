"""Argilla records from a project's items: fields (escaped), labeler suggestions, metadata and vectors.

Data is untrusted. Argilla 2.8's UI runs a plain text field inside an unsandboxed frame, so a `<script>` in an item
would run with the reviewer's rights; Markdown fields are sanitised. Every field is therefore published as Markdown
with every character Markdown or HTML could interpret escaped (`display_text`), so the reviewer sees the text exactly
as written and nothing in it executes. The record id is the item id; nothing else about an item's role in the loop
(honeypot, audit, suppressed) is ever put on a record.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import argilla as rg
import pandas as pd

from ..config import ProjectConfig, QuestionKind
from .settings import VECTOR_NAME, confidence_metadata_name

__all__ = ["Suggestion", "build_records", "count_suggestions", "display_text", "iter_records",
           "suggestions_from_labels"]

Suggestion = tuple[str, Any, Optional[float], str]  # question, value, score, agent

# CommonMark lets a backslash escape any ASCII punctuation; these are the ones Markdown or HTML could act on.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&=:@$])")


def display_text(text: str) -> str:
    """`text` as Markdown that renders exactly as written: punctuation escaped, line breaks and spacing kept.

    Every ASCII punctuation character Markdown or HTML could act on gets a backslash; each line break becomes a hard
    break; runs of spaces and leading indentation keep their width with no-break spaces (so nothing turns into a code
    block or collapses).
    """
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        escaped = _SPECIAL.sub(r"\\\1", line)
        escaped = re.sub(r" {2,}", lambda m: " " + "\u00a0" * (len(m.group(0)) - 1), escaped)
        escaped = re.sub(r"^ ", "\u00a0", escaped).replace("\t", "\u00a0" * 4)
        lines.append(escaped)
    return "\\\n".join(lines)


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def suggestions_from_labels(config: ProjectConfig, labels: pd.DataFrame) -> dict[str, list[Suggestion]]:
    """`{item_id: [(question, value, score, agent)]}` from a labels table (ok rows of known questions only)."""
    known = {q.name: q for q in config.questions}
    ok = labels[(labels["status"] == "ok") & labels["question"].isin(list(known))]
    by_item: dict[str, list[Suggestion]] = {}
    for row in ok.itertuples(index=False):
        value: Any = row.label
        if known[row.question].kind == QuestionKind.rating:
            value = int(float(value))
        by_item.setdefault(str(row.item_id), []).append((row.question, value, _clean(row.confidence), str(row.model)))
    return by_item


def build_records(
    config: ProjectConfig,
    items: pd.DataFrame,
    *,
    suggestions: Optional[dict[str, list[Suggestion]]] = None,
    vectors: Optional[Mapping[str, Sequence[float]]] = None,
    suppressed: Iterable[str] = (),
) -> tuple[list[rg.Record], int]:
    """Argilla records for the items (id = item id), with labeler suggestions where given: `iter_records` as a list.

    Returns the records and the number of suggestions attached.
    """
    suppressed = set(suppressed)
    records = list(iter_records(config, items, suggestions=suggestions, vectors=vectors, suppressed=suppressed))
    return records, count_suggestions(items, suggestions, suppressed)


def count_suggestions(items: pd.DataFrame, suggestions: Optional[dict[str, list[Suggestion]]],
                      suppressed: Iterable[str] = ()) -> int:
    """How many suggestions `iter_records` attaches to the items' records."""
    suppressed = set(suppressed)
    return sum(len((suggestions or {}).get(i, [])) for i in items["item_id"] if i not in suppressed)


def iter_records(
    config: ProjectConfig,
    items: pd.DataFrame,
    *,
    suggestions: Optional[dict[str, list[Suggestion]]] = None,
    vectors: Optional[Mapping[str, Sequence[float]]] = None,
    suppressed: Iterable[str] = (),
    chunk: int = 1000,
) -> Iterator[rg.Record]:
    """Argilla records for the items (id = item id), built one at a time so a caller can send them in batches
    without ever holding every record.

    Args:
        config: the project.
        items: checked items (`items.check_items(...).valid`).
        suggestions: per item, the labeler's suggestions (value, score, agent) and confidence metadata.
        vectors: per item, its embedding.
        suppressed: items published with no suggestion and no confidence (draft suppression); the server cannot
            tell them from items the labeler never saw.
        chunk: items turned into Python rows at a time.
    """
    suggestions = suggestions or {}
    suppressed = set(suppressed)
    field_columns = [(f.name, f.source_column) for f in config.fields]
    metadata_columns = [(m.name, m.source_column, m.kind) for m in config.metadata]
    for start in range(0, len(items), chunk):
        for item in items.iloc[start:start + chunk].to_dict(orient="records"):
            item_id = item["item_id"]
            fields = {}
            for name, column in field_columns:
                value = _clean(item.get(column))
                if value is not None and str(value).strip():
                    fields[name] = display_text(str(value))
            metadata: dict[str, Any] = {}
            for name, column, kind in metadata_columns:
                value = _clean(item.get(column))
                if value is not None:
                    metadata[name] = (int(value) if kind == "integer" else float(value) if kind == "float"
                                      else str(value))
            record_suggestions = []
            if item_id not in suppressed:
                for question, value, score, agent in suggestions.get(item_id, []):
                    record_suggestions.append(rg.Suggestion(question_name=question, value=value, score=score,
                                                            agent=agent, type="model"))
                    if score is not None:
                        metadata[confidence_metadata_name(question)] = float(score)
            vector = vectors.get(item_id) if vectors else None
            record_vectors = {VECTOR_NAME: [float(x) for x in vector]} if vector is not None else None
            yield rg.Record(id=item_id, fields=fields, metadata=metadata or None,
                            suggestions=record_suggestions or None, vectors=record_vectors)
