"""Run directories are their owner's alone (issue 26): the real CLI stages make the run dir 0700 and its files 0600,
so another local user (`nobody`) can neither list it nor read annotations, labels or routes (which tell which items
are audits); a run dir an earlier version left 0755 is tightened, with a warning, when a stage writes into it. The
folder `curate push` writes to is the user's to share and keeps the usual (umask) modes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from test_judge import _project, _write_labels
from workspaces.argilla_io.publish import get_dataset
from workspaces.argilla_io.replay import replay_recorded_labels
from workspaces.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "convabuse_demo.yaml"


@pytest.fixture()
def open_base() -> Iterator[Path]:
    """A folder every local user may enter (0755), unlike pytest's tmp_path, so only the run dir's own mode can keep
    another user out."""
    base = Path(tempfile.mkdtemp(prefix="curate-perms-", dir="/tmp"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _curate(*args: str, server: Any = None, umask: int = 0o022) -> subprocess.CompletedProcess:
    """The real CLI in its own process, under `umask` (the modes must not depend on it)."""
    env = dict(os.environ)
    if server is not None:
        env.update(ARGILLA_API_URL=server.api_url, ARGILLA_API_KEY=server.api_key)
    return subprocess.run([sys.executable, "-m", "workspaces", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=900, preexec_fn=lambda: os.umask(umask))


def _as_nobody(*command: str) -> subprocess.CompletedProcess:
    """`command` run as the local user `nobody` (needs root, as these tests run here)."""
    if os.geteuid() != 0:
        pytest.skip("switching to the user nobody needs root")
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command],
                          capture_output=True, text=True, timeout=60)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _loose(run: Path) -> list[str]:
    """Everything under `run` (and `run` itself) that another user could read or enter."""
    return [f"{p.relative_to(run.parent)} {_mode(p):04o}" for p in [run, *run.rglob("*")] if _mode(p) & 0o077]


def _assert_nobody_is_kept_out(base: Path, run: Path, files: list[str]) -> None:
    assert _as_nobody("ls", str(base)).returncode == 0, "nobody can reach the run dir's parent (the control)"
    listing = _as_nobody("ls", str(run))
    assert listing.returncode != 0 and "Permission denied" in listing.stderr, listing.stdout
    for name in files:
        assert (run / name).is_file(), name
        read = _as_nobody("cat", str(run / name))
        assert read.returncode != 0 and "Permission denied" in read.stderr, name


def test_real_stages_keep_the_run_dir_to_its_owner(open_base: Path, argilla_server: Any,
                                                   argilla_client: Any) -> None:
    raw = yaml.safe_load(DEMO.read_text())
    raw["data"].update(path=str(ROOT / "data" / "convabuse" / "valid.jsonl"), limit=24)
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["argilla"].update(dataset="run-dir-permissions", workspace="tests")
    run = open_base / "runs" / "perms"
    raw["run_dir"] = str(run)
    path = open_base / "perms.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    try:
        for stage in (["publish"], None, ["sync"], ["label", "--limit", "4"], ["triage"]):
            if stage is None:  # the recorded ConvAbuse annotators answer in the Argilla UI's place
                replay_recorded_labels(config, argilla_client)
                continue
            done = _curate(*stage[:1], str(path), *stage[1:], server=argilla_server)
            assert done.returncode == 0, (stage, done.stdout + done.stderr)
            assert "other users could read" not in done.stderr, "a new run dir is owner-only from the start"
    finally:
        dataset = get_dataset(argilla_client, config)
        if dataset is not None:
            dataset.delete()
    written = ["annotations.parquet", "annotations_history.parquet", "labels.parquet", "prompt_examples.json",
               "routes.parquet", "calibration.json", "gate_history.jsonl", "redaction_counts.json"]
    _assert_nobody_is_kept_out(open_base, run, written)
    assert _loose(run) == [] and _mode(run) == 0o700

    shared = open_base / "shared"  # the curated dataset: the user's to share
    pushed = _curate("push", str(path), "--to", str(shared))
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    umask = os.umask(0o022)
    os.umask(umask)
    assert {_mode(p) for p in shared.rglob("*") if p.is_file()} == {0o666 & ~umask}
    assert _as_nobody("cat", str(shared / "README.md")).returncode == 0, "the pushed dataset is the user's to share"
    assert _as_nobody("head", "-c", "4", str(shared / "data" / "train-00000-of-00001.parquet")).stdout == "PAR1"
    assert _mode(run / "push.json") == 0o600


def test_a_run_dir_left_open_by_an_earlier_version_is_tightened_when_a_stage_writes(open_base: Path) -> None:
    path = _project(open_base, n=400)
    config = load_config(path)
    run = config.run_path
    _write_labels(config, 0.97)  # as `curate label` wrote it before issue 26: a 0755 run dir, a 0644 file
    os.chmod(run, 0o755)
    os.chmod(run / "labels.parquet", 0o644)
    done = _curate("triage", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    said = " ".join(done.stderr.split())
    assert f"warning: {run}: other users could read this run folder (mode 0755); made it owner-only (0700)" in said
    assert "UserWarning" not in said, "one plain line, no Python warning location"
    assert _mode(run) == 0o700
    assert _loose(run) == [f"{run.name}/labels.parquet 0644"], "only the file no stage rewrote keeps its old mode"
    _assert_nobody_is_kept_out(open_base, run, ["labels.parquet", "routes.parquet", "calibration_items.parquet"])
    again = _curate("triage", str(path), umask=0o000)  # a umask that would let anyone read and write
    assert again.returncode == 0 and "other users could read" not in again.stderr, "said once, when it was tightened"
    assert _mode(run) == 0o700 and _loose(run) == [f"{run.name}/labels.parquet 0644"], "whatever the umask"
    assert _mode(run / "routes.parquet") == _mode(run / "gate_history.jsonl") == 0o600
