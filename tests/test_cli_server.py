"""Operators' commands (issue 11, small things): `curate server up|status|down --port/--redis-port` runs a second
embedded server side by side with another one, and `curate annotators add|list|remove` onboards reviewers without
the SDK. Real servers, the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from support import free_port

ROOT = Path(__file__).resolve().parents[1]


def _curate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workspaces", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def _embedded_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "CURATE_HOME": str(home)}
    for name in ("ARGILLA_API_URL", "ARGILLA_API_KEY", "CURATE_SERVER_PORT", "CURATE_REDIS_PORT"):
        env.pop(name, None)
    return env


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/status", timeout=5):
            return True
    except OSError as error:  # 401 without a key still proves a server answers
        return getattr(error, "code", None) == 401


def test_server_up_status_down_on_ports_of_its_own_next_to_another_server(tmp_path: Path, argilla_server: Any) -> None:
    port, redis_port = free_port(), free_port()
    env = _embedded_env(tmp_path / "home")
    flags = ["--port", str(port), "--redis-port", str(redis_port)]
    url = f"http://127.0.0.1:{port}"
    try:
        up = _curate("server", "up", *flags, env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"started at {url}" in up.stdout
        assert _answers(url) and _answers(argilla_server.api_url), "both servers answer side by side"

        status = _curate("server", "status", *flags, env=env)
        assert status.returncode == 0 and f"running at {url}" in status.stdout
        assert {"redis", "server", "worker"} <= set(status.stdout.split("processes:")[1].split("\n")[0].replace(
            ",", " ").split())
        by_env = _curate("server", "status", env={**env, "CURATE_SERVER_PORT": str(port),
                                                  "CURATE_REDIS_PORT": str(redis_port)})
        assert by_env.returncode == 0 and f"running at {url}" in by_env.stdout, "the ports also come from the env"
        again = _curate("server", "up", *flags, env=env)
        assert again.returncode == 0 and f"already running at {url}" in again.stdout
    finally:
        down = _curate("server", "down", *flags, env=env)
    assert down.returncode == 0 and "stopped:" in down.stdout, down.stdout + down.stderr
    assert not _answers(url) and _answers(argilla_server.api_url), "down stopped only the server it started"
    stopped = _curate("server", "status", *flags, env=env)
    assert stopped.returncode == 4 and f"not running at {url}" in stopped.stdout


def test_server_up_on_a_port_in_use_says_which_port(tmp_path: Path, argilla_server: Any) -> None:
    busy = argilla_server.api_url.rsplit(":", 1)[1]
    up = _curate("server", "up", "--port", busy, "--redis-port", str(free_port()), env=_embedded_env(tmp_path / "h"))
    assert up.returncode == 4 and f"Port {busy}" in up.stderr and "already in use" in up.stderr
    assert "Traceback" not in up.stderr
    bad = _curate("server", "status", env={**_embedded_env(tmp_path / "h"), "CURATE_SERVER_PORT": "six"})
    assert bad.returncode != 0 and "CURATE_SERVER_PORT" in bad.stdout + bad.stderr


def test_annotators_add_list_remove_from_the_command_line(tmp_path: Path, argilla_server: Any,
                                                          argilla_client: Any) -> None:
    (tmp_path / "items.jsonl").write_text('{"id": "a", "text": "hello"}\n')
    config = tmp_path / "team.yaml"
    config.write_text(yaml.safe_dump({
        "name": "team", "data": {"path": "items.jsonl"}, "fields": [{"name": "text"}],
        "questions": [{"name": "q", "kind": "label", "labels": {"x": "x", "y": "y"}}],
        "argilla": {"dataset": "team", "workspace": "team-cli"}, "run_dir": str(tmp_path / "run")}))
    env = {**os.environ, "ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key}

    added = _curate("annotators", "add", str(config), "cli-reviewer", env=env)
    assert added.returncode == 0, added.stderr
    assert "stored nowhere):" in added.stdout, added.stdout + added.stderr
    password = added.stdout.split("stored nowhere):", 1)[1].split()[0]
    assert len(password) >= 12
    import argilla as rg

    reviewer = next(u for u in argilla_client.users if u.username == "cli-reviewer")
    assert reviewer.role.value == "annotator"  # the generated password is the reviewer's login:
    login = urllib.request.Request(f"{argilla_server.api_url}/api/v1/token",
                                   data=f"username=cli-reviewer&password={password}".encode(), method="POST",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(login, timeout=10) as reply:
        assert reply.status in (200, 201)
    again = _curate("annotators", "add", str(config), "cli-reviewer", env=env)
    assert again.returncode == 0 and "password unchanged" in again.stdout and password not in again.stdout

    listed = _curate("annotators", "list", str(config), env=env)
    assert listed.returncode == 0 and "cli-reviewer" in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if "cli-reviewer" in line)
    assert "annotator" in row and "Role." not in row, row

    removed = _curate("annotators", "remove", str(config), "cli-reviewer", env=env)
    assert removed.returncode == 0 and "removed" in removed.stdout
    listed = _curate("annotators", "list", str(config), env=env)
    assert "cli-reviewer" not in listed.stdout
    workspace = argilla_client.workspaces("team-cli")
    assert "cli-reviewer" not in {u.username for u in workspace.users}
    assert isinstance(argilla_client.users("cli-reviewer"), rg.User), "the account stays"
    missing = _curate("annotators", "remove", str(config), "nobody-here", env=env)
    assert missing.returncode == 4 and "nobody-here" in missing.stderr
