"""Benchmark: `curate publish` / `curate sync` against the raw Argilla SDK doing the same work.

For N in (1,000, 10,000): publish N records with an LLM suggestion (value + score + agent) and metadata, submit one
response per record as an annotator, then sync every response back. The same records are logged into a twin dataset
with `dataset.records.log` and read back by iterating `dataset.records(with_responses=True)`. Prints records/s and
the ratio ours/raw (target >= 0.9x). Runs its own embedded server in a temporary home; asserts nothing.

    .venv/bin/python benchmarks/bench_publish_sync.py [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import argilla as rg
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, embedded_server, log_responses, timed  # noqa: E402

from workspaces.argilla_io.publish import publish, read_suggestions  # noqa: E402
from workspaces.argilla_io.records import build_records  # noqa: E402
from workspaces.argilla_io.replay import ensure_user  # noqa: E402
from workspaces.argilla_io.settings import build_settings  # noqa: E402
from workspaces.argilla_io.sync import sync  # noqa: E402
from workspaces.config import load_config  # noqa: E402
from workspaces.items import load_items  # noqa: E402


def _make_project(tmp: Path, n: int) -> Path:
    """A ConvAbuse-shaped project of n items (the 831 real items repeated with new ids) plus an LLM labels file."""
    base = pd.read_json(ROOT / "data" / "convabuse" / "valid.jsonl", lines=True, dtype=False)
    rows = pd.concat([base] * (n // len(base) + 1), ignore_index=True).head(n)
    rows["item_id"] = [f"bench-{i}" for i in range(n)]
    data = tmp / f"items_{n}.jsonl"
    rows.to_json(data, orient="records", lines=True)
    raw = yaml.safe_load((ROOT / "configs" / "convabuse_demo.yaml").read_text())
    raw["name"] = f"bench_{n}"
    raw["data"]["path"] = str(data)
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["argilla"].update(dataset=f"bench-ours-{n}", workspace="bench")
    raw["run_dir"] = str(tmp / f"run_{n}")
    path = tmp / f"bench_{n}.yaml"
    path.write_text(yaml.safe_dump(raw))
    run = tmp / f"run_{n}"
    run.mkdir()
    pd.DataFrame({"item_id": rows["item_id"], "question": "is_abusive",
                  "label": ["yes" if i % 7 == 0 else "no" for i in range(n)],
                  "confidence": [0.5 + (i % 50) / 100 for i in range(n)], "probabilities": "{}",
                  "model": "bench-model", "prompt_hash": "x", "raw_output": "", "status": "ok",
                  "error": None}).to_parquet(run / "labels.parquet")
    return path


def _respond(dataset: rg.Dataset, user: rg.User, published: list[rg.Record]) -> None:
    """One submitted response per record by `user` (set up through the owner's bulk upsert: not measured)."""
    log_responses(dataset, ((str(r.id), r.fields.to_dict()) for r in published),
                  lambda _: [rg.Response("is_abusive", "no", user_id=user.id, status="submitted"),
                             rg.Response("severity", 1, user_id=user.id, status="submitted")])


def bench(client: rg.Argilla, tmp: Path, n: int) -> dict[str, float]:
    config = load_config(_make_project(tmp, n))
    user = ensure_user(client, "bench-annotator", config.argilla.workspace)

    with timed() as elapsed:
        publish(config, client)
    ours_publish = elapsed()
    ours = client.datasets(name=config.argilla.dataset, workspace=config.argilla.workspace)

    with timed() as elapsed:
        records, _ = build_records(config, load_items(config), suggestions=read_suggestions(config))
        raw = rg.Dataset(name=f"bench-raw-{n}", workspace=config.argilla.workspace,
                         settings=build_settings(config), client=client).create()
        raw.records.log(records, batch_size=256)
    raw_publish = elapsed()

    _respond(ours, user, records)
    _respond(raw, user, records)

    with timed() as elapsed:
        result = sync(config, client)
    ours_sync = elapsed()
    with timed() as elapsed:
        count = sum(len(list(r.responses)) for r in raw.records(with_responses=True, with_suggestions=True))
    raw_sync = elapsed()
    assert result.responses == n and count == 2 * n  # two questions, one user, n records (sanity, not a test)

    ours.delete()
    raw.delete()
    return {"n": n, "publish_ours": n / ours_publish, "publish_raw": n / raw_publish,
            "sync_ours": n / ours_sync, "sync_raw": n / raw_sync}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="curate-bench-") as tmp, embedded_server(Path(tmp)) as info:
        client = rg.Argilla(api_url=info.api_url, api_key=info.api_key, timeout=300)
        print(f"{'N':>7} | {'publish ours':>13} {'raw SDK':>9} {'ratio':>6} | {'sync ours':>10} {'raw SDK':>9} "
              f"{'ratio':>6}   (records/s)")
        results = []
        for n in args.sizes:
            r = bench(client, Path(tmp), n)
            results.append(r)
            print(f"{n:>7} | {r['publish_ours']:>13.0f} {r['publish_raw']:>9.0f} "
                  f"{r['publish_ours'] / r['publish_raw']:>5.2f}x | {r['sync_ours']:>10.0f} {r['sync_raw']:>9.0f} "
                  f"{r['sync_ours'] / r['sync_raw']:>5.2f}x", flush=True)
        print(json.dumps(results))

if __name__ == "__main__":
    main()
