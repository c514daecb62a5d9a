"""Checkpoints: every finished batch is a parquet part, folded into the stage's output when the run ends.

A killed run resumes from its parts; `consolidate` writes the output atomically and removes the parts. A parts folder
sits in the run directory and, like it, is owner-only (`workspaces.rundir.private_dir`).
`worker_guard` makes sure a killed run leaves no Distilabel worker process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pandas as pd

from workspaces.rundir import RUN_FILES, private_dir, read_table, write_table

__all__ = ["PartsWatcher", "WORKERS_FILE", "consolidate", "read_with_parts", "worker_guard", "write_part"]

Progress = Callable[[int, int], None]


def write_part(directory: Path, run_id: str, batch: int, rows: List[Dict[str, Any]]) -> Path:
    """Write one finished batch atomically as `<run_id>-<batch>-<rows>.parquet` (the resume checkpoint)."""
    final = _parts_folder(directory) / f"{run_id}-{batch:05d}-{len(rows)}.parquet"
    return write_table(final, pd.DataFrame(rows))


def _parts_folder(directory: Path) -> Path:
    """`directory` and the run directory it sits in, both owner-only."""
    private_dir(directory.parent)
    return private_dir(directory)


class PartsWatcher:
    """Polls the checkpoint folder and reports (rows done, total) while the pipeline runs in the main thread."""

    def __init__(self, directory: Path, run_id: str, total: int, progress: Optional[Progress]) -> None:
        self.directory, self.run_id, self.total, self.progress = directory, run_id, total, progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def done(self) -> int:
        if not self.directory.is_dir():
            return 0
        return sum(int(p.stem.rsplit("-", 1)[1]) for p in self.directory.glob(f"{self.run_id}-*.parquet"))

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            if self.progress:
                self.progress(self.done(), self.total)

    def __enter__(self) -> "PartsWatcher":
        if self.progress:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.progress:
            self._thread.join(timeout=2)
            self.progress(self.done(), self.total)


def read_with_parts(path: Path, parts: Path, columns: Sequence[str], key: Sequence[str]) -> pd.DataFrame:
    """The output file plus every checkpoint part not yet folded in; the newest row wins per `key`."""
    frames = []
    if path.is_file():  # a run file goes through its one reader (a corrupt one is a RunFileError naming it)
        known = next((f for f in RUN_FILES if f.name == path.name), None)
        frames.append(read_table(path, known) if known is not None else pd.read_parquet(path))
    if parts.is_dir():
        frames.extend(pd.read_parquet(p) for p in sorted(parts.glob("*.parquet"), key=lambda p: p.stat().st_mtime))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    frame = pd.concat(frames, ignore_index=True)
    frame["item_id"] = frame["item_id"].astype(str)
    return frame.drop_duplicates(list(key), keep="last").reset_index(drop=True)


def consolidate(path: Path, parts: Path, columns: Sequence[str], key: Sequence[str],
                floats: Sequence[str] = ()) -> pd.DataFrame:
    """Fold checkpoint parts into the output file (atomically) and remove them; returns the output."""
    frame = read_with_parts(path, parts, columns, key)
    for column in columns:
        if column not in frame.columns:
            frame[column] = None
    frame = frame[list(columns)]
    for column in floats:
        frame[column] = frame[column].astype("float64")
    write_table(path, frame)
    shutil.rmtree(parts, ignore_errors=True)
    return frame


# ---- no orphaned workers -----------------------------------------------------------------------------------------

WORKERS_FILE = ".workers.json"  # in the checkpoint folder: the pipeline's worker processes (pid, start time, cmdline)

# The watchdog: a separate, import-free Python process. While its parent (the process running the pipeline) lives,
# it records the descendants the parent starts from now on (Distilabel's Manager and Pool workers are forked,
# non-daemon processes that outlive a `kill -9` of the parent, blocked on their queues); processes it had started
# before (an embedded server, say) are left alone. When the parent is gone, it SIGKILLs every recorded process that
# is still the same process (same start time and command line). SIGTERM (a normal end) just exits.
_WATCHDOG = r"""
import json, os, signal, sys, time
parent, state = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
def identity(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode("utf-8", "replace")
        return int(rest[1]), rest[19], cmdline
    except (OSError, IndexError, ValueError):
        return None
def descendants(skip):
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            found = identity(int(name))
            if found:
                children.setdefault(found[0], []).append((int(name), found[1], found[2]))
    known, todo = {}, [parent]
    while todo:
        for pid, start, cmdline in children.get(todo.pop(), []):
            if pid != os.getpid() and str(pid) not in known and str(pid) not in skip:
                known[str(pid)] = [start, cmdline]
                todo.append(pid)
    return known
before = descendants(set())  # processes the parent started before the pipeline (a server, say) are not ours
sys.stdout.write("ready\n")
sys.stdout.close()
known = {}
while os.getppid() == parent:
    now = descendants(before)  # every process seen is kept: one that ended fails the identity check below
    if now.keys() - known.keys():
        known.update(now)
        fd = os.open(state + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # owner-only whatever the umask, as every run file
        with os.fdopen(fd, "w") as f:
            json.dump(known, f)
        os.replace(state + ".tmp", state)
    time.sleep(0.2)
for pid, (start, cmdline) in known.items():
    found = identity(int(pid))
    if found and found[1:] == (start, cmdline):
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
try:
    os.unlink(state)
except OSError:
    pass
"""


def _identity(pid: int) -> Optional[tuple[str, str]]:
    """(start time, command line) of a live, non-zombie process; None when there is none."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except (OSError, IndexError, ValueError):
        return None
    return None if rest[0] == "Z" else (rest[19], cmdline)


def kill_leftover_workers(directory: Path) -> int:
    """SIGKILL the workers an earlier, killed run recorded in `directory` (when still the same processes)."""
    state = directory / WORKERS_FILE
    try:
        recorded = json.loads(state.read_text())
    except (OSError, ValueError):
        return 0
    killed = 0
    for pid, (start, cmdline) in (recorded.items() if isinstance(recorded, dict) else []):
        if int(pid) != os.getpid() and _identity(int(pid)) == (start, cmdline):
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
    state.unlink(missing_ok=True)
    return killed


@contextlib.contextmanager
def worker_guard(directory: Path) -> Iterator[None]:
    """Run a pipeline so that no worker process outlives this one, even after a `kill -9`.

    On entry, workers left by an earlier killed run (recorded in `directory/.workers.json`) are stopped; then a
    watchdog process records this process's descendants and stops them if this process dies.
    """
    _parts_folder(directory)
    kill_leftover_workers(directory)
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(directory / WORKERS_FILE)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        watchdog.stdout.readline()  # type: ignore[union-attr]  # it has taken note of what was there before
        watchdog.stdout.close()  # type: ignore[union-attr]
        yield
    finally:
        watchdog.terminate()
        try:
            watchdog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()
        (directory / WORKERS_FILE).unlink(missing_ok=True)
