"""The label loop (`workspaces.review.loop`) on real ConvAbuse items, real embeddings and the real student, the recorded
annotators answering in the run dir: held-back labels never reach a labeler, a calibration or a gate, and the labels
accepted without a human are scored on them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workspaces.config import load_config, slug
from workspaces.errors import ConfigError
from workspaces.items import load_items, recorded_labels
from workspaces.review.loop import run_loop, score_held_back
from workspaces.rundir import ANNOTATIONS, write_table

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "configs" / "convabuse.yaml"
POOL = ROOT / "data" / "convabuse" / "pool.jsonl"
N = 900


def _humans(config, batch) -> None:
    """The recorded annotators of every item planned so far, as `curate sync` writes their responses."""
    from workspaces.review.plan import read_plan

    asked = set(read_plan(config)["item_id"]) | set(batch.plan["item_id"])
    rows = recorded_labels(config, load_items(config))
    rows = rows[rows["item_id"].isin(asked)]
    write_table(ANNOTATIONS.path(config.run_path), pd.DataFrame({
        "record_id": rows["item_id"], "item_id": rows["item_id"], "question": rows["question"],
        "annotator": rows["annotator"].map(slug), "value": rows["value"].astype(str), "status": "submitted",
        "updated_at": pd.Timestamp("2026-01-01", tz="UTC"), "paused": False}))


def _config(tmp_path: Path, name: str, data: Path):
    raw = yaml.safe_load(MAIN.read_text())
    raw["data"].update(path=str(data), limit=N)
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["selection"].update(gold=250, batch=120, rounds=1)
    raw["gate"].update(min_reference=50, targets={"is_abusive": {"no": 0.9, "yes": 0.9}})  # 250 gold items
    raw["reference"] = {"recorded": False}
    raw["run_dir"] = str(tmp_path / name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def _flip_held_back(source: Path, out: Path, reviewed: set[str]) -> int:
    """Every recorded vote of every item the loop did not send to review, turned around (abusive <-> not)."""
    flipped = 0
    with source.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for n, line in enumerate(src):
            row = json.loads(line)
            if n < N and row["item_id"] not in reviewed:
                for vote in row["annotations"]:
                    vote["is_abusive"] = 1 - vote["is_abusive"]
                    vote["severity"] = -1 if vote["is_abusive"] else 1
                flipped += 1
            dst.write(json.dumps(row) + "\n")
    return flipped


def _figures(run: Path) -> dict:
    calibration = json.loads((run / "calibration.json").read_text())
    calibration.pop("created")
    gates = [{k: v for k, v in json.loads(line).items() if k not in ("id", "time")}
             for line in (run / "gate_history.jsonl").read_text().splitlines()]
    return {"calibration": calibration, "gates": gates,
            "plan": pd.read_parquet(run / "review_plan.parquet")[["item_id", "role", "suppressed"]].to_dict("list"),
            "routes": pd.read_parquet(run / "routes.parquet")[["item_id", "route", "label"]].to_dict("list")}


@pytest.fixture(scope="module")
def loops(tmp_path_factory):
    """The loop run twice on the same 900 items: on the data as released, then with every held-back label flipped."""
    from pipelines.embed import embed_items

    tmp = tmp_path_factory.mktemp("loop")
    first = _config(tmp, "released", POOL)
    embed_items(first)
    released = run_loop(first, _humans)
    flipped_data = tmp / "flipped.jsonl"
    flipped = _flip_held_back(POOL, flipped_data, released.reviewed)
    second = _config(tmp, "flipped", flipped_data)
    (second.run_path).mkdir(parents=True, exist_ok=True)
    (second.run_path / "embeddings.parquet").write_bytes((first.run_path / "embeddings.parquet").read_bytes())
    again = run_loop(second, _humans)
    return first, released, second, again, flipped


def test_a_held_back_label_changes_no_calibration_figure_gate_or_route(loops) -> None:
    first, released, second, again, flipped = loops
    assert flipped > N // 2  # most items were never sent to review: their labels were held back
    assert again.reviewed == released.reviewed
    assert _figures(first.run_path) == _figures(second.run_path)


def test_only_items_sent_to_review_have_human_answers(loops) -> None:
    first, released, *_ = loops
    answered = set(pd.read_parquet(first.run_path / "annotations.parquet")["item_id"])
    assert answered == released.reviewed
    measured = set(pd.read_parquet(first.run_path / "calibration_items.parquet")["item_id"])
    gold = set((first.run_path / "gold_ids.txt").read_text().split())
    assert len(gold) == 250 and measured <= gold <= released.reviewed  # calibrated on the random gold set alone
    rounds = [entry["strategy"] for entry in map(json.loads, (first.run_path / "selection.jsonl").open())]
    assert rounds[0] == "random (gold set)" and rounds[1] == "margin"


def test_the_labels_no_human_gave_are_scored_on_the_held_back_labels(loops) -> None:
    first, released, second, again, _ = loops
    [decision] = [d for d in released.rounds[-1].gates.values()]
    score = score_held_back(first, released)["is_abusive"]
    routes = released.triage.routes
    auto = set(routes.loc[routes["route"] == "auto", "item_id"]) - released.reviewed
    assert score.overall["auto"] == len(auto)
    assert decision.decision == "pass" and len(auto) > 100  # at a promise of 0.9, 250 gold items open `no`
    assert score.overall["n"] + score.overall["no_majority"] == len(auto)
    truth = {}
    votes = recorded_labels(first, load_items(first))
    for item, group in votes[(votes["question"] == "is_abusive") & votes["item_id"].isin(auto)].groupby("item_id"):
        counts = group["value"].astype(str).value_counts()
        if len(group) >= 2 and (len(counts) == 1 or counts.iloc[0] > counts.iloc[1]):
            truth[item] = counts.index[0]
    labels = routes.set_index("item_id")["label"]
    for label, figures in score.per_label.items():
        mine = [i for i in truth if labels[i] == label]
        assert figures["n"] == len(mine) and figures["correct"] == sum(truth[i] == label for i in mine)
    flipped = score_held_back(second, again)["is_abusive"]  # the same accepted labels against turned-around truth
    assert flipped.overall["precision"] == pytest.approx(1 - score.overall["precision"])
    assert score.broken == [] and flipped.broken == ["no"]  # measured below its promise: the demo exits 9


def test_the_loop_refuses_a_project_that_counts_recorded_labels(tmp_path: Path) -> None:
    config = _config(tmp_path, "recorded", POOL)
    config = config.model_copy(update={"reference": config.reference.model_copy(update={"recorded": True})})
    with pytest.raises(ConfigError, match=r"reference\.recorded"):
        run_loop(config, _humans)
