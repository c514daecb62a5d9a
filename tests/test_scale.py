"""Past one machine on engines that already exist: labeling on Ray, review on PostgreSQL."""

# --- Ray ---
# `curate label` / `prefer` / `embed` on Distilabel's RayPipeline against a real Ray head on 127.0.0.1 that this
# module starts (2 CPUs, dashboard and usage statistics off) and stops; the model step runs as 2 Ray actors. Outputs
# must equal the local pipeline's for the deterministic labeler / judge (SmolLM2 GGUF, greedy) and the embedder.
# Every test on the head runs its body in a child pytest (tests/support/isolated.py) against this process's head: a
# crash of Ray's native code in the driver (SIGSEGV in _raylet.so, issue 26) is that test failing with the crash
# report, never the whole run dying with exit 139.
import os as _ray_os
import subprocess as _ray_subprocess
import sys as _ray_sys
import threading as _ray_threading
import time as _ray_time
import warnings as _ray_warnings
from pathlib import Path as _RayPath

import numpy as _ray_np
import pytest as _ray_pytest
import yaml as _ray_yaml
from support.isolated import in_child as _ray_in_child
from support.isolated import isolated as _ray_isolated

_RAY_ROOT = _RayPath(__file__).resolve().parents[1]
_RAY_COLUMNS = ["item_id", "question", "label", "status", "error", "model", "prompt_hash", "raw_output"]
_RAY_HEAD_ENV = "CURATE_TEST_RAY_HEAD"  # the address of the parent's head, for the isolated tests' child pytest


@_ray_pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 (tests/support/ray_head.py), listening on loopback only; every process it started is
    gone afterwards. In an isolated test's child pytest: the parent's head (the parent checks and stops it)."""
    import importlib.util

    if _ray_in_child() and _ray_os.environ.get(_RAY_HEAD_ENV):
        yield _ray_os.environ[_RAY_HEAD_ENV]
        return

    if importlib.util.find_spec("ray") is None:
        _ray_pytest.skip("ray is not installed: pip install 'curate[ray]'")
    from support.ray_head import RayHead

    head = RayHead(num_cpus=2).start()
    try:
        listening = _ray_subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout.splitlines()
        pids = head.processes()
        ours = [line.split()[3].rpartition(":") for line in listening if any(f"pid={p}," in line for p in pids)]
        hosts = {host.strip("[]").removeprefix("::ffff:") for host, _, _ in ours}
        assert str(head.port) in {p for _, _, p in ours} and hosts == {"127.0.0.1"}, ours  # loopback only
        _ray_os.environ[_RAY_HEAD_ENV] = head.address
        yield head.address
    finally:
        _ray_os.environ.pop(_RAY_HEAD_ENV, None)
        # Workers exit on their own once the raylet is gone; one that is still busy after the grace period (seen on
        # a loaded machine) is killed by id. What the test asserts is that nothing of the cluster outlives it.
        head.stop()
        alive = head.processes()
        assert not alive, f"ray processes alive after the head stopped and SIGKILL: {alive}"
        if head.killed:
            _ray_warnings.warn(f"ray processes needed SIGKILL after the head stopped: {head.killed}")


def _ray_demo(tmp_path: _RayPath, run: str, **extra):
    raw = _ray_yaml.safe_load((_RAY_ROOT / "configs" / "convabuse_demo.yaml").read_text())
    raw["data"]["path"] = str(_RAY_ROOT / "data" / "convabuse" / "valid.jsonl")
    raw["llm"]["few_shot_path"] = str(_RAY_ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["llm"]["batch_size"] = 4
    raw["run_dir"] = str(tmp_path / run)
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / f"{run}.yaml"
    path.write_text(_ray_yaml.safe_dump(raw))
    return path


class _ActorNames:
    """Collects the named Ray actors while a run is connected (the replicas of the model step show up here)."""

    def __init__(self) -> None:
        self.names: set = set()
        self._stop = _ray_threading.Event()
        self._thread = _ray_threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import ray

        while not self._stop.wait(0.2):
            try:
                if ray.is_initialized():
                    self.names.update(a["name"] for a in ray.util.list_named_actors(all_namespaces=True))
            except Exception:  # noqa: BLE001 - connecting / disconnecting between polls
                pass

    def __enter__(self) -> "_ActorNames":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _ray_assert_same_distributions(mine, theirs) -> None:
    """Two columns of label distributions ({label: probability} or None) agree to 1e-6, row by row."""
    for a, b in zip(mine, theirs, strict=True):
        assert (a is None) == (b is None) and (a is None or a.keys() == b.keys())
        assert a is None or all(abs(a[k] - b[k]) < 1e-6 for k in a)


@_ray_pytest.mark.slow
@_ray_isolated()
def test_label_on_ray_equals_local_with_two_replicas_and_resumes(tmp_path, ray_head):
    from pipelines.label import label_items, read_labels
    from workspaces.config import load_config

    small = {"batch_size": 2}  # 6 items: the resumed Ray run has 2 batches, one per replica
    local = label_items(load_config(_ray_demo(tmp_path, "local", llm=small)), limit=6)
    assert local.ok >= 5, local.labels[["status", "error"]]
    ray_config = load_config(_ray_demo(tmp_path, "ray", llm=small,
                                       engine={"kind": "ray", "address": ray_head, "replicas": 2}))
    first = label_items(ray_config, limit=2)
    assert (first.labeled, first.skipped) == (2, 0)
    with _ActorNames() as actors:
        second = label_items(ray_config, limit=6)  # resume: the first 2 are not sent again
    assert (second.labeled, second.skipped) == (4, 2)
    assert {n for n in actors.names if n.endswith(("-classify-0", "-classify-1"))} == {
        "distilabel-curate-label-convabuse_demo-classify-0", "distilabel-curate-label-convabuse_demo-classify-1"}, \
        actors.names
    mine = read_labels(tmp_path / "ray").sort_values("item_id").reset_index(drop=True)
    theirs = read_labels(tmp_path / "local").sort_values("item_id").reset_index(drop=True)
    assert len(mine) == 6 and mine["run_id"].nunique() == 2
    differences = mine[_RAY_COLUMNS].compare(theirs[_RAY_COLUMNS])
    assert differences.empty, differences
    assert _ray_np.allclose(mine["confidence"].astype(float), theirs["confidence"].astype(float), atol=1e-6)
    _ray_assert_same_distributions(mine["probabilities"], theirs["probabilities"])


@_ray_pytest.mark.slow
@_ray_isolated()
def test_label_on_ray_keeps_failed_rows_with_their_reason_through_the_cli(tmp_path, ray_head):
    from pipelines.label import read_labels

    # Unconstrained and cut after 2 tokens: the JSON cannot be complete, on Ray as locally.
    path = _ray_demo(tmp_path, "fail", llm={"structured": False, "max_new_tokens": 2})
    result = _ray_subprocess.run([str(_RayPath(_ray_sys.executable).parent / "curate"), "label", str(path), "-n", "3",
                                  "--ray", ray_head], capture_output=True, text=True, timeout=300, cwd=_RAY_ROOT,
                                 env={**_ray_os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode != 0 and "every one of 3 label rows failed" in result.stderr, result.stderr[-3000:]
    labels = read_labels(tmp_path / "fail")
    assert len(labels) == 3 and (labels["status"] == "failed").all()
    assert labels["error"].str.startswith("broken JSON").all() and labels["raw_output"].notna().all()


@_ray_pytest.mark.slow
@_ray_isolated()
def test_embed_on_ray_equals_local(tmp_path, ray_head):
    from pipelines.embed import embed_items, read_embeddings
    from workspaces.config import load_config

    spec = {"fields": ["user"], "batch_size": 8}
    local = embed_items(load_config(_ray_demo(tmp_path, "local", embeddings=spec)), limit=24)
    on_ray = embed_items(load_config(_ray_demo(tmp_path, "ray", embeddings=spec,
                                               engine={"kind": "ray", "replicas": 2})), limit=24, ray_address=ray_head)
    assert (local.embedded, on_ray.embedded, on_ray.dimensions) == (24, 24, 384)
    mine = read_embeddings(tmp_path / "ray").sort_values("item_id").reset_index(drop=True)
    theirs = read_embeddings(tmp_path / "local").sort_values("item_id").reset_index(drop=True)
    assert list(mine["item_id"]) == list(theirs["item_id"]) and list(mine["text_hash"]) == list(theirs["text_hash"])
    assert _ray_np.allclose(_ray_np.stack(mine["vector"]), _ray_np.stack(theirs["vector"]), atol=1e-5)
    assert embed_items(load_config(tmp_path / "ray.yaml"), limit=24, ray_address=ray_head).embedded == 0


def _ray_prefs_config(tmp_path: _RayPath, run: str, name: str, preference: dict, extra: dict) -> _RayPath:
    """The shipped preference config `configs/<name>.yaml` with `preference` changes, 2 judge rows a batch, its run
    in `tmp_path / run`."""
    config = _RAY_ROOT / "configs" / f"{name}.yaml"
    raw = _ray_yaml.safe_load(config.read_text())
    raw["data"]["path"] = str((config.parent / raw["data"]["path"]).resolve())
    raw["preference"].update(preference)
    raw["llm"]["batch_size"] = 2
    raw["run_dir"] = str(tmp_path / run)
    raw.update(extra)
    path = tmp_path / f"{run}.yaml"
    path.write_text(_ray_yaml.safe_dump(raw))
    return path


def _ray_prefs(tmp_path: _RayPath, run: str, **extra):
    """The BANKING77 preference config: the model writes both candidates greedily (llama.cpp seeds sampling at T>0
    at random per model load: only greedy candidates can be equal across engines, and, being the same reply, the
    pairs come out as ties), short replies, 2 judge rows a batch."""
    return _ray_prefs_config(tmp_path, run, "banking77_support_prefs", {"temperatures": [0.0], "max_new_tokens": 24},
                             extra)


def _ray_hh_prefs(tmp_path: _RayPath, run: str, **extra):
    """The HH-RLHF preference config: the humans' chosen / rejected replies are the candidates (`candidates:
    columns`), so they differ and the greedy judge can prefer one; 2 judge rows a batch."""
    return _ray_prefs_config(tmp_path, run, "hh_rlhf_harmless_prefs", {}, extra)


def _ray_assert_same_preferences(tmp_path: _RayPath):
    """`tmp_path/ray` and `tmp_path/local` hold the same preferences.parquet rows (ids, replies, ratings, chosen,
    status... exactly; confidences, expected ratings, margins and rating distributions to 1e-6); returns both."""
    from pipelines.prefer import read_preferences

    mine = read_preferences(tmp_path / "ray").sort_values("item_id").reset_index(drop=True)
    theirs = read_preferences(tmp_path / "local").sort_values("item_id").reset_index(drop=True)
    assert len(mine) == len(theirs) and list(mine.columns) == list(theirs.columns)
    floats = ["confidence_a", "confidence_b", "expected_rating_a", "expected_rating_b", "margin", "preference_score"]
    probabilities = ["rating_probabilities_a", "rating_probabilities_b"]
    exact = [c for c in theirs.columns if c not in floats + probabilities]  # ids, replies, ratings, chosen, status...
    differences = mine[exact].compare(theirs[exact])
    assert differences.empty, differences
    assert _ray_np.allclose(mine[floats].astype(float), theirs[floats].astype(float), atol=1e-6, equal_nan=True)
    for column in probabilities:
        _ray_assert_same_distributions(mine[column], theirs[column])
    return mine, theirs


@_ray_pytest.mark.slow
@_ray_isolated()
def test_prefer_on_ray_equals_local(tmp_path, ray_head):
    from pipelines.prefer import prefer_items
    from workspaces.config import load_config

    local = prefer_items(load_config(_ray_prefs(tmp_path, "local")), limit=3)
    assert local.report["ok"] >= 2, local.preferences[["status", "error"]]
    ray_config = load_config(_ray_prefs(tmp_path, "ray", engine={"kind": "ray", "replicas": 2}))
    calls: list = []
    prefer_items(ray_config, limit=2, ray_address=ray_head, progress=lambda done, total: calls.append((done, total)))
    totals = list(dict.fromkeys(total for _, total in calls))
    assert totals == [2, 4] and calls[-1] == (4, 4), calls  # 2 prompts' candidates, then 4 (prompt, reply) ratings
    calls.clear()
    with _ActorNames() as actors:  # resume: only the third prompt's candidates and its 2 ratings are new
        on_ray = prefer_items(ray_config, limit=3, ray_address=ray_head,
                              progress=lambda done, total: calls.append((done, total)))
    totals = list(dict.fromkeys(total for _, total in calls))
    assert totals == [1, 2] and calls[-1] == (2, 2), calls
    steps = [("candidates", "candidate_0"), ("candidates", "candidate_1"), ("judge", "classify")]
    replicas = {f"distilabel-curate-{stage}-banking77_support_prefs-{step}-{replica}" for replica in (0, 1)
                for stage, step in steps}
    assert replicas <= actors.names, actors.names  # both pipelines' model steps ran as 2 Ray actors each
    mine, _ = _ray_assert_same_preferences(tmp_path)
    assert on_ray.report["pairs"] == len(mine) == 3


@_ray_pytest.mark.slow
@_ray_isolated()
def test_prefer_on_ray_equals_local_on_human_pairs(tmp_path, ray_head):
    """HH-RLHF's chosen / rejected replies judged locally and on Ray: the same rows, and not all of them ties, so
    chosen / rejected / chosen_response are compared for real."""
    from pipelines.prefer import prefer_items
    from workspaces.config import load_config

    local = prefer_items(load_config(_ray_hh_prefs(tmp_path, "local")), limit=3)
    on_ray = prefer_items(load_config(_ray_hh_prefs(tmp_path, "ray", engine={"kind": "ray"})), limit=3,
                          ray_address=ray_head)
    assert local.report["ok"] == on_ray.report["ok"] == 3, local.preferences[["status", "error"]]
    mine, theirs = _ray_assert_same_preferences(tmp_path)
    assert on_ray.report["pairs"] == len(mine) == 3
    decided = theirs[~theirs["tie"].astype(bool)]
    assert len(decided) >= 1, theirs[["item_id", "margin", "tie"]]  # at least one pair is not a tie
    assert decided["chosen"].isin(["A", "B"]).all() and decided["chosen_response"].notna().all()


def test_an_address_where_no_ray_listens_is_one_clear_error(tmp_path):
    from support import free_port

    from pipelines.engine import EngineError
    from pipelines.label import label_items
    from workspaces.config import load_config

    address = f"127.0.0.1:{free_port()}"
    started = _ray_time.monotonic()
    with _ray_pytest.raises(EngineError, match=f"no Ray cluster answers at {address}"):
        label_items(load_config(_ray_demo(tmp_path, "nobody", engine={"kind": "ray", "address": address})), limit=1)
    assert _ray_time.monotonic() - started < 120  # not Ray's minutes of reconnecting
    assert not (tmp_path / "nobody" / "labels.parquet").exists()


def test_ray_engine_config_is_checked(tmp_path):
    from workspaces.config import ConfigError, load_config

    with _ray_pytest.raises(ConfigError, match="engine"):
        load_config(_ray_demo(tmp_path, "bad", engine={"kind": "local", "address": "127.0.0.1:6379"}))
    with _ray_pytest.raises(ConfigError, match="engine"):
        load_config(_ray_demo(tmp_path, "bad2", engine={"kind": "spark"}))
# --- end Ray ---

# --- PostgreSQL ---
# `curate server up --database postgresql --workers 2`: the embedded server on a PostgreSQL cluster that the project
# creates from the distribution's `postgresql` package in the server home (Unix socket only, owner-only files), two
# uvicorn workers and the rq worker. The SQLite suite's search-engine checks (tests/test_server.py: search, filters,
# sort, find similar, worker jobs) and the token-match/case-folding check run again here, through the SDK.
import glob as _pg_glob
import json as _pg_json
import shutil as _pg_shutil
import stat as _pg_stat
from pathlib import Path as _PgPath

import pytest as _pg_pytest

import test_server as _pg_sqlite_suite  # the same checks as on SQLite (imported as a module: not collected twice)

_PG_CHECKS = [  # test_distribution_change_runs_on_the_worker changes the dataset: it stays last
    _pg_sqlite_suite.test_response_status_filters, _pg_sqlite_suite.test_record_status_follows_distribution,
    _pg_sqlite_suite.test_per_user_status_on_me_endpoint, _pg_sqlite_suite.test_response_value_filters,
    _pg_sqlite_suite.test_metadata_filters, _pg_sqlite_suite.test_record_filters,
    _pg_sqlite_suite.test_suggestion_filters, _pg_sqlite_suite.test_text_search, _pg_sqlite_suite.test_sort_and_paging,
    _pg_sqlite_suite.test_progress, _pg_sqlite_suite.test_metadata_metrics, _pg_sqlite_suite.test_similarity_search,
    _pg_sqlite_suite.test_distribution_change_runs_on_the_worker,
]


def _pg_missing() -> str:
    """Why the local cluster cannot run here ('' when it can)."""
    if not (_pg_glob.glob("/usr/lib/postgresql/*/bin/initdb") or _pg_shutil.which("initdb")):
        return "PostgreSQL is not installed (apt-get install postgresql; bash scripts/setup.sh does it)"
    return ""


@_pg_pytest.fixture(scope="module")
def pg_server(tmp_path_factory):
    """An embedded server on a local PostgreSQL cluster in a temp home, 2 uvicorn workers; stopped at the end."""
    if _pg_missing():
        _pg_pytest.skip(_pg_missing())
    from support import free_port
    from workspaces.argilla_io.server import EmbeddedServer

    server = EmbeddedServer(home=tmp_path_factory.mktemp("pg-home"), port=free_port(), redis_port=free_port(),
                            database="postgresql", workers=2)
    try:
        yield server, server.up()
    finally:
        server.down()


@_pg_pytest.fixture(scope="module")
def pg_client(pg_server):
    import argilla as rg

    return rg.Argilla(api_url=pg_server[1].api_url, api_key=pg_server[1].api_key)


@_pg_pytest.fixture(scope="module")
def pg_env(pg_client):
    return _pg_sqlite_suite.build_env(pg_client)


def _pg_children(pid: int) -> list:
    children = []
    for entry in _PgPath("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
        except OSError:
            continue
    return children


def test_postgresql_server_runs_its_cluster_workers_and_worker(pg_server) -> None:
    server, info = pg_server
    status = server.status()
    assert status.running and set(status.pids) == {"redis", "postgres", "server", "worker"}
    assert _pg_json.loads((server.home / "database.json").read_text()) == {"database": "postgresql"}
    assert server.database_in_use() == "postgresql"
    # uvicorn supervises 2 worker processes (plus multiprocessing's resource tracker)
    workers = [pid for pid in _pg_children(status.pids["server"])
               if b"spawn_main" in _PgPath(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(workers) == 2, workers
    environ = _PgPath(f"/proc/{status.pids['server']}/environ").read_bytes().split(b"\0")
    url = next(v for v in environ if v.startswith(b"ARGILLA_DATABASE_URL=")).decode()
    assert url.startswith("ARGILLA_DATABASE_URL=postgresql+asyncpg://argilla@/argilla?host=")
    password = (server.home / "postgres" / "pgpass").read_text().strip().rsplit(":", 1)[1]
    assert len(password) > 20 and not [v for v in environ if password.encode() in v]
    for log in server.logs.glob("*.log"):
        assert password not in log.read_text(errors="replace"), log.name
    cmdline = _PgPath(f"/proc/{status.pids['postgres']}/cmdline").read_bytes().split(b"\0")
    assert b"listen_addresses=" in cmdline  # no TCP listener: the socket in the owner-only home only
    loose = [str(p) for p in [server.home, *server.home.rglob("*")] if _pg_stat.S_IMODE(p.lstat().st_mode) & 0o077
             and not p.is_symlink()]
    assert loose == []
    import httpx

    reply = httpx.get(f"{info.api_url}/api/v1/status", headers={"X-Argilla-Api-Key": info.api_key})
    assert reply.json()["search_engine"]["distribution"] == "curate-sql (postgresql)"


@_pg_pytest.mark.parametrize("check", _PG_CHECKS, ids=[c.__name__.removeprefix("test_") for c in _PG_CHECKS])
def test_postgresql_search_engine_as_on_sqlite(pg_env, check) -> None:
    check(pg_env)


def test_postgresql_text_search_matches_tokens_and_folds_unicode_case(pg_client) -> None:
    _pg_sqlite_suite.check_token_text_search(pg_client)


def test_postgresql_server_log_has_no_cartesian_products(pg_server, pg_env) -> None:
    _pg_sqlite_suite.check_no_cartesian_products(pg_server[0].logs / "server.log")


def test_a_home_keeps_its_database(pg_server) -> None:
    from workspaces.argilla_io.server import EmbeddedServer, ServerError

    server, _ = pg_server
    other = EmbeddedServer(home=server.home, port=server.port, redis_port=server.redis_port, database="sqlite")
    with _pg_pytest.raises(ServerError, match="cannot switch to SQLite"):
        other.up()
    with _pg_pytest.raises(ServerError, match="not a PostgreSQL URL"):
        EmbeddedServer(home=server.home, database="mysql://u@h/db").up()


def test_postgresql_down_stops_the_cluster_and_data_survives_a_restart(pg_server, pg_env) -> None:
    import argilla as rg

    server, info = pg_server
    pids = server.status().pids
    stopped = server.down()
    assert sorted(name.split()[0] for name in stopped) == ["postgres", "redis", "server", "worker"]
    for pid in pids.values():
        assert not _pg_alive(pid), pid
    assert not (server.home / "postgres" / "data" / "postmaster.pid").exists()  # a clean shutdown
    again = server.up()
    assert again.started and again.api_key == info.api_key
    client = rg.Argilla(api_url=again.api_url, api_key=again.api_key)
    dataset = client.datasets("search-engine", workspace="argilla")
    assert len(list(dataset.records(with_responses=False))) == _pg_sqlite_suite.N


def _pg_alive(pid: int) -> bool:
    try:
        state = _PgPath(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
# --- end PostgreSQL ---
