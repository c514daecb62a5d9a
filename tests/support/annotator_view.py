"""What an annotator's own client gets from the server: every record of a dataset through the `/me` search endpoint
the UI uses (fields, metadata, suggestions), and the dataset's settings (fields, questions, metadata properties:
what can be filtered and sorted on)."""

from __future__ import annotations

from typing import Any


def annotator_records(client: Any, dataset_id: Any) -> dict[str, dict[str, Any]]:
    """external id -> the record as the annotator receives it."""
    http = client.api.http_client
    records: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        reply = http.post(f"/api/v1/me/datasets/{dataset_id}/records/search", json={},
                          params={"offset": offset, "limit": 500, "include": ["suggestions", "vectors"]})
        reply.raise_for_status()
        items = reply.json()["items"]
        for item in items:
            record = item["record"]
            records[record["external_id"]] = record
        offset += len(items)
        if len(items) < 500:
            return records


def annotator_settings(client: Any, dataset_id: Any) -> dict[str, Any]:
    """The dataset settings the annotator's UI loads: fields, questions, metadata properties, vector settings."""
    http = client.api.http_client
    settings = {}
    for name, path in (("fields", f"/api/v1/datasets/{dataset_id}/fields"),
                       ("questions", f"/api/v1/datasets/{dataset_id}/questions"),
                       ("metadata", f"/api/v1/me/datasets/{dataset_id}/metadata-properties"),
                       ("vectors", f"/api/v1/datasets/{dataset_id}/vectors-settings")):
        reply = http.get(path)
        reply.raise_for_status()
        settings[name] = reply.json()["items"]
    return settings


def record_shape(record: dict[str, Any]) -> tuple:
    """Everything about a record except its content: which fields, metadata keys, suggestion agents/types."""
    return (tuple(sorted(record.get("fields") or {})), tuple(sorted(record.get("metadata") or {})),
            tuple(sorted((s.get("agent"), s.get("type")) for s in record.get("suggestions") or [])),
            tuple(sorted(record.get("vectors") or {})))
