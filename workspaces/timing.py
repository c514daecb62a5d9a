"""Time on task: which synced responses came faster than a person reads what the record shows.

A response's time is the gap between its `updated_at` and the same reviewer's previous response in the dataset (the
moment they finished the record before). It is measured only when that gap is under `timing.session_break` seconds
(else the response starts a session: unknown), and only for reviewers whose responses have real timing: the data's
recorded raters, replayed through the API (`curate demo`), and the usernames in `timing.untimed` (answers imported
with the SDK) carry none, and are marked `untimed`, never flagged. A measured response shorter than the words of
the record's fields over `timing.words_per_second` is `too_fast` when `timing.enabled`: it is kept in the synced
table (flagged) and never counted, as a paused reviewer's responses are (`workspaces.votes.counted`).

`curate sync` writes these columns into `annotations.parquet` (`seconds`, `min_seconds`, `timing`, `too_fast`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from .config import ProjectConfig, slug

__all__ = ["TIMING_COLUMNS", "response_timing", "untimed_reviewers", "words_shown"]

TIMING_COLUMNS = ["seconds", "min_seconds", "timing", "too_fast"]


def words_shown(config: ProjectConfig, items: pd.DataFrame) -> pd.Series:
    """item id -> the number of words of the fields a reviewer sees (every field of the config)."""
    total = pd.Series(0, index=items["item_id"].astype(str).to_numpy(), dtype="int64")
    for spec in config.fields:
        column = spec.source_column
        if column not in items.columns:
            continue
        text = items[column].fillna("").astype(str)
        total += text.str.split().str.len().fillna(0).astype("int64").to_numpy()
    return total


def untimed_reviewers(config: ProjectConfig, items: Optional[pd.DataFrame]) -> set[str]:
    """Usernames whose responses carry no real timing: the recorded raters of the data (as replayed) and
    `timing.untimed`."""
    from .errors import ConfigError
    from .items import recorded_labels

    names = set(config.timing.untimed)
    if items is not None:
        try:
            names |= {slug(str(a)) for a in recorded_labels(config, items)["annotator"].unique()}
        except ConfigError:  # the data records no labels
            pass
    return names


def response_timing(config: ProjectConfig, annotations: pd.DataFrame, items: Optional[pd.DataFrame]) -> pd.DataFrame:
    """Per synced row, `TIMING_COLUMNS` (aligned with `annotations`' index): seconds on the record (NaN when not
    measured), the least a reader needs, `measured` / `untimed` / `first-of-session`, and `too_fast`."""
    spec = config.timing
    out = pd.DataFrame(index=annotations.index, columns=TIMING_COLUMNS)
    out["seconds"] = np.nan
    out["min_seconds"] = np.nan
    out["timing"] = "first-of-session"
    out["too_fast"] = False
    if annotations.empty:
        return out.astype({"too_fast": bool})
    words = words_shown(config, items) if items is not None else pd.Series(dtype="int64")
    untimed = untimed_reviewers(config, items)
    stamps = pd.to_datetime(annotations["updated_at"], utc=True, errors="coerce")
    responses = (annotations.assign(_at=stamps).groupby(["annotator", "item_id"], sort=False)["_at"].max()
                 .reset_index().sort_values(["annotator", "_at"], kind="stable"))
    responses["seconds"] = responses.groupby("annotator")["_at"].diff().dt.total_seconds()
    responses["min_seconds"] = responses["item_id"].astype(str).map(words).fillna(0).to_numpy() / \
        spec.words_per_second
    untimed_rows = responses["annotator"].isin(untimed)
    measured = responses["seconds"].notna() & (responses["seconds"] <= spec.session_break) & ~untimed_rows
    responses["timing"] = np.where(untimed_rows, "untimed", np.where(measured, "measured", "first-of-session"))
    responses.loc[~measured, "seconds"] = np.nan
    responses["too_fast"] = spec.enabled & measured & (responses["seconds"] < responses["min_seconds"])
    keyed = responses.set_index(["annotator", "item_id"])[TIMING_COLUMNS]
    joined = keyed.reindex(pd.MultiIndex.from_arrays([annotations["annotator"], annotations["item_id"]]))
    for column in TIMING_COLUMNS:
        out[column] = joined[column].to_numpy()
    out["too_fast"] = out["too_fast"].fillna(False).astype(bool)
    out["seconds"] = out["seconds"].astype(float)
    out["min_seconds"] = out["min_seconds"].astype(float)
    return out
