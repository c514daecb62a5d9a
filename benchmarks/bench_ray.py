"""Throughput of `curate label` on the local pipeline vs Distilabel's RayPipeline. Prints figures; asserts nothing.

Each run labels the same N items (default 60) of the ConvAbuse demo with the local SmolLM2 GGUF (greedy) from a fresh
run directory; pipeline start-up, Ray connection and model loads are included:

1. local, 1 replica of the model step (the default engine);
2. local, `--replicas` replicas (Distilabel's own multiprocessing replicas);
3. Ray, `--replicas` actors of the model step, on the cluster at `--address`, or else on a Ray head this script
   starts on 127.0.0.1 (tests/support/ray_head.py: `ray start --head --block`, its own temp dir, dashboard and usage
   statistics off) and stops.

It also checks that the Ray run's labels equal the local run's.

Usage: python benchmarks/bench_ray.py [--items 60] [--replicas 2] [--address HOST:PORT] [--json OUT]
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import yaml  # noqa: E402

from pipelines.label import label_items, read_labels  # noqa: E402
from tests.support.ray_head import RayHead  # noqa: E402 - the Ray tests' head launcher
from workspaces.config import load_config  # noqa: E402

COMPARED = ["item_id", "question", "label", "status", "error", "model", "prompt_hash"]


def _config(tmp: Path, name: str, items: int, engine: Optional[dict]):
    raw = yaml.safe_load((ROOT / "configs" / "convabuse_demo.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "data" / "convabuse" / "valid.jsonl")
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["run_dir"] = str(tmp / name)
    if engine:
        raw["engine"] = engine
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def _run(tmp: Path, name: str, items: int, engine: Optional[dict]) -> Dict[str, object]:
    config = _config(tmp, name, items, engine)
    started = time.perf_counter()
    run = label_items(config, limit=items)
    seconds = time.perf_counter() - started
    rate = items / seconds
    print(f"{name:<24} {items} items in {seconds:6.1f}s = {rate:5.2f} items/s (ok {run.ok}, failed {run.failed})")
    return {"name": name, "engine": engine or {"kind": "local"}, "items": items, "seconds": round(seconds, 2),
            "items_per_second": round(rate, 3), "ok": run.ok, "failed": run.failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--address", default=None, help="an existing Ray cluster (default: start one here)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args()

    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {args.items} ConvAbuse items, SmolLM2-135M "
          f"Q4_1 (llama.cpp, greedy, 1 thread per replica)")
    head = None if args.address else RayHead(num_cpus=os.cpu_count() or 2).start()
    address = args.address or head.address  # type: ignore[union-attr]
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
            tmp_path = Path(tmp)
            results.append(_run(tmp_path, "local", args.items, None))
            results.append(_run(tmp_path, f"local-{args.replicas}-replicas", args.items,
                                {"kind": "local", "replicas": args.replicas}))
            results.append(_run(tmp_path, f"ray-{args.replicas}-replicas", args.items,
                                {"kind": "ray", "address": address, "replicas": args.replicas}))
            local = read_labels(tmp_path / "local").sort_values("item_id").reset_index(drop=True)
            on_ray = read_labels(tmp_path / f"ray-{args.replicas}-replicas").sort_values("item_id") \
                .reset_index(drop=True)
            same = bool(local[COMPARED].equals(on_ray[COMPARED]))
    finally:
        if head is not None and (leftovers := head.stop()):
            print(f"killed {len(leftovers)} Ray processes left after the head stopped: {leftovers}")
    base = results[0]["items_per_second"]
    for result in results:
        result["speedup_vs_local"] = round(result["items_per_second"] / base, 3) if base else None  # type: ignore
    print(f"Ray labels equal the local run's: {same}")
    print("speed-up vs local: " + ", ".join(f"{r['name']} {r['speedup_vs_local']}x" for r in results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "benchmark": "bench_ray", "items": args.items, "replicas": args.replicas,
            "cores": os.cpu_count(), "load_average": os.getloadavg()[0], "python": platform.python_version(),
            "ray_address": "started here" if head is not None else address, "labels_equal": same,
            "results": results}, indent=2))
        print(f"-> {args.json}")


if __name__ == "__main__":
    main()
