"""Throughput of `curate label` vs the raw model, and of the embeddings. Prints figures; asserts nothing.

1. One (raw llama-cpp-python loop, `curate label`) pair on N items (default 200) of the ConvAbuse demo, as
   `bench_label_throughput.py` runs them (each a fresh process: imports and model load included; same prompts,
   grammar, logprobs and scoring). For the ratio at 200 and 1,000 items, interleaved, with the load average, run
   `bench_label_throughput.py` itself.
2. Embeddings/s for 5,000 texts with all-MiniLM-L6-v2 (the ConvAbuse user turns, repeated as needed).

Usage: python benchmarks/bench_label.py [--items 200] [--texts 5000] [--skip-embeddings]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_label_throughput import agreement, run_curate, run_raw, write_config  # noqa: E402
from pipelines.embed import embed_texts  # noqa: E402
from workspaces.config import load_config  # noqa: E402
from workspaces.items import load_items  # noqa: E402

DEMO = ROOT / "configs" / "convabuse_demo.yaml"


def bench_labels(n: int) -> None:
    threads = max(1, (os.cpu_count() or 2) // 2)
    folder = Path(tempfile.mkdtemp(prefix="bench-label-"))
    try:
        config = write_config(DEMO, n, threads, folder)
        raw = run_raw(config, n, threads, folder)
        print(f"raw llama-cpp-python loop: {n} items in {raw['seconds']}s = {raw['items_per_second']:.2f} items/s")
        cur = run_curate(config, n)
        print(f"curate label:              {n} items in {cur['seconds']}s = {cur['items_per_second']:.2f} items/s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    same = agreement(raw["labels"], cur["labels"])
    print(f"ratio curate label / raw: {cur['items_per_second'] / raw['items_per_second']:.2f}x (target >= 0.9x); "
          f"same label on {same['same_label']}/{n}")


def bench_embeddings(n: int) -> None:
    texts = [str(t) for t in load_items(load_config(DEMO))["user"]]
    texts = (texts * (n // len(texts) + 1))[:n]
    started = time.perf_counter()
    vectors = embed_texts(texts)
    seconds = time.perf_counter() - started
    print(f"embeddings: {n} texts in {seconds:.1f}s = {n / seconds:.0f} texts/s ({vectors.shape[1]}-d, model load "
          f"included)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--skip-embeddings", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    bench_labels(args.items)
    if not args.skip_embeddings:
        bench_embeddings(args.texts)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
