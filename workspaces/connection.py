"""Connecting to Argilla: the server named by `ARGILLA_API_URL`/`ARGILLA_API_KEY`, else the embedded one."""

from __future__ import annotations

from typing import Optional

import argilla as rg

from .server import ServerError, ServerInfo, resolve_server

__all__ = ["ConnectionFailed", "connect"]


class ConnectionFailed(RuntimeError):
    """The Argilla server cannot be reached or refused the credentials."""


def connect(info: Optional[ServerInfo] = None, *, timeout: int = 120) -> tuple[rg.Argilla, ServerInfo]:
    """An owner client for the server in use (starting the embedded server if needed) and its `ServerInfo`."""
    try:
        info = info or resolve_server()
    except ServerError as exc:
        raise ConnectionFailed(str(exc)) from None
    try:
        client = rg.Argilla(api_url=info.api_url, api_key=info.api_key, timeout=timeout)
        client.me  # noqa: B018 - one request that proves the URL and the key
    except Exception as exc:  # the SDK raises httpx and Argilla errors alike here
        origin = "ARGILLA_API_URL" if info.external else "the embedded server"
        raise ConnectionFailed(f"cannot reach Argilla at {info.api_url} ({origin}): {exc}") from None
    return client, info
