"""`curate server up|down|status`: the embedded Argilla server's lifecycle."""

from __future__ import annotations

from typing import Optional

import typer

from ..errors import ArgillaError
from ._app import command, server_app
from .console import console, say


def _embedded(port: Optional[int], redis_port: Optional[int]) -> "object":
    from ..argilla_io.server import EmbeddedServer

    options = {key: value for key, value in (("port", port), ("redis_port", redis_port)) if value is not None}
    return EmbeddedServer(**options)


PortOption = typer.Option(None, "--port", envvar="CURATE_SERVER_PORT", help="API/UI port (default 6900).")
RedisPortOption = typer.Option(None, "--redis-port", envvar="CURATE_REDIS_PORT", help="Redis port (default 6390).")


@command(server_app, "up")
def server_up(
    port: Optional[int] = PortOption,
    redis_port: Optional[int] = RedisPortOption,
    show_password: bool = typer.Option(False, "--show-password", help="Also print the owner's password."),
    database: Optional[str] = typer.Option(
        None, "--database", envvar="CURATE_DATABASE",
        help="sqlite (default), postgresql (a local cluster in the server home, from the distribution's postgresql "
             "package) or postgresql://user@host:port/db (password better in ~/.pgpass). A home keeps its database.",
    ),
    workers: Optional[int] = typer.Option(None, "--workers", envvar="CURATE_SERVER_WORKERS", min=1, max=64,
                                          help="uvicorn worker processes (default 1)."),
) -> None:
    """Start the embedded Argilla server (reused if already running)."""
    from ..argilla_io.server import external_server

    external = external_server()
    if external is not None:
        say(f"ARGILLA_API_URL is set: using the server at {external.api_url}; nothing to start.")
        return
    server = _embedded(port, redis_port)
    if database is not None:
        server.database = database  # type: ignore[attr-defined]
    if workers is not None:
        server.workers = workers  # type: ignore[attr-defined]
    with console.status("Starting the embedded Argilla server (first run installs it: a few minutes)..."):
        info = server.up()  # type: ignore[attr-defined]
    verb = "started" if info.started else "already running"
    secret = info.owner_password if show_password else f"see {server.home}/credentials.json"  # type: ignore[attr-defined]
    say(f"Argilla server {verb} at {info.api_url}  (owner: {info.owner_username} / {secret})")


@command(server_app, "down")
def server_down(port: Optional[int] = PortOption, redis_port: Optional[int] = RedisPortOption) -> None:
    """Stop the embedded server processes that `curate server up` started (nothing else)."""
    from ..argilla_io.server import external_server

    external = external_server()
    if external is not None:
        say(f"ARGILLA_API_URL is set ({external.api_url}): that server is not ours to stop; nothing was stopped. "
            "Unset ARGILLA_API_URL to stop the embedded server.")
        return
    stopped = _embedded(port, redis_port).down()  # type: ignore[attr-defined]
    say(f"stopped: {', '.join(stopped)}" if stopped else "nothing to stop")


@command(server_app, "status")
def server_status(port: Optional[int] = PortOption, redis_port: Optional[int] = RedisPortOption) -> None:
    """Show whether the server answers, its URL and PIDs (exit 4 when it does not answer)."""
    from ..argilla_io.connection import connect
    from ..argilla_io.server import external_server

    external = external_server()
    if external is not None:
        try:
            connect(external)
        except ArgillaError as exc:
            raise ArgillaError(f"external server (ARGILLA_API_URL) {external.api_url} does not answer: {exc}") from None
        say(f"external server (ARGILLA_API_URL) {external.api_url}: answering")
        return
    status = _embedded(port, redis_port).status()  # type: ignore[attr-defined]
    pids = ", ".join(f"{name} {pid}" for name, pid in status.pids.items()) or "none"
    say(f"embedded server {'running' if status.running else 'not running'} at {status.url}\nprocesses: {pids}\n"
        f"home: {status.home}\nlogs: {status.logs}")
    if not status.running:
        raise typer.Exit(ArgillaError.exit_code)
