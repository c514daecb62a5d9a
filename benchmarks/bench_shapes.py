"""The multi_label shape on real data (GoEmotions, data/goemotions): human-human agreement, a one-vs-rest student,
and what an item-level gate at a target precision would accept, measured on held-out items.

    python benchmarks/bench_shapes.py [--target 0.95] [--json OUT]

- Agreement: MASI alpha (`workspaces.agreement.masi_alpha`, Passonneau 2006) over the recorded raters with a 95%
  bootstrap CI, and the nominal alpha of each label's yes/no. Only comments with 2+ ratings in the sample pair up.
- Student: the project's embeddings (`pipelines.embed.embed_texts`, the config's encoder) and one logistic regression
  per label (scikit-learn `OneVsRestClassifier`), 5-fold out-of-fold probabilities, against the human label
  (`votes.human_label`: the per-label majority). Figures: exact-set accuracy, micro/macro F1, Hamming loss.
- Decision: `MultiLabelShape.decide`, labels with p >= 0.5, topped up with the likeliest to the question's `min`.
- Gate: an item is accepted only when **every** label's decision is sure (its p or 1 - p at least t), so the promise
  is on the item. t is chosen on one half of the items (the lowest t whose exact-set precision has a 95% Wilson
  lower bound >= target) and measured on the other half, then the halves swap.

Spans (the `span` shape) are not built yet: see the README.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.embed import embed_texts, load_embedder  # noqa: E402
from workspaces.agreement import krippendorff_alpha, masi_alpha  # noqa: E402
from workspaces.config import AlphaLevel, load_config  # noqa: E402
from workspaces.items import load_items, recorded_labels  # noqa: E402
from workspaces.shapes import shape_of  # noqa: E402
from workspaces.votes import human_label  # noqa: E402

CONFIG = ROOT / "configs" / "goemotions_tags.yaml"


def wilson_lower(successes: int, n: int, z: float = 1.96) -> float:
    if n == 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    margin = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float((centre - margin) / (1 + z * z / n))


def fit_threshold(sure: np.ndarray, exact: np.ndarray, target: float) -> float:
    """The lowest t whose accepted items (sure >= t) have a Wilson lower bound of exact-set precision >= target."""
    for t in np.unique(np.round(sure, 4)):
        accepted = sure >= t
        if accepted.sum() >= 20 and wilson_lower(int(exact[accepted].sum()), int(accepted.sum())) >= target:
            return float(t)
    return float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench_shapes.json")
    args = parser.parse_args()
    config = load_config(CONFIG)
    question = config.question("emotions")
    labels = list(question.labels or {})
    items = load_items(config)
    recorded = recorded_labels(config, items)
    table = pd.DataFrame({"unit": recorded["item_id"], "annotator": recorded["annotator"],
                          "value": [json.dumps(sorted(v)) for v in recorded["value"]]})
    started = time.time()
    overall = masi_alpha(table, bootstrap=1000, seed=0)
    per_label = {}
    for label in labels:
        held = table.assign(value=["yes" if label in json.loads(v) else "no" for v in table["value"]])
        result = krippendorff_alpha(held, AlphaLevel.nominal, value_domain=["no", "yes"], bootstrap=200)
        per_label[label] = {"alpha": result.alpha, "ci95": result.ci95}
    print(f"human-human MASI alpha {overall.alpha:.3f} (95% CI {overall.ci95[0]:.3f}..{overall.ci95[1]:.3f}) "
          f"on {overall.units} comments with 2+ ratings")

    truth = {item_id: human_label(question, [json.dumps(list(v)) for v in group["value"]]).label
             for item_id, group in recorded.groupby("item_id")}
    keep = items[items["item_id"].isin(list(truth))].reset_index(drop=True)
    y = np.array([[label in truth[i] for label in labels] for i in keep["item_id"]], dtype=int)
    embedder = load_embedder(config.embeddings)
    t0 = time.time()
    X = np.asarray(embed_texts(keep["text"].astype(str).tolist(), spec=config.embeddings, embedder=embedder))
    embed_s = time.time() - t0

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, hamming_loss
    from sklearn.model_selection import KFold
    from sklearn.multiclass import OneVsRestClassifier

    proba = np.zeros(y.shape, dtype=float)
    for train, test in KFold(5, shuffle=True, random_state=0).split(X):
        model = OneVsRestClassifier(LogisticRegression(max_iter=2000, C=4.0))
        present = y[train].sum(axis=0) > 0
        model.fit(X[train], y[train][:, present])
        proba[np.ix_(test, np.flatnonzero(present))] = model.predict_proba(X[test])
    shape = shape_of(question)  # the item-level decision: p >= 0.5 per label, topped up to `min: 1` picks
    decisions = [shape.decide(dict(zip(labels, row))) for row in proba]
    predicted = np.array([[label in picked for label in labels] for picked, _ in decisions], dtype=int)
    exact = (predicted == y).all(axis=1)
    sure = np.array([confidence for _, confidence in decisions])  # the least sure label decision of each item
    rng = np.random.default_rng(0)
    half = rng.permutation(len(y)) < len(y) // 2
    folds = []
    for fit_on in (half, ~half):
        t = fit_threshold(sure[fit_on], exact[fit_on], args.target)
        held = ~fit_on
        accepted = held & (sure >= t)
        folds.append({"threshold": t, "held_out": int(held.sum()), "accepted": int(accepted.sum()),
                      "precision": float(exact[accepted].mean()) if accepted.any() else None})
    accepted_total = sum(f["accepted"] for f in folds)
    correct = sum(round(f["precision"] * f["accepted"]) for f in folds if f["precision"] is not None)
    result = {
        "data": "GoEmotions sample (data/goemotions, Apache-2.0)", "items": len(y), "labels": len(labels),
        "human_human": {"masi_alpha": overall.alpha, "ci95": overall.ci95, "units": overall.units,
                        "per_label_alpha": per_label},
        "student": {"encoder": config.embeddings.model or "all-MiniLM-L6-v2", "embed_seconds": round(embed_s, 1),
                    "exact_set_accuracy": float(exact.mean()),
                    "micro_f1": float(f1_score(y, predicted, average="micro", zero_division=0)),
                    "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0)),
                    "hamming_loss": float(hamming_loss(y, predicted))},
        "gate": {"target_item_precision": args.target, "folds": folds,
                 "auto_share": accepted_total / len(y),
                 "held_out_precision": correct / accepted_total if accepted_total else None},
        "seconds": round(time.time() - started, 1),
    }
    s, g = result["student"], result["gate"]
    print(f"student (out-of-fold, {len(y)} items): exact-set {s['exact_set_accuracy']:.3f}, micro-F1 "
          f"{s['micro_f1']:.3f}, macro-F1 {s['macro_f1']:.3f}, Hamming {s['hamming_loss']:.4f}")
    print(f"gate at item precision {args.target}: {g['auto_share']:.1%} of items accepted, held-out precision "
          f"{g['held_out_precision'] if g['held_out_precision'] is None else round(g['held_out_precision'], 3)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
