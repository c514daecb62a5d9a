"""Preference pairs on HH-RLHF harmless-base test: the LLM judge and the reward-model student against the human
choice, and what a pair gate at a target agreement would accept, measured on held-out pairs.

    python benchmarks/bench_prefs.py [--judge-pairs 600] [--target 0.9] [--json benchmarks/results/bench_prefs.json]

Data: `data/hh_rlhf/harmless_test_pairs.jsonl` (all 2,303 pairs, MIT), shown as A / B in the seeded random order of
`configs/hh_rlhf_harmless_prefs.yaml` (`items.pair_sources`); the human choice is the raters' `chosen`.

- The judge (`curate prefer`: the local 135M model rates each reply 1-5 with its logprobs) on a seeded sample of
  `--judge-pairs` pairs (it rates about 0.8 replies/s on 2 cores: all 2,303 pairs, 4,606 ratings, take ~100 min;
  `--judge-pairs 2303` runs them; the results file holds 300). Its choice is P(A) against P(B) of its exclusive outcome distribution.
  Figures: agreement with the human choice over pairs it did not call a tie (95% Wilson interval), agreement with
  ties counted as misses, Cohen's kappa, AUROC of P(A beats B), ECE and Brier of it, the position-flip rate, and
  length bias (Spearman of the judge's margin with len(A) - len(B); share of its choices that pick the longer reply,
  beside the humans' share).
- The student (`pipelines.student.PairStudent`, Bradley-Terry on all-MiniLM-L6-v2 embeddings of prompt and replies)
  on all 2,303 pairs, 5-fold out of fold; and the judge + student ensemble (mean P(A)) on the judged pairs.
- Coverage at the target: each labeler's threshold on its confidence (max(P(A), P(B))) is fitted on a seeded half
  of its pairs (the smallest threshold whose accepted pairs reach the target with a 95% Clopper-Pearson lower bound,
  `judge.calibrate.fit_threshold`) and applied to the other half: the share accepted there, and the agreement
  measured on those held-out pairs against the promise. No threshold = the gate stays closed (refused).

MT-Bench (Zheng et al. 2023) reports ~66% GPT-4-human agreement with ties and 63% human-human: the anchor for what a
strong judge reaches; a 135M judge near 50% must be refused, and this benchmark says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.embed import embed_texts  # noqa: E402
from pipelines.prefer import prefer_items, read_preferences  # noqa: E402
from pipelines.student import PairStudent, out_of_fold_proba, pair_inputs  # noqa: E402
from workspaces.config import load_config  # noqa: E402
from workspaces.items import load_items, recorded_choices  # noqa: E402
from workspaces.judge.calibrate import expected_calibration_error, fit_threshold, wilson_interval  # noqa: E402

DATA = ROOT / "data" / "hh_rlhf" / "harmless_test_pairs.jsonl"
CONFIG = ROOT / "configs" / "hh_rlhf_harmless_prefs.yaml"


def _rate(hits: int, n: int) -> dict[str, Any]:
    low, high = wilson_interval(hits, n)
    return {"n": n, "agree": hits, "rate": hits / n if n else None, "wilson_low": low, "wilson_high": high}


def choice_figures(p_a: np.ndarray, human_a: np.ndarray) -> dict[str, Any]:
    """Agreement, kappa, AUROC, ECE and Brier of P(A beats B) against the human choice (A = True)."""
    from sklearn.metrics import brier_score_loss, cohen_kappa_score, roc_auc_score

    pick_a = p_a >= 0.5
    correct = pick_a == human_a
    confidence = np.maximum(p_a, 1 - p_a)
    return {**_rate(int(correct.sum()), len(correct)),
            "kappa": float(cohen_kappa_score(human_a, pick_a)),
            "auroc": float(roc_auc_score(human_a, p_a)) if len(set(human_a)) == 2 else None,
            "ece": expected_calibration_error(confidence, correct), "brier": float(brier_score_loss(human_a, p_a))}


def coverage_at(p_a: np.ndarray, human_a: np.ndarray, target: float, seed: int) -> dict[str, Any]:
    """Fit the confidence threshold on a seeded half, apply it to the other half: coverage and measured agreement."""
    confidence = np.maximum(p_a, 1 - p_a)
    correct = (p_a >= 0.5) == human_a
    order = np.random.default_rng(seed).permutation(len(p_a))
    fit, held = order[: len(order) // 2], order[len(order) // 2:]
    threshold = fit_threshold(confidence[fit], correct[fit], target, bound=True)
    out: dict[str, Any] = {"target": target, "fitted_on": int(len(fit)), "held_out": int(len(held)),
                           "threshold": threshold}
    if threshold is None:
        return {**out, "gate": "closed", "coverage": 0.0, "accepted": 0,
                "reason": f"no threshold on {len(fit)} pairs reaches {target} with a 95% lower bound: refused"}
    accepted = held[confidence[held] >= threshold]
    measured = _rate(int(correct[accepted].sum()), len(accepted))
    return {**out, "gate": "open", "coverage": len(accepted) / len(held), "accepted": int(len(accepted)),
            "measured": measured,
            "promise_held": measured["rate"] is not None and measured["rate"] >= target}


def length_bias(margin: np.ndarray, human_a: np.ndarray, judge_a: np.ndarray, len_a: np.ndarray,
                len_b: np.ndarray) -> dict[str, Any]:
    """How the choice follows the length difference: Spearman of the judge's margin with len(A) - len(B), and the
    share of decided pairs where the judge (and the humans) picked the longer reply."""
    from scipy.stats import spearmanr

    diff = len_a - len_b
    unequal = diff != 0
    longer_a = diff > 0
    rho = spearmanr(margin, diff)
    return {"spearman_margin_vs_length_difference": float(rho.statistic), "p_value": float(rho.pvalue),
            "judge_picks_longer": float((judge_a[unequal] == longer_a[unequal]).mean()),
            "humans_pick_longer": float((human_a[unequal] == longer_a[unequal]).mean())}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge-pairs", type=int, default=600)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "bench_prefs")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench_prefs.json")
    args = parser.parse_args(argv)

    base = load_config(CONFIG)
    config = base.model_copy(update={"data": base.data.model_copy(update={"path": DATA}), "run_dir": args.run_dir})
    items = load_items(config)
    human = recorded_choices(config, items).set_index("item_id")["value"]
    human_a_all = (items["item_id"].map(human) == "A").to_numpy()
    print(f"{len(items)} pairs; the humans' choice is shown as A in {human_a_all.mean():.1%}")
    result: dict[str, Any] = {"pairs": int(len(items)), "target": args.target, "seed": args.seed}

    # the student on every pair, out of fold
    started = time.perf_counter()
    texts = {name: items[column].astype(str).tolist()
             for name, column in (("prompt", "prompt"), ("a", "response_a"), ("b", "response_b"))}
    vectors = {name: embed_texts(values, spec=config.embeddings) for name, values in texts.items()}
    X = pair_inputs(vectors["prompt"], vectors["a"], vectors["b"])
    y = np.where(human_a_all, "A", "B")
    student_p = out_of_fold_proba(X, y, labels=["A", "B"], folds=5, seed=args.seed,
                                  classifier=PairStudent(seed=args.seed))[:, 0]
    result["student"] = {"model": "bradley-terry on all-MiniLM-L6-v2 (prompt, A, B)", "folds": 5,
                         "seconds": round(time.perf_counter() - started, 1),
                         **choice_figures(student_p, human_a_all),
                         "coverage": coverage_at(student_p, human_a_all, args.target, args.seed)}
    print(f"student (5-fold, {len(items)} pairs): agreement {result['student']['rate']:.3f} "
          f"[{result['student']['wilson_low']:.3f}, {result['student']['wilson_high']:.3f}], "
          f"AUROC {result['student']['auroc']:.3f}")

    # the judge on a seeded sample
    sample = items.sample(n=min(args.judge_pairs, len(items)), random_state=args.seed)["item_id"]
    args.run_dir.mkdir(parents=True, exist_ok=True)
    subset = args.run_dir / "pairs.jsonl"
    pd.read_json(DATA, lines=True, dtype={"id": str}).set_index("id").loc[sample.tolist()].reset_index().to_json(
        subset, orient="records", lines=True, force_ascii=False)
    judged_config = config.model_copy(update={"data": config.data.model_copy(update={"path": subset})})
    started = time.perf_counter()
    run = prefer_items(judged_config)
    seconds = time.perf_counter() - started
    frame = read_preferences(run.path)
    ok = frame[frame["status"] == "ok"].reset_index(drop=True)
    exclusive = [json.loads(p) for p in pd.read_parquet(args.run_dir / "labels.parquet").query(
        "question == 'preference' and status == 'ok'").set_index("item_id").loc[ok["item_id"], "probabilities"]]
    p_a = np.array([e["A"] / (e["A"] + e["B"]) if e["A"] + e["B"] > 0 else 0.5 for e in exclusive])
    human_a = (ok["item_id"].map(human) == "A").to_numpy()
    decided = ok["chosen"].notna().to_numpy()
    judge_a = (ok["chosen"] == "A").to_numpy()
    agree_decided = int((judge_a[decided] == human_a[decided]).sum())
    result["judge"] = {
        "model": run.model, "pairs": int(len(frame)), "ok": int(len(ok)), "failed": int(len(frame) - len(ok)),
        "failures": frame.loc[frame["status"] != "ok", "error"].value_counts().head(5).to_dict(),
        "seconds": round(seconds, 1), "ratings_per_second": round(2 * len(frame) / seconds, 2) if seconds > 1 else None,
        "agreement_without_ties": _rate(agree_decided, int(decided.sum())),
        "agreement_with_ties": _rate(agree_decided, int(len(ok))), "judge_ties": int((~decided).sum()),
        "p_a_beats_b": choice_figures(p_a, human_a),
        "position_flip_rate": 0.0,
        "position_note": "the judge rates each reply alone (its prompt never shows the other reply or a slot "
                         "name), so swapping A and B gives the same two ratings: no flip by construction, measured "
                         "0. A pairwise judge, which would need both orders, is not built.",
        "length_bias": length_bias(ok["margin"].to_numpy(float), human_a, judge_a,
                                   ok["response_a"].str.len().to_numpy(), ok["response_b"].str.len().to_numpy()),
        "coverage": coverage_at(p_a, human_a, args.target, args.seed),
    }
    index = {item: i for i, item in enumerate(items["item_id"])}
    student_on_judged = student_p[[index[i] for i in ok["item_id"]]]
    result["ensemble"] = {"pairs": int(len(ok)), **choice_figures((p_a + student_on_judged) / 2, human_a),
                          "coverage": coverage_at((p_a + student_on_judged) / 2, human_a, args.target, args.seed)}
    result["student_on_judged_pairs"] = choice_figures(student_on_judged, human_a)
    result["anchor"] = "MT-Bench (Zheng et al. 2023): GPT-4 vs human ~66% with ties; human vs human 63%"
    judge = result["judge"]
    print(f"judge {run.model} on {len(ok)} pairs ({judge['failed']} failed, {seconds:.0f}s): agreement "
          f"{judge['agreement_without_ties']['rate']:.3f} without its {judge['judge_ties']} ties "
          f"[{judge['agreement_without_ties']['wilson_low']:.3f}, {judge['agreement_without_ties']['wilson_high']:.3f}]"
          f", {judge['agreement_with_ties']['rate']:.3f} with ties; AUROC {judge['p_a_beats_b']['auroc']:.3f}, "
          f"kappa {judge['p_a_beats_b']['kappa']:.3f}")
    print(f"length bias: judge picks the longer reply {judge['length_bias']['judge_picks_longer']:.1%}, humans "
          f"{judge['length_bias']['humans_pick_longer']:.1%}; Spearman(margin, len A - len B) "
          f"{judge['length_bias']['spearman_margin_vs_length_difference']:+.3f}")
    for name in ("judge", "student", "ensemble"):
        cov = result[name]["coverage"]
        if cov["gate"] == "closed":
            print(f"coverage at {args.target} ({name}): gate closed - {cov['reason']}")
        else:
            m = cov["measured"]
            print(f"coverage at {args.target} ({name}): {cov['coverage']:.1%} of {cov['held_out']} held-out pairs "
                  f"accepted, measured agreement {m['rate']:.3f} [{m['wilson_low']:.3f}, {m['wilson_high']:.3f}] "
                  f"vs promise {args.target}" + ("" if cov["promise_held"] else "  (BROKEN)"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
