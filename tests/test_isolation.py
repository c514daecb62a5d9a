"""tests/support/isolated.py: a test whose body crashes its process (SIGSEGV) is one failed test with the crash
report, and the suite goes on; a passing, failing or skipped body gives the same result as run in place."""

import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from support.isolated import check, run_child

_TESTS = Path(__file__).resolve().parent

# A test module in its own folder: a real segfault (a NULL read through ctypes), a SIGSEGV sent to itself, a plain
# pass, fail, skip; with `@isolated()` when ISOLATE is set. `test_after` runs in place and shows the run went on.
_BODY = '''
import ctypes, os, signal
import pytest
from support.isolated import isolated

wrap = isolated(timeout=120) if os.environ.get("ISOLATE") else (lambda test: test)


@wrap
def test_reads_null():
    print("about to read address 0", flush=True)
    ctypes.string_at(0)


@wrap
def test_kills_itself(tmp_path):
    os.kill(os.getpid(), signal.SIGSEGV)


@wrap
def test_passes(tmp_path):
    assert (tmp_path / "x").parent == tmp_path


@wrap
def test_fails():
    assert 6 * 7 == 43, "the child's own assertion message"


@wrap
def test_skips():
    pytest.skip("nothing to do here")


def test_after():
    assert True
'''


def _outer(tmp_path: Path, *, isolate: bool) -> "tuple[subprocess.CompletedProcess, dict]":
    """Run the body module in a pytest of its own: (that run, {test name: (outcome, text)} from its JUnit)."""
    (tmp_path / "test_body.py").write_text(_BODY)
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "PYTHONPATH": str(_TESTS), "ISOLATE": "1" if isolate else ""}
    env.pop("CURATE_ISOLATED_CHILD", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                          "test_body.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    results = {}
    if junit.exists():
        for case in ElementTree.parse(junit).getroot().iter("testcase"):
            tags = [(c.tag, c.get("message", "") + "\n" + (c.text or "")) for c in case
                    if c.tag in ("failure", "error", "skipped")]
            results[case.get("name")] = tags[0] if tags else ("passed", "")
    return run, results


def test_without_isolation_a_segfault_takes_the_whole_run_down(tmp_path):
    run, results = _outer(tmp_path, isolate=False)
    assert run.returncode == -signal.SIGSEGV and results == {}, (run.returncode, run.stdout[-2000:])
    assert "Fatal Python error: Segmentation fault" in run.stderr  # and no report of the tests after it


def test_isolated_a_segfault_is_one_failed_test_with_the_crash_report(tmp_path):
    run, results = _outer(tmp_path, isolate=True)
    assert run.returncode == 1, (run.returncode, run.stdout[-3000:], run.stderr[-3000:])  # failed tests, not 139
    assert results.keys() == {"test_reads_null", "test_kills_itself", "test_passes", "test_fails", "test_skips",
                              "test_after"}, results
    kind, text = results["test_reads_null"]
    assert kind == "failure" and "died of SIGSEGV (exit -11)" in text, results["test_reads_null"]
    assert "Fatal Python error: Segmentation fault" in text and "about to read address 0" in text  # dump + stdout
    assert 'test_body.py", line 12 in test_reads_null' in text  # faulthandler's stack names the crashing line
    kind, text = results["test_kills_itself"]
    assert kind == "failure" and "died of SIGSEGV" in text and "in test_kills_itself" in text, text
    assert results["test_passes"] == results["test_after"] == ("passed", "")
    kind, text = results["test_fails"]
    assert kind == "failure" and "the child's own assertion message" in text and "assert (6 * 7) == 43" in text, text
    kind, text = results["test_skips"]
    assert kind == "skipped" and "nothing to do here" in text, text
    assert "4 failed" not in run.stdout and "3 failed, 2 passed, 1 skipped" in run.stdout, run.stdout[-1500:]


def test_a_child_that_hangs_is_killed_with_its_stacks(tmp_path):
    (tmp_path / "test_hang.py").write_text("import time\n\ndef test_hangs():\n    time.sleep(600)\n")
    run = run_child("test_hang.py::test_hangs", rootdir=tmp_path, timeout=40)
    assert run.timed_out and run.signal == signal.SIGKILL, run
    assert "Timeout (0:00:30)!" in run.stderr and 'test_hang.py", line 4 in test_hangs' in run.stderr, run.stderr
    with pytest.raises(pytest.fail.Exception, match="did not finish in time and was killed"):
        check(run)
