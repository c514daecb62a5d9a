"""Publishing a project to Argilla: dataset settings from the config, records with suggestions, metadata, vectors.

Record ids are the items' own ids, so publishing again updates records in place and never duplicates them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional

import argilla as rg
import pandas as pd
from pydantic import BaseModel

from .config import ConfigError, MetadataConfig, ProjectConfig, QuestionConfig, QuestionKind
from .items import EMBEDDINGS_FILE, LABELS_FILE, load_items, read_run_file

__all__ = [
    "PublishError",
    "PublishResult",
    "build_settings",
    "build_records",
    "get_dataset",
    "ensure_workspace",
    "log_records",
    "publish",
    "confidence_metadata_name",
]

VECTOR_NAME = "text_embedding"

Progress = Callable[[int, int], None]


class PublishError(RuntimeError):
    """The dataset cannot be published as configured (e.g. its questions changed after records were logged)."""


class PublishResult(BaseModel):
    """What `publish` did."""

    dataset: str
    workspace: str
    dataset_id: str
    records: int
    created: bool
    suggestions: int
    vectors: bool
    url: str


def confidence_metadata_name(question: str) -> str:
    """Metadata property that carries the LLM's confidence for `question` (sortable/filterable in the UI)."""
    return f"llm_confidence_{question}"


def _question(question: QuestionConfig) -> Any:
    title = question.title or question.name
    if question.kind == QuestionKind.label:
        description = question.description or "\n".join(f"- **{k}**: {v}" for k, v in (question.labels or {}).items())
        return rg.LabelQuestion(name=question.name, title=title, labels=list(question.labels or {}),
                                description=description, required=question.required)
    if question.kind == QuestionKind.rating:
        return rg.RatingQuestion(name=question.name, title=title, values=list(question.values or []),
                                 description=question.description, required=question.required)
    return rg.TextQuestion(name=question.name, title=title, description=question.description,
                           required=question.required)


def _metadata_property(spec: MetadataConfig) -> Any:
    title = spec.title or spec.name
    if spec.kind == "integer":
        return rg.IntegerMetadataProperty(name=spec.name, title=title)
    if spec.kind == "float":
        return rg.FloatMetadataProperty(name=spec.name, title=title)
    return rg.TermsMetadataProperty(name=spec.name, title=title)


def build_settings(config: ProjectConfig, *, vector_dimensions: Optional[int] = None) -> rg.Settings:
    """Argilla settings for a project: fields, questions, metadata (+ LLM confidence), vectors, guideline, overlap."""
    metadata = [_metadata_property(m) for m in config.metadata]
    for name in config.llm.questions if config.llm else []:
        metadata.append(rg.FloatMetadataProperty(name=confidence_metadata_name(name), title=f"LLM confidence: {name}"))
    vectors = [rg.VectorField(name=VECTOR_NAME, title="Text embedding", dimensions=vector_dimensions)] \
        if vector_dimensions else []
    return rg.Settings(
        fields=[rg.TextField(name=f.name, title=f.title or f.name, use_markdown=f.markdown, required=f.required)
                for f in config.fields],
        questions=[_question(q) for q in config.questions],
        metadata=metadata,
        vectors=vectors,
        guidelines=config.guidelines or None,
        allow_extra_metadata=config.argilla.allow_extra_metadata,
        distribution=rg.TaskDistribution(min_submitted=config.argilla.min_submitted),
    )


def ensure_workspace(client: rg.Argilla, name: str) -> rg.Workspace:
    """The workspace called `name`, created if missing."""
    workspace = client.workspaces(name)
    if workspace is None:
        workspace = rg.Workspace(name=name, client=client).create()
    return workspace


def get_dataset(client: rg.Argilla, config: ProjectConfig) -> Optional[rg.Dataset]:
    """The project's Argilla dataset, or None if it was never published."""
    if client.workspaces(config.argilla.workspace) is None:
        return None
    return client.datasets(name=config.argilla.dataset, workspace=config.argilla.workspace)


def _sync_settings(dataset: rg.Dataset, wanted: rg.Settings, config: ProjectConfig) -> None:
    """Add metadata/vector properties the config now has, apply a changed overlap; refuse question changes."""
    have = {q.name for q in dataset.settings.questions}
    want = {q.name for q in wanted.questions}
    if have != want:
        raise PublishError(
            f"{config.source_path}: the questions of dataset {config.argilla.dataset!r} are {sorted(have)} on the server "
            f"but {sorted(want)} in the config; Argilla cannot change questions once a dataset has records. "
            f"Use a new argilla.dataset name, or delete the dataset first.")
    changed = False
    existing = {m.name for m in dataset.settings.metadata}
    for prop in wanted.metadata:
        if prop.name not in existing:
            dataset.settings.metadata.add(prop)
            changed = True
    existing_vectors = {v.name for v in dataset.settings.vectors}
    for vector in wanted.vectors:
        if vector.name not in existing_vectors:
            dataset.settings.vectors.add(vector)
            changed = True
    if dataset.settings.distribution.min_submitted != config.argilla.min_submitted:
        # record statuses are recomputed by the server's worker after this update
        dataset.settings.distribution = rg.TaskDistribution(min_submitted=config.argilla.min_submitted)
        changed = True
    if changed:
        dataset.settings.update()


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _read_labels(path: Path) -> pd.DataFrame:
    labels = read_run_file(path, LABELS_FILE, "curate label")
    missing = {"item_id", "question", "label", "confidence", "model", "status"} - set(labels.columns)
    if missing:
        raise ConfigError(f"{path}: labels file lacks column(s) {sorted(missing)}")
    return labels


def _read_embeddings(path: Path) -> dict[str, list[float]]:
    frame = read_run_file(path, EMBEDDINGS_FILE, "curate embed")
    if not {"item_id", "vector"} <= set(frame.columns):
        raise ConfigError(f"{path}: embeddings file needs columns item_id, vector")
    return {i: [float(x) for x in v] for i, v in zip(frame["item_id"], frame["vector"])}


def build_records(
    config: ProjectConfig,
    items: pd.DataFrame,
    *,
    labels: Optional[pd.DataFrame] = None,
    vectors: Optional[dict[str, list[float]]] = None,
) -> tuple[list[rg.Record], int]:
    """Argilla records for the items (id = item id), with LLM suggestions when `labels` are given.

    Returns the records and the number of suggestions attached. Failed LLM rows give no suggestion.
    """
    suggestions_by_item: dict[str, list[tuple[str, Any, Optional[float], str]]] = {}
    if labels is not None:
        known = {q.name: q for q in config.questions}
        ok = labels[(labels["status"] == "ok") & labels["question"].isin(list(known))]
        for row in ok.itertuples(index=False):
            value: Any = row.label
            if known[row.question].kind == QuestionKind.rating:
                value = int(value)
            suggestions_by_item.setdefault(str(row.item_id), []).append(
                (row.question, value, _clean(row.confidence), str(row.model)))
    records: list[rg.Record] = []
    attached = 0
    field_columns = [(f.name, f.source_column) for f in config.fields]
    metadata_columns = [(m.name, m.source_column, m.kind) for m in config.metadata]
    for item in items.to_dict(orient="records"):
        item_id = item["item_id"]
        fields = {}
        for name, column in field_columns:
            value = _clean(item.get(column))
            if value is not None and str(value).strip():
                fields[name] = str(value)
        metadata: dict[str, Any] = {}
        for name, column, kind in metadata_columns:
            value = _clean(item.get(column))
            if value is not None:
                metadata[name] = int(value) if kind == "integer" else float(value) if kind == "float" else str(value)
        suggestions = []
        for question, value, score, agent in suggestions_by_item.get(item_id, []):
            suggestions.append(rg.Suggestion(question_name=question, value=value, score=score, agent=agent,
                                             type="model"))
            if score is not None:
                metadata[confidence_metadata_name(question)] = float(score)
        attached += len(suggestions)
        record_vectors = {VECTOR_NAME: vectors[item_id]} if vectors and item_id in vectors else None
        records.append(rg.Record(id=item_id, fields=fields, metadata=metadata or None, suggestions=suggestions or None,
                                 vectors=record_vectors))
    return records, attached


def publish(
    config: ProjectConfig,
    client: rg.Argilla,
    *,
    labels_path: Optional[Path] = None,
    embeddings_path: Optional[Path] = None,
    batch_size: int = 256,
    progress: Optional[Progress] = None,
) -> PublishResult:
    """Create (or update) the project's dataset and log its items as records.

    Args:
        config: the project.
        client: an Argilla client (owner or admin of the workspace).
        labels_path: LLM labels (`curate label` output); default `<run dir>/labels.parquet` when it exists.
        embeddings_path: item vectors; default `<run dir>/embeddings.parquet` when it exists.
        batch_size: records per bulk request.
        progress: called with (records sent, total) after each batch.
    """
    run = config.run_path
    labels_path = labels_path or (run / LABELS_FILE if (run / LABELS_FILE).is_file() else None)
    embeddings_path = embeddings_path or (run / EMBEDDINGS_FILE if (run / EMBEDDINGS_FILE).is_file() else None)
    items = load_items(config)
    labels = _read_labels(labels_path) if labels_path else None
    vectors = _read_embeddings(embeddings_path) if embeddings_path else None
    dimensions = len(next(iter(vectors.values()))) if vectors else None
    settings = build_settings(config, vector_dimensions=dimensions)

    records, attached = build_records(config, items, labels=labels, vectors=vectors)
    return log_records(config, client, settings, records, suggestions=attached, batch_size=batch_size,
                       progress=progress)


def log_records(config: ProjectConfig, client: rg.Argilla, settings: rg.Settings, records: list[rg.Record], *,
                suggestions: int, batch_size: int = 256, progress: Optional[Progress] = None) -> PublishResult:
    """Create the project's dataset with `settings` (or bring the existing one in line) and upsert `records`."""
    ensure_workspace(client, config.argilla.workspace)
    dataset = get_dataset(client, config)
    created = dataset is None
    if dataset is None:
        dataset = rg.Dataset(name=config.argilla.dataset, workspace=config.argilla.workspace, settings=settings,
                             client=client).create()
    else:
        _sync_settings(dataset, settings, config)
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        dataset.records.log(batch, batch_size=len(batch))
        if progress:
            progress(min(start + batch_size, len(records)), len(records))
    base_url = str(client.api_url).rstrip("/")
    return PublishResult(dataset=dataset.name, workspace=config.argilla.workspace, dataset_id=str(dataset.id),
                         records=len(records), created=created, suggestions=suggestions,
                         vectors=bool(settings.vectors), url=f"{base_url}/dataset/{dataset.id}/annotation-mode")
