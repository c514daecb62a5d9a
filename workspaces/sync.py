"""Pulling every response (submitted, draft, discarded) from Argilla into a tidy table on disk.

`<run dir>/annotations.parquet` has one row per (record, question, annotator):
`record_id, item_id, question, annotator, value, status, updated_at`. `value` is stored as text (a rating `3` is
`"3"`) so one column holds every question; `annotator` is the Argilla username. A response without values (a
record discarded unanswered) is one row with `question` and `value` empty, so every response is accounted for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import argilla as rg
import pandas as pd
from pydantic import BaseModel

from .config import ProjectConfig
from .items import ANNOTATIONS_FILE
from .publish import get_dataset

__all__ = ["SyncError", "SyncResult", "ANNOTATION_COLUMNS", "fetch_responses", "sync", "read_annotations"]

ANNOTATION_COLUMNS = ["record_id", "item_id", "question", "annotator", "value", "status", "updated_at"]
_PAGE = 1000  # the server's maximum page size for record listing

Progress = Callable[[int, int], None]


class SyncError(RuntimeError):
    """The dataset is missing, or what was read does not match what the server reports."""


class SyncResult(BaseModel):
    """What `sync` wrote."""

    path: Path
    records: int
    responses: int
    rows: int
    by_status: dict[str, int]


def _value_text(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def fetch_responses(
    client: rg.Argilla, dataset: rg.Dataset, *, progress: Optional[Progress] = None
) -> tuple[pd.DataFrame, int, int]:
    """Every response of every record in `dataset`, as a tidy DataFrame.

    Pages through `GET /api/v1/datasets/{id}/records?include=responses` with the SDK's HTTP client (the SDK's record
    objects drop the responses' timestamps). Returns the table, the number of records and of user responses read.
    """
    usernames = {str(user.id): user.username for user in client.users}
    http = client.api.http_client
    total = dataset.progress()["total"]
    rows: list[dict[str, Any]] = []
    records = responses = 0
    offset = 0
    while True:
        reply = http.get(f"/api/v1/datasets/{dataset.id}/records",
                         params={"offset": offset, "limit": _PAGE, "include": ["responses"]})
        reply.raise_for_status()
        items = reply.json()["items"]
        for record in items:
            for response in record.get("responses") or []:
                responses += 1
                user_id = str(response["user_id"])
                annotator = usernames.get(user_id) or user_id
                base = {"record_id": record["id"], "item_id": record.get("external_id") or record["id"],
                        "annotator": annotator, "status": response["status"],
                        "updated_at": response.get("updated_at") or response.get("inserted_at")}
                values = response.get("values") or {}
                # a response without values (e.g. discarded unanswered) is kept as one row with no question/value
                for question, answer in values.items() or [(None, None)]:
                    value = None if answer is None or answer.get("value") is None else _value_text(answer["value"])
                    rows.append({**base, "question": question, "value": value})
        records += len(items)
        offset += len(items)
        if progress:
            progress(records, max(total, records))
        if len(items) < _PAGE:
            break
    frame = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True, format="ISO8601")
    return frame, records, responses


def _server_response_count(dataset: rg.Dataset) -> int:
    """Responses per (record, user) as the server counts them, over all users and statuses."""
    users = dataset.progress(with_users_distribution=True).get("users", {})
    return sum(sum(bucket.values()) for user in users.values() for bucket in user.values())


def sync(config: ProjectConfig, client: rg.Argilla, *, path: Optional[Path] = None,
         progress: Optional[Progress] = None) -> SyncResult:
    """Write every response of the project's dataset to `<run dir>/annotations.parquet` (atomically).

    Raises:
        SyncError: the dataset does not exist, or the number of responses read differs from the server's count.
    """
    dataset = get_dataset(client, config)
    if dataset is None:
        raise SyncError(f"dataset {config.argilla.dataset!r} not found in workspace {config.argilla.workspace!r} "
                        f"on {client.api_url}: run `curate publish {config.source_path}` first")
    frame, records, responses = fetch_responses(client, dataset, progress=progress)
    expected = _server_response_count(dataset)
    if responses != expected:
        raise SyncError(f"read {responses} responses but the server reports {expected}; nothing was written. "
                        f"Responses may have changed during the sync: run it again.")
    path = path or config.run_path / ANNOTATIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".parquet.partial")
    frame.to_parquet(partial, index=False)
    partial.replace(path)
    by_status = {status: int(n) for status, n in frame.drop_duplicates(["record_id", "annotator"])
                 .groupby("status").size().items()}
    return SyncResult(path=path, records=records, responses=responses, rows=len(frame), by_status=by_status)


def read_annotations(path: Path) -> pd.DataFrame:
    """Read a synced annotations table; a clear error says to run `curate sync` when it is missing."""
    if not path.is_file():
        raise SyncError(f"{path} not found: run `curate sync` first")
    return pd.read_parquet(path)
