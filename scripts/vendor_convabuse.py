"""Vendor the ConvAbuse pool of the main job: every user turn of the release except the LLM's few-shot examples.

    python scripts/vendor_convabuse.py [../shared/data/convabuse_per_annotator.jsonl]

Writes `data/convabuse/pool.jsonl`: the train, valid and test splits of ConvAbuse (4,185 turns, each with its
recorded annotators) less the 80 `train` items of `train_fewshot_pool.jsonl`, which the LLM's prompt shows with their
human labels (so they are labels the project already spent, never items to label). Rows keep the source's order
within a split; splits in the order valid, test, train. Byte-identical on re-run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "convabuse_per_annotator.jsonl"
OUT = ROOT / "data" / "convabuse" / "pool.jsonl"
FEW_SHOT = ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl"


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE
    few_shot = {json.loads(line)["item_id"] for line in FEW_SHOT.read_text().splitlines() if line.strip()}
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    order = {"valid": 0, "test": 1, "train": 2}
    kept = sorted((r for r in rows if r["item_id"] not in few_shot), key=lambda r: order[r["split"]])
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    print(f"{len(kept)} items -> {OUT.relative_to(ROOT)} ({len(rows) - len(kept)} few-shot examples left out)")


if __name__ == "__main__":
    main()
