"""Pulling every response (submitted, draft, discarded) from Argilla into the run directory, never losing one.

`<run dir>/annotations.parquet` is the server's current state: one row per (record, question, annotator):
`record_id, item_id, question, annotator, value, status, updated_at, paused`, then the flags of responses kept but
never counted (`unqualified`, time on task: `workspaces.votes.flag_responses`) and the guideline version each was
given under (`guideline_hash`). `value` is text (a rating `3` is `"3"`);
`annotator` is the Argilla username. A response without values (a record discarded unanswered) is one row with
`question` and `value` empty, so every response is accounted for.

Human responses are the most expensive data in the loop, so sync is careful:
- it checks that it read as many responses as the server reports, else writes nothing;
- `annotations_history.parquet` is append-only: every response version ever synced (`event = seen`) and every
  response that later left the server (`event = removed`), with the dataset id and the sync time;
- when responses that the last sync had are gone from the server (a record or the dataset deleted, a dataset
  published again under a new id), sync refuses to write the new snapshot, names what would be lost and exits
  non-zero, unless `accept_deletions` is given; either way the history keeps them;
- concurrent syncs of one run are serialised by a lock; files are written atomically under unique temporary names.

Memory stays flat in the number of responses while reading: records are read a page at a time and each page goes
straight into a parquet row group of a temporary file; the history and lost-response checks join Arrow tables (keys
only). The steps after the commit read the snapshot whole (a few columns per response row): the guideline stamp, the
flags, and the ledger, which holds one small entry per new or changed response.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import argilla as rg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from ..config import ProjectConfig
from ..errors import ArgillaError, DataLossError, RunFileError
from .. import ledger
from ..votes import flag_responses
from ..rundir import (ANNOTATIONS, ANNOTATIONS_HISTORY, PAUSED, RunFile, StagedTable, locked, read_json, read_table,
                      write_table)
from ._wire import Wire, argilla_errors
from .settings import get_dataset

__all__ = ["ANNOTATION_COLUMNS", "HISTORY_COLUMNS", "SyncError", "SyncResult", "fetch_responses", "flag_paused",
           "iter_responses", "ledger_responses", "sync"]

ANNOTATION_COLUMNS = ["record_id", "item_id", "question", "annotator", "value", "status", "updated_at"]
HISTORY_COLUMNS = [*ANNOTATION_COLUMNS, "dataset_id", "event", "synced_at"]
# annotations.parquet adds `paused`: the annotator was paused by the honeypot rule (kept, flagged, not counted)
_KEY = ["item_id", "annotator"]  # one response = one (record, user); its values are rows per question
_TEXT = pa.string()
ANNOTATION_SCHEMA = pa.schema([*((c, _TEXT) for c in ANNOTATION_COLUMNS[:-1]),
                               ("updated_at", pa.timestamp("ns", tz="UTC"))])
SNAPSHOT_SCHEMA = ANNOTATION_SCHEMA.append(pa.field("paused", pa.bool_()))
HISTORY_SCHEMA = pa.schema([*ANNOTATION_SCHEMA, *((c, _TEXT) for c in ("dataset_id", "event", "synced_at"))])

Progress = Callable[[int, int], None]


class SyncError(ArgillaError):
    """The dataset is missing, or what was read does not match what the server reports."""


class SyncResult(BaseModel):
    """What `sync` wrote."""

    path: Path
    records: int
    responses: int
    rows: int
    by_status: dict[str, int]
    removed: int = Field(0, description="responses the previous sync had that are no longer on the server")
    removed_examples: list[str] = Field(default_factory=list)
    history: Optional[Path] = None
    ledgered: int = Field(0, description="responses new or changed since the last sync, appended to the ledger")


def _value_text(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def iter_responses(
    client: rg.Argilla, dataset: rg.Dataset, *, progress: Optional[Progress] = None
) -> Iterator[tuple[pd.DataFrame, int, list[str]]]:
    """Every response of every record in `dataset`, one page of records at a time.

    Pages through the records API with the SDK's HTTP client (the SDK's record objects drop the responses'
    timestamps). Yields, per page: its rows (`ANNOTATION_COLUMNS`), its number of records, and the status of each
    user response on it.
    """
    wire = Wire(client)
    with argilla_errors(wire.url, f"reading the responses of {dataset.name!r}"):
        usernames = {str(user.id): user.username for user in client.users}
        total = dataset.progress()["total"]
        records = 0
        for items in wire.record_pages(dataset.id, include=("responses",)):
            rows: list[dict[str, Any]] = []
            statuses: list[str] = []
            for record in items:
                for response in record.get("responses") or []:
                    statuses.append(response["status"])
                    user_id = str(response["user_id"])
                    base = {"record_id": record["id"], "item_id": record.get("external_id") or record["id"],
                            "annotator": usernames.get(user_id) or user_id, "status": response["status"],
                            "updated_at": response.get("updated_at") or response.get("inserted_at")}
                    values = response.get("values") or {}
                    # a response without values (e.g. discarded unanswered) is one row with no question/value
                    for question, answer in values.items() or [(None, None)]:
                        value = None if answer is None or answer.get("value") is None else _value_text(answer["value"])
                        rows.append({**base, "question": question, "value": value})
            records += len(items)
            if progress:
                progress(records, max(total, records))
            yield _frame(rows), len(items), statuses


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True, format="ISO8601")
    return frame


def fetch_responses(
    client: rg.Argilla, dataset: rg.Dataset, *, progress: Optional[Progress] = None
) -> tuple[pd.DataFrame, int, int]:
    """Every response of every record in `dataset`, as one tidy DataFrame (`iter_responses`, pages joined).

    Returns the table, the number of records and of user responses read.
    """
    frames, records, responses = [], 0, 0
    for frame, count, statuses in iter_responses(client, dataset, progress=progress):
        frames.append(frame)
        records += count
        responses += len(statuses)
    frame = pd.concat(frames, ignore_index=True) if frames else _frame([])
    return frame, records, responses


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table`'s columns of `schema`, in its order and types (no pandas metadata)."""
    return pa.table([table[f.name].cast(f.type) for f in schema], schema=schema)


def _arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    return _conform(pa.Table.from_pandas(frame, preserve_index=False), schema)


def _server_response_count(client: rg.Argilla, dataset: rg.Dataset) -> int:
    """Responses per (record, user) as the server counts them, over all users and statuses."""
    with argilla_errors(str(client.api_url), f"counting the responses of {dataset.name!r}"):
        users = dataset.progress(with_users_distribution=True).get("users", {})
    return sum(sum(bucket.values()) for user in users.values() for bucket in user.values())


_IDENTITY = ["item_id", "question", "annotator", "value", "status", "updated_at"]
_NULL = "\x00"  # a null key spelled out, so that two nulls compare equal in a join
_BATCH = 4096  # rows per batch when a parquet file is read back (memory stays flat in its size)


def _identity(table: pa.Table) -> pa.Table:
    """One text key per row naming the response version (`_IDENTITY` joined, nulls spelled out)."""
    parts = [pc.fill_null(table[c].cast(ANNOTATION_SCHEMA.field(c).type).cast(_TEXT), _NULL) for c in _IDENTITY]
    return pa.table({"key": pc.binary_join_element_wise(*parts, "\x1f")})


def _not_in(known: pa.Table, rows: pa.Table) -> pa.Table:
    """The rows of `rows` whose identity is not in `known` (an `_identity` table), in their order."""
    if not known.num_rows or not rows.num_rows:
        return rows
    return rows.filter(pc.invert(pc.is_in(_identity(rows)["key"], value_set=known["key"].combine_chunks())))


def _corrupt_history(path: Path, exc: BaseException) -> RunFileError:
    return RunFileError(f"{path}: {ANNOTATIONS_HISTORY.name} is corrupt ({type(exc).__name__}: {exc}); move it away "
                        f"and run `{ANNOTATIONS_HISTORY.command} CONFIG` again")


def _append_history(path: Path, snapshot: Path, gone: pd.DataFrame, dataset_id: str, now: str) -> None:
    """Append the response versions the history lacks (`seen`, read from the `snapshot` file batch by batch) and the
    responses that left the server (`gone`, as `removed`).

    Rows already in the history are never changed or dropped: they are copied row group by row group into the new
    file, which replaces the old one atomically.
    """
    old: Optional[pq.ParquetFile] = None
    empty = _identity(pa.table({c: pa.array([], _TEXT) for c in _IDENTITY}))
    known = {"seen": empty, "removed": empty}  # the identities the history has, per event
    if path.is_file():
        try:
            old = pq.ParquetFile(path)
            keys = old.read(columns=[*_IDENTITY, "event"])
        except Exception as exc:  # pyarrow raises several types for a corrupt or foreign file
            raise _corrupt_history(path, exc) from None
        for event in known:
            known[event] = _identity(keys.filter(pc.equal(keys["event"], event)))
        del keys
    staged = StagedTable(path, HISTORY_SCHEMA)
    try:
        if old is not None:
            for batch in old.iter_batches(batch_size=_BATCH, columns=HISTORY_COLUMNS):
                staged.write(pa.Table.from_batches([batch]))
        copied = staged.rows
        for batch in pq.ParquetFile(snapshot).iter_batches(batch_size=_BATCH, columns=ANNOTATION_COLUMNS):
            seen = _not_in(known["seen"], pa.Table.from_batches([batch]))
            staged.write(_with(seen, dataset_id=dataset_id, event="seen", synced_at=now))
        removed = _not_in(known["removed"], _arrow(gone[ANNOTATION_COLUMNS], ANNOTATION_SCHEMA))
        staged.write(_with(removed, dataset_id=None, event="removed", synced_at=now))
        if staged.rows == copied and old is not None:
            return  # nothing new
        staged.commit()
    finally:
        staged.discard()


def _with(table: pa.Table, **columns: Optional[str]) -> pa.Table:
    for name, value in columns.items():
        table = table.append_column(name, pa.array([value] * table.num_rows, _TEXT))
    return table


def _read_previous(path: Path) -> Optional[pa.Table]:
    """The last snapshot (None when absent or corrupt: it is replaced, the history still has every version)."""
    if not path.is_file():
        return None
    try:
        return _conform(pq.read_table(path, columns=ANNOTATION_COLUMNS), ANNOTATION_SCHEMA)
    except Exception:  # corrupt, or not a snapshot
        return None


def sync(config: ProjectConfig, client: rg.Argilla, *, path: Optional[Path] = None, accept_deletions: bool = False,
         progress: Optional[Progress] = None) -> SyncResult:
    """Write every response of the project's dataset to `<run dir>/annotations.parquet` (atomically), and append
    what is new to the history.

    Raises:
        SyncError: the dataset does not exist, or the number of responses read differs from the server's count.
        DataLossError: responses of the last sync are no longer on the server (nothing written; they stay in the
            history); pass `accept_deletions=True` to accept it.
    """
    run = config.run_path
    path = path or ANNOTATIONS.path(run)
    ledger.require_intact(run)  # a broken ledger stops the sync before anything is read or written
    with argilla_errors(str(client.api_url), f"looking up dataset {config.argilla.dataset!r}"):
        dataset = get_dataset(client, config)
    if dataset is None:
        raise SyncError(f"dataset {config.argilla.dataset!r} not found in workspace {config.argilla.workspace!r} "
                        f"on {client.api_url}: run `curate publish {config.source_path}` first. Nothing was written "
                        f"({path} and its history are unchanged).")
    paused = _paused(config)
    history_path = ANNOTATIONS_HISTORY.path(path.parent)
    staged = StagedTable(path, SNAPSHOT_SCHEMA)
    try:
        records = responses = 0
        by_status: Counter[str] = Counter()
        for page, count, statuses in iter_responses(client, dataset, progress=progress):
            staged.write(_arrow(page.assign(paused=page["annotator"].isin(paused)), SNAPSHOT_SCHEMA))
            records += count
            responses += len(statuses)
            by_status.update(statuses)
        staged.close()
        expected = _server_response_count(client, dataset)
        if responses != expected:
            raise SyncError(f"read {responses} responses but the server reports {expected}; nothing was written. "
                            f"Responses may have changed during the sync: run it again.")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with locked(path):
            previous = _read_previous(path)
            versions = _guideline_versions(path)
            gone = pd.DataFrame(columns=ANNOTATION_COLUMNS)
            if previous is not None and previous.num_rows:
                keys = pq.read_table(staged.temporary, columns=_KEY)
                gone = previous.join(keys.group_by(_KEY).aggregate([]), keys=_KEY, join_type="left anti")
                gone = gone.sort_by([(c, "ascending") for c in _KEY]).to_pandas()
            lost = gone.drop_duplicates(_KEY)
            examples = [f"{row.annotator} on {row.item_id} ({row.status})" for row in lost.head(5).itertuples()]
            _append_history(history_path, staged.temporary, gone, str(dataset.id), now)
            if len(lost) and not accept_deletions:
                statuses = ", ".join(f"{s} {n}" for s, n in lost.groupby("status").size().items())
                raise DataLossError(
                    f"{len(lost)} response(s) of the last sync are no longer on {client.api_url} ({statuses}; e.g. "
                    f"{'; '.join(examples)}): records or the dataset were deleted, or it was published again under "
                    f"a new id ({dataset.id}). {path} was NOT changed, and every response is kept in {history_path}. "
                    f"If the deletion is intended, run `curate sync CONFIG --accept-deletions`.")
            staged.commit()
            _stamp_guidelines(config, path, versions)
            flag_responses(config, path)
        ledgered = ledger_responses(run, path)
    finally:
        staged.discard()
    return SyncResult(path=path, records=records, responses=responses, rows=staged.rows,
                      by_status={str(k): int(v) for k, v in sorted(by_status.items())}, removed=len(lost),
                      removed_examples=examples, history=history_path, ledgered=ledgered)


_VERSION_KEY = ["item_id", "annotator", "question", "updated_at"]


def _guideline_versions(path: Path) -> Optional[pd.DataFrame]:
    """The previous snapshot's `guideline_hash` per response row (None before the first sync or an older table)."""
    try:
        frame = pq.read_table(path, columns=[*_VERSION_KEY, "guideline_hash"]).to_pandas()
    except Exception:  # no snapshot yet, or one written before responses carried a guideline version
        return None
    return frame.drop_duplicates(_VERSION_KEY)


def _stamp_guidelines(config: ProjectConfig, path: Path, versions: Optional[pd.DataFrame]) -> None:
    """Give every response row the guideline version it was given under (`guideline_hash`): the one the last sync
    recorded while the response is unchanged (same `updated_at`), else the config's in force at this sync."""
    frame = read_table(path.parent, RunFile(path.name, ANNOTATIONS.command, ANNOTATIONS.description))
    frame = frame.drop(columns=["guideline_hash"], errors="ignore")
    if versions is not None and len(frame):
        frame = frame.merge(versions, on=_VERSION_KEY, how="left")
    else:
        frame["guideline_hash"] = None
    frame["guideline_hash"] = frame["guideline_hash"].where(frame["guideline_hash"].notna(), config.guideline_hash)
    write_table(path, frame)


def ledger_responses(run: Path, path: Path) -> int:
    """Append to the run's ledger every response of the snapshot at `path` that is new or changed since it was last
    ledgered (one entry per response: record, status, values per question, `updated_at`); returns how many."""
    names = pq.read_schema(path).names
    frame = pq.read_table(path, columns=[*ANNOTATION_COLUMNS, *(["guideline_hash"] if "guideline_hash" in names
                                                                 else [])]).to_pandas()
    if frame.empty:
        return 0
    frame = frame.sort_values([*_KEY, "question"])
    decisions = []
    for (item_id, annotator), rows in frame.groupby(_KEY, sort=False):
        first = rows.iloc[0]
        updated = rows["updated_at"].max()
        decisions.append((f"{item_id}|{annotator}", {
            "item_id": item_id, "annotator": annotator, "record_id": first["record_id"], "status": first["status"],
            "values": {q: v for q, v in zip(rows["question"], rows["value"]) if q},
            "guideline_hash": first.get("guideline_hash"),
            "updated_at": None if pd.isna(updated) else pd.Timestamp(updated).isoformat()}))
    return ledger.record(run, "response", decisions)


def _paused(config: ProjectConfig) -> set[str]:
    return set((read_json(config.run_path, PAUSED, required=False) or {}).get("paused", {}))


def flag_paused(config: ProjectConfig) -> None:
    """Mark the responses of paused annotators in `annotations.parquet` (kept, never counted)."""
    path = ANNOTATIONS.path(config.run_path)
    with locked(path):
        frame = read_table(path, ANNOTATIONS, required=False)
        if frame is not None:
            write_table(path, frame.assign(paused=frame["annotator"].isin(_paused(config))))
