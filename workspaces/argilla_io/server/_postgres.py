"""The embedded server's own PostgreSQL cluster, from the distribution's ``postgresql`` package, inside its home.

``home/postgres/`` holds the cluster (``data/``, made by ``initdb``), the Unix socket directory (``run/``, no TCP
listener) and ``pgpass`` (0600: the cluster superuser's password, which no command line, environment or log carries;
clients find it through ``PGPASSFILE``). Everything stays owner-only and owned by the user running curate.

PostgreSQL refuses to run as root. When curate runs as root, ``initdb`` and ``postgres`` run in a user namespace
(``unshare --user``) that maps root to the ``postgres`` system user: the server then sees a non-root uid that owns
the data directory, while on disk everything still belongs to root with owner-only modes (a dedicated user via
``runuser`` could not even reach a 0700 home).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit
from typing import Callable, List, Optional, Tuple

__all__ = ["LocalPostgres", "PostgresError", "find_bindir", "password_url", "pgpass_escape"]

USER = "argilla"
DATABASE = "argilla"
PORT = 5432  # only names the socket file (run/.s.PGSQL.5432): the cluster listens on no TCP port

#: Where the distribution installs the server binaries; ``CURATE_PG_BINDIR`` overrides.
BINDIR_ENV = "CURATE_PG_BINDIR"
_SOCKET_PATH_MAX = 107  # sun_path


class PostgresError(RuntimeError):
    """The local cluster could not be created or started (the message says why and what to do)."""


def find_bindir() -> Path:
    """The directory with ``initdb`` and ``postgres`` (newest ``/usr/lib/postgresql/<ver>/bin`` on Debian)."""
    override = os.environ.get(BINDIR_ENV)
    candidates = [Path(override)] if override else []
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version(p.parent.name), reverse=True)
    candidates += versions
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise PostgresError(
        "PostgreSQL is not installed (no initdb/postgres under /usr/lib/postgresql/*/bin or on PATH): install the "
        "distribution's package (`apt-get install postgresql`; `bash scripts/setup.sh` does it), set "
        f"{BINDIR_ENV}, or pass --database postgresql://user@host/db for an existing server."
    )


def _version(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in name.split("."))


class LocalPostgres:
    """One cluster under ``root`` (``home/postgres``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def passfile(self) -> Path:
        return self.root / "pgpass"

    @property
    def url(self) -> str:
        """The server's database URL: the superuser over the socket, no password (that comes from ``pgpass``)."""
        return f"postgresql+asyncpg://{USER}@/{DATABASE}?host={self.run}"

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists() and self.passfile.exists()

    # ------------------------------------------------------------------ create
    def ensure_cluster(self, say: Callable[[str], None]) -> None:
        """``initdb`` the cluster (UTF-8, ``C.UTF-8`` ctype for Unicode case folding, SCRAM passwords) unless done."""
        if self.initialized():
            return
        bindir = find_bindir()
        socket = self.run / f".s.PGSQL.{PORT}"
        if len(str(socket)) > _SOCKET_PATH_MAX:
            raise PostgresError(f"The socket path {socket} is longer than {_SOCKET_PATH_MAX} bytes: use a shorter "
                                "server home (CURATE_HOME).")
        if self.data.exists():  # a half-made cluster (initdb interrupted): start over, it holds no data yet
            shutil.rmtree(self.data)
        _private(self.root)
        _private(self.run)
        password = secrets.token_urlsafe(24)
        pwfile = self.root / ".initdb-password"
        _write_private(pwfile, password + "\n")
        say(f"Creating a PostgreSQL cluster in {self.data}")
        try:
            result = subprocess.run(
                as_cluster_owner([str(bindir / "initdb"), "-D", str(self.data), "-U", USER, "--auth=scram-sha-256",
                                  f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C.UTF-8"]),
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, umask=0o077, cwd=self.root,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            raise PostgresError(f"initdb failed (exit {result.returncode}):\n{_tail(result.stdout + result.stderr)}")
        _write_private(self.passfile, f"*:*:*:{USER}:{pgpass_escape(password)}\n")

    # ------------------------------------------------------------------ run
    def command(self, max_connections: int) -> List[str]:
        """The ``postgres`` command: Unix socket only, owner-only socket, logs on stderr."""
        settings = {
            "listen_addresses": "", "unix_socket_directories": str(self.run), "unix_socket_permissions": "0700",
            "port": str(PORT), "max_connections": str(max_connections), "logging_collector": "off",
        }
        arguments = [argument for key, value in settings.items() for argument in ("-c", f"{key}={value}")]
        return as_cluster_owner([str(find_bindir() / "postgres"), "-D", str(self.data), *arguments])

    def wait_ready(self, alive: Callable[[], bool], timeout: float, log: Path) -> None:
        """Until ``postmaster.pid`` says ``ready`` and the socket exists."""
        deadline = time.monotonic() + timeout
        pidfile, socket = self.data / "postmaster.pid", self.run / f".s.PGSQL.{PORT}"
        while time.monotonic() < deadline:
            try:
                lines = pidfile.read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready" and socket.exists():
                return
            if not alive():
                raise PostgresError(f"PostgreSQL exited at start-up:\n{_tail(log.read_text(errors='replace'))}")
            time.sleep(0.1)
        last = _tail(log.read_text(errors="replace"))
        raise PostgresError(f"PostgreSQL was not ready within {timeout:.0f} s:\n{last}")

    def ensure_database(self) -> None:
        """``createdb argilla`` unless it exists (the password comes from ``pgpass``)."""
        env = {**os.environ, "PGPASSFILE": str(self.passfile)}
        result = subprocess.run(
            [str(find_bindir() / "createdb"), "-h", str(self.run), "-p", str(PORT), "-U", USER, DATABASE],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=env,
        )
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise PostgresError(f"createdb failed (exit {result.returncode}):\n{_tail(result.stdout + result.stderr)}")


def as_cluster_owner(command: List[str]) -> List[str]:
    """``command`` as a non-root user: unchanged unless we are root, else inside a user namespace (see module)."""
    if os.geteuid() != 0:
        return command
    unshare = shutil.which("unshare")
    if unshare is None:
        raise PostgresError("PostgreSQL cannot run as root and `unshare` (util-linux) is missing: run curate as a "
                            "non-root user, or pass --database postgresql://... for an existing server.")
    try:
        owner = pwd.getpwnam("postgres")
        uid, gid = owner.pw_uid, owner.pw_gid
    except KeyError:
        uid = gid = 65534  # nobody
    probe = subprocess.run([unshare, "--user", f"--map-user={uid}", f"--map-group={gid}", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        raise PostgresError(
            "PostgreSQL cannot run as root and this system does not allow user namespaces "
            f"({probe.stderr.strip()}): run curate as a non-root user, or pass --database postgresql://..."
        )
    return [unshare, "--user", f"--map-user={uid}", f"--map-group={gid}", *command]


def pgpass_escape(value: str) -> str:
    """A ``pgpass`` field: ``\\`` and ``:`` escaped."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _private(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])


def password_url(url: str) -> Tuple[str, Optional[str], Optional[str]]:
    """Split a PostgreSQL URL into (URL without password, user, password); the driver is forced to asyncpg."""

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+asyncpg"):
        scheme = "postgresql+asyncpg"
    else:
        raise ValueError(f"not a PostgreSQL URL: {parts.scheme}://...")
    password = unquote(parts.password) if parts.password is not None else None
    user = unquote(parts.username) if parts.username else None
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment)), user, password
