"""The embedded server keeps its secrets (issues 8 and 13): an owner-only home, no secret on a command line, in a
process environment or a log while the owner is created, Redis behind a password, and the CLI's server targeting."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from support import free_port
from workspaces.argilla_io.server import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]


def _watch_processes(stop: threading.Event, seen: list[bytes]) -> None:
    """Collect the command line and environment of every process while the server starts."""
    while not stop.is_set():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            for name in ("cmdline", "environ"):
                try:
                    seen.append((entry / name).read_bytes())
                except OSError:
                    pass
        stop.wait(0.05)


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory):
    """A first start in a new home, with every process's arguments and environment recorded meanwhile."""
    server = EmbeddedServer(home=tmp_path_factory.mktemp("secure-home"), port=free_port(), redis_port=free_port())
    seen: list[bytes] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_processes, args=(stop, seen), daemon=True)
    watcher.start()
    try:
        info = server.up()
    finally:
        stop.set()
        watcher.join()
    yield server, info, seen
    server.down()


def test_no_secret_on_a_command_line_or_in_an_environment_during_the_first_start(fresh_server) -> None:
    server, info, seen = fresh_server
    assert info.started and len(seen) > 100, "the watcher saw the start-up processes"
    assert any(b"_launch.py" in blob for blob in seen), "the watcher saw our server processes"
    for secret in (info.api_key, info.owner_password):
        assert not [blob for blob in seen if secret.encode() in blob], "a secret was visible in /proc"


def test_the_home_and_everything_in_it_is_owner_only(fresh_server) -> None:
    server, info, _ = fresh_server
    loose = []
    for path in [server.home, *server.home.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            loose.append(f"{path.relative_to(server.home)} {oct(mode)}")
    assert loose == []
    assert (server.home / "argilla.db").is_file()


def test_no_secret_in_any_log(fresh_server) -> None:
    server, info, _ = fresh_server
    logs = list(server.logs.glob("*.log"))
    assert {p.name for p in logs} >= {"users.log", "server.log", "redis.log"}
    for log in logs:
        text = log.read_text(errors="replace")
        assert info.api_key not in text and info.owner_password not in text, log.name
    assert "created" in (server.logs / "users.log").read_text()


def _redis_says(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command)
        return sock.recv(200)


def test_redis_refuses_a_client_without_the_password(fresh_server) -> None:
    server, info, _ = fresh_server
    assert _redis_says(server.redis_port, b"PING\r\n").startswith(b"-NOAUTH")
    assert _redis_says(server.redis_port, b"LPUSH rq:queue:default x\r\n").startswith(b"-NOAUTH")
    password = json.loads((server.home / "credentials.json").read_text())["redis_password"]
    auth = f"AUTH {password}\r\nPING\r\n".encode()
    assert b"+PONG" in _redis_says(server.redis_port, auth) + _redis_says(server.redis_port, auth)


def test_the_worker_still_runs_jobs_behind_the_password(fresh_server) -> None:
    """Lowering min_submitted re-computes record statuses in an rq job: the worker must still reach Redis."""
    import time

    import argilla as rg

    server, info, _ = fresh_server
    client = rg.Argilla(api_url=info.api_url, api_key=info.api_key)
    settings = rg.Settings(fields=[rg.TextField(name="text")], questions=[rg.LabelQuestion(name="q", labels=["a", "b"])],
                           distribution=rg.TaskDistribution(min_submitted=2))
    dataset = rg.Dataset(name="worker-behind-password", workspace="argilla", settings=settings, client=client).create()
    owner = client.me
    dataset.records.log([rg.Record(fields={"text": "hello"}, responses=[  # 1 of 2 submitted -> pending
        rg.Response(question_name="q", value="a", user_id=owner.id, status="submitted")])])
    assert dataset.progress()["pending"] == 1
    dataset.settings.distribution = rg.TaskDistribution(min_submitted=1)
    dataset.update()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and dataset.progress().get("completed") != 1:
        time.sleep(0.5)
    assert dataset.progress().get("completed") == 1, "the rq job recomputed the record's status"
    worker_log = (server.logs / "worker.log").read_text(errors="replace")
    assert "Authentication required" not in worker_log and "NOAUTH" not in worker_log


def test_server_up_prints_the_password_only_when_asked(fresh_server) -> None:
    server, info, _ = fresh_server
    env = {**os.environ, "CURATE_HOME": str(server.home), "CURATE_SERVER_PORT": str(server.port),
           "CURATE_REDIS_PORT": str(server.redis_port)}
    env.pop("ARGILLA_API_URL", None)
    env.pop("ARGILLA_API_KEY", None)
    quiet = subprocess.run([sys.executable, "-m", "workspaces", "server", "up"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert quiet.returncode == 0 and "already running" in quiet.stdout
    assert info.owner_password not in quiet.stdout + quiet.stderr and "credentials.json" in quiet.stdout
    loud = subprocess.run([sys.executable, "-m", "workspaces", "server", "up", "--show-password"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert info.owner_password in loud.stdout


def test_commands_find_a_server_on_other_ports_through_the_environment(fresh_server) -> None:
    server, info, _ = fresh_server
    env = {**os.environ, "CURATE_HOME": str(server.home), "CURATE_SERVER_PORT": str(server.port),
           "CURATE_REDIS_PORT": str(server.redis_port)}
    env.pop("ARGILLA_API_URL", None)
    env.pop("ARGILLA_API_KEY", None)
    status = subprocess.run([sys.executable, "-m", "workspaces", "server", "status"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert status.returncode == 0 and f"running at {info.api_url}" in status.stdout


def test_server_down_with_an_external_url_stops_nothing(fresh_server) -> None:
    server, info, _ = fresh_server
    env = {**os.environ, "CURATE_HOME": str(server.home), "CURATE_SERVER_PORT": str(server.port),
           "CURATE_REDIS_PORT": str(server.redis_port), "ARGILLA_API_URL": info.api_url, "ARGILLA_API_KEY": "x"}
    down = subprocess.run([sys.executable, "-m", "workspaces", "server", "down"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert down.returncode == 0 and "nothing was stopped" in down.stdout
    assert server.status().running, "the embedded server still runs"


def test_server_status_fails_for_a_dead_external_url() -> None:
    env = {**os.environ, "ARGILLA_API_URL": f"http://127.0.0.1:{free_port()}", "ARGILLA_API_KEY": "x"}
    status = subprocess.run([sys.executable, "-m", "workspaces", "server", "status"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert status.returncode == 4 and "does not answer" in status.stderr
