"""The main job's label loop (`curate demo`, configs/convabuse.yaml) in memory over several seeds: no server.

    python benchmarks/bench_demo_loop.py [--seeds 0 1 2 3 4] [--json benchmarks/results/bench_demo_loop.json]
                                         [--config configs/convabuse.yaml]

The same `workspaces.review.loop.run_loop` as the demo, with one difference: the humans are the recorded ConvAbuse
annotators written straight into the run dir (`annotations.parquet`, one response per annotator, as `curate sync`
writes them) for exactly the items each batch sends to review, instead of being replayed through Argilla. Every other
item's recorded labels are held back and scored once, at the end, against the labels the loop accepted without a
human (`score_held_back`). Per seed (selection, folds, audit draw): human labels spent (items and responses), items
decided by the student, the amplification multiplier (items with a curated label / items a human labelled), and the
held-back precision per label with its 95% Wilson interval beside the promise; then the spread over seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workspaces.argilla_io.annotators import record_pause  # noqa: E402
from workspaces.config import load_config, slug  # noqa: E402
from workspaces.curated import build_curated  # noqa: E402
from workspaces.items import load_items, recorded_labels  # noqa: E402
from workspaces.review.honeypots import pause_decisions  # noqa: E402
from workspaces.review.loop import run_loop, score_held_back  # noqa: E402
from workspaces.review.plan import ReviewBatch  # noqa: E402
from workspaces.rundir import ANNOTATIONS, EMBEDDINGS, write_table  # noqa: E402


class RecordedHumans:
    """The recorded annotators, answering the items of every batch (no server), as the demo replays them: an annotator
    the honeypot pause rule stopped answers no later batch, and their earlier answers stop counting."""

    def __init__(self, recorded: pd.DataFrame) -> None:
        self.recorded = recorded.assign(annotator=recorded["annotator"].map(slug), value=recorded["value"].astype(str))
        self.answers = self.recorded.iloc[:0]
        self.paused: list[str] = []

    @property
    def responses(self) -> int:
        return int(self.answers[["item_id", "annotator"]].drop_duplicates().shape[0])

    def __call__(self, config, batch: ReviewBatch) -> None:
        rows = self.recorded[self.recorded["item_id"].isin(set(batch.plan["item_id"]))
                             & ~self.recorded["annotator"].isin(set(self.paused))]
        self.answers = pd.concat([self.answers, rows]).drop_duplicates(["item_id", "question", "annotator"])
        rows = self.answers
        write_table(ANNOTATIONS.path(config.run_path), pd.DataFrame({
            "record_id": rows["item_id"], "item_id": rows["item_id"], "question": rows["question"],
            "annotator": rows["annotator"], "value": rows["value"], "status": "submitted",
            "updated_at": pd.Timestamp.now(tz="UTC"), "paused": rows["annotator"].isin(set(self.paused))}))
        for annotator, reason in pause_decisions(config):
            record_pause(config, annotator, reason)
            self.paused.append(annotator)


def one_seed(base, seed: int, run: Path, embeddings: Path) -> dict:
    started = time.perf_counter()
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    shutil.copy(embeddings, run / EMBEDDINGS.name)
    config = base.model_copy(update={
        "run_dir": run, "selection": base.selection.model_copy(update={"seed": base.selection.seed + seed}),
        "calibration": base.calibration.model_copy(update={"seed": seed}),
        "triage": base.triage.model_copy(update={"seed": seed})})
    humans = RecordedHumans(recorded_labels(config, load_items(config)))
    result = run_loop(config, humans, on_round=lambda r: print(
        f"  seed {seed} round {r.number}: {r.human_items} items reviewed, routes {r.routes}, gate "
        + ", ".join(f"{q} {d.decision} ({d.reason[:160]})" for q, d in r.gates.items()), flush=True))
    scores = score_held_back(config, result)
    curated = build_curated(config)
    rows = sum(len(split) for split in curated.splits.values())
    human_items = len(result.reviewed)
    out = {"seed": seed, "items": len(load_items(config)), "human_items": human_items,
           "human_responses": humans.responses, "paused": humans.paused, "rounds": len(result.rounds),
           "routes": result.triage.counts, "curated_rows": rows,
           "multiplier": rows / human_items if human_items else None,
           "held_back": {q: s.as_dict() for q, s in scores.items()},
           "audit": result.audit, "seconds": round(time.perf_counter() - started, 1)}
    for question, score in scores.items():
        print(f"seed {seed}: {human_items} items reviewed ({humans.responses} responses), {score.overall['auto']} "
              f"auto-accepted for {question}, multiplier {out['multiplier']:.2f}; held-back precision "
              + ", ".join(f"{label} {f['precision']:.3f} [{f['wilson_low']:.3f}, {f['wilson_high']:.3f}] on "
                          f"{f['n']} (promise {f['promise']})" for label, f in score.per_label.items())
              + (f"; BROKEN: {score.broken}" if score.broken else ""), flush=True)
    return out


def _spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "convabuse.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench_demo_loop.json")
    parser.add_argument("--run-dir", type=lambda p: Path(p).resolve(), default=ROOT / "runs" / "bench" / "demo_loop")
    args = parser.parse_args()
    base = load_config(args.config)
    embeddings = base.run_path / EMBEDDINGS.name
    if not embeddings.is_file():  # the demo's own embeddings when it ran; else embed once
        from pipelines.embed import embed_items

        embed_items(base)
    runs = [one_seed(base, seed, args.run_dir / f"seed{seed}", embeddings) for seed in args.seeds]
    summary = {"config": str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config),
               "seeds": args.seeds, "runs": runs,
               "multiplier": _spread([r["multiplier"] for r in runs if r["multiplier"] is not None]),
               "human_items": _spread([r["human_items"] for r in runs]),
               "accepted_without_a_human": _spread([sum(h["overall"]["auto"] for h in r["held_back"].values())
                                                    for r in runs])}
    for question in runs[0]["held_back"]:
        labels = sorted({label for r in runs for label in r["held_back"][question]["per_label"]})
        summary[f"held_back_precision.{question}"] = {
            label: _spread([r["held_back"][question]["per_label"][label]["precision"] for r in runs
                            if label in r["held_back"][question]["per_label"]]) for label in labels}
        summary[f"broken.{question}"] = sum(bool(r["held_back"][question]["broken"]) for r in runs)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
