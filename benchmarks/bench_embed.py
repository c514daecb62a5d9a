"""Embedding throughput of each encoder, in texts/s, in one run on the same BANKING77 texts.

    python benchmarks/bench_embed.py [--n 1000] [--repeat 3] [--batch-size 64] [--json OUT]
                                     [--models all-MiniLM-L6-v2 all-mpnet-base-v2]

The texts are `--n` BANKING77 queries (a seeded sample of data/banking77/intents.csv, embedded as `curate embed`
embeds them). Each encoder is loaded once (its load time is reported apart), warmed up on one batch, then timed on
all `--n` texts with `embed_texts` (the code path of `curate embed`); the encoders take turns in each of `--repeat`
rounds, so a busy neighbour slows both alike, and the best round counts. The machine's load average before and after
is recorded: on a shared machine the figures are a floor, rerun on an idle one for the real ones.

Writes `{"n", "batch_size", "torch_threads", "cpus", "loadavg_before", "loadavg_after", "encoders": {name:
{"dimensions", "load_s", "seconds", "texts_per_s", "rounds_s"}}, "slowdown"}` (slowdown: the first encoder's texts/s
over each other's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.embed import embed_texts, embedded_texts, load_embedder  # noqa: E402
from workspaces.config import EmbeddingsConfig, load_config  # noqa: E402
from workspaces.items import load_items  # noqa: E402

DEFAULT = "all-MiniLM-L6-v2"  # embeddings.model unset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="texts to embed")
    parser.add_argument("--models", nargs="+", default=[DEFAULT, "all-mpnet-base-v2"],
                        help=f"embeddings.model values ({DEFAULT} = the default)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench_embed.json")
    args = parser.parse_args()
    import torch

    config = load_config(ROOT / "configs" / "banking77_intents.yaml")
    items = load_items(config)
    rows = np.random.default_rng(args.seed).choice(len(items), min(args.n, len(items)), replace=False)
    texts = embedded_texts(config, items.iloc[np.sort(rows)])
    loadavg_before = os.getloadavg()

    specs = {m: EmbeddingsConfig(model=None if m == DEFAULT else m, batch_size=args.batch_size) for m in args.models}
    embedders, load_s, dimensions = {}, {}, {}
    for name, spec in specs.items():
        start = time.perf_counter()
        embedders[name] = load_embedder(spec)
        load_s[name] = time.perf_counter() - start
        dimensions[name] = int(embed_texts(texts[:args.batch_size], spec=spec, embedder=embedders[name]).shape[1])
    rounds: dict[str, list[float]] = {name: [] for name in specs}
    for _ in range(args.repeat):
        for name, spec in specs.items():
            start = time.perf_counter()
            embed_texts(texts, spec=spec, embedder=embedders[name])
            rounds[name].append(time.perf_counter() - start)
    for embedder in embedders.values():
        embedder.unload()

    encoders = {name: {"dimensions": dimensions[name], "load_s": round(load_s[name], 2),
                       "seconds": round(min(rounds[name]), 3), "texts_per_s": round(len(texts) / min(rounds[name]), 1),
                       "rounds_s": [round(s, 3) for s in rounds[name]]} for name in specs}
    first = next(iter(encoders))
    result = {"n": len(texts), "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
              "cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in loadavg_before],
              "loadavg_after": [round(x, 2) for x in os.getloadavg()],
              "note": "measured on a machine shared with other jobs (see loadavg): a floor, not an idle figure",
              "encoders": encoders,
              "slowdown": {name: round(encoders[first]["texts_per_s"] / e["texts_per_s"], 2)
                           for name, e in encoders.items() if name != first}}
    for name, e in encoders.items():
        print(f"{name:>20}: {e['texts_per_s']:8.1f} texts/s  ({e['dimensions']}-d, {len(texts)} texts in "
              f"{e['seconds']:.2f} s, best of {args.repeat}; loaded in {e['load_s']:.1f} s)")
    for name, factor in result["slowdown"].items():
        print(f"{name} is {factor:.1f}x slower than {first}")
    print(f"load average before {result['loadavg_before']}, after {result['loadavg_after']} "
          f"({result['cpus']} CPUs, torch threads {result['torch_threads']})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
