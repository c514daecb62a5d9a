"""Build data/goemotions/comments.jsonl from the GoEmotions raw per-rater rows (run once, by hand; the project
never reads ../shared at run time).

Input: `../shared/data/goemotions_raters_partial.csv` (the first 4,895 rows of google-research's goemotions_1.csv,
bytes unchanged; see data/goemotions/README.md). Output: one JSON object per comment id, with every rating of it
in the file as `annotations: [{rater_id, emotions}]`. Ratings marked `example_very_unclear` pick no emotion and are
left out (counted in the README).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "goemotions_raters_partial.csv"
TARGET = ROOT / "data" / "goemotions" / "comments.jsonl"
FIRST_EMOTION = 9  # columns 0-8 are text,id,author,subreddit,link_id,parent_id,created_utc,rater_id,unclear


def main(source: Path = SOURCE, target: Path = TARGET) -> None:
    frame = pd.read_csv(source, dtype={"id": str, "rater_id": str})
    emotions = list(frame.columns[FIRST_EMOTION:])
    unclear = frame["example_very_unclear"].astype(str) == "True"
    rows = []
    for comment_id, group in frame.groupby("id", sort=False):
        clear = group[~unclear.loc[group.index]]
        annotations = [{"rater_id": f"rater{r.rater_id}", "emotions": [e for e in emotions if getattr(r, e) == 1]}
                       for r in clear.itertuples(index=False)]
        rows.append({"id": comment_id, "text": group["text"].iloc[0], "subreddit": group["subreddit"].iloc[0],
                     "n_raters": len(annotations), "annotations": annotations})
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} comments, {int(unclear.sum())} unclear ratings left out, "
          f"{sum(r['n_raters'] >= 2 for r in rows)} with 2+ raters -> {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
