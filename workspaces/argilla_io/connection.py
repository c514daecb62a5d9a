"""Connecting to Argilla: the server named by `ARGILLA_API_URL`/`ARGILLA_API_KEY`, else the embedded one."""

from __future__ import annotations

import warnings
from typing import Optional

import argilla as rg

from ..errors import ArgillaError
from ._wire import Wire, argilla_errors
from .server import ServerError, ServerInfo, resolve_server

__all__ = ["ConnectionFailed", "connect"]

ConnectionFailed = ArgillaError  # the name earlier versions exported


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
    with argilla_errors(f"{info.api_url} ({origin})", "connecting"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns about its own version checks
        client = rg.Argilla(api_url=info.api_url, api_key=info.api_key, timeout=timeout)
        Wire(client).me()  # one request that proves the URL and the key
    return client, info
