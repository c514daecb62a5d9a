"""The calibrated loop on all 13,083 BANKING77 items, the gold column standing in for the human reviewers.

    python benchmarks/bench_triage.py [--json OUT] [--gold 500] [--first 300] [--batch 400] [--rounds 12]
                                      [--embeddings PATH [PATH ...]] [--final-accuracy 0.98] [--seed N]

The humans first label a random gold set (`--gold` items, listed in `hub.gold_ids_path`: the labeler is measured on
it alone, `calibration.reference_sources: [gold]`, because items chosen by active learning are the hardest ones and
a labeler measured on them looks worse than it is on the items it would accept) and a diverse first batch (k-center).
The gold set counts as human labels and trains the student too (scored out-of-fold). Each round runs the project's own stages on a run dir: the humans' answers so far are written as synced responses
(`annotations.parquet`); `curate student` trains the student on them (reference items scored out-of-fold);
`calibrate` fits the threshold for the gate's target precision (0.98) by cross-fitting; `gate` decides; `triage`
routes auto / audit / review. The humans then label every audit item and the next batch of review items (margin
selection among them). The loop stops at the first round whose gate opens (a retrained student is a new labeler
identity that must earn the gate again), then the humans label whatever is still routed to review, and `build_curated`
gives the final dataset: human labels, and the student's labels on `auto` items under the open gate. After each
round's audit items are labeled the audit is checked (`check_audit`): a broken promise closes the gate and no
label is auto-accepted.

`--embeddings` takes precomputed item embeddings (parquet files of `item_id, vector`, e.g. all-mpnet-base-v2's);
several are concatenated, each scaled by 1/sqrt(k) so the joined vector keeps unit norm (MiniLM + mpnet). Without it
the project's embeddings (`--embed-model`, default all-MiniLM-L6-v2) are used. `--final-accuracy F` chooses each
round's promise so that the final accuracy over all items holds: `judge.promise_for_final_accuracy`,
1 - (1 - F) items / the most items that can still be auto-accepted (those no human labeled, less the audit share),
humans taken as right.

Prints the labels spent, the fitted threshold, coverage, promised vs observed precision of the auto-accepted labels
and the final accuracy against the gold column (all items, human + auto) beside it; writes the JSON of the issue:
`{"items", "human_labels", "auto_accepted", "final_accuracy", "threshold", "promised_precision",
"observed_auto_precision", "curated"}`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.student import run_student  # noqa: E402
from workspaces.config import EmbeddingsConfig, load_config  # noqa: E402
from workspaces.curated import build_curated  # noqa: E402
from workspaces.items import load_items  # noqa: E402
from workspaces.judge import calibrate, check_audit, human_reference, run_gate  # noqa: E402
from workspaces.judge.calibrate import promise_for_final_accuracy  # noqa: E402
from workspaces.review.select import select_batch  # noqa: E402
from workspaces.review.triage import triage  # noqa: E402
from workspaces.rundir import CALIBRATION_ITEMS, EMBEDDINGS, STUDENT_LABELS, read_table, write_table  # noqa: E402


def _annotate(run: Path, answers: dict[str, str]) -> None:
    """The humans' answers as `curate sync` writes them (one reviewer, submitted)."""
    now = pd.Timestamp.now(tz="UTC")
    pd.DataFrame({"record_id": list(answers), "item_id": list(answers), "question": "intent",
                  "annotator": "reviewer", "value": list(answers.values()), "status": "submitted",
                  "updated_at": now, "paused": False}).to_parquet(run / "annotations.parquet", index=False)


def joined_embeddings(paths: list[Path]) -> pd.DataFrame:
    """Embeddings from parquet files (`item_id, vector`) as one table; several are concatenated per item, each block
    scaled by 1/sqrt(k) (unit vectors stay unit vectors). Items missing from any file are left out."""
    tables = [pd.read_parquet(path) for path in paths]
    common = set(tables[0]["item_id"]).intersection(*(set(t["item_id"]) for t in tables[1:]))
    ids = [i for i in tables[0]["item_id"] if i in common]
    blocks = [np.stack([np.asarray(v, dtype=np.float32) for v in t.set_index("item_id").loc[ids, "vector"]])
              for t in tables]
    joined = np.hstack(blocks) / np.sqrt(len(blocks))
    name = "+".join(str(t["model"].iloc[0]) if "model" in t.columns and len(t) else path.stem
                    for t, path in zip(tables, paths))
    return pd.DataFrame({"item_id": ids, "vector": list(joined), "model": name, "text_hash": ""})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--gold", type=int, default=500, help="random gold items (human labels, calibration only)")
    parser.add_argument("--first", type=int, default=300, help="diverse human labels before the first student")
    parser.add_argument("--batch", type=int, default=400, help="review items labeled per round")
    parser.add_argument("--rounds", type=int, default=12, help="the most rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-precision", type=float, default=None,
                        help="the gate's promised precision (default: the config's gate.target_precision)")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "bench" / "triage")
    parser.add_argument("--final-accuracy", type=float, default=None,
                        help="choose each round's promise so that this final accuracy holds (overrides "
                             "--target-precision)")
    parser.add_argument("--embeddings", type=Path, nargs="+", default=None,
                        help="precomputed embeddings (parquet: item_id, vector); several are concatenated")
    parser.add_argument("--per-class-min", type=int, default=None, help="calibration.per_class_min (Mondrian)")
    parser.add_argument("--embed-model", default=None,
                        help="embeddings.model of the student (e.g. all-mpnet-base-v2; default: the config's); its "
                             "embeddings come from runs/<config name>-<model>/embeddings.parquet when there")
    args = parser.parse_args()
    started = time.perf_counter()

    base = load_config(ROOT / "configs" / "banking77_intents.yaml")
    run = args.run_dir
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    gold_ids = run / "gold_ids.txt"
    config = base.model_copy(update={
        "run_dir": run, "reference": base.reference.model_copy(update={"min_votes": 1}),
        "hub": base.hub.model_copy(update={"gold_ids_path": gold_ids}),
        "calibration": base.calibration.model_copy(update={"reference_sources": ["gold"],
                                                           "per_class_min": args.per_class_min}),
        "gate": base.gate.model_copy(update={"target_precision": args.target_precision or base.gate.target_precision})})
    if args.embed_model:
        config = config.model_copy(update={"embeddings": (config.embeddings or EmbeddingsConfig()).model_copy(
            update={"model": args.embed_model})})
    cached = f"{base.name}-{args.embed_model}" if args.embed_model else base.name
    embeddings = ROOT / "runs" / cached / EMBEDDINGS.name
    if args.embeddings:
        write_table(EMBEDDINGS.path(run), joined_embeddings(args.embeddings))
    elif embeddings.is_file():
        shutil.copy(embeddings, run / EMBEDDINGS.name)
    else:
        from pipelines.embed import embed_items

        embed_items(config)
    items = load_items(config)
    gold = dict(zip(items["item_id"], items["gold_intent"].astype(str)))
    vectors = read_table(run, EMBEDDINGS)
    by_id = dict(zip(vectors["item_id"], vectors["vector"]))
    ids = items["item_id"].tolist()
    X = np.stack([np.asarray(by_id[i], dtype=np.float32) for i in ids])
    row = {item_id: n for n, item_id in enumerate(ids)}

    answers: dict[str, str] = {}
    gold_rows = np.random.default_rng(args.seed).choice(len(ids), args.gold, replace=False)
    gold_ids.write_text("".join(f"{ids[n]}\n" for n in gold_rows))
    answers.update({ids[n]: gold[ids[n]] for n in gold_rows})
    first, _ = select_batch(X, batch=args.first, strategy="kcenter", labeled=np.isin(np.arange(len(ids)), gold_rows),
                            seed=args.seed)
    answers.update({ids[n]: gold[ids[n]] for n in first})
    history = []
    result = None
    for round_no in range(1, args.rounds + 1):
        if args.final_accuracy is not None:
            promise = promise_for_final_accuracy(args.final_accuracy, len(ids), len(answers),
                                                 config.triage.audit_share)
            config = config.model_copy(update={"gate": config.gate.model_copy(update={"target_precision": promise})})
        _annotate(run, answers)
        reference = human_reference(config, "intent")
        run_student(config, reference.labels, "intent")
        calibration = calibrate(config, "student")
        measured = set(read_table(run, CALIBRATION_ITEMS)["item_id"])
        if not measured <= set(answers):  # the guard: thresholds learn only from labels the loop bought
            raise SystemExit(f"calibration measured {len(measured - set(answers))} item(s) no human labeled")
        [decision] = run_gate(config, "student")
        result = triage(config, "student")
        routes = result.routes.set_index("item_id")
        auto = [i for i in routes.index[routes["route"] == "auto"] if i not in answers]
        audit = [i for i in routes.index[routes["route"] == "audit"] if i not in answers]
        review = [i for i in routes.index[routes["route"] == "review"] if i not in answers]
        q = calibration["questions"]["intent"]
        chosen = next(t for t in q["thresholds"] if abs(t["target_precision"] - config.gate.target_precision) < 1e-9)
        entry = {"round": round_no, "human_labels": len(answers), "kappa": q["kappa"], "gate": decision.decision,
                 "promise": config.gate.target_precision, "threshold": decision.threshold,
                 "own_class_thresholds": len(chosen.get("per_class") or {}),
                 "held_out_precision": chosen["precision"], "held_out_lower": chosen["precision_lower"],
                 "held_out_coverage": chosen["coverage"], "auto": len(auto), "audit": len(audit),
                 "review": len(review)}
        history.append(entry)
        print(f"round {round_no}: {len(answers):,} human labels, kappa {q['kappa']:.3f}, promise "
              f"{config.gate.target_precision:.4f}, gate {decision.decision}, threshold {decision.threshold}, held-out "
              f"precision {chosen['precision']} (lower {chosen['precision_lower']:.4f}, coverage "
              f"{chosen['coverage']:.1%}), auto {len(auto):,}, audit {len(audit):,}, review {len(review):,} "
              f"({time.perf_counter() - started:.0f}s)", flush=True)
        answers.update({i: gold[i] for i in audit})  # the audit is always reviewed; a broken promise closes the gate
        _annotate(run, answers)
        audit_figures = (check_audit(config) or {}).get("questions", {}).get("intent", {})
        entry["audit"] = {k: audit_figures.get(k) for k in ("audited", "errors", "error", "error_low", "error_high",
                                                             "promised_error", "verdict")}
        print(f"  audit: {audit_figures.get('errors')} wrong of {audit_figures.get('audited')} audited "
              f"({audit_figures.get('verdict')})", flush=True)
        # Once the gate is open the loop ends: the humans label the review items, and a retrained student is a new
        # labeler identity that would have to earn the gate again (measured: at the promise's edge it can lose it).
        if decision.decision == "pass" or not review:
            break
        student = read_table(run, STUDENT_LABELS)
        labels = [str(v) for v in config.question("intent").allowed_values]
        probabilities = dict(zip(student["item_id"], student["probabilities"]))
        proba = np.zeros((len(ids), len(labels)))
        for i in review:
            decoded = json.loads(probabilities[i])
            proba[row[i]] = [decoded[label] for label in labels]
        labeled = np.array([i in answers for i in ids])
        chosen, _ = select_batch(X, batch=args.batch, strategy="margin", labeled=labeled, proba=proba,
                                 candidates=[row[i] for i in review])
        answers.update({ids[n]: gold[ids[n]] for n in chosen})

    # the humans label what is still routed to review; the curated dataset takes the rest from the open gate
    routes = result.routes.set_index("item_id")
    answers.update({i: gold[i] for i in routes.index[routes["route"] != "auto"] if i not in answers})
    _annotate(run, answers)
    final_audit = (check_audit(config) or {}).get("questions", {}).get("intent", {})
    curated = build_curated(config)
    rows = pd.concat(curated.splits.values(), ignore_index=True)
    rows["gold"] = rows["item_id"].map(gold)
    auto_rows = rows[rows["intent_source"] == "auto-accepted"]
    final_accuracy = float((rows["intent"] == rows["gold"]).mean())
    observed = float((auto_rows["intent"] == auto_rows["gold"]).mean()) if len(auto_rows) else None
    gate = curated.gates.get("intent", {})
    curated_path = run / "curated.parquet"
    final = rows[["item_id", "intent", "intent_source"]].rename(columns={"intent": "label", "intent_source": "source"})
    final.to_parquet(curated_path, index=False)
    summary = {"items": len(ids), "seed": args.seed, "encoder": str(vectors["model"].iloc[0]),
               "human_labels": len(answers), "auto_accepted": int(len(auto_rows)),
               "final_accuracy": final_accuracy, "threshold": gate.get("threshold"),
               "promised_precision": gate.get("target_precision"), "observed_auto_precision": observed,
               "curated": str(curated_path), "rounds": history,
               "no_human_label_share": len(auto_rows) / len(ids), "excluded": curated.excluded,
               "audit": {k: final_audit.get(k) for k in ("audited", "errors", "error_low", "error_high",
                                                         "error_upper_sequential", "evidence", "verdict")},
               "goal_met": bool(len(auto_rows) / len(ids) >= 0.8 and final_accuracy >= 0.98 and observed is not None
                                and observed >= (gate.get("target_precision") or 1.0)),
               "settings": {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, list) else v)
                            for k, v in vars(args).items()},
               "seconds": round(time.perf_counter() - started, 1)}
    print(f"\n{len(ids):,} items: {len(answers):,} human labels ({len(answers) / len(ids):.1%}), "
          f"{len(auto_rows):,} auto-accepted ({len(auto_rows) / len(ids):.1%} with no human label)")
    print(f"threshold {gate.get('threshold')}, promised precision {gate.get('target_precision')}, observed precision "
          f"of the auto-accepted labels {observed if observed is None else round(observed, 4)}; "
          f"held-out lower bound at calibration {gate.get('precision_lower')}")
    print(f"final accuracy over all {len(ids):,} items (human + auto) against gold: {final_accuracy:.4f}, beside the "
          f"observed auto precision {observed if observed is None else round(observed, 4)} (promise "
          f"{gate.get('target_precision')}); goal (>= 80% no human label, >= 0.98 final, auto >= promise): "
          f"{'met' if summary['goal_met'] else 'not met'}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
