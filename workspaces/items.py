"""Loading a project's items and its recorded human labels from the file the config names."""

from __future__ import annotations

import datetime as dt
import json
import numbers
import random
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from .config import PAIR_FIELDS, PREFERENCE_LABELS, ConfigError, ProjectConfig
from .redaction import redact_items
from .shapes import ShapeValueError, shape_of

__all__ = [
    "CONSENT_REFUSALS",
    "ItemCheck",
    "NO_CONSENT",
    "PAIR_SOURCES",
    "check_consent",
    "check_items",
    "consent_mask",
    "has_consent",
    "load_gold_ids",
    "load_items",
    "pair_sources",
    "read_table",
    "recorded_choices",
    "recorded_labels",
    "with_pair_columns",
]

_RECORDED_COLUMNS = ["item_id", "question", "annotator", "value"]


def read_table(path: Path, *, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a jsonl / json / csv / parquet file into a DataFrame; a clear error names the file.

    `text_columns` are read as text with no type inference (ids: `007` stays `007`, an empty cell stays missing).
    """
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ConfigError(f"{path}: data file not found")
    try:
        if suffix in {".jsonl", ".ndjson"}:
            return pd.read_json(path, lines=True, dtype=False)
        if suffix == ".json":
            return pd.read_json(path, dtype=False)
        if suffix == ".csv":
            return pd.read_csv(path, dtype={c: str for c in text_columns}, keep_default_na=True,
                               na_values={c: [""] for c in text_columns})
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ConfigError(f"{path}: could not be read as {suffix[1:]}: {exc}") from None
    raise ConfigError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json, .csv or .parquet)")


def _id_text(value: Any) -> Optional[str]:
    """An id as text: ints stay ints (`7`), text is kept as written; missing/blank is None."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def load_items(config: ProjectConfig, *, redact: bool = True) -> pd.DataFrame:
    """The project's items, filtered by `data.where` and cut to `data.limit`, indexed by nothing.

    The id column is renamed to `item_id` (kept as a string) and every field column is checked to exist. The text
    columns are redacted (`config.redaction`, on by default; `workspaces.redaction`): every stage that reads items
    here (publish, label and its few-shot examples, embed, push) sees the same stable tokens, never the raw values.
    `redact=False` gives the raw text (for the run's own use only, never for what leaves it).
    """
    path = config.data.path
    frame = read_table(path, text_columns=(config.data.id_column,))
    for column, value in config.data.where.items():
        if column not in frame.columns:
            raise ConfigError(f"{config.source_path}: data.where.{column}: no such column in {path}")
        frame = frame[frame[column] == value]
    id_column = config.data.id_column
    if id_column not in frame.columns:
        raise ConfigError(f"{config.source_path}: data.id_column: no column {id_column!r} in {path}; "
                          f"columns: {list(frame.columns)}")
    frame = with_pair_columns(config, frame)
    missing = [f.source_column for f in config.fields if f.source_column not in frame.columns]
    if missing:
        raise ConfigError(f"{config.source_path}: fields: no column(s) {missing} in {path}")
    frame = frame.rename(columns={id_column: "item_id"}) if id_column != "item_id" else frame.copy()
    ids = [_id_text(v) for v in frame["item_id"]]
    blank = [i for i, v in enumerate(ids) if v is None]
    if blank:
        rows = ", ".join(str(_source_row(path, frame.index[i])) for i in blank[:5])
        raise ConfigError(f"{path}: {len(blank)} row(s) have no id in column {id_column!r} (data row(s) {rows}); "
                          "every item needs an id")
    frame["item_id"] = ids
    duplicated = frame["item_id"][frame["item_id"].duplicated()].unique().tolist()
    if duplicated:
        raise ConfigError(f"{path}: duplicate ids in column {id_column!r}: {duplicated[:5]}")
    if config.data.limit is not None:
        frame = frame.head(config.data.limit)
    frame = frame.reset_index(drop=True)
    if redact and config.redaction.enabled:
        frame = redact_items(config, frame)
    return frame


PAIR_SOURCES = "pair_sources"  # item column: the data columns shown as response A and B, in that order


def pair_sources(config: ProjectConfig, item_id: str) -> list[str]:
    """The data columns shown as response A and B of a pair: `preference.response_columns` in a random order seeded
    by `preference.shuffle_seed` and the item id (so neither the judge nor a reviewer can learn "A is the chosen")."""
    spec = config.preference
    assert spec is not None
    columns = list(spec.response_columns)
    random.Random(f"{spec.shuffle_seed}:{item_id}").shuffle(columns)
    return columns


def with_pair_columns(config: ProjectConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """A pair from data columns (`candidates: columns`) gets its shown responses as item columns `response_a`,
    `response_b` (the fields `PAIR_FIELDS`) and their source columns in `pair_sources`; other items are unchanged."""
    spec = config.preference
    if spec is None or spec.candidates != "columns":
        return frame
    missing = [c for c in spec.response_columns if c not in frame.columns]
    if missing:
        raise ConfigError(f"{config.source_path}: preference.response_columns: no column(s) {missing} in "
                          f"{config.data.path}")
    frame = frame.copy()
    id_column = "item_id" if "item_id" in frame.columns else config.data.id_column
    orders = [pair_sources(config, str(_id_text(i))) for i in frame[id_column]]
    first, second = spec.response_columns
    swapped = np.array([order[0] != first for order in orders], dtype=bool)
    frame[PAIR_FIELDS[0]] = np.where(swapped, frame[second], frame[first])
    frame[PAIR_FIELDS[1]] = np.where(swapped, frame[first], frame[second])
    frame[PAIR_SOURCES] = orders
    return frame


def recorded_choices(config: ProjectConfig, items: pd.DataFrame) -> pd.DataFrame:
    """A pair's recorded human choice (`preference.human_preferred`: the column the raters preferred) as the
    shown slot, A or B, from one reviewer `preference.human_annotator`; empty when the data records no choice."""
    spec = config.preference
    if spec is None or spec.human_preferred is None or PAIR_SOURCES not in items.columns:
        return pd.DataFrame(columns=_RECORDED_COLUMNS)
    rows = [{"item_id": item_id, "question": spec.preference_question, "annotator": spec.human_annotator,
             "value": PREFERENCE_LABELS[list(order).index(spec.human_preferred)]}
            for item_id, order in zip(items["item_id"], items[PAIR_SOURCES])]
    return pd.DataFrame(rows, columns=_RECORDED_COLUMNS)


def field_texts(config: ProjectConfig, question: Any, items: Optional[pd.DataFrame] = None) -> dict[str, str]:
    """item id -> the text of a span question's `field` (what its character offsets point into); {} for a
    question with no field."""
    if getattr(question, "field", None) is None:
        return {}
    items = load_items(config) if items is None else items
    column = config.field_spec(question.field).source_column
    return {str(i): "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)
            for i, v in zip(items["item_id"], items[column])}


def recorded_labels(config: ProjectConfig, items: pd.DataFrame) -> pd.DataFrame:
    """The human labels recorded in the data, as a tidy table `item_id, question, annotator, value`.

    Values are mapped to the question's scale (`human_labels.values.<q>.map`). A value outside the question's allowed
    values is an error naming the item, so a wrong mapping can never slip into an agreement figure.
    """
    spec = config.human_labels
    choices = recorded_choices(config, items)
    if spec is None and len(choices):
        return choices
    if spec is None:
        raise ConfigError(f"{config.source_path}: no `human_labels` section: the data carries no recorded labels")
    if spec.column not in items.columns:
        raise ConfigError(f"{config.source_path}: human_labels.column: no column {spec.column!r} in {config.data.path}")
    rows: list[dict[str, Any]] = []
    texts = {q.name: items[config.field_spec(q.field).source_column].tolist() for q in config.questions
             if q.field is not None and config.field_spec(q.field).source_column in items.columns}
    for position, (item_id, entries) in enumerate(zip(items["item_id"], items[spec.column])):
        for entry in entries if isinstance(entries, list) else []:
            annotator = str(entry[spec.annotator_key])
            for question_name, mapping in spec.values.items():
                raw = entry.get(mapping.key)
                if raw is None or (isinstance(raw, float) and pd.isna(raw)):
                    continue
                value = mapping.map.get(raw, mapping.map.get(str(raw))) if mapping.map else raw
                question = config.question(question_name)
                shape = shape_of(question)
                if not shape.single_choice:  # tags or spans: checked by the shape, kept as plain JSON values
                    try:
                        parsed = shape.parse(value)
                        if question_name in texts:
                            shape.check_text(parsed, str(texts[question_name][position]))  # type: ignore[attr-defined]
                    except ShapeValueError as exc:
                        raise ConfigError(f"{config.source_path}: human_labels.values.{question_name}: item "
                                          f"{item_id}: {exc}") from None
                    rows.append({"item_id": item_id, "question": question_name, "annotator": annotator,
                                 "value": json.loads(shape.dump(parsed))})
                    continue
                allowed = question.allowed_values
                if value is None or (allowed and value not in allowed):
                    raise ConfigError(f"{config.source_path}: human_labels.values.{question_name}: item {item_id} "
                                      f"has {mapping.key}={raw!r}, which maps to none of {allowed}")
                rows.append({"item_id": item_id, "question": question_name, "annotator": annotator, "value": value})
    labels = pd.DataFrame(rows, columns=_RECORDED_COLUMNS)
    return pd.concat([labels, choices], ignore_index=True) if len(choices) else labels


def _source_row(path: Path, index: Any) -> int:
    """The 1-based data row of a frame index (csv: after the header line)."""
    return int(index) + 1


@dataclass
class ItemCheck:
    """Items that can leave the loop (to Argilla or an LLM), and why the others cannot."""

    valid: pd.DataFrame
    problems: dict[str, str] = field(default_factory=dict)  # item id -> reason

    def counts(self) -> dict[str, int]:
        """Reasons (their first words) and how often."""
        counts: dict[str, int] = {}
        for reason in self.problems.values():
            key = reason.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


def check_items(config: ProjectConfig, items: pd.DataFrame, fields: Optional[list[str]] = None) -> ItemCheck:
    """Check every item before it leaves: required fields non-empty, no field over `data.max_chars`.

    Args:
        config: the project.
        items: `load_items` output.
        fields: the fields that matter (default: all; the LLM passes `llm.fields`).
    """
    specs = [f for f in config.fields if fields is None or f.name in fields]
    limit = config.data.max_chars
    problems: dict[str, str] = {}
    texts: dict[str, pd.Series] = {}
    for spec in specs:  # column-wise (no dict per row): the text, whether it is blank, its length
        if spec.source_column in items.columns:
            column = items[spec.source_column]
            texts[spec.name] = column.where(column.notna(), "").astype(str).reset_index(drop=True)
        else:
            texts[spec.name] = pd.Series([""] * len(items), dtype=str)
    blank = {name: (text.str.strip() == "").to_numpy() for name, text in texts.items()}
    lengths = {name: text.str.len().to_numpy() for name, text in texts.items()}
    flagged = np.zeros(len(items), dtype=bool)
    for spec in specs:
        flagged |= (blank[spec.name] & spec.required) | (lengths[spec.name] > limit)
    if fields is not None:  # the LLM's fields: at least one must hold text
        flagged |= np.logical_and.reduce([blank[s.name] for s in specs]) if specs else True
    ids = items["item_id"].to_numpy()
    for i in np.flatnonzero(flagged):  # only the items with a problem are looked at one by one
        empty_required = [s.name for s in specs if s.required and blank[s.name][i]]
        too_long = [f"{name} ({lengths[name][i]:,} chars)" for name in texts if lengths[name][i] > limit]
        if fields is not None and all(blank[name][i] for name in texts):
            problems[ids[i]] = f"empty: no text in {', '.join(texts)}"
        elif empty_required:
            problems[ids[i]] = f"empty: required field(s) {', '.join(empty_required)} empty"
        elif too_long:
            problems[ids[i]] = f"too long: {', '.join(too_long)} over data.max_chars={limit:,}"
    valid = items[~items["item_id"].isin(set(problems))].reset_index(drop=True)
    return ItemCheck(valid=valid, problems=problems)


NO_CONSENT = "no consent"  # the reason (its first words) an item is withheld for lack of consent, in every count

# Values of `data.consent_column` that refuse (compared lower-case, `_` and spaces as `-`). Anything else that is
# truthy consents: `true`, `yes`, `1`, or a legal basis (`contract`, `legitimate-interest`, a consent date...).
CONSENT_REFUSALS = frozenset({
    "", "0", "0.0", "false", "f", "no", "n", "off", "none", "null", "nan", "n/a", "unknown", "pending",
    "withdrawn", "revoked", "refused", "declined", "denied", "rejected", "opt-out", "opted-out", "no-consent",
})


def _consent_token(text: str) -> str:
    return "-".join(text.strip().lower().replace("_", " ").split())


def has_consent(value: Any) -> bool:
    """Whether one value of `data.consent_column` grants consent: the one rule every stage applies.

    A bool is itself; a number consents unless it is 0 or NaN; a text consents unless it is one of
    `CONSENT_REFUSALS` (so a legal basis such as `contract` consents); a date or time consents unless missing.
    Missing values and anything else (lists, mappings) do not: consent is never guessed.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return False
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Number):
        return bool(not pd.isna(value) and value != 0)  # type: ignore[operator]
    if isinstance(value, str):
        return _consent_token(value) not in CONSENT_REFUSALS
    if isinstance(value, (dt.date, dt.datetime, np.datetime64)):
        return not pd.isna(value)
    return False


def consent_mask(config: ProjectConfig, frame: pd.DataFrame) -> pd.Series:
    """True for each row of `frame` (items, in `load_items` form) whose `data.consent_column` grants consent
    (`has_consent`); every row when the config names no consent column. Index aligned with `frame`.

    Raises:
        ConfigError: the config names a consent column the data lacks.
    """
    column = config.data.consent_column
    if column is None:
        return pd.Series(True, index=frame.index, dtype=bool)
    if column not in frame.columns:
        raise ConfigError(f"{config.source_path}: data.consent_column: no column {column!r} in {config.data.path}; "
                          f"columns: {[c for c in frame.columns if c != PAIR_SOURCES]}")
    return pd.Series([has_consent(v) for v in frame[column]], index=frame.index, dtype=bool)


def check_consent(config: ProjectConfig, items: pd.DataFrame) -> ItemCheck:
    """The items with consent (`valid`) and, for each other item, why it is withheld (`problems`: reasons starting
    with `NO_CONSENT`). Publish, remote labelling and the curated build all call this, so one rule decides."""
    mask = consent_mask(config, items)
    if mask.all():
        return ItemCheck(valid=items.reset_index(drop=True))
    column = config.data.consent_column
    refused = items.loc[~mask, ["item_id", column]]
    problems = {str(item_id): f"{NO_CONSENT}: data.consent_column {column!r} is "
                              + ("missing" if _missing(value) else repr(value))
                for item_id, value in zip(refused["item_id"], refused[column])}
    return ItemCheck(valid=items[mask.to_numpy()].reset_index(drop=True), problems=problems)


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or mapping: not a missing scalar
        return False


def load_gold_ids(config: ProjectConfig) -> set[str]:
    """Gold item ids from `hub.gold_ids_path` (one per line, or a JSON list); empty when not configured. With
    `selection.gold` and no path, the label loop's own gold set, `<run dir>/gold_ids.txt` (empty until drawn)."""
    path = config.hub.gold_ids_path
    if path is None and config.selection.gold:
        from .rundir import GOLD_IDS

        path = GOLD_IDS.path(config.run_path)
        if not path.is_file():
            return set()
    elif path is None:
        return set()
    elif not path.is_absolute() and config.source_path is not None:
        path = config.source_path.parent / path
    if not path.is_file():
        raise ConfigError(f"{config.source_path or config.name}: hub.gold_ids_path: file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            ids = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc}); expected a list of item ids") from None
        if not isinstance(ids, list):
            raise ConfigError(f"{path}: expected a JSON list of item ids, got {type(ids).__name__}")
        return {str(i) for i in ids}
    return {line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")}
