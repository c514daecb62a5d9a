"""Qualification: a reviewer's responses count only once they have agreed with gold on a batch of their own.

- A new reviewer gets `qualification.batch` gold items in a dataset of their own: `<dataset>-qualification` in the
  workspace `<workspace>-qual-<username>`, whose only annotator they are (`curate annotators qualify CONFIG USER`;
  `next_batch` picks the items, `workspaces.argilla_io.qualification` publishes them and reads the answers back).
  Nobody else can open it, and nothing in the project's dataset tells its gold items apart. No suggestions.
- A reviewer without a batch (the data's recorded raters, replayed by `curate demo`) qualifies on their answers in
  the project: every vote the run counts (recorded labels when `reference.recorded`, synced responses) on the
  project's gold items (`gold_items`: a random sample, unlike the hard items active learning picks; all items when
  there is no gold set) that has a truth is scored. Only what the loop has seen is used: the main job's held-back
  labels never decide a standing.
- An item's truth is its gold column's label, else the label of at least `reference.min_votes` *other* reviewers
  (the one human-label rule), so nobody is scored against their own answer.
- Standing: `qualified` when the accuracy on the last batch (without a batch: all their scored answers) reaches
  `qualification.min_agreement` on at least `qualification.batch` scored answers; `failed` below it (they stay
  unqualified and get another batch of new items); `pending` with fewer answers, or no evidence at all. The Wilson
  95% interval is shown next to it.

`update_standing` writes `<run dir>/qualification.json` (batches, answers and standing per reviewer) and flags every
synced response of a reviewer who is not qualified (`unqualified` in `annotations.parquet`: kept, never counted,
see `workspaces.votes.counted`); a reviewer removed while qualifying keeps their answers there, never counted.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import pandas as pd

from ..config import ProjectConfig
from ..errors import ConfigError
from ..items import load_gold_ids, load_items
from ..judge import human_reference, human_votes, review_question
from ..judge.calibrate import wilson_interval
from ..rundir import ANNOTATIONS, QUALIFICATION, locked, read_json, read_table, write_json
from ..votes import flag_responses, human_label

__all__ = ["QUALIFIED", "gold_items", "next_batch", "qualification_question", "qualification_section",
           "reviewers_qualifying", "standing", "update_standing"]

QUALIFIED = "qualified"


def _spec(config: ProjectConfig):
    if config.qualification is None:
        raise ConfigError(f"{config.source_path}: no `qualification` section: add one (batch, min_agreement) to "
                          "qualify reviewers")
    return config.qualification


def qualification_question(config: ProjectConfig) -> str:
    """The question a qualification batch is scored on: `qualification.question`, else the review question."""
    asked = _spec(config).question or review_question(config)
    if asked is None:
        raise ConfigError(f"{config.source_path}: qualification needs a question that reviewers vote on")
    return asked


def _state(config: ProjectConfig) -> dict[str, Any]:
    return read_json(config.run_path, QUALIFICATION, required=False) or {"reviewers": {}, "standing": {}}


def _truth(config: ProjectConfig, items: pd.DataFrame, question: str
           ) -> tuple[Callable[[str, str], Optional[str]], pd.DataFrame]:
    """`truth(item, reviewer)` (a gold column's label, else the label of at least `reference.min_votes` *other*
    reviewers' votes, never the reviewer's own) and every reviewer's votes on `question` (qualified or not)."""
    spec = config.question(question)
    votes = human_votes(config, items, qualified_only=False)
    votes = votes[votes["question"] == question]
    gold = config.reference.gold_columns.get(question)
    reference = human_reference(config, question, items=items, votes=votes.iloc[0:0]) if gold else None
    by_item = {item: list(zip(group["annotator"], group["value"].astype(str)))
               for item, group in votes.groupby("item_id")}

    def truth(item_id: str, reviewer: str) -> Optional[str]:
        if reference is not None and reference.sources.get(item_id) == "gold-column":
            return reference.labels[item_id]
        vote = human_label(spec, [value for who, value in by_item.get(item_id, []) if who != reviewer])
        return None if vote.label is None or vote.votes < config.reference.min_votes else str(vote.label)

    return truth, votes


def gold_items(config: ProjectConfig, items: pd.DataFrame) -> set[str]:
    """The project's gold items: gold ids (`hub.gold_ids_path`, or the loop's random gold set) and items with a
    gold column's label for the qualification question; empty when the project has none."""
    gold = load_gold_ids(config) & set(items["item_id"])
    column = config.reference.gold_columns.get(qualification_question(config))
    if column is not None and column in items.columns:
        gold |= set(items.loc[items[column].notna(), "item_id"])
    return gold


def _score(answers: dict[str, str], truth: Callable[[str, str], Optional[str]], who: str) -> dict[str, Any]:
    scored = [(item, value, truth(item, who)) for item, value in answers.items()]
    scored = [(item, value, t) for item, value, t in scored if t is not None]
    right = sum(str(value) == str(t) for _, value, t in scored)
    low, high = wilson_interval(right, len(scored))
    return {"scored": len(scored), "correct": right, "accuracy": right / len(scored) if scored else None,
            "wilson_low": low, "wilson_high": high}


def standing(config: ProjectConfig, annotators: Optional[set[str]] = None) -> dict[str, dict[str, Any]]:
    """username -> {status, evidence, scored, correct, accuracy, wilson_low, wilson_high, batches} for every
    reviewer with evidence and every name in `annotators` (no evidence: pending)."""
    spec = _spec(config)
    question = qualification_question(config)
    items = load_items(config)
    truth, votes = _truth(config, items, question)
    state = _state(config)
    gold = gold_items(config, items)
    if gold:  # the project's gold set: a random sample, not the hard items active learning picks
        votes = votes[votes["item_id"].isin(gold)]
    out: dict[str, dict[str, Any]] = {}
    for username, answers in sorted(votes.groupby("annotator")):  # their answers in the project (e.g. replayed)
        out[username] = {"evidence": "gold answers in the project" if gold else "answers in the project",
                         "batches": 0,
                         **_score(dict(zip(answers["item_id"], answers["value"])), truth, username)}
    for username, mine in sorted(state["reviewers"].items()):  # a batch of their own decides
        batches = mine.get("batches") or []
        last = batches[-1] if batches else []
        answers = {item: value for item, value in (mine.get("answers") or {}).items() if item in set(last)}
        out[username] = {"evidence": f"qualification batch {len(batches)}", "batches": len(batches),
                         **_score(answers, truth, username)}
    for username in sorted((annotators or set()) - set(out)):
        out[username] = {"evidence": "none", "batches": 0, **_score({}, truth, username)}
    for row in out.values():
        if row["scored"] < spec.batch:
            row["status"] = "pending"
        else:
            row["status"] = QUALIFIED if row["accuracy"] >= spec.min_agreement else "failed"
    return out


def next_batch(config: ProjectConfig, username: str) -> list[str]:
    """The qualification batch `username` is to answer now (recorded in `qualification.json`): none when they are
    qualified; the same items while their last batch has unanswered items; else `qualification.batch` gold items
    they were never given (a seeded order per reviewer). Publish it with
    `workspaces.argilla_io.qualification.publish_qualification`."""
    spec = _spec(config)
    question = qualification_question(config)
    items = load_items(config)
    truth, _ = _truth(config, items, question)
    path = QUALIFICATION.path(config.run_path)
    with locked(path):
        state = _state(config)
        if state.get("standing", {}).get(username, {}).get("status") == QUALIFIED:
            return []
        mine = state["reviewers"].setdefault(username, {"batches": [], "answers": {}})
        batches = mine["batches"]
        if batches and any(item not in mine["answers"] for item in batches[-1]):
            return list(batches[-1])
        given = {item for batch in batches for item in batch}
        pool = gold_items(config, items) or set(items["item_id"])  # the gold set when the project has one
        candidates = [item for item in items["item_id"]
                      if item in pool and item not in given and truth(item, username) is not None]
        order = sorted(candidates, key=lambda item: hashlib.sha256(f"{spec.seed}:{username}:{item}".encode())
                       .hexdigest())
        if len(order) < spec.batch:
            raise ConfigError(f"{config.source_path}: only {len(order)} gold items left for {username!r}'s "
                              f"qualification batch (qualification.batch {spec.batch})")
        batches.append(order[:spec.batch])
        write_json(path, state)
    return list(batches[-1])


def reviewers_qualifying(config: ProjectConfig) -> list[str]:
    """Usernames that were given a qualification batch (whose answers `update_standing` reads)."""
    return sorted(_state(config)["reviewers"]) if config.qualification is not None else []


def update_standing(config: ProjectConfig, answers: Optional[dict[str, dict[str, str]]] = None
                    ) -> dict[str, dict[str, Any]]:
    """Keep the qualification `answers` read from the server (username -> {item: value}; they are only ever added
    to), work out every reviewer's standing, write `qualification.json`, and flag the synced responses of every
    reviewer who is not qualified (`unqualified`). Does nothing (returns {}) without a `qualification` section."""
    if config.qualification is None:
        return {}
    path = QUALIFICATION.path(config.run_path)
    with locked(path):
        state = _state(config)
        for username, given in (answers or {}).items():
            state["reviewers"].setdefault(username, {"batches": [], "answers": {}})["answers"].update(given)
        write_json(path, state)  # the answers first: the standing reads them
        synced = read_table(config.run_path, ANNOTATIONS, required=False)
        annotators = set(synced["annotator"].astype(str)) if synced is not None else set()
        state["standing"] = standing(config, annotators)
        state["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json(path, state)
    with locked(ANNOTATIONS.path(config.run_path)):
        flag_responses(config)
    return state["standing"]


def qualification_section(config: ProjectConfig) -> Optional[dict[str, Any]]:
    """The report's section: every reviewer's standing and its evidence (None without qualification)."""
    if config.qualification is None:
        return None
    state = _state(config)
    if not state.get("standing"):
        return None
    return {"question": qualification_question(config), "batch": config.qualification.batch,
            "min_agreement": config.qualification.min_agreement,
            "reviewers": [{"annotator": u, **s} for u, s in sorted(state["standing"].items())]}
