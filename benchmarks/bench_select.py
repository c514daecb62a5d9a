"""k-center selection cost against its floor: k passes of one matrix-vector product over N x d.

    python benchmarks/bench_select.py [--n 100000] [--d 384] [--k 1000] [--json OUT]

Prints both times and their ratio and writes `{"n", "d", "k", "kcenter_s", "floor_s"}` (plus the ratio) to OUT.
The floor is measured in the same run on the same matrix: one `X @ x` per pick, nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workspaces.review.select import kcenter_greedy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs of each")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n, args.d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    picks_at = rng.integers(0, args.n, args.k)

    def floor() -> float:
        start = time.perf_counter()
        for i in picks_at:
            X @ X[i]
        return time.perf_counter() - start

    def kcenter() -> float:
        start = time.perf_counter()
        kcenter_greedy(X, args.k, seed=0)
        return time.perf_counter() - start

    floor_s = min(floor() for _ in range(args.repeat))
    kcenter_s = min(kcenter() for _ in range(args.repeat))
    result = {"n": args.n, "d": args.d, "k": args.k, "kcenter_s": round(kcenter_s, 3), "floor_s": round(floor_s, 3),
              "ratio": round(kcenter_s / floor_s, 3)}
    print(f"k-center, N={args.n:,} d={args.d} k={args.k:,}: {kcenter_s:.2f} s; floor (k matrix-vector products) "
          f"{floor_s:.2f} s; ratio {kcenter_s / floor_s:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
