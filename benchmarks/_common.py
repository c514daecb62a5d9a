"""Pieces the benchmarks share: free ports, an embedded server in a temporary home, peak RSS, response setup.

Not a benchmark itself (the leading underscore keeps `make bench` from running it).
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import argilla as rg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

from workspaces.argilla_io.server import EmbeddedServer  # noqa: E402

__all__ = ["ROOT", "cpu_seconds", "embedded_server", "free_port", "log_responses", "peak_rss_mb", "rss_mb",
           "sibling_cpu_seconds", "timed"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def embedded_server(tmp: Path) -> Iterator[Any]:
    """The project's embedded Argilla server in `tmp/home` on free ports (as tests/conftest.py starts it); stopped
    on exit. Yields its `ServerInfo` (api_url, api_key)."""
    server = EmbeddedServer(home=Path(tmp) / "home", port=free_port(), redis_port=free_port())
    info = server.up()
    try:
        yield info
    finally:
        server.down()


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports `ru_maxrss` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's current resident set size, in MB (from /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sibling_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by the other live children of this process's parent.

    In `bench_scale.py` a stage runs as a child of the benchmark, whose other children are the embedded server's
    processes (uvicorn, its background worker, Redis): the server's CPU time, which a busy shared machine does not
    inflate the way it inflates wall time."""
    parent, me, tick = os.getppid(), os.getpid(), os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:  # fields[1]: ppid; [11], [12]: utime, stime in clock ticks
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """`with timed() as elapsed: ...; elapsed()` -> seconds since the block started (frozen at its end)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def log_responses(dataset: rg.Dataset, records: Iterable[tuple[str, dict[str, Any]]],
                  answers: Callable[[str], list[rg.Response]], *, batch_size: int = 256,
                  progress: Optional[Callable[[int], None]] = None) -> int:
    """Give published records real responses of real users through the SDK (`records.log` as the owner, one bulk
    upsert per batch, `rg.Response(..., user_id=...)`): far faster than replaying one response at a time.

    `records` yields (record id, fields) of published records; `answers(record_id)` the responses to give it.
    Streams: one batch of `rg.Record` objects at a time. Returns the number of responses given.
    """
    batch: list[rg.Record] = []
    given = done = 0

    def flush() -> None:
        nonlocal done
        dataset.records.log(batch, batch_size=len(batch))
        done += len(batch)
        batch.clear()
        if progress:
            progress(done)

    for record_id, fields in records:
        responses = answers(record_id)
        given += len({r.user_id for r in responses})
        batch.append(rg.Record(id=record_id, fields=fields, responses=responses))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return given
