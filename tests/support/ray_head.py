"""A Ray head on 127.0.0.1 for the Ray tests (tests/test_scale.py) and benchmarks/bench_ray.py.

`ray start --head --block` on a free port with its own temp dir, dashboard and usage statistics off, as a one-machine
cluster; `stop()` ends it and then every process it started, found in /proc by `ray_processes` (by id, nothing else).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from . import free_port

__all__ = ["RayHead", "command_line", "ray_processes"]


def ray_processes(session: int, marker: str) -> List[int]:
    """PIDs of live processes in the head's session, or whose command line names its temp dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        if int(fields[3]) == session or marker in command_line(int(entry.name)):
            found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    """The command line of process `pid` ("" once it is gone)."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore").strip()
    except OSError:
        return ""


class RayHead:
    """`ray start --head --block` on 127.0.0.1 with `num_cpus` CPUs: `start()` waits until it runs, `stop()` ends it.

    The temp dir is short (`/tmp/ray-*`: Ray's unix socket paths have a length limit) and keeps `head.log` until
    `stop()` removes it (a head that does not start puts the log's tail in its error).
    """

    def __init__(self, *, num_cpus: int = 2) -> None:
        self.num_cpus = num_cpus
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        self.log_path = self.temp / "head.log"
        self.process: "subprocess.Popen[bytes] | None" = None
        self.killed: Dict[int, str] = {}  # the processes `stop()` had to SIGKILL, with their command lines

    def start(self, timeout: float = 180.0) -> "RayHead":
        """Start the head and wait until its log says it runs (at most `timeout` s); returns self."""
        # A one-machine cluster: without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 Ray swaps 127.0.0.1 for the machine's
        # outward address (and listens there).
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={self.port}",
                 f"--num-cpus={self.num_cpus}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                 "--dashboard-port=0", "--disable-usage-stats", f"--temp-dir={self.temp}"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while b"Ray runtime started" not in self.log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"ray head did not start in {timeout:.0f} s:\n{tail}")
            time.sleep(0.5)
        return self

    def processes(self) -> List[int]:
        """PIDs of the live processes this head started (itself included while it runs)."""
        return ray_processes(self.process.pid, str(self.temp)) if self.process is not None else []

    def stop(self, grace: float = 60.0) -> List[int]:
        """SIGTERM the head (`ray start --block` stops what it started), give its workers `grace` s to exit on their
        own, then SIGKILL the ones left, by id (kept with their command lines in `killed`), and wait until they are
        gone; then remove the temp dir. Returns those left-over PIDs ([] on a clean stop)."""
        if self.process is None:
            return []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        deadline = time.monotonic() + grace
        while (leftovers := self.processes()) and time.monotonic() < deadline:
            time.sleep(1)
        self.killed = {pid: command_line(pid) for pid in leftovers}
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        shutil.rmtree(self.temp, ignore_errors=True)  # the session dir, logs and sockets (`ray start` keeps them)
        return leftovers

    def __enter__(self) -> "RayHead":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
