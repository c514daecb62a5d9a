"""Build the curated dataset from a run directory: one row per item, its final labels and their provenance.

Inputs (under `config.run_path`): `annotations.parquet` from `curate sync` (required), `labels.parquet` from
`curate label` (optional). Items come from the config's data file; gold item ids from `hub.gold_ids_path`.
Item text is redacted as every stage sees it (`workspaces.redaction`) unless `hub.restore_redacted: true` asks
for the originals.

Final labels:
- label questions: the strict majority of the submitted human values (more than half); with no majority the item is
  excluded (`hub.exclude_no_majority`, default) and counted;
- rating questions: the median of the submitted human values (the lower median for an even count, so the value stays
  on the scale);
- no human value: a label no human gave is published ONLY for items `curate triage` routed `auto` under a gate that is
  open now for the labeler version on disk (`auto-accepted`, with the gate decision's id in `<q>_gate_id`); otherwise
  the item is left out and counted as `unreviewed` (or, only with `triage.keep_unverified: true`, kept with source
  `unverified`); gold items: their recorded labels (`gold`);
- text questions: the answers are kept (`<q>_values`) but never voted on (no final value, no exclusion).

Sources, per question and for the item (the item's `source` is the one of its primary question, the first label
question): `gold`, `human-consensus` (>= 2 humans with a majority), `human-single` (one human), `llm-reviewed` (humans
agreed with or overrode an LLM label), `auto-accepted` (a labeler's label under an open gate), `unverified`.

A preference project's split is its pairs in TRL's conventions instead (`prompt`, `chosen`, `rejected`, by prompt:
see `workspaces.curated.pairs`).

Consent: an item without consent (`data.consent_column`, `items.check_consent`) is never a curated row, whatever its
labels (gold included); it is counted as `no_consent`, and its responses count nowhere (not even as annotations of
unknown items).

Splits: gold items form a `gold` split and never enter train/validation/test, which are drawn with sklearn's
`train_test_split`, stratified by the primary question's final label and seeded with `hub.seed`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..config import ProjectConfig, QuestionConfig, QuestionKind, TaskKind
from ..shapes import PickCountError, ShapeValueError, iob2_names, iob2_tags, shape_of, whitespace_tokens
from ..errors import RunFileError
from ..items import check_consent, load_gold_ids, load_items, recorded_labels
from ..redaction import restore_items
from ..judge.gate import GateState, gate_state
from ..judge.labeler import load_labeler
from ..rundir import ANNOTATIONS, LABELS, ROUTES, read_arrow
from ..votes import EXCLUSION_FLAGS, human_label
from .pairs import pair_features, pair_tables

__all__ = ["CuratedDataset", "CurationError", "SOURCES", "SPLITS", "build_curated", "curated_features",
           "load_gold_ids"]

SOURCES = ("gold", "human-consensus", "human-single", "llm-reviewed", "auto-accepted", "unverified")
SPLITS = ("train", "validation", "test", "gold")

_Value = Union[str, int, tuple[str, ...]]


class CurationError(RunFileError):
    """The run directory lacks what curation needs, or holds something unreadable. The message names the file."""


@dataclass
class CuratedDataset:
    """The curated rows per split (Arrow tables in the schema of `curated_features`), plus what was left out and
    why. `splits` gives them as pandas frames."""

    tables: dict[str, pa.Table]
    primary_question: str
    excluded: dict[str, int] = field(default_factory=dict)
    excluded_by_question: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    annotators: list[str] = field(default_factory=list)
    llm: list[dict[str, str]] = field(default_factory=list)
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)  # question -> the gate in force (or why none)

    @cached_property
    def splits(self) -> dict[str, pd.DataFrame]:
        """The splits as pandas frames, list columns as Python lists (made on first use)."""
        return {name: _frame(table) for name, table in self.tables.items()}

    @property
    def rows(self) -> dict[str, int]:
        """Rows per split."""
        return {name: len(table) for name, table in self.tables.items()}

    def counts_by_source(self, question: Optional[str] = None) -> dict[str, dict[str, int]]:
        """`{split: {source: rows}}` for the item-level source (or one question's source)."""
        column = "source" if question is None else f"{question}_source"
        if question == self.primary_question and any(column not in t.column_names for t in self.tables.values()):
            column = "source"  # a pair row carries the decider of its preference question as its `source`
        counts = {name: table.select([column]).to_pandas()[column].value_counts(dropna=False).sort_index()
                  for name, table in self.tables.items() if column in table.column_names}
        return {name: {str(k): int(v) for k, v in values.items()} for name, values in counts.items()}

    def to_dataset(self, config: ProjectConfig, split: str) -> "Any":
        """One split as a `datasets.Dataset` with the explicit curated features (no pandas in between)."""
        from datasets import Dataset, DatasetInfo
        from datasets.table import InMemoryTable

        features = curated_features(config)
        return Dataset(InMemoryTable(self.tables[split].cast(features.arrow_schema)),
                       info=DatasetInfo(features=features))

    def to_dataset_dict(self, config: ProjectConfig) -> "Any":
        """The splits as a `datasets.DatasetDict` with explicit features (identical schema in every split)."""
        from datasets import DatasetDict

        return DatasetDict({name: self.to_dataset(config, name) for name in self.tables})


def build_curated(config: ProjectConfig) -> CuratedDataset:
    """Build the curated dataset of a project from its run directory (deterministic for a given run and seed).

    The run files are read as Arrow tables and the items are resolved `_CHUNK` at a time: only one chunk's
    annotations, labels and rows are ever Python objects, so memory stays near the size of the curated rows."""
    run = config.run_path
    annotations = _read_annotations(run, config)
    llm_table = _read_llm_labels(run, config)
    accepted, gates = _auto_accepted(config)
    items = load_items(config)
    every_id = set(items["item_id"])
    consent = check_consent(config, items)  # an item without consent is never curated
    items = consent.valid
    if config.hub.restore_redacted:  # asked for explicitly: the originals, from the run dir's token map
        items = restore_items(config, items)
    gold_ids = load_gold_ids(config) | _gold_column_ids(config, items)
    known = set(items["item_id"])
    excluded = {"no_majority": 0, "unreviewed": 0, "unlabeled": 0, "unknown_item_annotations": 0,
                "gold_without_labels": 0, "no_consent": len(consent.problems)}
    is_known = pc.is_in(annotations["item_id"], value_set=pa.array(sorted(known), pa.string()))
    is_item = pc.is_in(annotations["item_id"], value_set=pa.array(sorted(every_id), pa.string()))
    unknown = _prepare_annotations(annotations.filter(pc.invert(is_item)), config, run, {})
    excluded["unknown_item_annotations"] = len(unknown)
    unknown_gold = sorted(gold_ids - every_id)
    notes = [f"{len(unknown_gold)} gold id(s) are not items of this project and were ignored"] if unknown_gold else []
    gold_ids &= known

    annotations = annotations.filter(pc.or_(is_known, pc.invert(is_item)))  # none of an item without consent
    is_known = pc.is_in(annotations["item_id"], value_set=pa.array(sorted(known), pa.string()))
    models = (_dawid_skene(config, _prepare_annotations(annotations, config, run, {}))  # counted below
              if config.consensus.method == "dawid-skene" else {})
    primary = _primary_question(config)
    by_question = {q.name: 0 for q in config.questions}
    schema = item_features(config).arrow_schema
    columns = schema.names
    chunks: list[pa.Table] = []
    models_seen: set[tuple[str, str, str]] = set()
    invalid: dict[str, list[str]] = {}  # question -> why each response that breaks it was left out
    for chunk in _item_chunks(items.sort_values("item_id")):
        ids = pa.array(chunk["item_id"].tolist(), pa.string())
        humans = _group_values(_prepare_annotations(
            annotations.filter(pc.is_in(annotations["item_id"], value_set=ids)), config, run, invalid))
        llm_labels = _llm_labels(llm_table, ids, config, run)
        auto = _accepted_for(accepted, ids)
        models_seen |= _llm_models(llm_labels)
        gold_values = _gold_values(config, chunk, gold_ids, humans)
        rows: list[dict[str, Any]] = []
        for item in chunk.to_dict("records"):
            item_id = item["item_id"]
            is_gold = item_id in gold_ids
            row: dict[str, Any] = {"item_id": item_id}
            row.update({f.name: _text(item.get(f.source_column)) for f in config.fields})
            no_majority, labeled = False, False
            for question in config.questions:
                entries = humans.get((item_id, question.name), [])
                cell = _resolve(question, entries, llm_labels.get((item_id, question.name)),
                                gold_values.get((item_id, question.name)) if is_gold else None, is_gold,
                                auto.get((item_id, question.name)), config.triage.keep_unverified)
                model = models.get(question.name)
                if model is not None and entries and not is_gold and item_id in model.labels:
                    cell = _with_consensus(question, cell, model.labels[item_id], model.confidence[item_id])
                if cell.pop("_no_majority"):
                    no_majority = True
                    by_question[question.name] += 1
                labeled = labeled or cell[question.name] is not None
                as_hub = _HUB_CELLS.get(question.kind)
                if as_hub is not None:
                    as_hub(config, question, cell, row)
                row.update(cell)
            if no_majority and config.hub.exclude_no_majority:
                excluded["no_majority"] += 1
                continue
            if not labeled:
                unreviewed = any((item_id, q.name) in llm_labels for q in config.questions)
                excluded["gold_without_labels" if is_gold else "unreviewed" if unreviewed else "unlabeled"] += 1
                continue
            stamps = [at for q in config.questions for _, _, at in humans.get((item_id, q.name), [])
                      if at is not None and not pd.isna(at)]
            _finish_row(row, config, primary, stamps)
            rows.append(row)
        chunks.append(pa.Table.from_pandas(pd.DataFrame(rows, columns=columns), schema=schema, preserve_index=False))
        del rows, humans, llm_labels, auto, gold_values

    for name, reasons in invalid.items():
        notes.append(f"{len(reasons)} response(s) to {name!r} break the question and were left out (not guessed), "
                     f"e.g. {reasons[0]}")
    table = pa.concat_tables(chunks) if chunks else schema.empty_table()
    del chunks
    submitted_annotators = sorted(str(a) for a in pc.unique(annotations.filter(is_known)["annotator"]).to_pylist())
    llm = [{"question": q, "model": m, "prompt_hash": h} for q, m, h in sorted(models_seen)]
    if config.task == TaskKind.preference:  # a pair's split is prompt / chosen / rejected (`curated.pairs`)
        tables = pair_tables(config, table, excluded, notes)
    else:
        thin = table.select(["source", primary]).to_pandas()  # what the splits are drawn on, one row per item
        is_gold = thin["source"] == "gold"
        positions = _split(thin[~is_gold], primary, config, notes)
        if gold_ids:
            positions["gold"] = thin[is_gold]
        # the rows were built in item_id order, so taking each split's positions in order keeps it sorted by item_id
        tables = {name: table.take(pa.array(np.sort(part.index.to_numpy()), pa.int64()))
                  for name, part in positions.items() if len(part) or name == "gold"}
    return CuratedDataset(tables=tables, primary_question=primary, excluded=excluded,
                          excluded_by_question={k: v for k, v in by_question.items() if v}, notes=notes,
                          annotators=submitted_annotators, llm=llm, gates=gates)


def curated_features(config: ProjectConfig) -> "Any":
    """The `datasets.Features` of a curated row: a pair's (`curated.pairs.pair_features`) for a preference project,
    else an item's (`item_features`)."""
    return pair_features(config) if config.task == TaskKind.preference else item_features(config)


def item_features(config: ProjectConfig) -> "Any":
    """The `datasets.Features` of a curated item: item fields, per-question label + provenance, item provenance."""
    from datasets import ClassLabel, Features, List, Value

    features: dict[str, Any] = {"item_id": Value("string")}
    features.update({f.name: Value("string") for f in config.fields})
    span = {"start": Value("int64"), "end": Value("int64"), "label": Value("string")}
    for q in config.questions:
        kind = (Value("int64") if q.kind == QuestionKind.rating else
                List(ClassLabel(names=list(q.labels or {}))) if q.kind == QuestionKind.multi_label else
                List(span) if q.kind == QuestionKind.span else Value("string"))
        if q.kind == QuestionKind.span:  # the CoNLL / WNUT layout beside the character spans
            features["tokens"] = List(Value("string"))
            features[_tags_column(config, q)] = List(ClassLabel(names=iob2_names(q)))
        features.update({
            q.name: kind,
            f"{q.name}_source": Value("string"),
            f"{q.name}_gate_id": Value("string"),
            f"{q.name}_agreement": Value("float64"),
            f"{q.name}_posterior": Value("float64"),
            f"{q.name}_annotators": List(Value("string")),
            f"{q.name}_values": List(kind),
            f"{q.name}_llm_label": kind,
            f"{q.name}_llm_confidence": Value("float64"),
            f"{q.name}_llm_model": Value("string"),
            f"{q.name}_llm_prompt_hash": Value("string"),
            f"{q.name}_llm_overridden": Value("bool"),
        })
    features.update({
        "source": Value("string"),
        "agreement": Value("float64"),
        "annotators": List(Value("string")),
        "n_annotators": Value("int64"),
        "guideline_hash": Value("string"),
        "first_annotated_at": Value("string"),
        "last_annotated_at": Value("string"),
    })
    return Features(features)


# ---- reading the run directory ----------------------------------------------------------------------------------

def _read_annotations(run: Path, config: ProjectConfig) -> pa.Table:
    """The counted responses to the config's questions (submitted, not flagged), as an Arrow table."""
    table = read_arrow(run, ANNOTATIONS, columns=["item_id", "question", "annotator", "value", "status"],
                       optional=("updated_at", *EXCLUSION_FLAGS), text=("item_id", "question", "annotator", "status"))
    assert table is not None
    keep = pc.and_(pc.equal(table["status"], "submitted"),
                   pc.is_in(table["question"], value_set=pa.array([q.name for q in config.questions], pa.string())))
    for flag in EXCLUSION_FLAGS:  # kept in the synced table, never counted (`workspaces.votes.counted`)
        if flag in table.column_names:
            keep = pc.and_(keep, pc.invert(pc.fill_null(table[flag].cast(pa.bool_()), False)))
    table = table.filter(keep)
    if "updated_at" not in table.column_names:
        table = table.append_column("updated_at", pa.nulls(len(table), pa.timestamp("ns", tz="UTC")))
    return table.select(["item_id", "question", "annotator", "value", "updated_at"])


def _prepare_annotations(table: pa.Table, config: ProjectConfig, run: Path,
                         invalid: Optional[dict[str, list[str]]] = None) -> pd.DataFrame:
    """Rows of `_read_annotations` as typed values, one per (item, question, annotator): the latest submitted.

    A value the server could not hold (an unknown label, a rating off the scale) is an error naming the file. With
    `invalid`, a response that breaks a rule Argilla does not enforce (a multi-label answer outside `min`/`max`) is
    left out and its reason kept there, per question; without it, that is an error too."""
    path = ANNOTATIONS.path(run)
    frame = table.to_pandas()
    frame["annotator"] = frame["annotator"].astype(str)
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True, errors="coerce")
    values, keep = [], []
    for question, value, item_id, annotator in zip(frame["question"], frame["value"], frame["item_id"],
                                                   frame["annotator"]):
        try:
            values.append(shape_of(config.question(question)).parse(value))
            keep.append(True)
        except PickCountError as exc:
            if invalid is None:
                raise CurationError(f"{path}: {exc}") from None
            invalid.setdefault(question, []).append(f"item {item_id}, {annotator}: {exc}")
            values.append(None)
            keep.append(False)
        except ShapeValueError as exc:  # a value the server could not hold: the file is wrong
            raise CurationError(f"{path}: {exc}") from None
    frame["value"] = pd.Series(values, index=frame.index, dtype=object)
    frame = frame[pd.Series(keep, index=frame.index, dtype=bool)]
    frame = frame.sort_values(["item_id", "question", "annotator", "updated_at"], na_position="first")
    return frame.drop_duplicates(["item_id", "question", "annotator"], keep="last").reset_index(drop=True)


def _read_llm_labels(run: Path, config: ProjectConfig) -> Optional[pa.Table]:
    """The labeler's rows of `labels.parquet` for the config's questions (None without the file)."""
    table = read_arrow(run, LABELS, required=False, columns=["item_id", "question", "label"],
                       optional=("confidence", "model", "prompt_hash", "status"), text=("item_id", "question"))
    if table is None:
        return None
    return table.filter(pc.is_in(table["question"], value_set=pa.array([q.name for q in config.questions],
                                                                          pa.string())))


def _llm_labels(table: Optional[pa.Table], ids: pa.Array, config: ProjectConfig, run: Path
                ) -> dict[tuple[str, str], dict[str, Any]]:
    """`{(item, question): label, confidence, model, prompt_hash}` for the items `ids` (ok rows on the scale)."""
    if table is None:
        return {}
    path = LABELS.path(run)
    labels: dict[tuple[str, str], dict[str, Any]] = {}
    for row in table.filter(pc.is_in(table["item_id"], value_set=ids)).to_pylist():
        if row.get("status", "ok") != "ok" or _missing(row["label"]):
            continue
        try:
            label = _coerce(config.question(row["question"]), row["label"], path)
        except CurationError:
            continue  # an LLM label outside the scale is not a label
        confidence = row.get("confidence")
        labels[(str(row["item_id"]), row["question"])] = {
            "label": label,
            "confidence": None if _missing(confidence) else float(confidence),
            "model": None if _missing(row.get("model")) else str(row["model"]),
            "prompt_hash": None if _missing(row.get("prompt_hash")) else str(row["prompt_hash"]),
        }
    return labels


def _coerce(question: QuestionConfig, value: Any, path: Path) -> _Value:
    """A stored value (strings in annotations.parquet) as the question's type, checked by its shape."""
    try:
        return shape_of(question).parse(value)
    except ShapeValueError as exc:
        raise CurationError(f"{path}: {exc}") from None


def _group_values(annotations: pd.DataFrame) -> dict[tuple[str, str], list[tuple[str, _Value, Any]]]:
    grouped: dict[tuple[str, str], list[tuple[str, _Value, Any]]] = {}
    for item_id, question, annotator, value, at in annotations[
            ["item_id", "question", "annotator", "value", "updated_at"]].itertuples(index=False):
        grouped.setdefault((item_id, question), []).append((annotator, value, at))
    return grouped


def _gold_column_ids(config: ProjectConfig, items: pd.DataFrame) -> set[str]:
    """Items with a gold label in a `reference.gold_columns` column."""
    ids: set[str] = set()
    for column in config.reference.gold_columns.values():
        if column in items.columns:
            ids |= set(items.loc[items[column].notna(), "item_id"])
    return ids


def _gold_values(config: ProjectConfig, items: pd.DataFrame, gold_ids: set[str],
                 humans: dict[tuple[str, str], list[tuple[str, _Value, Any]]]
                 ) -> dict[tuple[str, str], list[tuple[str, _Value, Any]]]:
    """Gold items' labels: a gold column's value (`reference.gold_columns`), else the recorded human labels in the
    data, else their submitted annotations."""
    if not gold_ids:
        return {}
    values: dict[tuple[str, str], list[tuple[str, _Value, Any]]] = {}
    for question, column in config.reference.gold_columns.items():
        if column not in items.columns:
            continue
        spec = config.question(question)
        for item_id, value in zip(items["item_id"], items[column]):
            if item_id in gold_ids and value is not None and not (isinstance(value, float) and pd.isna(value)):
                values[(item_id, question)] = [("gold", _coerce(spec, value, config.data.path), None)]
    if config.human_labels is not None and config.human_labels.column in items.columns:
        recorded = recorded_labels(config, items[items["item_id"].isin(gold_ids)])
        for item_id, question, annotator, value in recorded.itertuples(index=False):
            if (item_id, question) not in values or values[(item_id, question)][0][0] != "gold":
                values.setdefault((item_id, question), []).append((annotator, value, None))
    for key, entries in humans.items():
        if key[0] in gold_ids and key not in values:
            values[key] = entries
    return values


# ---- final labels ----------------------------------------------------------------------------------------------

def _dawid_skene(config: ProjectConfig, annotations: pd.DataFrame) -> dict[str, Any]:
    """Dawid-Skene per label question over the submitted human values (`consensus: {method: dawid-skene}`)."""
    from ..agreement.consensus import dawid_skene

    models = {}
    for question in config.questions:
        if question.kind == QuestionKind.label:
            rows = annotations[annotations["question"] == question.name]
            table = pd.DataFrame({"unit": rows["item_id"], "annotator": rows["annotator"], "value": rows["value"]})
            model = dawid_skene(table, question)
            if model is not None:
                models[question.name] = model
    return models


def _with_consensus(question: QuestionConfig, cell: dict[str, Any], label: str, posterior: float) -> dict[str, Any]:
    """The cell with Dawid-Skene's label (an item with no strict majority gets one) and its posterior."""
    name = question.name
    values = cell[f"{name}_values"]
    cell.update({name: label, f"{name}_posterior": posterior, "_no_majority": False,
                 f"{name}_agreement": sum(v == label for v in values) / len(values) if values else None})
    if cell[f"{name}_llm_label"] is not None:
        cell[f"{name}_llm_overridden"] = cell[f"{name}_llm_label"] != label
    return cell


def _auto_accepted(config: ProjectConfig) -> tuple[Optional[pa.Table], dict[str, dict[str, Any]]]:
    """Labels a labeler may publish without a human: `auto` routes whose gate is open now for the labeler version on
    disk. Returns them as a table (`item_id, question, label, gate_id`; None when there are none) and, per question,
    the gate in force (or why none)."""
    routes = read_arrow(config.run_path, ROUTES, required=False,
                        columns=["item_id", "question", "route", "label", "gate_id", "labeler"],
                        text=("item_id", "question", "route", "gate_id", "labeler"))
    if routes is None or not len(routes):
        return None, {}
    accepted: list[pa.Table] = []
    gates: dict[str, dict[str, Any]] = {}
    for question in sorted(str(q) for q in pc.unique(routes["question"]).to_pylist()):
        rows = routes.filter(pc.equal(routes["question"], question))
        identity = json.loads(rows["labeler"][0].as_py())
        state = gate_state(config, question, identity)
        current = _current_identity(config, state, question)
        gates[question] = _gate_summary(state, current == identity)
        if not state.open or state.passed is None or current != identity:
            continue
        auto = pc.and_(pc.equal(rows["route"], "auto"), pc.equal(rows["gate_id"], state.passed.id))
        accepted.append(rows.filter(auto).select(["item_id", "question", "label", "gate_id"]))
    return (pa.concat_tables(accepted) if accepted else None), gates


def _accepted_for(accepted: Optional[pa.Table], ids: pa.Array) -> dict[tuple[str, str], dict[str, Any]]:
    """`{(item, question): {label, gate_id}}` of the auto-accepted labels of the items `ids`."""
    if accepted is None:
        return {}
    return {(row["item_id"], str(row["question"])): {"label": row["label"], "gate_id": row["gate_id"]}
            for row in accepted.filter(pc.is_in(accepted["item_id"], value_set=ids)).to_pylist()}


def _current_identity(config: ProjectConfig, state: GateState, question: str) -> Optional[dict[str, Any]]:
    """The identity of the labels on disk now, for the labeler kind the gate measured."""
    if state.passed is None or not state.passed.labeler_kind:
        return None
    try:
        return load_labeler(config, state.passed.labeler_kind, question).identity
    except RunFileError:
        return None


def _gate_summary(state: GateState, same_labeler: bool) -> dict[str, Any]:
    passed = state.passed
    summary: dict[str, Any] = {"open": state.open and same_labeler, "reason": state.reason if same_labeler else
                               "the labels on disk are not those the gate measured (labeler changed)"}
    if passed is not None:
        summary.update(id=passed.id, time=passed.time, threshold=passed.threshold,
                       target_precision=passed.target_precision, precision=passed.precision,
                       precision_lower=passed.precision_lower, coverage=passed.coverage, metric=passed.metric,
                       value=passed.value, labeler=passed.labeler_kind)
    return summary


def _resolve(question: QuestionConfig, entries: list[tuple[str, _Value, Any]], llm: Optional[dict[str, Any]],
             gold: Optional[list[tuple[str, _Value, Any]]], is_gold: bool, auto: Optional[dict[str, Any]] = None,
             keep_unverified: bool = False) -> dict[str, Any]:
    name = question.name
    if is_gold:
        entries = gold or []
    values = [v for _, v, _ in entries]
    final, no_majority = _final_value(question, values)
    gate_id = None
    if question.kind == QuestionKind.text:  # free text is kept as provenance, never voted on
        source = None
    elif is_gold:
        source = "gold" if final is not None else None
    elif values:
        source = "llm-reviewed" if llm else ("human-consensus" if len(values) >= 2 else "human-single")
    elif auto is not None:  # a label no human gave, under a gate that is open now
        source, gate_id = "auto-accepted", auto["gate_id"]
        final = shape_of(question).parse(auto["label"])
    elif llm and keep_unverified:
        source, final = "unverified", llm["label"]
    else:
        source = None
    agreement = sum(v == final for v in values) / len(values) if values and final is not None else None
    return {
        name: final,
        f"{name}_source": source,
        f"{name}_gate_id": gate_id,
        f"{name}_agreement": agreement,
        f"{name}_posterior": None,
        f"{name}_annotators": [a for a, _, _ in entries],
        f"{name}_values": values,
        f"{name}_llm_label": llm["label"] if llm else None,
        f"{name}_llm_confidence": llm["confidence"] if llm else None,
        f"{name}_llm_model": llm["model"] if llm else None,
        f"{name}_llm_prompt_hash": llm["prompt_hash"] if llm else None,
        f"{name}_llm_overridden": (llm["label"] != final) if llm and values and final is not None else None,
        "_no_majority": no_majority,
    }


def _as_class_indices(config: ProjectConfig, question: QuestionConfig, cell: dict[str, Any],
                      row: dict[str, Any]) -> None:
    """A multi-label cell's label sets as `Sequence(ClassLabel)` indices (the Hub feature), in label order."""
    position = {label: i for i, label in enumerate(question.labels or {})}
    name = question.name

    def indices(value: Any) -> Optional[list[int]]:
        return None if value is None else [position[label] for label in value]

    cell[name] = indices(cell[name])
    cell[f"{name}_values"] = [indices(v) for v in cell[f"{name}_values"]]
    cell[f"{name}_llm_label"] = indices(cell[f"{name}_llm_label"])


def _tags_column(config: ProjectConfig, question: QuestionConfig) -> str:
    spans = [q.name for q in config.questions if q.kind == QuestionKind.span]
    return "ner_tags" if spans == [question.name] else f"{question.name}_ner_tags"


def _as_span_records(config: ProjectConfig, question: QuestionConfig, cell: dict[str, Any],
                     row: dict[str, Any]) -> None:
    """A span cell as the Hub holds it: `{start, end, label}` records, and the row's `tokens` and IOB2 tags (as
    `ClassLabel` indices) of the question's field."""
    name = question.name

    def records(value: Any) -> Optional[list[dict[str, Any]]]:
        return None if value is None else [{"start": a, "end": b, "label": c} for a, b, c in value]

    text = str(row.get(question.field or "") or "")
    spans = cell[name]
    names = iob2_names(question)
    row["tokens"] = [text[a:b] for a, b in whitespace_tokens(text)]
    row[_tags_column(config, question)] = None if spans is None else [
        names.index(tag) for tag in iob2_tags(text, spans)]
    cell[name] = records(spans)
    cell[f"{name}_values"] = [records(v) for v in cell[f"{name}_values"]]
    cell[f"{name}_llm_label"] = records(cell[f"{name}_llm_label"])


_HUB_CELLS = {QuestionKind.multi_label: _as_class_indices, QuestionKind.span: _as_span_records}


def _final_value(question: QuestionConfig, values: list[_Value]) -> tuple[Optional[_Value], bool]:
    """(final value, whether the humans had no majority): the one human-label rule, `votes.human_label`."""
    vote = human_label(question, values)
    return vote.label, vote.no_majority


def _finish_row(row: dict[str, Any], config: ProjectConfig, primary: str, stamps: list[Any]) -> None:
    row["source"] = row[f"{primary}_source"] or next(
        (row[f"{q.name}_source"] for q in config.questions if row[f"{q.name}_source"]), None)
    row["agreement"] = row[f"{primary}_agreement"]
    annotators = sorted({a for q in config.questions for a in row[f"{q.name}_annotators"]})
    row["annotators"] = annotators
    row["n_annotators"] = len(annotators)
    row["guideline_hash"] = config.guideline_hash
    row["first_annotated_at"] = _iso(min(stamps)) if stamps else None
    row["last_annotated_at"] = _iso(max(stamps)) if stamps else None


def _primary_question(config: ProjectConfig) -> str:
    for question in config.questions:
        if question.kind == QuestionKind.label:
            return question.name
    return config.questions[0].name


# ---- splits ------------------------------------------------------------------------------------------------------

def _split(frame: pd.DataFrame, primary: str, config: ProjectConfig, notes: list[str]) -> dict[str, pd.DataFrame]:
    """train / validation / test, stratified by the primary label when every class is large enough."""
    hub = config.hub
    if len(frame) < 3:
        if len(frame):
            notes.append(f"only {len(frame)} curated item(s): all in train, no validation/test split")
        return {"train": frame}
    strata = frame[primary].map(lambda v: "<none>" if v is None else str(v))
    test, validation_share = hub.test_size, hub.validation_size / (1.0 - hub.test_size)
    stratified = True
    try:
        train_val, test_frame = _train_test_split(frame, test, strata, hub.seed)
    except ValueError:
        stratified = False
        train_val, test_frame = _train_test_split(frame, test, None, hub.seed)
    splits = {"train": train_val, "test": test_frame}
    if hub.validation_size > 0 and len(train_val) >= 2:
        try:
            strata_tv = strata.loc[train_val.index] if stratified else None
            train, validation = _train_test_split(train_val, validation_share, strata_tv, hub.seed)
        except ValueError:
            stratified = False
            train, validation = _train_test_split(train_val, validation_share, None, hub.seed)
        splits.update(train=train, validation=validation)
    if not stratified:
        notes.append(f"splits are not stratified: a class of {primary!r} has too few items to stratify")
    return {name: splits[name] for name in ("train", "validation", "test") if name in splits}


def _train_test_split(frame: pd.DataFrame, size: float, strata: Optional[pd.Series], seed: int
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    left, right = train_test_split(frame, test_size=size, random_state=seed, shuffle=True,
                                   stratify=None if strata is None else strata.loc[frame.index])
    return left, right


# ---- small helpers -----------------------------------------------------------------------------------------------

_CHUNK = 10_000


def _frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as pandas, list columns as Python lists (as the rows were built)."""
    frame = table.to_pandas()
    for name in table.column_names:
        if pa.types.is_list(table.schema.field(name).type):
            frame[name] = [None if v is None else list(v) for v in frame[name]]
    return frame


def _item_chunks(frame: pd.DataFrame) -> Iterator[pd.DataFrame]:
    """`frame` `_CHUNK` rows at a time."""
    for start in range(0, len(frame), _CHUNK):
        yield frame.iloc[start:start + _CHUNK]


def _llm_models(labels: dict[tuple[str, str], dict[str, Any]]) -> set[tuple[str, str, str]]:
    """The (question, model, prompt hash) triples behind some labels."""
    return {(q, v["model"] or "", v["prompt_hash"] or "") for (_, q), v in labels.items()}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _text(value: Any) -> Optional[str]:
    return None if _missing(value) else str(value)


def _iso(stamp: Any) -> str:
    return pd.Timestamp(stamp).tz_convert("UTC").isoformat()
