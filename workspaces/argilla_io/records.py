"""Argilla records from a project's items: fields (as Markdown that shows the text as written), labeler suggestions,
metadata and vectors.

Data is untrusted. Argilla 2.8's UI shows a plain (non-Markdown) text field as raw HTML: `innerHTML` of a `<div>`, or
an unsandboxed `<iframe srcdoc>` when the text holds a closed tag pair, so an `<img onerror=...>` or a `<script>` in an
item would run with the reviewer's rights. A Markdown field goes through `marked` and then DOMPurify. Every field is
therefore published as Markdown, with only what `marked` (GFM, line breaks on, KaTeX) or HTML would act on escaped
(`display_text`): ordinary prose is stored exactly as given, and `source_text` turns any stored field back into the
source text, byte for byte. The record id is the item id; nothing else about an item's role in the loop (honeypot,
audit, suppressed) is ever put on a record.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import argilla as rg
import pandas as pd

from ..config import ProjectConfig, QuestionKind
from ..shapes import shape_of
from .settings import VECTOR_NAME, confidence_metadata_name

__all__ = ["Suggestion", "build_records", "count_suggestions", "display_text", "iter_records", "source_text",
           "suggestion_agent", "suggestions_from_labels"]

# question, value, score (a float, or one per label of a list value), agent, confidence (the labeler's item-level
# confidence: for tags, its least sure label decision, picked or not)
Suggestion = tuple[str, Any, Any, str, Optional[float]]

# What Argilla 2.8's Markdown renderer (marked with GFM, `breaks`, KaTeX; then DOMPurify) turns into markup, and how
# `display_text` keeps it literal. A backslash before ASCII punctuation is a Markdown escape; every backslash of the
# text is escaped itself, so the only other backslash-punctuation pairs are the escapes added here, and the only
# unescaped `&name;` are the spacing entities added here: `source_text` undoes both without knowing the rules.
_PUNCTUATION = r"!-/:-@\[-`{-~"
_ENTITIES = {" ": "&nbsp;", "\t": "&emsp;"}  # keep the width of indentation and runs (HTML collapses white space)
_BLANK = "&#8203;"  # starts a blank line Markdown would drop (a leading one, or the second of a run)
_UNDONE = {**{entity: char for char, entity in _ENTITIES.items()}, _BLANK: ""}  # what `source_text` undoes
_UNDO = re.compile(rf"\\([{_PUNCTUATION}])|" + "|".join(map(re.escape, _UNDONE)))
_ANYWHERE = re.compile(
    r"[\\|]"  # an escape, a table cell
    r"|<(?=[A-Za-z/!?])"  # an HTML tag, comment or autolink (`a < b` stays)
    r"|&(?=#?[A-Za-z0-9_]+;)"  # an entity (`R&D`, `fish & chips` stay)
    r"|(?i:(?<=https)|(?<=http)|(?<=ftp)):(?=//)"  # a bare URL (GFM autolink)
    r"|(?i:(?<=\bwww))\."  # www.example.org (GFM autolink)
    r"|(?<=[A-Za-z0-9._+-])@(?=[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]*[A-Za-z0-9])"  # an e-mail address (GFM autolink)
)
_PAIRED = "*_~`$"  # emphasis, strikethrough, code spans and fences, math: markup only with two of them in the text
_LINK = re.compile(r"\][(\[:]")  # `[a](b)`, `![a](b)`, `[a][b]`, `[a]: b`: brackets are markup only with one of these
_LINE_START = re.compile(  # the character escaped at the start of a line (after its indentation)
    r"#(?=#{0,5}(?:[ \t]|$))"  # an ATX heading
    r"|>"  # a block quote
    r"|[-+*](?=[ \t]|$|[-+*])"  # a list item, a rule, a setext underline
    r"|=(?==*[ \t]*$)"  # a setext underline
)
_ORDERED = re.compile(r"\d{1,9}[.)](?=[ \t]|$)")  # an ordered list item: its `.` or `)` is escaped
# inside a line: three or more blanks, or a tab (two spaces between sentences show as one, as in any web page)
_RUN = re.compile(r"(?<=\S)(?: [ \t]{2,}| ?\t[ \t]*)(?=\S)")
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")  # marked's line endings


def _escape_line(line: str, special: str) -> str:
    """One non-blank line: its markup characters escaped, its indentation and inner runs of blanks as entities."""
    body = line.lstrip(" \t")
    indent = line[:len(line) - len(body)]
    marks = {m.start() for m in _ANYWHERE.finditer(body)}
    marks.update(n for n, char in enumerate(body) if char in special)
    ordered = _ORDERED.match(body)
    if ordered:
        marks.add(ordered.end() - 1)
    elif body[:1] in "#>-+*=" and _LINE_START.match(body):
        marks.add(0)
    escaped = "".join("\\" + char if n in marks else char for n, char in enumerate(body))
    spaced = _RUN.sub(lambda m: (" " if m.group(0)[0] == " " else _ENTITIES["\t"])
                      + "".join(_ENTITIES[c] for c in m.group(0)[1:]), escaped)
    return "".join(_ENTITIES[c] for c in indent) + spaced


def display_text(text: str) -> str:
    """`text` as the Markdown Argilla's UI shows exactly as written, with nothing in it turned into markup.

    Escapes only what the UI's renderer would act on (HTML tags and entities, paired emphasis/code/math characters,
    links, bare URLs and e-mail addresses, headings, lists, quotes and rules at a line's start, table pipes,
    backslashes) and keeps indentation, runs of blanks, tabs and blank lines visible with entities; line endings
    stay as they are. Ordinary prose comes back unchanged, and `source_text(display_text(t)) == t` for every `t`.
    """
    special = "".join(c for c in _PAIRED if text.count(c) >= 2) + ("[]" if _LINK.search(text) else "")
    parts = _LINE_BREAK.split(text)
    lines, endings = parts[0::2], parts[1::2] + [""]
    last = max((n for n, line in enumerate(lines) if line.strip(" \t")), default=-1)
    out, seen, blank_before = [], False, False
    for n, (line, ending) in enumerate(zip(lines, endings)):
        if line.strip(" \t"):
            out.append(_escape_line(line, special) + ending)
            seen, blank_before = True, False
        else:  # Markdown drops a leading blank line and all but the first of a run: those show as an empty line
            dropped = n < last and (not seen or blank_before)
            out.append((_BLANK if dropped else "") + line + ending)
            blank_before = True
    return "".join(out)


def source_text(shown: str) -> str:
    """The source text of a field `display_text` wrote: its escapes and spacing entities undone (the inverse).

    Every project path that reads a field's text back from Argilla applies this; a text read through the SDK or
    `dataset.to_datasets()` directly is the display form.
    """
    return _UNDO.sub(lambda m: m.group(1) if m.group(1) is not None else _UNDONE[m.group(0)], shown)


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _label_scores(row: Any) -> dict[str, float]:
    """Per-label probabilities of a labels row (`probabilities`, a JSON object or a mapping), when it has them."""
    raw = getattr(row, "probabilities", None)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return {}
    return {str(k): float(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def suggestion_agent(model: str) -> str:
    """A labeler's model id as Argilla takes a suggestion's `agent` (letters, digits, `-_:./` and spaces): any other
    character becomes `-` (`student:logreg(C=100)@all-MiniLM-L6-v2+char-ngrams` -> `student:logreg-C-100--all-...`)."""
    agent = re.sub(r"[^a-zA-Z0-9\-_:./\s]", "-", model)
    return agent if re.search(r"[a-zA-Z0-9]", agent) else "labeler"


def suggestions_from_labels(config: ProjectConfig, labels: pd.DataFrame) -> dict[str, list[Suggestion]]:
    """`{item_id: [(question, value, score, agent)]}` from a labels table (ok rows of known questions only)."""
    known = {q.name: q for q in config.questions}
    ok = labels[(labels["status"] == "ok") & labels["question"].isin(list(known))]
    by_item: dict[str, list[Suggestion]] = {}
    for row in ok.itertuples(index=False):
        value: Any = row.label
        score: Any = _clean(row.confidence)
        question = known[row.question]
        if question.kind == QuestionKind.rating:
            value = int(float(value))
        elif question.kind == QuestionKind.multi_label:  # a list of labels, one score per label (Argilla 2.8)
            value = list(shape_of(question).parse(value))
            if not value:
                continue  # Argilla takes no empty suggestion: "no label applies" is shown as no suggestion
            scores = _label_scores(row)
            score = [scores.get(label, score) for label in value]
        elif question.kind == QuestionKind.span:  # spans, one score each (`"start:end:label"` in probabilities)
            spans = shape_of(question).parse(value)
            if not spans:
                continue  # no entity: shown as no suggestion, as Argilla takes no empty one
            scores = _label_scores(row)
            value = [{"start": a, "end": b, "label": c} for a, b, c in spans]
            score = [scores.get(f"{a}:{b}:{c}", score) for a, b, c in spans]
        by_item.setdefault(str(row.item_id), []).append((row.question, value, score, suggestion_agent(str(row.model)),
                                                          _clean(row.confidence)))
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
                for question, value, score, agent, confidence in suggestions.get(item_id, []):
                    record_suggestions.append(rg.Suggestion(question_name=question, value=value, score=score,
                                                            agent=agent, type="model"))
                    if confidence is not None:
                        metadata[confidence_metadata_name(question)] = float(confidence)
            vector = vectors.get(item_id) if vectors else None
            record_vectors = {VECTOR_NAME: [float(x) for x in vector]} if vector is not None else None
            yield rg.Record(id=item_id, fields=fields, metadata=metadata or None,
                            suggestions=record_suggestions or None, vectors=record_vectors)
