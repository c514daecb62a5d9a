"""Triage on the real server: only review and audit items reach reviewers, and an annotator cannot tell an audit
item from a review item (not by id, field, metadata, suggestion, score, filter or sort option): audit items go out
without the labeler's suggestion, since their score passed the threshold by construction."""

from __future__ import annotations

from pathlib import Path

import argilla as rg
import pytest

from support.annotator_view import annotator_records, annotator_settings, record_shape
from test_judge import _hide_gold, _project, _write_labels
from workspaces.argilla_io.publish import get_dataset, publish
from workspaces.argilla_io.replay import ensure_user, user_client
from workspaces.config import load_config
from workspaces.judge import calibrate, run_gate
from workspaces.review.triage import triage

MARKERS = ("audit", "route", "honeypot", "gold", "suppress", "auto")


def _unsuggested(shape: tuple) -> tuple:
    """A record's shape as it is when published without its suggestion (and so without its confidence)."""
    fields, metadata, _, vectors = shape
    return fields, tuple(m for m in metadata if not m.startswith("llm_confidence")), (), vectors


def test_audit_items_look_like_review_items_to_an_annotator(argilla_client: rg.Argilla, tmp_path: Path) -> None:
    config = load_config(_project(tmp_path, n=1200))
    _hide_gold(config, 600)
    _write_labels(config, 0.97)
    calibrate(config, "llm")
    assert run_gate(config, "llm")[0].decision == "pass"
    routes = triage(config, "llm").routes.set_index("item_id")
    audit = set(routes.index[routes["route"] == "audit"])
    review = set(routes.index[routes["route"] == "review"])
    auto = set(routes.index[routes["route"] == "auto"])
    assert audit and review and auto

    result = publish(config, argilla_client)  # triaged: review and audit items only
    try:
        assert result.records == len(audit | review)
        annotator = ensure_user(argilla_client, "triage-annotator", config.argilla.workspace)
        as_annotator = user_client(argilla_client, annotator)
        dataset_id = get_dataset(argilla_client, config).id
        records = annotator_records(as_annotator, dataset_id)
        assert set(records) == audit | review and not set(records) & auto
        assert not [i for i in audit if records[i].get("suggestions")], "an audit record carries a score to sort on"
        assert all(records[i].get("suggestions") for i in review), "review records keep their suggestion"
        audit_shapes = {record_shape(records[i]) for i in audit}
        review_shapes = {_unsuggested(record_shape(records[i])) for i in review
                         if "disagree" not in routes.at[i, "reason"]}
        assert len(audit_shapes) == 1 and audit_shapes <= review_shapes, "an audit record's shape differs"
        settings = annotator_settings(as_annotator, dataset_id)
        names = [entry["name"] for entries in settings.values() for entry in entries]
        assert "q" in names and not [n for n in names if any(marker in n.lower() for marker in MARKERS)]
        for record in records.values():
            values = " ".join(str(v) for v in (record.get("metadata") or {}).values()).lower()
            assert not any(marker in values for marker in MARKERS)
    finally:
        get_dataset(argilla_client, config).delete()
