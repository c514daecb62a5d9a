"""Qualification batches on the server: each reviewer's own dataset of gold items, and their answers read back.

The dataset `<dataset>-qualification` lives in the workspace `<workspace>-qual-<username>`, whose only annotator is
that reviewer: nobody else can open it, and nothing in the project's dataset tells its gold items apart. Its records
have the project's form and fields and no suggestion. Which items, and what the answers mean, is decided by
`workspaces.review.qualification`.
"""

from __future__ import annotations

from typing import Iterable

import argilla as rg

from ..config import ProjectConfig
from ._wire import Wire, argilla_errors
from .publish import publish
from .replay import ensure_user
from .settings import ensure_workspace, get_dataset
from .sync import fetch_responses

__all__ = ["fetch_qualification_answers", "publish_qualification", "qualification_config"]


def qualification_config(config: ProjectConfig, username: str) -> ProjectConfig:
    """The project with `username`'s qualification dataset and workspace in place of its own."""
    argilla = config.argilla.model_copy(update={"dataset": f"{config.argilla.dataset}-qualification",
                                                "workspace": f"{config.argilla.workspace}-qual-{username}"})
    return config.model_copy(update={"argilla": argilla})


def publish_qualification(config: ProjectConfig, client: rg.Argilla, username: str, item_ids: list[str]) -> str:
    """Publish `item_ids` (no suggestions) to `username`'s qualification dataset, the user made its workspace's
    member; returns the dataset's name. The user is created if missing (as `curate annotators add` would)."""
    derived = qualification_config(config, username)
    with argilla_errors(str(client.api_url), f"publishing {username!r}'s qualification batch"):
        user = ensure_user(client, username, derived.argilla.workspace)
        workspace = ensure_workspace(client, derived.argilla.workspace)
        if username not in {u.username for u in workspace.users}:
            Wire(client).add_to_workspace(workspace.id, user.id)
    publish(derived, client, item_ids=item_ids, suppressed=item_ids)
    return derived.argilla.dataset


def fetch_qualification_answers(config: ProjectConfig, client: rg.Argilla, usernames: Iterable[str],
                                question: str) -> dict[str, dict[str, str]]:
    """username -> {item id: value as text} of their submitted answers to `question` in their qualification
    dataset; a reviewer whose dataset is gone is left out (their answers read earlier stay where they were kept)."""
    found: dict[str, dict[str, str]] = {}
    for username in usernames:
        with argilla_errors(str(client.api_url), f"reading {username!r}'s qualification answers"):
            dataset = get_dataset(client, qualification_config(config, username))
            if dataset is None:
                continue
            table, _, _ = fetch_responses(client, dataset)
        table = table[(table["annotator"] == username) & (table["status"] == "submitted")
                      & (table["question"] == question)]
        found[username] = dict(zip(table["item_id"].astype(str), table["value"].astype(str)))
    return found
