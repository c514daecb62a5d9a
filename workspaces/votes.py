"""The one rule that turns human votes into an item's human label.

Used by every stage that needs "what did the humans say": the few-shot examples of the LLM prompt, the judge figures
of the report, the human reference of calibration and the curated dataset. So the figures published about a labeler
always describe the label that is pushed.

- label questions (and any question measured at the nominal level): the **strict majority**, the value more than
  half of the votes share; ties and pluralities give no label (`no_majority`);
- rating questions at the ordinal/interval/ratio level: the **lower median** of the votes (for an even count the
  lower of the two middle values), so the label stays on the scale; always defined when there is a vote;
- multi-label questions: the **per-label strict majority**, each label that more than half of the votes hold (a set,
  possibly empty; `workspaces.shapes.MultiLabelShape`);
- text questions: never voted on.

The rules live in `workspaces.shapes` (one shape per question kind); this module applies them to votes and tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import pandas as pd

from .config import AlphaLevel, ProjectConfig, QuestionConfig, QuestionKind
from .items import load_items
from .rundir import ANNOTATIONS, QUALIFICATION, RunFile, read_json, read_table, write_table
from .shapes import shape_of, strict_majority
from .timing import TIMING_COLUMNS, response_timing

__all__ = ["EXCLUSION_FLAGS", "HumanLabel", "counted", "flag_responses", "human_label", "human_labels",
           "qualified_reviewers", "strict_majority", "vote_table"]

EXCLUSION_FLAGS = ("paused", "too_fast", "unqualified")
"""Columns of the synced table that flag a response kept but never counted: its reviewer was paused by the
honeypot rule, it came faster than a person reads the record (`workspaces.timing`), or its reviewer is not
qualified (`workspaces.review.qualification`)."""


def qualified_reviewers(config: ProjectConfig) -> Optional[set[str]]:
    """The usernames whose standing is `qualified` in `qualification.json`; None when the project does not qualify
    reviewers (no `qualification` section): then everyone counts."""
    if config.qualification is None:
        return None
    state = read_json(config.run_path, QUALIFICATION, required=False) or {}
    return {str(u) for u, s in (state.get("standing") or {}).items() if s.get("status") == "qualified"}


def flag_responses(config: ProjectConfig, path: Optional[Path] = None) -> None:
    """Flag the synced responses that are kept but never counted: each response's time on task
    (`workspaces.timing`: `seconds`, `min_seconds`, `timing`, `too_fast`) and `unqualified` (its reviewer is not
    `qualified` in `qualification.json`, when the project qualifies reviewers). `curate sync` calls it on every
    snapshot, and the qualification stage when a standing changes; the caller holds the table's lock."""
    path = Path(path or ANNOTATIONS.path(config.run_path))
    if not path.is_file():
        return
    frame = read_table(path.parent, RunFile(path.name, ANNOTATIONS.command, ANNOTATIONS.description))
    frame = frame.drop(columns=[c for c in [*TIMING_COLUMNS, "unqualified"] if c in frame.columns])
    items = load_items(config) if len(frame) else None
    qualified = qualified_reviewers(config)
    frame["unqualified"] = False if qualified is None else ~frame["annotator"].astype(str).isin(qualified)
    write_table(path, pd.concat([frame, response_timing(config, frame, items)], axis=1))


def counted(annotations: pd.DataFrame) -> pd.DataFrame:
    """The synced rows that count as human votes: submitted, and flagged by none of `EXCLUSION_FLAGS`."""
    keep = annotations["status"] == "submitted"
    for flag in EXCLUSION_FLAGS:
        if flag in annotations.columns:
            keep &= ~annotations[flag].astype("boolean").fillna(False).astype(bool)
    return annotations[keep]

Value = Union[str, int]


@dataclass(frozen=True)
class HumanLabel:
    """The humans' label of one item for one question.

    Attributes:
        label: the label, or None (no vote, no majority, or a text question).
        votes: how many votes were counted.
        agreement: the share of votes equal to `label` (None without a label).
        no_majority: True when there were votes for a label question but no strict majority.
    """

    label: Optional[Value]
    votes: int
    agreement: Optional[float]
    no_majority: bool = False


def _by_median(question: QuestionConfig) -> bool:
    return question.kind == QuestionKind.rating and question.alpha_level != AlphaLevel.nominal


def human_label(question: QuestionConfig, values: Iterable[Any]) -> HumanLabel:
    """The humans' label for `values` (one vote per annotator), by the question's rule (module docstring)."""
    votes = [v for v in values if v is not None and not (isinstance(v, float) and pd.isna(v))]
    vote = shape_of(question).consensus(votes)
    return HumanLabel(label=vote.label, votes=vote.votes, agreement=vote.agreement, no_majority=vote.no_majority)


def vote_table(table: pd.DataFrame, question: QuestionConfig, *, keys: Sequence[str] = ("unit",)) -> pd.DataFrame:
    """`human_label` of every group of a tidy table at once (grouped by the `keys` columns, votes in `value`).

    One row per group that has a vote, sorted by the keys: the keys, `label` (None: no label), `votes`, `agreement`
    and `no_majority`, exactly what `human_label` gives for the group's values (vectorised: no Python per group).
    """
    keys = list(keys)
    columns = [*keys, "label", "votes", "agreement", "no_majority"]
    frame = table[keys].copy()
    frame["_value"] = table["value"]
    frame = frame[frame["_value"].notna()].dropna(subset=keys)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    if not shape_of(question).single_choice:  # sets: one consensus per group (no vectorised majority of sets)
        rows = [(*(key if isinstance(key, tuple) else (key,)), human_label(question, group.tolist()))
                for key, group in frame.groupby(keys, sort=True, observed=True)["_value"]]
        return pd.DataFrame([(*r[:-1], r[-1].label, r[-1].votes, r[-1].agreement, r[-1].no_majority) for r in rows],
                            columns=columns)
    if question.kind == QuestionKind.rating:
        frame["_value"] = frame["_value"].astype(float).astype(int)
    votes = frame.groupby(keys, sort=True, observed=True).size().rename("votes").reset_index()
    if question.kind == QuestionKind.text:
        return votes.assign(label=None, agreement=None, no_majority=False)[columns]
    counts = frame.groupby([*keys, "_value"], sort=False, observed=True).size().rename("_count").reset_index()
    counts = counts.merge(votes, on=keys)
    if _by_median(question):  # the lower median: the first value whose running count reaches half the votes
        counts = counts.sort_values([*keys, "_value"], kind="stable")
        running = counts.groupby(keys, sort=False, observed=True)["_count"].cumsum()
        chosen = counts[(running * 2 >= counts["votes"]) & ((running - counts["_count"]) * 2 < counts["votes"])]
    else:  # the strict majority: more than half of the votes (at most one value per group)
        chosen = counts[counts["_count"] * 2 > counts["votes"]]
    result = votes.merge(chosen[[*keys, "_value", "_count"]], on=keys, how="left")
    has_label = result["_count"].notna().to_numpy()
    values = result["_value"].to_numpy(dtype=object)
    if question.kind == QuestionKind.rating:
        values = [int(v) if ok else None for v, ok in zip(values, has_label)]
    result["label"] = pd.Series(values, dtype=object).where(has_label, None)
    result["agreement"] = pd.Series((result["_count"] / result["votes"]).to_numpy(), dtype=object).where(has_label, None)
    result["no_majority"] = ~has_label
    return result[columns].reset_index(drop=True)


def human_labels(table: pd.DataFrame, question: QuestionConfig, *, min_votes: int = 1,
                 unit: str = "unit") -> dict[str, HumanLabel]:
    """`{unit: HumanLabel}` for a tidy `unit, annotator, value` table, keeping units with >= `min_votes` votes and a
    label (`vote_table`, as a dict)."""
    votes = vote_table(table.rename(columns={unit: "_unit"}) if unit != "_unit" else table, question,
                       keys=("_unit",))
    votes = votes[votes["label"].notna() & (votes["votes"] >= min_votes)]
    return {str(key): HumanLabel(label=label, votes=int(n), agreement=float(share))
            for key, label, n, share in zip(votes["_unit"], votes["label"], votes["votes"], votes["agreement"])}
