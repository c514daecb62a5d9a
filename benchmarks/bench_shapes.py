"""The multi_label shape on real data (GoEmotions, data/goemotions): human-human agreement, a one-vs-rest student,
and what an item-level gate at a target precision would accept, measured on held-out items.

    python benchmarks/bench_shapes.py [--target 0.95] [--json OUT]

- Agreement: MASI alpha (`workspaces.agreement.masi_alpha`, Passonneau 2006) over the recorded raters with a 95%
  bootstrap CI, and the nominal alpha of each label's yes/no. Only comments with 2+ ratings in the sample pair up.
- Student: the project's own stages in a throwaway run dir: `embed_items` (the config's encoder), `run_student` (one
  logistic regression per label, `pipelines.student.MultiLabelStudent`, on the student's features, 5-fold
  out-of-fold on the reference items), `calibrate` against the human label (`votes.human_label`: the per-label
  majority). Figures: exact-set accuracy, micro/macro F1, Hamming loss, mean per-label kappa, per-label figures.
- Decision: `MultiLabelShape.decide`, labels with p >= 0.5, topped up with the likeliest to the question's `min`.
- Gate: an item is accepted only when **every** label's decision is sure (its confidence is the least sure label's),
  so the promise is on the item. `calibrate`'s cross-fitted threshold (fitted on 4 folds with a Clopper-Pearson
  bound, applied to the fifth) gives the share accepted and the held-out precision; `run_gate` decides.

Spans (the `span` shape) are not built yet: see the README.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workspaces.agreement import krippendorff_alpha, masi_alpha  # noqa: E402
from workspaces.config import AlphaLevel, load_config  # noqa: E402
from workspaces.items import load_items, recorded_labels  # noqa: E402

CONFIG = ROOT / "configs" / "goemotions_tags.yaml"


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

    # the labeler half, through the project's own stages (a throwaway run dir): embed, student, calibrate, gate
    import tempfile

    from pipelines import embed_items
    from pipelines.student import run_student
    from workspaces.judge import calibrate, human_reference, run_gate

    run = Path(tempfile.mkdtemp(prefix="bench-shapes-")) / "run"
    config = config.model_copy(update={"run_dir": run})
    t0 = time.time()
    embed_items(config)
    embed_s = time.time() - t0
    reference = human_reference(config, "emotions")
    t0 = time.time()
    student = run_student(config, reference.labels, "emotions")
    student_s = time.time() - t0
    q = calibrate(config, "student")["questions"]["emotions"]
    [decision] = run_gate(config, "student")
    chosen = next(t for t in q["thresholds"] if abs(t["target_precision"] - args.target) < 1e-9)
    result = {
        "data": "GoEmotions sample (data/goemotions, Apache-2.0)", "items": len(items), "labels": len(labels),
        "human_human": {"masi_alpha": overall.alpha, "ci95": overall.ci95, "units": overall.units,
                        "per_label_alpha": per_label},
        "student": {"encoder": config.embeddings.model or "all-MiniLM-L6-v2", "classifier": student.identity,
                    "embed_seconds": round(embed_s, 1), "student_seconds": round(student_s, 1),
                    "reference_items": q["n"], "exact_set_accuracy": q["accuracy"], "micro_f1": q["micro_f1"],
                    "macro_f1": q["macro_f1"], "hamming_loss": q["hamming_loss"], "mean_label_kappa": q["kappa"],
                    "masi_alpha_with_student": q["alpha"], "ece": q["ece"], "auroc": q["auroc"],
                    "per_label": q["per_class"]},
        "gate": {"target_item_precision": args.target, "threshold": chosen["threshold"],
                 "auto_share": chosen["coverage"], "held_out_precision": chosen["precision"],
                 "held_out_precision_lower": chosen["precision_lower"], "decision": decision.decision,
                 "reason": decision.reason},
        "seconds": round(time.time() - started, 1),
    }
    s, g = result["student"], result["gate"]
    print(f"student (out-of-fold, {s['reference_items']} items): exact-set {s['exact_set_accuracy']:.3f}, micro-F1 "
          f"{s['micro_f1']:.3f}, macro-F1 {s['macro_f1']:.3f}, Hamming {s['hamming_loss']:.4f}, mean label kappa "
          f"{s['mean_label_kappa']:.3f}")
    precision = g["held_out_precision"]
    print(f"gate at item precision {args.target}: {g['auto_share']:.1%} of items accepted (cross-fitted), held-out "
          f"precision {'n/a' if precision is None else round(precision, 3)}; gate {decision.decision}: "
          f"{decision.reason}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
