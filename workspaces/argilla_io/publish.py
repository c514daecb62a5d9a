"""Publishing a project to Argilla: dataset settings from the config, records with suggestions, metadata, vectors.

Record ids are the items' own ids, so publishing again updates records in place and never duplicates them. Items are
checked before they leave (`items.check_items`): an empty required field or an over-long text is a per-item outcome,
counted and reported, never a rejected batch; a batch the server refuses is retried record by record so one bad
record cannot spoil the others. An item without consent (`data.consent_column`, `items.check_consent`) never leaves:
it is counted in `no_consent` and named in `skipped`.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import argilla as rg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from ..config import ProjectConfig
from ..errors import ArgillaError, ConfigError
from ..items import check_consent, check_items, load_items
from ..rundir import (ANNOTATIONS, EMBEDDINGS, GUIDELINE_CHANGES, LABELS, REVIEW_PLAN, ROUTES, STUDENT_LABELS,
                      append_jsonl, locked, read_arrow, read_table)
from ..votes import counted
from ._wire import Wire, argilla_errors
from .records import Suggestion, iter_records, suggestions_from_labels
from .settings import PublishError, build_settings, ensure_workspace, get_dataset, reconcile_settings

__all__ = ["PublishError", "PublishResult", "log_records", "publish", "read_suggestions", "read_vectors"]

Progress = Callable[[int, int], None]


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
    skipped: dict[str, str] = Field(default_factory=dict, description="item id -> why it was not published")
    no_consent: int = Field(default=0, description="items withheld for lack of consent (`data.consent_column`); "
                                                   "each is also in `skipped`")
    failed: dict[str, str] = Field(default_factory=dict, description="item id -> why the server refused it")
    changes: list[str] = Field(default_factory=list, description="settings brought in line with the config")
    earlier_guidelines: list[str] = Field(default_factory=list, description="when the guidelines changed: the items "
                                          "with counted responses given under an earlier version (also appended to "
                                          "guideline_changes.jsonl)")


def read_suggestions(config: ProjectConfig, path: Optional[Path] = None) -> Optional[dict[str, list[Suggestion]]]:
    """The labeler's suggestions per item (`_suggestion_rows`: `path`, else the triage labeler's file); None when
    there are none."""
    labels = _suggestion_rows(config, path)
    return None if labels is None else suggestions_from_labels(config, labels.to_pandas())


def read_vectors(config: ProjectConfig, path: Optional[Path] = None) -> Optional[dict[str, Sequence[float]]]:
    """Item vectors from `embeddings.parquet` (or `path`); None when there are none."""
    table = _vector_rows(path or config.run_path, required=path is not None)
    return None if table is None else _vector_map(table)


def _suggestion_rows(config: ProjectConfig, path: Optional[Path]) -> Optional[pa.Table]:
    """The ok rows of the labeler's file for the config's questions, as a compact Arrow table: `path`, else the
    file of `triage.labeler` (the student's `student_labels.parquet`, or the LLM's `labels.parquet`), so that
    reviewers see the answer of the labeler whose work they check."""
    source = STUDENT_LABELS if path is None and config.triage.suggested_by == "student" else LABELS
    table = read_arrow(path or config.run_path, source, required=path is not None,
                       columns=["item_id", "question", "label", "confidence", "model", "status"], optional=("probabilities",),
                       text=("item_id", "question", "model", "status"))
    if table is None:
        return None
    questions = pa.array([q.name for q in config.questions], pa.string())
    return table.filter(pc.and_(pc.equal(table["status"], "ok"), pc.is_in(table["question"], value_set=questions)))


def _vector_rows(path: Path, *, required: bool) -> Optional[pa.Table]:
    """`item_id, vector` of an embeddings file as an Arrow table; None when absent or empty."""
    table = read_arrow(path, EMBEDDINGS, required=required, columns=["item_id", "vector"])
    return table if table is not None and len(table) else None


def _vector_map(table: pa.Table) -> dict[str, Sequence[float]]:
    return dict(zip(table["item_id"].to_pylist(), table["vector"].to_pylist()))


def _rows_of(table: pa.Table, ids: pa.Array) -> pa.Table:
    return table.filter(pc.is_in(table["item_id"], value_set=ids))


def _chunked_records(config: ProjectConfig, items: pd.DataFrame, labels: Optional[pa.Table],
                     vectors: Optional[pa.Table], suppressed: set[str], chunk: int = 1000) -> Iterator[rg.Record]:
    """`iter_records` over `items` a chunk at a time: only that chunk's suggestions and vectors are ever Python
    objects (the run files stay as Arrow tables), so publishing holds one batch of records, not every item's."""
    for start in range(0, len(items), chunk):
        part = items.iloc[start:start + chunk]
        ids = pa.array(part["item_id"].tolist(), pa.string())
        suggestions = None if labels is None else suggestions_from_labels(config, _rows_of(labels, ids).to_pandas())
        part_vectors = None if vectors is None else _vector_map(_rows_of(vectors, ids))
        yield from iter_records(config, part, suggestions=suggestions, vectors=part_vectors, suppressed=suppressed)


def _record_guideline_change(config: ProjectConfig, changes: list[str]) -> list[str]:
    """The items whose counted responses were given under another guideline version than the config's, appended to
    `guideline_changes.jsonl` with the versions and what changed."""
    synced = read_table(config.run_path, ANNOTATIONS, required=False)
    if synced is None or "guideline_hash" not in synced.columns:
        return []
    earlier = counted(synced)
    earlier = earlier[earlier["guideline_hash"] != config.guideline_hash]
    items = sorted(earlier["item_id"].astype(str).unique())
    append_jsonl(GUIDELINE_CHANGES.path(config.run_path), {
        "at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"), "to": config.guideline_hash,
        "from": sorted(earlier["guideline_hash"].astype(str).unique()), "changes": changes, "items": items})
    return items


def publish(
    config: ProjectConfig,
    client: rg.Argilla,
    *,
    labels_path: Optional[Path] = None,
    embeddings_path: Optional[Path] = None,
    item_ids: Optional[Iterable[str]] = None,
    suppressed: Iterable[str] = (),
    recreate: bool = False,
    batch_size: int = 256,
    progress: Optional[Progress] = None,
) -> PublishResult:
    """Create (or update) the project's dataset and log its items as records.

    Args:
        config: the project.
        client: an Argilla client (owner or admin of the workspace).
        labels_path: labeler output; default `<run dir>/labels.parquet` when it exists.
        embeddings_path: item vectors; default `<run dir>/embeddings.parquet` when it exists.
        item_ids: publish only these items (a review batch); default every item, or, once `curate triage` wrote
            `routes.parquet`, the items routed `review` or `audit` (`triage.publish: all` publishes every item).
        suppressed: items published without the labeler's suggestion (draft suppression); the items a review
            batch suppressed (`review_plan.parquet`) always are, so a later publish cannot bring theirs back.
        recreate: delete the dataset first when the config changed in a way Argilla cannot apply.
        batch_size: records per bulk request.
        progress: called with (records sent, total) after each batch.
    """
    with locked(config.run_path / ".publish"):  # one publish of a project at a time from this checkout
        return _publish(config, client, labels_path=labels_path, embeddings_path=embeddings_path, item_ids=item_ids,
                        suppressed=suppressed, recreate=recreate, batch_size=batch_size, progress=progress)


def _publish(config: ProjectConfig, client: rg.Argilla, *, labels_path: Optional[Path],
             embeddings_path: Optional[Path], item_ids: Optional[Iterable[str]], suppressed: Iterable[str],
             recreate: bool, batch_size: int, progress: Optional[Progress]) -> PublishResult:
    items = load_items(config)
    if item_ids is None and config.triage.publish == "review-and-audit":
        routes = read_table(config.run_path, ROUTES, required=False, columns=["item_id", "route"])
        if routes is not None:  # triaged: `auto` items never reach reviewers
            item_ids = routes.loc[routes["route"] != "auto", "item_id"].unique().tolist()
            # an audit item's score passed the threshold by construction: it goes out without one (see review.plan)
            suppressed = set(suppressed) | set(routes.loc[routes["route"] == "audit", "item_id"].astype(str))
    plan = read_table(config.run_path, REVIEW_PLAN, required=False, columns=["item_id", "suppressed"])
    if plan is not None:  # a review batch's suppressed items stay without a suggestion in every later publish
        suppressed = set(suppressed) | set(plan.loc[plan["suppressed"].astype(bool), "item_id"].astype(str))
    if item_ids is not None:
        wanted = {str(i) for i in item_ids}
        unknown = sorted(wanted - set(items["item_id"]))
        if unknown:
            raise ConfigError(f"{len(unknown)} item id(s) to publish are not items of {config.name}, e.g. {unknown[:3]}")
        items = items[items["item_id"].isin(wanted)].reset_index(drop=True)
    consent = check_consent(config, items)  # an item without consent never becomes a record
    checked = check_items(config, consent.valid)
    suppressed = {str(i) for i in suppressed}
    labels = _suggestion_rows(config, labels_path)
    vectors = _vector_rows(embeddings_path or config.run_path, required=embeddings_path is not None)
    dimensions = len(vectors["vector"][0].as_py()) if vectors is not None else None
    suggested = [] if labels is None else sorted(pc.unique(labels["question"]).to_pylist())
    settings = build_settings(config, vector_dimensions=dimensions, suggested=suggested)
    records = _chunked_records(config, checked.valid, labels, vectors, suppressed)
    wanted = pa.array(sorted(set(checked.valid["item_id"]) - suppressed), pa.string())
    attached = 0 if labels is None else len(_rows_of(labels, wanted))  # what `iter_records` attaches
    result = log_records(config, client, settings, records, suggestions=attached, recreate=recreate,
                         batch_size=batch_size, progress=progress, total=len(checked.valid))
    result.skipped = {**consent.problems, **checked.problems}
    result.no_consent = len(consent.problems)
    if "guidelines" in result.changes or any(c.startswith("question") for c in result.changes):
        result.earlier_guidelines = _record_guideline_change(config, result.changes)
    suppressed = set(suppressed) & set(checked.valid["item_id"])
    if suppressed and not result.created:  # records published earlier may still carry a suggestion
        wire = Wire(client)
        with argilla_errors(wire.url, "removing suggestions of suppressed records"):
            dataset = get_dataset(client, config)
            ids = wire.record_ids(dataset.id)
            for item_id in sorted(suppressed):
                if item_id in ids:
                    wire.clear_suggestions(ids[item_id])
    return result


def _created_meanwhile(client: rg.Argilla, config: ProjectConfig, wait: float = 60.0) -> Optional[rg.Dataset]:
    """The project's dataset once another publish has finished creating it (None if there is none)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        dataset = get_dataset(client, config)
        if dataset is None or dataset._model.status == "ready" or time.monotonic() > deadline:
            return dataset
        time.sleep(0.5)


def _upsert(dataset: rg.Dataset, batch: list[rg.Record]) -> None:
    """Upsert `batch`; a connection that broke with no answer (a reset while concurrent publishes wait on the
    database) is sent once more after a second: records are upserted by id, so sending a batch twice is safe."""
    import time

    import httpx

    try:
        dataset.records.log(batch, batch_size=len(batch))
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        time.sleep(1.0)
        dataset.records.log(batch, batch_size=len(batch))


def log_records(config: ProjectConfig, client: rg.Argilla, settings: rg.Settings, records: Iterable[rg.Record], *,
                suggestions: int, recreate: bool = False, batch_size: int = 256,
                progress: Optional[Progress] = None, total: Optional[int] = None) -> PublishResult:
    """Create the project's dataset with `settings` (or bring the existing one in line) and upsert `records`.

    `records` may be a generator: it is consumed one batch at a time, so only a batch of records is held.
    `total` (default `len(records)` for a list) is what `progress` reports as the total.

    A batch the server refuses is retried record by record: the records it accepts are kept, the others are
    reported in `failed` with the server's reason.
    """
    url = str(client.api_url).rstrip("/")
    what = f"publishing {config.argilla.dataset!r}"
    with argilla_errors(url, what):
        ensure_workspace(client, config.argilla.workspace)
        dataset = get_dataset(client, config)
        changes: list[str] = []
        if dataset is not None and recreate:
            dataset.delete()
            dataset = None
            changes.append("dataset deleted and created again (--recreate)")
        created = dataset is None
        if dataset is None:
            try:
                dataset = rg.Dataset(name=config.argilla.dataset, workspace=config.argilla.workspace,
                                     settings=settings, client=client).create()
            except Exception:
                dataset = _created_meanwhile(client, config)  # by a concurrent publish (another checkout)
                if dataset is None:
                    raise
                created = False
        if not created:
            changes += reconcile_settings(dataset, settings, config)
    failed: dict[str, str] = {}
    sent = 0
    total = len(records) if total is None and isinstance(records, Sequence) else total
    stream = iter(records)
    while batch := list(islice(stream, batch_size)):
        try:
            with argilla_errors(url, what):
                _upsert(dataset, batch)
        except ArgillaError as exc:
            if "cannot reach" in str(exc) or "broke" in str(exc) or "refused the API key" in str(exc):
                raise
            for record in batch:  # isolate the record(s) the server refuses
                try:
                    with argilla_errors(url, what):
                        dataset.records.log([record], batch_size=1)
                except ArgillaError as single:
                    failed[str(record.id)] = str(single).split(": ", 1)[-1]
        sent += len(batch)
        if progress:
            progress(sent, max(total or 0, sent))
    return PublishResult(dataset=dataset.name, workspace=config.argilla.workspace, dataset_id=str(dataset.id),
                         records=sent - len(failed), created=created, suggestions=suggestions,
                         vectors=bool(settings.vectors), url=f"{url}/dataset/{dataset.id}/annotation-mode",
                         failed=failed, changes=changes)
