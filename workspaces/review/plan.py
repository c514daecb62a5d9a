"""A review batch: the items a selection chose, the audit items triage set aside, and honeypots, in random order,
with every Nth item published without the labeler's suggestion.

- honeypots (`honeypots: {share}`): items with a known human label mixed into every batch at the configured share,
  at random positions; the pool is the gold items (`hub.gold_ids_path`, `reference.gold_columns`), else, when a
  project has none, items with a consensus reference label;
- audit items (`routes.parquet`, route `audit`) join batches in proportion to what is left of them, so the promise of
  the auto-accepted labels keeps being checked even though no uncertainty strategy would pick a confident item;
- draft suppression (`suppression: {every: N}`): every Nth published item of the project (counted across batches)
  goes out with no suggestion, so the report can measure how much the suggestion anchors reviewers;
- items whose confidence passed the gate's threshold (routes `audit` and `auto`: audit items, and honeypots or
  selected items that triage would accept) always go out with no suggestion: a score above the threshold would tell
  them apart from review items, and an unanchored answer is the honest check of an auto-accepted label.

Which item is which lives only in `review_plan.parquet` (owner-only) and `selection.jsonl`; on the server every
record of a batch looks alike.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from ..config import ProjectConfig
from ..judge import human_reference, human_votes, review_question
from ..rundir import REVIEW_PLAN, ROUTES, SELECTION, append_jsonl, read_table, write_table
from .select import Selection

__all__ = ["PLAN_COLUMNS", "ReviewBatch", "honeypot_pool", "plan_batch", "read_plan", "record_batch"]

PLAN_COLUMNS = ["item_id", "batch", "role", "suppressed", "position", "created"]


@dataclass
class ReviewBatch:
    """What one `curate select` publishes: item ids in publishing order, and which go without a suggestion."""

    batch: str
    plan: pd.DataFrame

    @property
    def item_ids(self) -> list[str]:
        return self.plan.sort_values("position")["item_id"].tolist()

    @property
    def suppressed(self) -> list[str]:
        return self.plan.loc[self.plan["suppressed"], "item_id"].tolist()

    def count(self, role: str) -> int:
        return int((self.plan["role"] == role).sum())


def read_plan(config: ProjectConfig) -> pd.DataFrame:
    """Every batch planned so far (empty when none)."""
    plan = read_table(config.run_path, REVIEW_PLAN, required=False)
    return pd.DataFrame(columns=PLAN_COLUMNS) if plan is None else plan


def honeypot_pool(config: ProjectConfig) -> dict[str, str]:
    """Items usable as honeypots, with their reference label: gold items, else consensus items."""
    question = review_question(config)
    if question is None:
        return {}
    reference = human_reference(config, question, votes=human_votes(config))
    gold = {i: label for i, label in reference.labels.items() if reference.sources[i] in ("gold", "gold-column")}
    return gold or dict(reference.labels)


def plan_batch(config: ProjectConfig, selection: Selection, *, seed: int = 0,
               audit: Optional[list[str]] = None) -> ReviewBatch:
    """Add audit items and honeypots to a selection, shuffle it, and mark the suppressed items.

    Audit items are drawn from the items routed `audit`, in proportion to the selection; `audit` names them instead
    (the label loop's final audit sends all of them)."""
    rng = np.random.default_rng([seed, len(read_plan(config))])
    before = read_plan(config)
    planned = set(before["item_id"])
    chosen = [i for i in selection.item_ids if i not in planned]
    rows = [{"item_id": i, "role": "selected"} for i in chosen]

    routes = read_table(config.run_path, ROUTES, required=False)
    confident = set() if routes is None else set(routes.loc[routes["route"].isin(["audit", "auto"]), "item_id"])
    if audit is not None:
        rows += [{"item_id": i, "role": "audit"} for i in audit if i not in planned]
    elif routes is not None:
        audit_left = sorted(set(routes.loc[routes["route"] == "audit", "item_id"]) - planned - set(chosen))
        review_left = len(set(routes.loc[routes["route"] == "review", "item_id"]) - planned) or 1
        share = len(audit_left) / (len(audit_left) + review_left)
        take = min(len(audit_left), max(1, math.ceil(share * len(chosen)))) if audit_left else 0
        rows += [{"item_id": i, "role": "audit"} for i in rng.choice(audit_left, take, replace=False)]

    if config.honeypots is not None and rows:
        pool = honeypot_pool(config)
        fresh = sorted(set(pool) - planned - {r["item_id"] for r in rows})
        wanted = math.ceil(config.honeypots.share / (1 - config.honeypots.share) * len(rows))
        used = sorted(set(pool) & planned)
        source = fresh if len(fresh) >= wanted else fresh + used  # reuse honeypots once the pool runs out
        take = min(wanted, len(source))
        rows += [{"item_id": i, "role": "honeypot"} for i in rng.choice(source, take, replace=False)]

    plan = pd.DataFrame(rows, columns=["item_id", "role"]).drop_duplicates("item_id")
    plan = plan.iloc[rng.permutation(len(plan))].reset_index(drop=True)  # honeypots at random positions
    batch = uuid.uuid4().hex[:10]
    published_before = len(before)
    every = config.suppression.every if config.suppression is not None else 0
    plan["suppressed"] = [(bool(every) and (published_before + n + 1) % every == 0) or item_id in confident
                          for n, item_id in enumerate(plan["item_id"])]
    plan["position"] = range(len(plan))
    plan["batch"] = batch
    plan["created"] = selection.created
    return ReviewBatch(batch=batch, plan=plan[PLAN_COLUMNS])


def record_batch(config: ProjectConfig, batch: ReviewBatch, selection: Selection) -> None:
    """Append the batch to `review_plan.parquet` and the selection to `selection.jsonl` (after publishing)."""
    plan = pd.concat([read_plan(config), batch.plan], ignore_index=True)
    write_table(REVIEW_PLAN.path(config.run_path), plan)
    scores = dict(zip(selection.item_ids, selection.scores))
    append_jsonl(SELECTION.path(config.run_path), {
        "batch": batch.batch, "time": selection.created, "strategy": selection.strategy, "seed": selection.seed,
        "selected": [{"item_id": i, "score": scores.get(i)} for i in selection.item_ids],
        "audit": batch.count("audit"), "honeypots": batch.count("honeypot"),
        "suppressed": len(batch.suppressed)})
