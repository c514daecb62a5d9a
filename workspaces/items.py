"""Loading a project's items and its recorded human labels from the file the config names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import pandas as pd

from .config import ConfigError, ProjectConfig

__all__ = [
    "ANNOTATIONS_FILE",
    "EMBEDDINGS_FILE",
    "LABELS_FILE",
    "PREFERENCES_FILE",
    "REPORT_FILE",
    "load_items",
    "read_run_file",
    "read_table",
    "recorded_labels",
]

# What each stage writes under the run directory (`config.run_path`)
ANNOTATIONS_FILE = "annotations.parquet"  # curate sync
LABELS_FILE = "labels.parquet"  # curate label
EMBEDDINGS_FILE = "embeddings.parquet"  # curate embed
PREFERENCES_FILE = "preferences.parquet"  # curate prefer
REPORT_FILE = "report.json"  # curate report

_RECORDED_COLUMNS = ["item_id", "question", "annotator", "value"]


def read_table(path: Path) -> pd.DataFrame:
    """Read a jsonl / json / csv / parquet file into a DataFrame; a clear error names the file."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ConfigError(f"{path}: data file not found")
    try:
        if suffix in {".jsonl", ".ndjson"}:
            return pd.read_json(path, lines=True, dtype=False)
        if suffix == ".json":
            return pd.read_json(path, dtype=False)
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except ValueError as exc:
        raise ConfigError(f"{path}: could not be read as {suffix[1:]}: {exc}") from None
    raise ConfigError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json, .csv or .parquet)")


def load_items(config: ProjectConfig) -> pd.DataFrame:
    """The project's items, filtered by `data.where` and cut to `data.limit`, indexed by nothing.

    The id column is renamed to `item_id` (kept as a string) and every field column is checked to exist.
    """
    path = config.data.path
    frame = read_table(path)
    for column, value in config.data.where.items():
        if column not in frame.columns:
            raise ConfigError(f"{config.source_path}: data.where.{column}: no such column in {path}")
        frame = frame[frame[column] == value]
    id_column = config.data.id_column
    if id_column not in frame.columns:
        raise ConfigError(f"{config.source_path}: data.id_column: no column {id_column!r} in {path}; "
                          f"columns: {list(frame.columns)}")
    missing = [f.source_column for f in config.fields if f.source_column not in frame.columns]
    if missing:
        raise ConfigError(f"{config.source_path}: fields: no column(s) {missing} in {path}")
    frame = frame.rename(columns={id_column: "item_id"}) if id_column != "item_id" else frame.copy()
    frame["item_id"] = frame["item_id"].astype(str)
    duplicated = frame["item_id"][frame["item_id"].duplicated()].unique().tolist()
    if duplicated:
        raise ConfigError(f"{path}: duplicate ids in column {id_column!r}: {duplicated[:5]}")
    if config.data.limit is not None:
        frame = frame.head(config.data.limit)
    return frame.reset_index(drop=True)


def recorded_labels(config: ProjectConfig, items: pd.DataFrame) -> pd.DataFrame:
    """The human labels recorded in the data, as a tidy table `item_id, question, annotator, value`.

    Values are mapped to the question's scale (`human_labels.values.<q>.map`). A value outside the question's allowed
    values is an error naming the item, so a wrong mapping can never slip into an agreement figure.
    """
    spec = config.human_labels
    if spec is None:
        raise ConfigError(f"{config.source_path}: no `human_labels` section: the data carries no recorded labels")
    if spec.column not in items.columns:
        raise ConfigError(f"{config.source_path}: human_labels.column: no column {spec.column!r} in {config.data.path}")
    rows: list[dict[str, Any]] = []
    for item_id, entries in zip(items["item_id"], items[spec.column]):
        for entry in entries if isinstance(entries, list) else []:
            annotator = str(entry[spec.annotator_key])
            for question_name, mapping in spec.values.items():
                raw = entry.get(mapping.key)
                if raw is None or (isinstance(raw, float) and pd.isna(raw)):
                    continue
                value = mapping.map.get(raw, mapping.map.get(str(raw))) if mapping.map else raw
                allowed = config.question(question_name).allowed_values
                if value is None or (allowed and value not in allowed):
                    raise ConfigError(f"{config.source_path}: human_labels.values.{question_name}: item {item_id} "
                                      f"has {mapping.key}={raw!r}, which maps to none of {allowed}")
                rows.append({"item_id": item_id, "question": question_name, "annotator": annotator, "value": value})
    return pd.DataFrame(rows, columns=_RECORDED_COLUMNS)


def read_run_file(path: Union[str, "os.PathLike[str]"], filename: str, command: str) -> pd.DataFrame:
    """Read a stage's parquet output, given the file or its run directory; `item_id` is kept as text.

    Raises:
        ConfigError: the file is missing (the message says which `curate` command writes it).
    """
    path = Path(path)
    if path.is_dir():
        path = path / filename
    if not path.is_file():
        raise ConfigError(f"{path}: no {filename} yet; run `{command} CONFIG` first")
    frame = pd.read_parquet(path)
    if "item_id" in frame.columns:
        frame["item_id"] = frame["item_id"].astype(str)
    return frame
