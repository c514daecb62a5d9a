"""Run a test's body in a child `python -m pytest`, so a crash there is one failed test, not a dead suite.

A native library that crashes (Ray's `_raylet.so` with SIGSEGV, issue 26) takes its whole process with it: run in
the suite's own process, `pytest` exits 139 with no report. `@isolated()` makes the test spawn a child pytest on its
own node id (`CURATE_ISOLATED_CHILD=1` in the child, where the body runs, so it runs once), with faulthandler on;
the parent turns the child's result into the test's: passed, skipped, failed with the child's report, or failed with
the signal, the faulthandler dump (every thread's Python stack) and the tail of the child's output when it died.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, TypeVar

import pytest

__all__ = ["CHILD_ENV", "ChildRun", "check", "in_child", "isolated", "run_child"]

CHILD_ENV = "CURATE_ISOLATED_CHILD"
_TAIL_LINES = 60

F = TypeVar("F", bound=Callable[..., object])


def in_child() -> bool:
    """True in the child pytest that `run_child` started (where an isolated test's body runs)."""
    return os.environ.get(CHILD_ENV) == "1"


@dataclass(frozen=True)
class ChildRun:
    """What a child pytest on one node id gave: its exit code, the outcome its JUnit report has for the node
    (`passed`, `failed`, `skipped`; `missing` with no report, e.g. after a crash), that outcome's text, its output."""

    nodeid: str
    returncode: int
    outcome: str
    report: str
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def signal(self) -> Optional[signal.Signals]:
        """The signal that ended the child (exit code -N, or 128+N from a shell), or None."""
        number = -self.returncode if self.returncode < 0 else self.returncode - 128 if self.returncode > 128 else 0
        try:
            return signal.Signals(number) if number else None
        except ValueError:
            return None


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(empty)"


def _dump(stderr: str) -> str:
    """The child's stderr from faulthandler's last dump on (every thread's stack; a Ray driver has many threads), at
    most 300 lines, with the few lines before it; the tail when there is no dump."""
    lines = stderr.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(("Fatal Python error:", "Timeout ("))]
    if not starts:
        return _tail(stderr)
    return "\n".join(lines[max(starts[-1] - 10, 0):starts[-1] + 300])


def _junit_outcome(path: Path) -> "tuple[str, str]":
    """(outcome, text) of the test cases in the JUnit report at `path`: a failure or error wins over a skip, a skip
    over a pass; `missing` when there is no report or no test case in it."""
    try:
        cases = ElementTree.parse(path).getroot().iter("testcase")
    except (OSError, ElementTree.ParseError):
        return "missing", ""
    outcome, text = "missing", ""
    for case in cases:
        outcome = "passed" if outcome == "missing" else outcome
        for child in case:
            kind = {"failure": "failed", "error": "failed", "skipped": "skipped"}.get(child.tag)
            if kind == "failed" or (kind == "skipped" and outcome == "passed"):
                text = child.get("message", "") if kind == "skipped" else child.text or child.get("message", "")
                outcome = kind
    return outcome, text


def run_child(nodeid: str, *, rootdir: Path, timeout: float = 900.0, env: Optional[Dict[str, str]] = None,
              basetemp: Optional[Path] = None) -> ChildRun:
    """Run the pytest node `nodeid` (relative to `rootdir`) in a child `python -X faulthandler -m pytest` with
    `CHILD_ENV=1` and `env` on top of this environment, its temp dirs in `basetemp` (emptied first) if given. Past
    `timeout` s the child's process group is killed (pytest's `faulthandler_timeout` dumps every thread's stack at
    3/4 of it). Output is teed (`--capture=tee-sys`), so what a test printed before a crash is in `stdout`."""
    with tempfile.TemporaryDirectory(prefix="curate-isolated-") as scratch:
        out, err, junit = (Path(scratch) / name for name in ("stdout", "stderr", "junit.xml"))
        command: List[str] = [sys.executable, "-X", "faulthandler", "-m", "pytest", nodeid, "-q", "--capture=tee-sys",
                              "-p", "no:cacheprovider", f"--junitxml={junit}",
                              "-o", f"faulthandler_timeout={int(timeout * 0.75)}"]
        if basetemp is not None:
            command.append(f"--basetemp={basetemp}")
        # Output to files, not pipes: a grandchild that outlives a crashed child would hold a pipe open.
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            child = subprocess.Popen(command, cwd=rootdir, stdout=stdout, stderr=stderr, start_new_session=True,
                                     env={**os.environ, **(env or {}), CHILD_ENV: "1", "PYTHONFAULTHANDLER": "1"})
            timed_out = False
            try:
                returncode = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                returncode = None
            if timed_out or returncode < 0:  # what the child started (its process group) must not outlive it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                returncode = child.wait()
        outcome, report = _junit_outcome(junit)
        return ChildRun(nodeid, returncode, outcome, report, out.read_text(errors="replace"),
                        err.read_text(errors="replace"), timed_out)


def check(run: ChildRun) -> None:
    """Return if the child passed; otherwise skip or fail the calling test with the child's report."""
    if run.timed_out:
        pytest.fail(f"{run.nodeid}: the child pytest did not finish in time and was killed; its stacks "
                    f"(faulthandler) and output:\n--- stderr ---\n{_dump(run.stderr)}\n--- stdout ---\n"
                    f"{_tail(run.stdout)}", pytrace=False)
    if run.signal is not None:
        after = " after the test passed" if run.outcome == "passed" else ""
        pytest.fail(f"{run.nodeid}: the child pytest died of {run.signal.name} (exit {run.returncode}){after}\n"
                    f"--- stderr (faulthandler dump) ---\n{_dump(run.stderr)}\n--- stdout ---\n{_tail(run.stdout)}",
                    pytrace=False)
    if run.outcome == "skipped" and run.returncode == 0:
        pytest.skip(run.report or "skipped in the child pytest")
    if run.outcome == "passed" and run.returncode == 0:
        return
    pytest.fail(f"{run.nodeid}: {run.outcome} in the child pytest (exit {run.returncode})\n"
                f"{run.report or _tail(run.stdout)}\n--- stderr ---\n{_tail(run.stderr, 20)}", pytrace=False)


def isolated(*, timeout: float = 900.0) -> Callable[[F], F]:
    """Decorate a test so its body runs in a child pytest (`run_child`) and its result there is the test's.

    The fixtures the test names are set up in this process too (a module-scoped one can hand the child what it
    started, e.g. through an environment variable); the body runs only in the child."""

    def decorate(test: F) -> F:
        signature = inspect.signature(test)
        named = "request" in signature.parameters

        @functools.wraps(test)
        def wrapper(*args: object, **kwargs: object) -> object:
            request = kwargs["request"] if named else kwargs.pop("request")
            if in_child():
                return test(*args, **kwargs)
            check(run_child(request.node.nodeid, rootdir=request.config.rootpath, timeout=timeout,
                            basetemp=request.getfixturevalue("tmp_path") / "isolated"))
            return None

        if not named:  # pytest hands fixtures by the signature: ask it for `request` too
            extra = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD)
            wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), extra])
        return wrapper  # type: ignore[return-value]

    return decorate
