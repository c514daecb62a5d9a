"""Entry point run by the server venv's python: the Argilla server or its rq worker, with the SQL search engine.

    python _launch.py server --host 127.0.0.1 --port 6900 [--workers N]
    python _launch.py worker
    python _launch.py create-owner < {"username", "password", "api_key", "workspace"} as JSON on stdin

Registers ``_engine.SQLSearchEngine`` as search engine ``sql`` (no edit to site-packages), turns on SQLite WAL mode,
then runs uvicorn (``--workers N`` processes, each prepared the same way through ``create_app``) or an rq worker.
Configuration comes from the ``ARGILLA_*`` environment set by
``embedded.EmbeddedServer``. This file imports only the stdlib and the server venv's packages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

ENGINE_NAME = "sql"
KEEP_ALIVE = 75  # seconds an idle connection stays open (uvicorn's default, 5 s, races clients that reuse at ~5 s)


def _offline_defaults() -> None:
    """Make sure the server never reaches the network on its own (telemetry, Hub)."""
    os.environ["ARGILLA_SEARCH_ENGINE"] = ENGINE_NAME
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def _register_engine() -> None:
    """Import ``_engine.py`` from next to this file and register it under ``sql``."""
    from argilla_server.search_engine import SearchEngine

    path = Path(__file__).with_name("_engine.py")
    spec = importlib.util.spec_from_file_location("curate_sql_search_engine", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the SQL search engine from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    SearchEngine.register(ENGINE_NAME)(module.SQLSearchEngine)


def _sqlite_pragmas() -> None:
    """``journal_mode=WAL`` and ``synchronous=NORMAL`` on every new SQLite connection (a plain fsync is slow)."""
    from sqlalchemy import event

    from argilla_server.database import async_engine, sync_engine
    from argilla_server.settings import settings

    if not settings.database_is_sqlite:
        return

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(async_engine.sync_engine, "connect", on_connect)
    event.listen(sync_engine, "connect", on_connect)


def _skip_events_nobody_listens_to() -> None:
    """Build record/response webhook events only when a webhook is enabled.

    argilla-server builds every event (a dataset query with five eager loads plus a full record dump, per record)
    before `enqueue_notify_events` looks for enabled webhooks and drops it when there are none. With no webhook that
    work is pure overhead (about half the time of a bulk upsert here), so the guard asks the same question first.
    Behaviour is unchanged: with an enabled webhook the original function runs.
    """
    import importlib
    from functools import wraps

    from argilla_server.contexts import webhooks
    from argilla_server.webhooks.v1 import datasets, records, responses

    originals = {records.notify_record_event, responses.notify_response_event, datasets.notify_dataset_event}

    def guarded(notify: Any) -> Any:
        @wraps(notify)
        async def notify_if_watched(db: Any, *args: Any, **kwargs: Any) -> Any:
            if not await webhooks.list_enabled_webhooks(db):
                return []
            return await notify(db, *args, **kwargs)

        return notify_if_watched

    replacements = {id(original): guarded(original) for original in originals}
    for name in ("webhooks.v1.records", "webhooks.v1.responses", "webhooks.v1.datasets", "bulk.records_bulk",
                 "contexts.records", "contexts.datasets", "contexts.distribution"):
        module = importlib.import_module(f"argilla_server.{name}")
        for attribute, value in list(vars(module).items()):
            if id(value) in replacements:
                setattr(module, attribute, replacements[id(value)])


def _prepare() -> None:
    _offline_defaults()
    _register_engine()
    _sqlite_pragmas()
    _skip_events_nobody_listens_to()


def create_app() -> Any:
    """The Argilla app with the SQL search engine registered (uvicorn's factory for each worker process)."""
    _prepare()
    from argilla_server import app

    return app


def run_server(host: str, port: int, workers: int = 1) -> None:
    """Serve the Argilla API and web UI; with ``workers > 1`` uvicorn supervises that many processes (spawned: each
    imports this module as ``_launch`` and builds the app with ``create_app``)."""
    import uvicorn

    access_log = os.environ.get("CURATE_SERVER_ACCESS_LOG", "0") == "1"
    if workers > 1:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        uvicorn.run("_launch:create_app", factory=True, workers=workers, host=host, port=port, access_log=access_log,
                    log_level="info", timeout_keep_alive=KEEP_ALIVE)
        return
    uvicorn.run(create_app(), host=host, port=port, access_log=access_log, log_level="info",
                timeout_keep_alive=KEEP_ALIVE)


def run_worker() -> None:
    """Run one rq worker on Argilla's queues (dataset record-status jobs, Hub import/export, webhooks).

    A single ``rq.Worker`` rather than ``argilla_server.cli.worker``'s pool of two: each process imports the whole
    server (~250 MB). Jobs run in a forked work horse, so they see the registered engine.
    """
    _prepare()
    from rq import Worker

    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION

    Worker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION).work(with_scheduler=False)


def create_owner() -> int:
    """Create the owner user from JSON on stdin with argilla_server's own code; print nothing secret.

    Exit 0 when created, 3 when the username or API key already exists.
    """
    payload = json.loads(sys.stdin.read())
    from argilla_server.cli.database.users.create import _create
    from argilla_server.models import UserRole

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):  # it echoes the API key
        asyncio.run(_create(first_name=payload["username"], username=payload["username"], role=UserRole.owner,
                            password=payload["password"], api_key=payload["api_key"],
                            workspace=[payload["workspace"]]))
    if "already exists" in captured.getvalue():
        print("the owner already exists in this database")
        return 3
    print(f"owner {payload['username']!r} created")
    return 0


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="run the Argilla server")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=6900)
    server.add_argument("--workers", type=int, default=1)
    commands.add_parser("worker", help="run the rq worker")
    commands.add_parser("create-owner", help="create the owner from JSON on stdin")
    args = parser.parse_args(argv)

    if args.command == "server":
        run_server(args.host, args.port, args.workers)
    elif args.command == "create-owner":
        sys.exit(create_owner())
    else:
        run_worker()


if __name__ == "__main__":
    main()
