"""The human reference: for each item, the label humans gave it, and where that label comes from.

Precedence, per question (`reference:` in the config):
1. `gold-column`: a data column of gold labels (`reference.gold_columns`), never shown to reviewers;
2. `gold`: items listed in `hub.gold_ids_path`, labelled by the labels recorded with them in the data (else by their
   synced votes; one vote is enough);
3. `consensus`: any other item whose human votes reach `reference.min_votes` and give a label by the one human-label
   rule (`workspaces.votes.human_label`: a strict majority for label questions).

Human votes are the labels recorded with the data (`human_labels`, when `reference.recorded`) and the submitted
responses synced from Argilla (`annotations.parquet`); a synced response replaces the recorded vote of the same
annotator. Responses of annotators paused by the honeypot rule (`paused_annotators.json`) are left out.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

import pandas as pd

from ..config import ProjectConfig, QuestionConfig, QuestionKind, slug
from ..errors import ConfigError
from ..items import load_gold_ids, load_items, recorded_labels
from ..rundir import ANNOTATIONS, PAUSED, read_json, read_table
from ..shapes import ShapeValueError, shape_of
from ..votes import counted, human_label, qualified_reviewers

__all__ = ["Reference", "human_reference", "human_votes", "leave_one_out", "paused_annotators"]


@dataclass
class Reference:
    """The human reference labels of one question."""

    question: str
    labels: dict[str, str] = field(default_factory=dict)  # item id -> label (as text)
    sources: dict[str, str] = field(default_factory=dict)  # item id -> gold-column / gold / consensus

    def counts(self) -> dict[str, int]:
        """Items per source."""
        return dict(sorted(Counter(self.sources.values()).items()))

    @property
    def hash(self) -> str:
        """A short hash of the (item, label) pairs: which reference a calibration was measured on."""
        payload = json.dumps(sorted(self.labels.items()))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.labels)


def paused_annotators(config: ProjectConfig) -> set[str]:
    """Usernames paused by the honeypot rule (their responses do not count)."""
    paused = read_json(config.run_path, PAUSED, required=False) or {}
    return set(paused.get("paused", {}))


def human_votes(config: ProjectConfig, items: Optional[pd.DataFrame] = None, *, qualified_only: bool = True
                ) -> pd.DataFrame:
    """Every human vote the run knows: `item_id, question, annotator, value` (value as text), one per annotator.

    Recorded labels of the data (annotator names as Argilla usernames) and submitted synced responses; the synced
    one wins for the same (item, question, annotator). Paused annotators are left out. Values are in their shape's
    one spelling (tags in the labels' order, spans by offset). With a `qualification` section only qualified
    reviewers' votes count (`qualified_only=False`: everyone's, the evidence qualification itself scores; responses
    flagged `unqualified` are in the synced table too). A vote that does not fit its tag or span question
    (`min`/`max` broken, overlapping spans) is left out and counted in `votes.attrs["invalid"]` (question -> count).
    """
    frames = []
    if config.reference.recorded and config.human_labels is not None:
        items = load_items(config) if items is None else items
        if config.human_labels.column in items.columns:
            recorded = recorded_labels(config, items)
            frames.append(recorded.assign(annotator=recorded["annotator"].map(slug),
                                          value=recorded["value"].map(_stored_text), order=0))
    synced = read_table(config.run_path, ANNOTATIONS, required=False)
    if synced is not None and len(synced):
        synced = counted(synced if qualified_only or "unqualified" not in synced.columns
                         else synced.assign(unqualified=False))
        synced = synced[synced["question"].notna() & synced["value"].notna()]
        synced = synced.sort_values("updated_at") if "updated_at" in synced.columns else synced
        frames.append(synced[["item_id", "question", "annotator", "value"]].assign(value=synced["value"].astype(str),
                                                                                  order=1))
    if not frames:
        return pd.DataFrame(columns=["item_id", "question", "annotator", "value"])
    votes = pd.concat(frames, ignore_index=True).sort_values("order", kind="stable")
    votes = votes.drop_duplicates(["item_id", "question", "annotator"], keep="last")
    paused = paused_annotators(config)
    if paused:
        votes = votes[~votes["annotator"].isin(paused)]
    qualified = qualified_reviewers(config) if qualified_only else None
    if qualified is not None:  # recorded raters too: nobody's answers count before they qualify
        votes = votes[votes["annotator"].isin(qualified)]
    votes, invalid = _canonical(config, votes.drop(columns="order").reset_index(drop=True))
    votes.attrs["invalid"] = invalid
    return votes


def _stored_text(value: object) -> str:
    """A recorded value as stored text: a list of tags as a JSON list, anything else as `str`."""
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return json.dumps(list(value.tolist() if hasattr(value, "tolist") else value), ensure_ascii=False)
    return str(value)


def _canonical(config: ProjectConfig, votes: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Votes in their shape's one spelling (`Shape.canonical`); a vote that does not fit its question is left out
    and counted per question, never guessed."""
    invalid: dict[str, int] = {}
    keep = pd.Series(True, index=votes.index)
    for question in config.questions:
        shape = shape_of(question)
        if shape.single_choice or not shape.voted:
            continue
        mask = votes["question"] == question.name
        if not mask.any():
            continue
        fixed = votes.loc[mask, "value"].map(shape.canonical)
        votes.loc[mask, "value"] = fixed
        bad = fixed.isna()
        if bad.any():
            invalid[question.name] = int(bad.sum())
            keep.loc[bad[bad].index] = False
    return votes[keep].reset_index(drop=True), invalid


def _recorded_gold_votes(config: ProjectConfig, items: pd.DataFrame, gold_ids: set[str], question: str
                         ) -> dict[str, list[str]]:
    """The labels recorded with the data for gold items (a gold item's label is its recorded one, whether or not
    recorded labels count as votes elsewhere)."""
    if not gold_ids or config.human_labels is None or config.human_labels.column not in items.columns:
        return {}
    recorded = recorded_labels(config, items[items["item_id"].isin(gold_ids)])
    recorded = recorded[recorded["question"] == question]
    return {item: group["value"].astype(str).tolist() for item, group in recorded.groupby("item_id")}


def _text(question: QuestionConfig, value: object) -> str:
    """A label as reference text, in its shape's one spelling (a rating `"3"`, a tag set `'["a", "b"]'`)."""
    if question.kind == QuestionKind.rating:
        return str(int(float(value)))  # type: ignore[arg-type]
    return shape_of(question).dump(value) if isinstance(value, tuple) else str(value)


def human_reference(config: ProjectConfig, question: str, *, items: Optional[pd.DataFrame] = None,
                    votes: Optional[pd.DataFrame] = None) -> Reference:
    """The human reference labels of `question` over the project's items (see the module docstring)."""
    spec = config.question(question)
    shape = shape_of(spec)
    items = load_items(config) if items is None else items
    votes = human_votes(config, items) if votes is None else votes
    known = set(items["item_id"])
    reference = Reference(question=question)
    allowed = {str(v) for v in spec.allowed_values}

    column = config.reference.gold_columns.get(question)
    if column is not None:
        if column not in items.columns:
            raise ConfigError(f"{config.source_path}: reference.gold_columns.{question}: no column {column!r} in "
                              f"{config.data.path}")
        for item_id, value in zip(items["item_id"], items[column]):
            if value is None or (isinstance(value, float) and pd.isna(value)):
                continue
            try:
                label = shape.dump(shape.parse(value)) if not shape.single_choice else _text(spec, value)
            except ShapeValueError as error:
                raise ConfigError(f"{config.data.path}: item {item_id}: gold {column}={value!r}: {error}") from None
            if shape.single_choice and allowed and label not in allowed:
                raise ConfigError(f"{config.data.path}: item {item_id}: gold {column}={value!r} is not one of the "
                                  f"labels of {question!r}")
            reference.labels[item_id], reference.sources[item_id] = label, "gold-column"

    mine = votes[votes["question"] == question]
    grouped = {item_id: group["value"].tolist() for item_id, group in mine.groupby("item_id", sort=True)}
    gold_ids = load_gold_ids(config) & known
    gold_votes = _recorded_gold_votes(config, items, gold_ids, question)
    for item_id in sorted(gold_ids - set(reference.labels)):
        vote = human_label(spec, gold_votes.get(item_id) or grouped.get(item_id, []))
        if vote.label is not None:
            reference.labels[item_id], reference.sources[item_id] = _text(spec, vote.label), "gold"
    for item_id, values in grouped.items():
        if item_id in reference.labels or item_id not in known:
            continue
        vote = human_label(spec, values)
        if vote.label is not None and vote.votes >= config.reference.min_votes:
            reference.labels[item_id], reference.sources[item_id] = _text(spec, vote.label), "consensus"
    return reference


def leave_one_out(reference: Reference, question: QuestionConfig, votes: pd.DataFrame, *, min_votes: int = 1
                  ) -> Callable[[str, str], Optional[str]]:
    """`truth(item_id, annotator)`: what one annotator's vote is scored against, never the vote itself: the gold
    label (gold ids or a gold column), else the label of the other annotators' votes by the one human-label rule
    (None without one, or with fewer than `min_votes` other votes). `votes`: `human_votes` rows of `question`."""
    by_item = {item: list(zip(group["annotator"], group["value"].astype(str)))
               for item, group in votes.groupby("item_id")}

    def truth(item_id: str, annotator: str) -> Optional[str]:
        if reference.sources.get(item_id) in ("gold", "gold-column"):
            return reference.labels[item_id]
        vote = human_label(question, [value for who, value in by_item.get(item_id, []) if who != annotator])
        return None if vote.label is None or vote.votes < min_votes else _text(question, vote.label)

    return truth
