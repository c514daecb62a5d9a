"""Replaying recorded human labels through Argilla, as the annotators' own responses.

Each recorded annotator becomes an Argilla user (role annotator, member of the project's workspace) and submits
their recorded values through the API authenticated as themselves (`POST /api/v1/me/responses/bulk`), exactly as if
they had used the UI. This is how the demo and the tests exercise sync + agreement on real human data.
"""

from __future__ import annotations

import secrets
import warnings
from typing import Any, Callable, Optional

import argilla as rg
import pandas as pd
from pydantic import BaseModel

from ..config import ProjectConfig, slug
from ..errors import ArgillaError
from ..items import load_items, recorded_labels
from ._wire import Wire, argilla_errors
from .connection import sdk_client
from .settings import ensure_workspace, get_dataset
from .sync import fetch_responses

__all__ = ["ReplayError", "ReplayResult", "ensure_user", "record_ids", "replay_recorded_labels", "user_client"]

Progress = Callable[[int, int], None]


class ReplayError(ArgillaError):
    """A response could not be submitted."""


class ReplayResult(BaseModel):
    """What was replayed."""

    annotators: dict[str, str]  # recorded annotator id -> Argilla username
    responses: int  # responses sent
    unchanged: int  # responses already submitted with the same values (not sent again)
    values: int


def ensure_user(client: rg.Argilla, username: str, workspace: str, *, role: str = "annotator",
                password: Optional[str] = None) -> rg.User:
    """The user `username` (created with `role` and `password` if missing), added to `workspace`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns when a user does not exist yet
        user = client.users(username)
    if user is None:
        user = rg.User(username=username, password=password or secrets.token_urlsafe(12), role=role,
                       client=client).create()
    ws = ensure_workspace(client, workspace)
    if username not in {u.username for u in ws.users}:
        user.add_to_workspace(ws)
    return user


def user_client(client: rg.Argilla, user: rg.User) -> rg.Argilla:
    """A client authenticated as `user` (the owner reads the user's API key from the server)."""
    return sdk_client(str(client.api_url), Wire(client).api_key_of(user.id))


def record_ids(client: rg.Argilla, dataset: rg.Dataset) -> dict[str, str]:
    """Item id (the record's external id) -> the record's server id."""
    return Wire(client).record_ids(dataset.id)


def replay_recorded_labels(
    config: ProjectConfig,
    client: rg.Argilla,
    *,
    labels: Optional[pd.DataFrame] = None,
    progress: Optional[Progress] = None,
) -> ReplayResult:
    """Submit the data's recorded human labels as each annotator's own responses.

    Args:
        config: the project (its `human_labels` section says where the labels are).
        client: an owner/admin client; the dataset must be published.
        labels: a tidy `item_id, question, annotator, value` table; default: all recorded labels of the items.
        progress: called with (responses sent, total).
    """
    with argilla_errors(str(client.api_url), f"replaying recorded labels into {config.argilla.dataset!r}"):
        return _replay(config, client, labels, progress)


def _replay(config: ProjectConfig, client: rg.Argilla, labels: Optional[pd.DataFrame],
            progress: Optional[Progress]) -> ReplayResult:
    dataset = get_dataset(client, config)
    if dataset is None:
        raise ReplayError(f"dataset {config.argilla.dataset!r} is not published: run `curate publish` first")
    if labels is None:
        labels = recorded_labels(config, load_items(config))
    ids = record_ids(client, dataset)
    missing = sorted(set(labels["item_id"]) - set(ids))
    if missing:
        raise ReplayError(f"{len(missing)} labelled item(s) are not records of {config.argilla.dataset!r}, "
                          f"e.g. {missing[:3]}: publish them first")
    usernames = {annotator: slug(annotator) for annotator in sorted(labels["annotator"].unique())}
    total = labels.groupby(["annotator", "item_id"]).ngroups
    submitted = _submitted_values(client, dataset)
    sent = skipped = 0
    for annotator, username in usernames.items():
        user = ensure_user(client, username, config.argilla.workspace)
        own = user_client(client, user)
        mine = labels[labels["annotator"] == annotator]
        items: list[dict[str, Any]] = []
        for item_id, group in mine.groupby("item_id", sort=True):
            values = {q: v.item() if hasattr(v, "item") else v for q, v in zip(group["question"], group["value"])}
            if submitted.get((username, item_id)) == {q: str(v) for q, v in values.items()}:
                skipped += 1  # already submitted with these values: a re-run sends nothing
                continue
            items.append({"record_id": ids[item_id], "status": "submitted",
                          "values": {q: {"value": v} for q, v in values.items()}})
        if progress and skipped:
            progress(sent + skipped, total)
        for start in range(0, len(items), 500):
            chunk = items[start:start + 500]
            errors = Wire(own).submit_responses(chunk)
            if errors:
                raise ReplayError(f"{username}: {len(errors)} response(s) rejected, e.g. {errors[0]}")
            sent += len(chunk)
            if progress:
                progress(sent + skipped, total)
    return ReplayResult(annotators=usernames, responses=sent, unchanged=skipped, values=len(labels))


def _submitted_values(client: rg.Argilla, dataset: rg.Dataset) -> dict[tuple[str, str], dict[str, str]]:
    """(username, item id) -> {question: value as text} of the submitted responses already on the server."""
    table, _, _ = fetch_responses(client, dataset)
    table = table[table["status"] == "submitted"]
    found: dict[tuple[str, str], dict[str, str]] = {}
    for row in table.itertuples(index=False):
        found.setdefault((row.annotator, row.item_id), {})[row.question] = row.value
    return found
