"""Reviewers in the project's Argilla workspace: add, list, remove, and pause / resume (the honeypot rule).

Pausing removes the annotator from the dataset's workspace on the server, so they can no longer open the dataset or
submit; it is recorded (who, when, why) in `<run dir>/paused_annotators.json`, and their responses stop counting
towards consensus (they stay in `annotations.parquet`, flagged). Resuming adds them back.
"""

from __future__ import annotations

import secrets
import warnings
from datetime import datetime, timezone
from typing import Any, Optional

import argilla as rg
from pydantic import BaseModel

from ..config import ProjectConfig
from ..errors import ArgillaError, ConfigError
from ..rundir import PAUSED, locked, read_json, write_json
from ._wire import Wire, argilla_errors
from .settings import ensure_workspace
from .sync import flag_paused

__all__ = ["Annotator", "add_annotator", "list_annotators", "pause_annotator", "paused", "record_pause",
           "remove_annotator", "resume_annotator"]


class Annotator(BaseModel):
    """A user of the project's workspace."""

    username: str
    role: str
    paused: bool = False
    password: Optional[str] = None  # only when just created: shown once, stored nowhere


def paused(config: ProjectConfig) -> dict[str, dict[str, Any]]:
    """Paused annotators: username -> {time, reason}."""
    return dict((read_json(config.run_path, PAUSED, required=False) or {}).get("paused", {}))


def _user(client: rg.Argilla, username: str) -> Optional[rg.User]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return client.users(username)


def _role(role: Any) -> str:
    """The role as text: the SDK gives an enum (`Role.annotator`), the API a string."""
    return str(getattr(role, "value", role))


def add_annotator(client: rg.Argilla, config: ProjectConfig, username: str, *, role: str = "annotator"
                  ) -> Annotator:
    """Create the user if needed (with a generated password, returned once) and add them to the workspace."""
    if role not in ("annotator", "admin"):
        raise ConfigError(f"role {role!r}: choose annotator or admin")
    with argilla_errors(str(client.api_url), f"adding {username!r}"):
        user, password = _user(client, username), None
        if user is None:
            password = secrets.token_urlsafe(12)
            user = rg.User(username=username, password=password, role=role, client=client).create()
        workspace = ensure_workspace(client, config.argilla.workspace)
        if username not in {u.username for u in workspace.users}:
            user.add_to_workspace(workspace)
    return Annotator(username=username, role=_role(user.role), password=password,
                     paused=username in paused(config))


def list_annotators(client: rg.Argilla, config: ProjectConfig) -> list[Annotator]:
    """The workspace's users, and the paused ones (no longer in the workspace)."""
    stopped = paused(config)
    with argilla_errors(str(client.api_url), "listing annotators"):
        workspace = ensure_workspace(client, config.argilla.workspace)
        members = [Annotator(username=u.username, role=_role(u.role)) for u in workspace.users]
    names = {m.username for m in members}
    return sorted(members + [Annotator(username=name, role="annotator", paused=True) for name in stopped
                             if name not in names], key=lambda a: a.username)


def remove_annotator(client: rg.Argilla, config: ProjectConfig, username: str) -> None:
    """Remove the user from the workspace (the account and their responses stay)."""
    with argilla_errors(str(client.api_url), f"removing {username!r}"):
        user = _user(client, username)
        if user is None:
            raise ArgillaError(f"no user {username!r} on {client.api_url}")
        workspace = ensure_workspace(client, config.argilla.workspace)
        if username in {u.username for u in workspace.users}:
            Wire(client).remove_from_workspace(workspace.id, user.id)


def pause_annotator(client: rg.Argilla, config: ProjectConfig, username: str, reason: str) -> None:
    """Stop an annotator: out of the workspace on the server, recorded with the reason in the run dir."""
    remove_annotator(client, config, username)
    record_pause(config, username, reason)


def record_pause(config: ProjectConfig, username: str, reason: str) -> None:
    """Record a pause in the run dir (`paused_annotators.json`): their responses stop counting from now on."""
    path = PAUSED.path(config.run_path)
    with locked(path):
        state = paused(config)
        state[username] = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "reason": reason}
        write_json(path, {"paused": state})
    flag_paused(config)


def resume_annotator(client: rg.Argilla, config: ProjectConfig, username: str) -> None:
    """Let a paused annotator back into the workspace."""
    add_annotator(client, config, username)
    path = PAUSED.path(config.run_path)
    with locked(path):
        state = paused(config)
        state.pop(username, None)
        write_json(path, {"paused": state})
    flag_paused(config)
