"""Benchmark: `publish`, `sync`, `report` and `push` of a synthetic N-item project, with peak RSS, next to the raw SDK.

For each N (default 10,000 and 100,000) a synthetic project is written: short texts, one label question (`topic`),
one labeler suggestion (value + score + agent) and one 16-d vector per item. Then, each stage in a fresh Python
process (so its peak RSS, `ru_maxrss`, is that stage's own):

- publish: `curate publish` | raw SDK: build every `rg.Record` (same fields, suggestion, metadata, vector) and
  `dataset.records.log(records, batch_size=256)` into a twin dataset;
- respond (setup, not compared): 2 annotators (real Argilla users) answer every record, 2N responses, given through
  the SDK's `records.log` with `rg.Response(user_id=...)` one batch of records at a time;
- sync: `curate sync` (writes annotations.parquet + history) | raw SDK: iterate
  `dataset.records(with_responses=True)` into rows and write them to a parquet file;
- report: `curate report` (alpha with a 1,000-resample CI, per-annotator agreement, labeler vs humans) | raw:
  `krippendorff.alpha` once over the same responses (the library floor, no CI, no other section);
- push: `curate push` to a folder | raw SDK: `dataset.records.to_datasets()` (records + responses) to parquet.

Prints a table (stage, N, seconds, records/s, ours/raw speed ratio, peak RSS MB ours and raw, and the ours/raw
ratio of CPU seconds: the stage's own process plus the embedded server's, which stays fair when other jobs load the
machine unevenly between two stages) and writes JSON after every stage. Runs its own embedded server in a temporary
home on free ports; asserts nothing beyond sanity checks.

    .venv/bin/python benchmarks/bench_scale.py --n 10000 100000 --json bench_scale_100k.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (ROOT, cpu_seconds, embedded_server, log_responses, peak_rss_mb, rss_mb,  # noqa: E402
                     sibling_cpu_seconds, timed)

LABELS = ["sports", "politics", "science", "other"]
DIMENSIONS = 16
BATCH = 5000  # rows per batch when writing the synthetic files / streaming responses
ANNOTATORS = ("scale-annotator-1", "scale-annotator-2")
STAGES = ("publish", "publish_raw", "respond", "sync", "sync_raw", "report", "push", "report_raw", "push_raw")
_WORDS = [a + b for a in ("ka", "lo", "mi", "su", "te", "ra", "no", "vi", "de", "pa", "zo", "fe")
          for b in ("n", "ri", "to", "la", "ssa", "mer", "dun", "vek", "por", "lin")]


# ---- the synthetic project (written by the parent, batch by batch) ----------------------------------------------

def _batches(n: int, seed: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """The synthetic items in batches: ids, texts, the labeler's label/confidence, both annotators' answers, vectors."""
    rng = np.random.default_rng(seed)
    words = np.array(_WORDS)
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        label = rng.integers(0, len(LABELS), size)
        first = np.where(rng.random(size) < 0.85, label, rng.integers(0, len(LABELS), size))
        second = np.where(rng.random(size) < 0.8, first, rng.integers(0, len(LABELS), size))
        texts = [" ".join(row) for row in words[rng.integers(0, len(words), (size, 10))]]
        yield {"item_id": np.array([f"item-{i:07d}" for i in range(start, start + size)]),
               "text": np.array(texts), "label": label, "first": first, "second": second,
               "confidence": np.round(0.4 + 0.6 * rng.random(size), 4),
               "vector": rng.standard_normal((size, DIMENSIONS)).astype(np.float32)}


def make_project(tmp: Path, n: int) -> Path:
    """Write items.parquet, labels.parquet, embeddings.parquet, answers.parquet and the config; return its path."""
    folder = tmp / f"scale_{n}"
    run = folder / "run"
    run.mkdir(parents=True)
    writers: dict[str, pq.ParquetWriter] = {}

    def write(name: str, table: pa.Table) -> None:
        if name not in writers:
            writers[name] = pq.ParquetWriter(folder / name if name != "labels" and name != "embeddings"
                                             else run / f"{name}.parquet", table.schema)
        writers[name].write_table(table)

    for b in _batches(n):
        ids, size = b["item_id"], len(b["item_id"])
        write("items.parquet", pa.table({"item_id": ids, "text": b["text"]}))
        write("labels", pa.table({
            "item_id": ids, "question": ["topic"] * size, "label": [LABELS[i] for i in b["label"]],
            "confidence": b["confidence"], "probabilities": ["{}"] * size, "model": ["bench-model"] * size,
            "prompt_hash": ["x"] * size, "raw_output": [""] * size, "status": ["ok"] * size,
            "error": pa.nulls(size, pa.string())}))
        write("embeddings", pa.table({"item_id": ids, "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(b["vector"].ravel()), DIMENSIONS).cast(pa.list_(pa.float32()))}))
        write("answers.parquet", pa.table({"item_id": ids, "first": [LABELS[i] for i in b["first"]],
                                           "second": [LABELS[i] for i in b["second"]]}))
    for writer in writers.values():
        writer.close()
    raw = {
        "name": f"scale_{n}",
        "data": {"path": str(folder / "items.parquet"), "id_column": "item_id"},
        "fields": [{"name": "text", "title": "Text"}],
        "questions": [{"name": "topic", "kind": "label", "title": "Topic",
                       "labels": {label: f"The text is about {label}." for label in LABELS}}],
        "argilla": {"dataset": f"scale-ours-{n}", "workspace": "bench", "min_submitted": 2},
        "run_dir": str(run),
        "hub": {"local_dir": str(folder / "curated")},
    }
    path = folder / "project.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# ---- the stages (each runs in its own process) ------------------------------------------------------------------

def _client() -> Any:
    import argilla as rg

    return rg.Argilla(api_url=os.environ["ARGILLA_API_URL"], api_key=os.environ["ARGILLA_API_KEY"], timeout=600)


def _raw_name(config: Any) -> str:
    return config.argilla.dataset.replace("ours", "raw")


def _item_batches(config: Any, columns: list[str], path: Path | None = None) -> Iterator[dict[str, list[Any]]]:
    for batch in pq.ParquetFile(path or config.data.path).iter_batches(batch_size=BATCH, columns=columns):
        yield batch.to_pydict()


def stage_publish(config: Any) -> dict[str, Any]:
    from workspaces.argilla_io.publish import publish

    result = publish(config, _client())
    assert result.records == config_n(config) and not result.failed, result
    return {"records": result.records}


def stage_publish_raw(config: Any) -> dict[str, Any]:
    """What a raw SDK user writes: every record built, then one `records.log` call."""
    import argilla as rg
    import pandas as pd

    from workspaces.argilla_io.records import display_text
    from workspaces.argilla_io.settings import VECTOR_NAME, build_settings, confidence_metadata_name

    client = _client()
    items = pd.read_parquet(config.data.path)
    labels = pd.read_parquet(config.run_path / "labels.parquet")
    vectors = pd.read_parquet(config.run_path / "embeddings.parquet")
    suggestion = dict(zip(labels["item_id"], zip(labels["label"], labels["confidence"], labels["model"])))
    vector = dict(zip(vectors["item_id"], vectors["vector"]))
    records = []
    for item_id, text in zip(items["item_id"], items["text"]):
        label, score, model = suggestion[item_id]
        records.append(rg.Record(id=item_id, fields={"text": display_text(text)},
                                 metadata={confidence_metadata_name("topic"): float(score)},
                                 suggestions=[rg.Suggestion("topic", label, score=float(score), agent=model,
                                                            type="model")],
                                 vectors={VECTOR_NAME: [float(x) for x in vector[item_id]]}))
    settings = build_settings(config, vector_dimensions=DIMENSIONS, suggested=["topic"])
    dataset = rg.Dataset(name=_raw_name(config), workspace=config.argilla.workspace, settings=settings,
                         client=client).create()
    dataset.records.log(records, batch_size=256)
    return {"records": len(records)}


def stage_respond(config: Any) -> dict[str, Any]:
    import argilla as rg

    from workspaces.argilla_io.records import display_text
    from workspaces.argilla_io.replay import ensure_user
    from workspaces.argilla_io.settings import get_dataset

    client = _client()
    users = [ensure_user(client, name, config.argilla.workspace) for name in ANNOTATORS]
    dataset = get_dataset(client, config)
    folder = Path(config.data.path).parent
    answers: dict[str, tuple[str, str]] = {}

    def records() -> Iterator[tuple[str, dict[str, Any]]]:
        texts = _item_batches(config, ["item_id", "text"])
        for chosen in _item_batches(config, ["item_id", "first", "second"], folder / "answers.parquet"):
            batch = next(texts)
            answers.clear()  # only this batch's answers are held
            answers.update(zip(chosen["item_id"], zip(chosen["first"], chosen["second"])))
            for item_id, text in zip(batch["item_id"], batch["text"]):
                yield item_id, {"text": display_text(text)}

    def respond(item_id: str) -> list[rg.Response]:
        return [rg.Response("topic", value, user_id=user.id, status="submitted")
                for user, value in zip(users, answers[item_id])]

    given = log_responses(dataset, records(), respond, batch_size=256)
    assert given == 2 * config_n(config), given
    return {"records": config_n(config), "responses": given}


def stage_sync(config: Any) -> dict[str, Any]:
    from workspaces.argilla_io.sync import sync

    result = sync(config, _client())
    assert result.responses == 2 * config_n(config), result
    return {"records": result.records, "responses": result.responses}


def stage_sync_raw(config: Any) -> dict[str, Any]:
    """The same dataset read through the SDK's record iterator into rows, written as one parquet file."""
    import pandas as pd

    from workspaces.argilla_io.settings import get_dataset

    client = _client()
    dataset = get_dataset(client, config)
    usernames = {user.id: user.username for user in client.users}
    rows = []
    records = 0
    for record in dataset.records(with_responses=True):
        records += 1
        for response in record.responses:
            rows.append({"record_id": str(record._server_id), "item_id": record.id, "question": response.question_name,
                         "annotator": usernames.get(response.user_id), "value": str(response.value),
                         "status": str(response.status)})
    pd.DataFrame(rows).to_parquet(config.run_path / "raw_annotations.parquet")
    assert len(rows) == 2 * config_n(config), len(rows)
    return {"records": records, "responses": len(rows)}


def stage_report(config: Any) -> dict[str, Any]:
    from workspaces.agreement.report import write_report

    report, _ = write_report(config)
    return {"records": config_n(config), "alpha": report.questions["topic"].alpha}


def stage_report_raw(config: Any) -> dict[str, Any]:
    import krippendorff
    import pandas as pd

    frame = pd.read_parquet(config.run_path / "annotations.parquet", columns=["item_id", "annotator", "value"])
    matrix = frame.pivot(index="annotator", columns="item_id", values="value")
    codes = matrix.apply(lambda column: column.map({label: i for i, label in enumerate(LABELS)})).to_numpy(float)
    alpha = krippendorff.alpha(reliability_data=codes, level_of_measurement="nominal",
                               value_domain=list(range(len(LABELS))))
    return {"records": config_n(config), "alpha": float(alpha)}


def stage_push(config: Any) -> dict[str, Any]:
    from workspaces.curated.push import push

    result = push(config)
    assert sum(result.rows.values()) > 0.5 * config_n(config), result.rows
    return {"records": config_n(config), "rows": sum(result.rows.values())}


def stage_push_raw(config: Any) -> dict[str, Any]:
    from workspaces.argilla_io.settings import get_dataset

    dataset = get_dataset(_client(), config)
    exported = dataset.records.to_datasets()
    target = Path(config.data.path).parent / "raw_curated"
    target.mkdir(exist_ok=True)
    exported.to_parquet(target / "train-00000-of-00001.parquet")
    return {"records": config_n(config), "rows": len(exported)}


def config_n(config: Any) -> int:
    return int(config.name.rsplit("_", 1)[1])


STAGE_FUNCTIONS: dict[str, Callable[[Any], dict[str, Any]]] = {
    name: globals()[f"stage_{name}"] for name in STAGES}


def run_stage(stage: str, config_path: Path) -> None:
    """Child process: run one stage, print `RESULT {json}` with its seconds and peak RSS."""
    from workspaces.config import load_config

    config = load_config(config_path)
    baseline = rss_mb()
    cpu, server_cpu = cpu_seconds(), sibling_cpu_seconds()
    with timed() as elapsed:
        outcome = STAGE_FUNCTIONS[stage](config)
    print("RESULT " + json.dumps({**outcome, "seconds": elapsed(), "peak_rss_mb": peak_rss_mb(),
                                  "start_rss_mb": baseline, "cpu_seconds": cpu_seconds() - cpu,
                                  "server_cpu_seconds": sibling_cpu_seconds() - server_cpu}), flush=True)


# ---- the parent -------------------------------------------------------------------------------------------------

def _spawn(stage: str, config_path: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--stage", stage, "--config", str(config_path)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"stage {stage} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


HEADER = (f"{'stage':<8} {'N':>7} | {'ours s':>8} {'rec/s':>7} {'RSS MB':>7} {'+MB':>5} | {'raw s':>8} {'rec/s':>7} "
          f"{'RSS MB':>7} | {'ours/raw':>8} {'CPU o/r':>8}\n"
          "(RSS = peak; +MB = peak minus RSS after imports; ours/raw = raw seconds / our seconds; CPU o/r = the same "
          "ratio of CPU seconds, client + embedded server, which a busy shared machine does not inflate)")


def _cpu(figures: dict[str, Any]) -> float | None:
    if "cpu_seconds" not in figures:
        return None
    return figures["cpu_seconds"] + figures.get("server_cpu_seconds", 0.0)


def _row(name: str, n: int, ours: dict[str, Any], raw: dict[str, Any] | None) -> str:
    line = (f"{name:<8} {n:>7} | {ours['seconds']:>8.1f} {n / ours['seconds']:>7.0f} {ours['peak_rss_mb']:>7.0f} "
            f"{ours['peak_rss_mb'] - ours['start_rss_mb']:>5.0f} | ")
    if raw is None:
        return line + f"{'-':>8} {'-':>7} {'-':>7} | {'-':>8} {'-':>8}"
    cpu_ours, cpu_raw = _cpu(ours), _cpu(raw)
    cpu = f"{cpu_raw / cpu_ours:>7.2f}x" if cpu_ours and cpu_raw else f"{'-':>8}"
    return line + (f"{raw['seconds']:>8.1f} {n / raw['seconds']:>7.0f} {raw['peak_rss_mb']:>7.0f} | "
                   f"{raw['seconds'] / ours['seconds']:>7.2f}x {cpu}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--json", type=Path, default=None, help="write the figures here (after every stage)")
    parser.add_argument("--skip", nargs="*", default=[], choices=[s for s in STAGES if s.endswith("_raw")],
                        help="raw-SDK stages not to run (to save time on a slow machine)")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES,
                        help="run only these stages, in the benchmark's order (e.g. `--stages publish publish_raw` "
                             "to measure publishing again alone)")
    parser.add_argument("--table", type=Path, nargs="+", help="only print the table of earlier --json files")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        return run_stage(args.stage, args.config)
    if args.table:
        return print_table([r for path in args.table for r in json.loads(path.read_text())])
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="curate-bench-scale-") as tmp, embedded_server(Path(tmp)) as info:
        env = {**os.environ, "ARGILLA_API_URL": info.api_url, "ARGILLA_API_KEY": info.api_key}
        for n in args.n:
            config_path = make_project(Path(tmp), n)
            figures: dict[str, Any] = {"n": n}
            results.append(figures)
            for stage in (s for s in STAGES if s in args.stages and s not in args.skip):
                figures[stage] = _spawn(stage, config_path, env)
                print(f"  [{n}] {stage}: {figures[stage]['seconds']:.1f} s, peak RSS "
                      f"{figures[stage]['peak_rss_mb']:.0f} MB (after imports "
                      f"{figures[stage]['start_rss_mb']:.0f} MB)", flush=True)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(results: list[dict[str, Any]]) -> None:
    """The table of every stage at every N, and how sync's peak RSS grew from the smallest N to the largest."""
    print(HEADER)
    for figures in sorted(results, key=lambda r: r["n"]):
        for name in ("publish", "respond", "sync", "report", "push"):
            if name in figures:
                print(_row(name, figures["n"], figures[name], figures.get(f"{name}_raw")))
    synced = sorted((r for r in results if "sync" in r), key=lambda r: r["n"])
    if len(synced) > 1:
        first, last = synced[0], synced[-1]
        growth = last["sync"]["peak_rss_mb"] / first["sync"]["peak_rss_mb"]
        print(f"sync peak RSS at N={last['n']:,} / at N={first['n']:,}: {growth:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
