"""Pulling every response (submitted, draft, discarded) from Argilla into the run directory, never losing one.

`<run dir>/annotations.parquet` is the server's current state: one row per (record, question, annotator):
`record_id, item_id, question, annotator, value, status, updated_at, paused`. `value` is text (a rating `3` is `"3"`);
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
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import argilla as rg
import pandas as pd
from pydantic import BaseModel, Field

from ..config import ProjectConfig
from ..errors import ArgillaError, DataLossError, RunFileError
from ..rundir import ANNOTATIONS, ANNOTATIONS_HISTORY, PAUSED, locked, read_json, read_table, write_table
from ._wire import Wire, argilla_errors
from .settings import get_dataset

__all__ = ["ANNOTATION_COLUMNS", "HISTORY_COLUMNS", "SyncError", "SyncResult", "fetch_responses", "flag_paused", "sync"]

ANNOTATION_COLUMNS = ["record_id", "item_id", "question", "annotator", "value", "status", "updated_at"]
HISTORY_COLUMNS = [*ANNOTATION_COLUMNS, "dataset_id", "event", "synced_at"]
# annotations.parquet adds `paused`: the annotator was paused by the honeypot rule (kept, flagged, not counted)
_KEY = ["item_id", "annotator"]  # one response = one (record, user); its values are rows per question

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


def _value_text(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def fetch_responses(
    client: rg.Argilla, dataset: rg.Dataset, *, progress: Optional[Progress] = None
) -> tuple[pd.DataFrame, int, int]:
    """Every response of every record in `dataset`, as a tidy DataFrame.

    Pages through the records API with the SDK's HTTP client (the SDK's record objects drop the responses'
    timestamps). Returns the table, the number of records and of user responses read.
    """
    wire = Wire(client)
    with argilla_errors(wire.url, f"reading the responses of {dataset.name!r}"):
        usernames = {str(user.id): user.username for user in client.users}
        total = dataset.progress()["total"]
        rows: list[dict[str, Any]] = []
        records = responses = 0
        for items in wire.record_pages(dataset.id, include=("responses",)):
            for record in items:
                for response in record.get("responses") or []:
                    responses += 1
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
    frame = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True, format="ISO8601")
    return frame, records, responses


def _server_response_count(client: rg.Argilla, dataset: rg.Dataset) -> int:
    """Responses per (record, user) as the server counts them, over all users and statuses."""
    with argilla_errors(str(client.api_url), f"counting the responses of {dataset.name!r}"):
        users = dataset.progress(with_users_distribution=True).get("users", {})
    return sum(sum(bucket.values()) for user in users.values() for bucket in user.values())


_IDENTITY = ["item_id", "question", "annotator", "value", "status", "updated_at"]


def _not_in(history: pd.DataFrame, rows: pd.DataFrame, event: str) -> pd.DataFrame:
    """The rows of `rows` whose version has no `event` entry in the history yet."""
    if not len(history) or not len(rows):
        return rows
    known = history.loc[history["event"] == event, _IDENTITY].astype(str).drop_duplicates()
    marker = rows[_IDENTITY].astype(str).merge(known, how="left", on=_IDENTITY, indicator=True)["_merge"]
    return rows[(marker == "left_only").to_numpy()]


def _append_history(path: Path, snapshot: pd.DataFrame, gone: pd.DataFrame, dataset_id: str, now: str) -> None:
    """Append the response versions the history lacks (`seen`) and the responses that left the server (`removed`).

    Rows already in the history are never changed or dropped.
    """
    history = read_table(path, ANNOTATIONS_HISTORY, required=False)
    history = pd.DataFrame(columns=HISTORY_COLUMNS) if history is None else history
    seen = _not_in(history, snapshot, "seen").assign(dataset_id=dataset_id, event="seen", synced_at=now)
    removed = _not_in(history, gone, "removed").assign(event="removed", synced_at=now)
    if "dataset_id" not in removed.columns:
        removed["dataset_id"] = None
    parts = [frame[HISTORY_COLUMNS] for frame in (history, seen, removed) if len(frame)]
    if len(parts) == (1 if len(history) else 0) and path.is_file():
        return  # nothing new
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=HISTORY_COLUMNS)
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True, format="ISO8601")
    write_table(path, frame.astype({c: "string" for c in ("record_id", "item_id", "question", "annotator", "value",
                                                         "status", "dataset_id", "event", "synced_at")}))


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
    with argilla_errors(str(client.api_url), f"looking up dataset {config.argilla.dataset!r}"):
        dataset = get_dataset(client, config)
    if dataset is None:
        raise SyncError(f"dataset {config.argilla.dataset!r} not found in workspace {config.argilla.workspace!r} "
                        f"on {client.api_url}: run `curate publish {config.source_path}` first. Nothing was written "
                        f"({path} and its history are unchanged).")
    frame, records, responses = fetch_responses(client, dataset, progress=progress)
    expected = _server_response_count(client, dataset)
    if responses != expected:
        raise SyncError(f"read {responses} responses but the server reports {expected}; nothing was written. "
                        f"Responses may have changed during the sync: run it again.")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    history_path = ANNOTATIONS_HISTORY.path(path.parent)
    with locked(path):
        try:
            previous = read_table(path, ANNOTATIONS, required=False)
        except RunFileError:
            previous = None  # a corrupt snapshot is replaced; the history still has every earlier version
        gone = pd.DataFrame(columns=ANNOTATION_COLUMNS)
        if previous is not None and len(previous):
            now_keys = set(map(tuple, frame[_KEY].astype(str).to_numpy()))
            mask = [tuple(k) not in now_keys for k in previous[_KEY].astype(str).to_numpy()]
            gone = previous[mask]
        lost = gone.drop_duplicates(_KEY)
        examples = [f"{row.annotator} on {row.item_id} ({row.status})" for row in lost.head(5).itertuples()]
        _append_history(history_path, frame[ANNOTATION_COLUMNS], gone[ANNOTATION_COLUMNS], str(dataset.id), now)
        if len(lost) and not accept_deletions:
            statuses = ", ".join(f"{s} {n}" for s, n in lost.groupby("status").size().items())
            raise DataLossError(
                f"{len(lost)} response(s) of the last sync are no longer on {client.api_url} ({statuses}; e.g. "
                f"{'; '.join(examples)}): records or the dataset were deleted, or it was published again under a "
                f"new id ({dataset.id}). {path} was NOT changed, and every response is kept in {history_path}. "
                f"If the deletion is intended, run `curate sync CONFIG --accept-deletions`.")
        write_table(path, frame.assign(paused=frame["annotator"].isin(_paused(config))))
    by_status = {str(status): int(n) for status, n in frame.drop_duplicates(["record_id", "annotator"])
                 .groupby("status").size().items()}
    return SyncResult(path=path, records=records, responses=responses, rows=len(frame), by_status=by_status,
                      removed=len(lost), removed_examples=examples, history=history_path)


def _paused(config: ProjectConfig) -> set[str]:
    return set((read_json(config.run_path, PAUSED, required=False) or {}).get("paused", {}))


def flag_paused(config: ProjectConfig) -> None:
    """Mark the responses of paused annotators in `annotations.parquet` (kept, never counted)."""
    path = ANNOTATIONS.path(config.run_path)
    with locked(path):
        frame = read_table(path, ANNOTATIONS, required=False)
        if frame is not None:
            write_table(path, frame.assign(paused=frame["annotator"].isin(_paused(config))))
