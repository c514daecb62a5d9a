"""Connecting to Argilla: the server named by `ARGILLA_API_URL`/`ARGILLA_API_KEY`, else the embedded one."""

from __future__ import annotations

import warnings
from typing import Optional

import argilla as rg

from ..errors import ArgillaError
from ._wire import Wire, argilla_errors
from .server import ServerError, ServerInfo, resolve_server

__all__ = ["ConnectionFailed", "KEEPALIVE_EXPIRY", "connect", "sdk_client"]

ConnectionFailed = ArgillaError  # the name earlier versions exported

KEEPALIVE_EXPIRY = 2.0
"""Seconds a pooled connection may idle before the client drops it instead of reusing it. Argilla's server is
uvicorn, which closes a connection after 5 s of idle (its default ``timeout_keep_alive``): a client that reuses a
connection idle for about that long (httpx's default expiry is also 5 s) can send its request just as the server
closes it and get ``ReadError``, a reset, for a request that never reached the app. A process that waits on a lock
between two requests (a second `curate publish` of the same checkout) meets that race; a shorter expiry avoids it."""


def sdk_client(api_url: str, api_key: str, *, timeout: int = 120) -> rg.Argilla:
    """An Argilla SDK client whose pool never reuses a connection idle for longer than `KEEPALIVE_EXPIRY`."""
    import httpx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns about its own version checks
        return rg.Argilla(api_url=api_url, api_key=api_key, timeout=timeout,
                          limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY))


def connect(info: Optional[ServerInfo] = None, *, timeout: int = 120) -> tuple[rg.Argilla, ServerInfo]:
    """An owner client for the server in use (starting the embedded server if needed) and its `ServerInfo`.

    Raises:
        ArgillaError: the server cannot be started or reached, or refused the API key (the message says which).
    """
    try:
        info = info or resolve_server()
    except ServerError as exc:
        raise ArgillaError(str(exc)) from None
    origin = "ARGILLA_API_URL" if info.external else "the embedded server"
    with argilla_errors(f"{info.api_url} ({origin})", "connecting"):
        client = sdk_client(info.api_url, info.api_key, timeout=timeout)
        Wire(client).me()  # one request that proves the URL and the key
    return client, info
