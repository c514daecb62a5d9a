"""The label loop: rounds of human review chosen by active learning; after each, the labeler is trained on the
humans' labels, calibrated, gated and triaged; at the end the labels no human gave are scored on held-back labels.

The humans are whatever `Humans` a caller passes: `curate demo` publishes each batch to Argilla and replays the
recorded annotators of exactly those items as Argilla users, then syncs; `benchmarks/bench_demo_loop.py` writes the
same recorded answers straight into the run dir (no server). Either way, only the items a batch sends to review ever
get a human answer in the run dir. Every other item's recorded labels are **held back**: the project's reference
must not count recorded labels (`reference.recorded: false`), so no student, calibration or gate sees them, and
`score_held_back` uses them once, at the end, to measure the labels accepted without a human.

One round:
1. select a batch: round 0 is a seeded random gold set when `selection.gold` is set (the labeler is calibrated on a
   sample of the pool as it is; else a cold start by k-center diversity), later rounds the student's least sure items
   among those triage sent to review (`curate select`); and plan it (`plan_batch`: audit items and honeypots mixed
   in at random positions, every Nth item without a suggestion);
2. the humans label it;
3. the student is retrained on every human reference label so far, then calibrated, gated and triaged.

After the last round the audit items of the final triage go to the humans too, the audit is checked (a broken promise
closes the gate) and triage runs once more: its `auto` items that no human saw are the labels no human gave.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from ..config import ProjectConfig
from ..errors import ConfigError
from ..items import load_items, recorded_labels
from ..judge import calibrate, check_audit, human_reference, human_votes, labeler_questions, run_gate
from ..judge.calibrate import wilson_interval
from ..judge.gate import GateDecision
from ..rundir import GOLD_IDS, LOOP_ROUNDS, append_jsonl, read_jsonl, write_text
from ..votes import human_label
from .plan import ReviewBatch, plan_batch, read_plan, record_batch
from .qualification import update_standing
from .select import Selection, select_items
from .triage import Triage, triage

__all__ = ["HeldBackScore", "Humans", "LoopResult", "LoopRound", "run_loop", "score_held_back"]

AUDIT = "audit (final)"  # the strategy recorded for the final audit batch

Humans = Callable[[ProjectConfig, ReviewBatch], None]
"""Have humans label a planned batch; when it returns, the run dir holds their responses (`annotations.parquet`)."""


@dataclass
class LoopRound:
    """What one round did (one line of `loop_rounds.jsonl`)."""

    number: int
    batch: str
    roles: dict[str, int]
    human_items: int
    gates: dict[str, GateDecision]
    routes: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    resumed: bool = False  # done by an earlier run of this run dir, read back

    def as_dict(self) -> dict[str, Any]:
        return {"round": self.number, "batch": self.batch, "roles": self.roles, "human_items": self.human_items,
                "gates": {q: d.model_dump(mode="json") for q, d in self.gates.items()}, "routes": self.routes,
                "seconds": {k: round(v, 1) for k, v in self.seconds.items()}}

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> "LoopRound":
        return cls(number=entry["round"], batch=entry["batch"], roles=entry["roles"],
                   human_items=entry["human_items"], routes=entry["routes"], seconds=entry["seconds"], resumed=True,
                   gates={q: GateDecision.model_validate(d) for q, d in entry["gates"].items()})


@dataclass
class LoopResult:
    """Every round, the final triage, and the items the humans labelled (any role)."""

    rounds: list[LoopRound]
    triage: Triage
    reviewed: set[str]
    labeler: str
    items: int
    audit: Optional[dict[str, Any]] = None


def _require_held_back(config: ProjectConfig) -> None:
    if config.reference.recorded:
        raise ConfigError("reference.recorded: the label loop holds the recorded labels back and takes human answers "
                          "only from review, so the project must not count recorded labels as its reference; set "
                          "`reference: {recorded: false}`")


def _draw_gold(config: ProjectConfig) -> Selection:
    """The first batch as a gold set: `selection.gold` items drawn at random (seeded), written to
    `<run dir>/gold_ids.txt` before any human answers, so the labeler is calibrated on a sample of the pool as it is."""
    ids = sorted(load_items(config)["item_id"])
    rng = np.random.default_rng(config.selection.seed)
    chosen = sorted(rng.choice(ids, min(config.selection.gold, len(ids)), replace=False).tolist())
    write_text(GOLD_IDS.path(config.run_path), "".join(f"{i}\n" for i in chosen))
    return Selection(item_ids=chosen, scores=[], strategy="random (gold set)", seed=config.selection.seed)


def _honeypots_known(config: ProjectConfig) -> ProjectConfig:
    """The config a batch is planned with: honeypots are items whose recorded annotators reached a majority, as a
    project picks its gold items; once in a batch they are reviewed, so their labels are spent, not held back. (Only
    whether a majority exists is read, never which label it is.)"""
    return config.model_copy(update={"reference": config.reference.model_copy(update={"recorded": True}),
                                     "selection": config.selection.model_copy(update={"gold": 0})})


def _train(config: ProjectConfig, labeler: str) -> None:
    """Retrain the student on the human reference so far (the labeler is the student, or the ensemble's half)."""
    if labeler not in ("student", "ensemble"):
        return
    from pipelines.student import run_student

    votes = human_votes(config)
    for question in labeler_questions(config):
        run_student(config, human_reference(config, question, votes=votes).labels, question)


def run_loop(config: ProjectConfig, humans: Humans, *, labeler: Optional[str] = None,
             on_round: Optional[Callable[[LoopRound], None]] = None) -> LoopResult:
    """Run `1 + selection.rounds` review rounds, then the final audit (module docstring).

    Every round is appended to `loop_rounds.jsonl`. A run dir that already holds rounds resumes: they are read back,
    not planned, sent or judged again, and the loop goes on from the first missing one; when every round and the final
    audit are there, triage alone runs again (same labels, same gate: the same routes).

    Args:
        config: the project; `reference.recorded` must be false (the recorded labels are held back).
        humans: labels each planned batch (see `Humans`).
        labeler: the labeler gated and triaged (default `triage.labeler`).
        on_round: called after each round, resumed ones included (the demo prints them).

    Raises:
        ConfigError: `reference.recorded` is true.
    """
    _require_held_back(config)
    labeler = labeler or config.triage.labeler
    spec = config.selection
    rounds = [LoopRound.from_dict(entry) for entry in read_jsonl(config.run_path, LOOP_ROUNDS)][:1 + spec.rounds]
    for done in rounds:
        if on_round is not None:
            on_round(done)
    result: Optional[Triage] = None
    for number in range(len(rounds), 1 + spec.rounds):
        clock: dict[str, float] = {}
        started = time.perf_counter()
        planned = set(read_plan(config)["item_id"])
        if number == 0 and spec.gold and not planned:
            selection = _draw_gold(config)
        else:
            selection = select_items(config, batch=spec.batch, strategy=spec.strategy, seed=spec.seed + number,
                                     exclude=planned)
        if not selection.item_ids:
            break
        batch = plan_batch(_honeypots_known(config), selection, seed=spec.seed + number)
        clock["select"] = time.perf_counter() - started
        started = time.perf_counter()
        humans(config, batch)
        update_standing(config)  # who counts now (`qualification`): nobody's answers before they qualify
        record_batch(config, batch, selection)
        clock["humans"] = time.perf_counter() - started
        started = time.perf_counter()
        result, gates = _judge(config, labeler)
        clock["labeler"] = time.perf_counter() - started
        done = LoopRound(number=number, batch=batch.batch, roles=batch.plan["role"].value_counts().to_dict(),
                         human_items=len(read_plan(config)), gates=gates, routes=result.counts, seconds=clock)
        append_jsonl(LOOP_ROUNDS.path(config.run_path), done.as_dict())
        rounds.append(done)
        if on_round is not None:
            on_round(done)
    if result is None:  # every round was done before: the labels and the gate on disk decide, as they did
        result = triage(config, labeler) if rounds else _judge(config, labeler)[0]
    audit = _final_audit(config, humans, result)
    if audit is not None:
        result = triage(config, labeler)  # a broken promise closed the gate: its items go back to review
    return LoopResult(rounds=rounds, triage=result, reviewed=set(read_plan(config)["item_id"]), labeler=labeler,
                      items=len(load_items(config)), audit=audit)


def _judge(config: ProjectConfig, labeler: str) -> tuple[Triage, dict[str, GateDecision]]:
    _train(config, labeler)
    calibrate(config, labeler)
    gates = {decision.question: decision for decision in run_gate(config, labeler)}
    return triage(config, labeler), gates


def _final_audit(config: ProjectConfig, humans: Humans, result: Triage) -> Optional[dict[str, Any]]:
    """The final triage's audit items go to the humans; then the audit is checked (and may close the gate)."""
    planned = set(read_plan(config)["item_id"])
    audit = sorted(set(result.routes.loc[result.routes["route"] == "audit", "item_id"]) - planned)
    if audit:
        selection = Selection(item_ids=[], scores=[], strategy=AUDIT, seed=config.selection.seed)
        batch = plan_batch(_honeypots_known(config), selection, seed=config.selection.seed, audit=audit)
        humans(config, batch)
        update_standing(config)
        record_batch(config, batch, selection)
    elif not (result.routes["route"] == "audit").any():
        return None
    return check_audit(config)


@dataclass
class HeldBackScore:
    """The labels accepted without a human, scored against the recorded labels that were held back."""

    question: str
    promise: dict[str, float]
    per_label: dict[str, dict[str, Any]]
    overall: dict[str, Any]
    broken: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"question": self.question, "promise": self.promise, "per_label": self.per_label,
                "overall": self.overall, "broken": self.broken}


def _figures(correct: pd.Series) -> dict[str, Any]:
    n, hits = int(len(correct)), int(correct.sum())
    low, high = wilson_interval(hits, n)
    return {"n": n, "correct": hits, "precision": hits / n if n else None, "wilson_low": low, "wilson_high": high}


def score_held_back(config: ProjectConfig, result: LoopResult) -> dict[str, HeldBackScore]:
    """Per labeler question: the `auto` items no human reviewed, their accepted label against the recorded human
    majority (the one human-label rule, `reference.min_votes` votes) that was held back; precision with a 95% Wilson
    interval per label and overall. A label whose measured precision is below its promise is `broken`: the promise
    did not hold, which is a defect to report, not a detail."""
    items = load_items(config)
    recorded = recorded_labels(config, items)
    routes = result.triage.routes
    scores = {}
    for question in labeler_questions(config):
        spec = config.question(question)
        auto = routes[(routes["question"] == question) & (routes["route"] == "auto")
                      & ~routes["item_id"].isin(result.reviewed)]
        mine = recorded[(recorded["question"] == question) & recorded["item_id"].isin(set(auto["item_id"]))]
        truth = {}
        for item, group in mine.groupby("item_id"):
            vote = human_label(spec, group["value"].tolist())
            if vote.label is not None and vote.votes >= config.reference.min_votes:
                truth[item] = str(vote.label)
        scored = auto[auto["item_id"].isin(set(truth))].copy()
        scored["correct"] = scored["label"].astype(str) == scored["item_id"].map(truth)
        gate = result.triage.states[question].passed if result.triage.states[question].open else None
        targets = config.gate.targets.get(question) or {}
        promise = {str(label): float(targets.get(label, config.gate.target_precision))
                   for label in sorted(scored["label"].astype(str).unique())} if gate is not None else {}
        per_label = {label: {**_figures(group["correct"]), "promise": promise.get(label)}
                     for label, group in scored.groupby(scored["label"].astype(str))}
        overall = {**_figures(scored["correct"]), "auto": int(len(auto)), "no_majority": int(len(auto) - len(scored))}
        if targets:  # a promise per label
            broken = [label for label, f in per_label.items()
                      if f["promise"] is not None and f["precision"] is not None and f["precision"] < f["promise"]]
        else:  # one promise on the pooled accepted items
            overall["promise"] = config.gate.target_precision if gate is not None else None
            broken = (["(all labels)"] if gate is not None and overall["precision"] is not None
                      and overall["precision"] < config.gate.target_precision else [])
        scores[question] = HeldBackScore(question=question, promise=promise, per_label=per_label, overall=overall,
                                         broken=broken)
    return scores
