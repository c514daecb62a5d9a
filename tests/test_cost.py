"""The cost of a curated label by tier (issue 25, item 8): human responses at their time on task (or the configured
seconds when they have none), machine tiers at their seconds, against an all-human baseline at the same prices."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from support.projects import convabuse_project
from workspaces.agreement.sections import render_loop
from workspaces.config import load_config
from workspaces.review.cost import cost_section, human_seconds



def _config(tmp_path: Path):
    return load_config(convabuse_project(tmp_path, "cost", cost={
        "human_per_hour": 36.0, "human_seconds_per_response": 20.0, "machine_per_hour": 3.6}))


def test_cost_per_label_by_tier_against_the_all_human_baseline(tmp_path: Path) -> None:
    config = _config(tmp_path)
    run = config.run_path
    run.mkdir(parents=True)
    rows = []
    for n in range(10):  # 10 items, 2 responses each: one timed (10 s), one untimed (costed at 20 s)
        for who, seconds in (("timed", 10.0), ("replayed", float("nan"))):
            for question in ("is_abusive", "severity"):  # rows per question: one response
                rows.append({"record_id": f"i{n}", "item_id": f"i{n}", "question": question, "annotator": who,
                             "value": "no", "status": "submitted", "updated_at": pd.Timestamp("2026-01-01", tz="UTC"),
                             "seconds": seconds})
    rows.append({**rows[0], "annotator": "drafty", "status": "draft", "seconds": 500.0})  # not a submitted answer
    pd.DataFrame(rows).to_parquet(run / "annotations.parquet")
    assert human_seconds(config) == (20, 10 * 10.0 + 10 * 20.0, 10)

    tiers = [{"labeler": "student", "decided": 90, "seconds": 100.0}, {"labeler": "llm", "decided": 0, "seconds": 36.0},
             {"labeler": "humans", "decided": 10, "seconds": 999.0}]
    cost = cost_section(config, tiers, curated_items=100, human_items=10)
    by_tier = {t["tier"]: t for t in cost["tiers"]}
    per_response = (300.0 / 20) * 36.0 / 3600  # 15 s a response at 36 an hour
    assert by_tier["humans"]["cost"] == pytest.approx(20 * per_response) and by_tier["humans"]["seconds"] == 300.0
    assert by_tier["student"]["cost"] == pytest.approx(0.1)
    assert by_tier["student"]["per_label"] == pytest.approx(0.1 / 90, abs=1e-4)
    assert by_tier["llm"]["per_label"] is None and by_tier["llm"]["cost"] == pytest.approx(0.036)
    assert cost["all_human"] == pytest.approx(100 * 2 * per_response)
    assert cost["total"] == pytest.approx(20 * per_response + 0.1 + 0.036, abs=0.01)
    assert cost["saving"] == pytest.approx(1 - cost["total"] / cost["all_human"], abs=1e-3) and cost["saving"] > 0.5
    tables = render_loop({"human_labels": {"items": 10, "responses": 20}, "items": 100, "curated_items": 100,
                          "multiplier": 10.0, "tiers": [], "held_back": {}, "cost": cost})
    [table] = [t for t in tables if t.title.startswith("Cost per curated label")]
    assert [row[0] for row in table.rows] == ["student", "llm", "humans", "all tiers", "all-human baseline"]
