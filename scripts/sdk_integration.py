"""Run the Argilla SDK's own integration tests (from the argilla==2.8.0 sdist) against a server and print the count.

    .venv/bin/python scripts/sdk_integration.py                      # embedded server on SQLite, in a temp home
    .venv/bin/python scripts/sdk_integration.py --database postgresql  # ... on a local PostgreSQL cluster
    .venv/bin/python scripts/sdk_integration.py --database postgresql://user@host/db --workers 2
    ARGILLA_API_URL=... ARGILLA_API_KEY=... .venv/bin/python scripts/sdk_integration.py   # any running server

The tests run in their own venv (``.curate/sdk-tests-venv``, or ``SDK_TESTS_VENV``): the SDK 2.8.0 with
``huggingface_hub<0.25`` (its tests import ``huggingface_hub.utils._errors``), pytest and the plugins its markers use.
Tests that need the Hub skip themselves (no ``HF_TOKEN_ARGILLA_INTERNAL_TESTING``); every other one must pass.
Prints ``passed/run``, the skipped count and the time, and exits 1 when any test failed. Not part of the default
test suite: it takes several minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SDK_VERSION = "2.8.0"
REQUIREMENTS = [f"argilla=={SDK_VERSION}", "huggingface_hub<0.25", "pytest>=7.4", "pytest-retry>=1.5",
                "pytest-mock>=3.12"]


def ensure_venv(venv: Path) -> Path:
    """The tests' venv with the SDK, pytest and the sdist's tests (``venv/sdist/tests/integration``)."""
    stamp = venv / ".curate-sdk-tests"
    wanted = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()
    tests = venv / "sdist" / "tests" / "integration"
    if stamp.exists() and stamp.read_text() == wanted and tests.exists():
        return tests
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", *REQUIREMENTS], check=True)
    with tempfile.TemporaryDirectory() as download:
        subprocess.run([*pip, "download", "--no-deps", "--no-binary", ":all:", f"argilla=={SDK_VERSION}", "-d",
                        download], check=True)
        archive = next(Path(download).glob(f"argilla-{SDK_VERSION}.tar.gz"))
        shutil.rmtree(venv / "sdist", ignore_errors=True)
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if "/tests/" in m.name and not m.issym() and not m.islnk()]
            tar.extractall(venv / "sdist-unpacked", members=members, filter="data")
        shutil.move(str(venv / "sdist-unpacked" / f"argilla-{SDK_VERSION}"), str(venv / "sdist"))
        shutil.rmtree(venv / "sdist-unpacked", ignore_errors=True)
    stamp.write_text(wanted)
    return tests


def run_tests(venv: Path, tests: Path, api_url: str, api_key: str, extra: list) -> dict:
    """pytest on the integration tests; the counts from its JUnit report."""
    report = Path(tempfile.mkdtemp(prefix="sdk-tests-")) / "junit.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGILLA_", "HF_TOKEN"))}
    env.update(ARGILLA_API_URL=api_url, ARGILLA_API_KEY=api_key, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               DO_NOT_TRACK="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("HF_ENDPOINT", None)
    command = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
               str(tests), *extra]
    subprocess.run(command, env=env, cwd=str(tests.parent.parent))
    suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="sqlite", help="sqlite, postgresql or a postgresql:// URL")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--venv", type=Path, default=Path(os.environ.get("SDK_TESTS_VENV")
                                                          or ROOT / ".curate" / "sdk-tests-venv"))
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()

    tests = ensure_venv(args.venv)
    server = None
    api_url, api_key = os.environ.get("ARGILLA_API_URL"), os.environ.get("ARGILLA_API_KEY")
    backend = "the server at ARGILLA_API_URL"
    home = None
    if not (api_url and api_key):
        from support import free_port  # noqa: E402  (tests/support)
        from workspaces.argilla_io.server import EmbeddedServer

        home = Path(tempfile.mkdtemp(prefix="sdk-tests-home-"))
        server = EmbeddedServer(home=home, port=free_port(), redis_port=free_port(), database=args.database,
                                workers=args.workers)
        info = server.up(progress=lambda message: print(f"[server] {message}", flush=True))
        api_url, api_key = info.api_url, info.api_key
        backend = f"embedded server on {server.database_in_use()}, {args.workers} worker(s)"
    started = time.monotonic()
    try:
        counts = run_tests(args.venv, tests, api_url, api_key, args.pytest_args)
    finally:
        if server is not None:
            server.down()
            shutil.rmtree(home, ignore_errors=True)
    elapsed = time.monotonic() - started
    run = counts["tests"] - counts["skipped"]
    print(f"SDK {SDK_VERSION} integration tests against {backend}: {counts['passed']} of {run} passed "
          f"({counts['failures']} failed, {counts['errors']} errors, {counts['skipped']} skipped: need the Hub) "
          f"in {elapsed:.0f} s")
    return 0 if counts["passed"] == run else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    sys.exit(main())
