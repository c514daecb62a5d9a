"""What a curated label cost, by the tier that decided it, against an all-human baseline at the same prices.

- Humans: every submitted response, costed at its time on task when it has one (`workspaces.timing`: measured
  seconds), else at `cost.human_seconds_per_response` (replayed or imported answers), at `cost.human_per_hour`.
- The student and the LLM: the seconds their tier spent (training, calibration, labelling), at
  `cost.machine_per_hour`.
- The baseline: every curated item labelled by humans alone, with as many responses per item as the reviewed items
  got, at the same cost per response.
"""

from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from ..config import ProjectConfig
from ..rundir import ANNOTATIONS, read_table

__all__ = ["cost_section", "human_seconds"]


def human_seconds(config: ProjectConfig) -> tuple[int, float, int]:
    """Submitted responses (one per record and reviewer), the human seconds they cost (measured where timed, else
    `cost.human_seconds_per_response`), and how many of them were timed."""
    synced = read_table(config.run_path, ANNOTATIONS, required=False)
    if synced is None or synced.empty:
        return 0, 0.0, 0
    submitted = synced[synced["status"] == "submitted"].drop_duplicates(["item_id", "annotator"])
    seconds = submitted["seconds"] if "seconds" in submitted.columns else pd.Series(float("nan"), submitted.index)
    timed = seconds.notna()
    total = float(seconds[timed].sum()) + float((~timed).sum()) * config.cost.human_seconds_per_response
    return int(len(submitted)), total, int(timed.sum())


def cost_section(config: ProjectConfig, tiers: list[dict[str, Any]], curated_items: int,
                 human_items: int) -> Optional[dict[str, Any]]:
    """Cost per tier (items decided, seconds, cost, cost per label), the total per curated label, and the all-human
    baseline. `tiers`: the loop's (`labeler`, `decided`, `seconds`); the humans' seconds come from the synced
    responses, not from the tier's wall clock (which is the demo's replay)."""
    spec = config.cost
    responses, seconds, timed = human_seconds(config)
    per_response = (seconds / responses if responses else spec.human_seconds_per_response) * spec.human_per_hour / 3600
    rows = []
    for tier in tiers:
        if tier["labeler"] == "humans":
            cost, tier_seconds = responses * per_response, seconds
        else:
            tier_seconds = float(tier.get("seconds") or 0.0)
            cost = tier_seconds * spec.machine_per_hour / 3600
        decided = int(tier.get("decided") or 0)
        rows.append({"tier": tier["labeler"], "decided": decided, "seconds": round(tier_seconds, 1),
                     "cost": round(cost, 4), "per_label": round(cost / decided, 4) if decided else None})
    total = sum(r["cost"] for r in rows)
    per_item = responses / human_items if human_items else 0.0
    baseline = curated_items * per_item * per_response
    return {"currency": spec.currency, "prices": spec.model_dump(mode="json"), "tiers": rows,
            "responses": responses, "timed_responses": timed, "responses_per_item": round(per_item, 3),
            "total": round(total, 2), "per_curated_label": round(total / curated_items, 4) if curated_items else None,
            "all_human": round(baseline, 2),
            "all_human_per_label": round(baseline / curated_items, 4) if curated_items else None,
            "saving": round(1 - total / baseline, 3) if baseline else None}
