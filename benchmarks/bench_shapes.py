"""The multi_label and span shapes on real data: human-human agreement, the student, and what an item-level gate at
a target precision would accept, measured on held-out items.

    python benchmarks/bench_shapes.py [--shapes multi_label span] [--target 0.95] [--json OUT]

Multi-label (GoEmotions, data/goemotions):

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

Spans (WNUT-17, data/wnut17, one adjudicated annotation per sentence):
- Student: `run_student` (the CRF, `pipelines.student.SpanStudent`, 5-fold out-of-fold), `calibrate`: entity-level
  precision/recall/F1 (seqeval, strict IOB2), overlap F1, exact span-set accuracy, token-level IOB2 alpha with the
  CRF as a coder; the gate at the target item-level precision (every token sure), cross-fitted as above.
- Human-human: WNUT-17 releases no per-annotator labels. When the workspace's `../shared/data` holds the CoNLL-2003
  crowd answers of Rodrigues & Pereira (2018) (`ner_mturk_answers_15pct.txt`: 898 sentences, 47 AMT workers), the
  benchmark reads them from there (their licence is unclear, so they are never vendored): pairwise span F1
  between workers (exact and by overlap) and the token-level IOB2 alpha (`workspaces.agreement.bio_alpha`), with a
  bootstrap CI over tokens. Otherwise that part says it was skipped.
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

from workspaces.agreement import krippendorff_alpha, masi_alpha  # noqa: E402
from workspaces.config import AlphaLevel, load_config  # noqa: E402
from workspaces.items import load_items, recorded_labels  # noqa: E402

CONFIG = ROOT / "configs" / "goemotions_tags.yaml"


def _student_and_gate(config, question: str, target: float, what: str) -> tuple[dict, dict, dict, float]:
    """Train the project's student, calibrate and gate it: (calibration block, student identity, gate figures,
    seconds of the student). Prints the gate line (`what`: items or sentences)."""
    from pipelines.student import run_student
    from workspaces.judge import calibrate, human_reference, run_gate

    reference = human_reference(config, question)
    t0 = time.time()
    student = run_student(config, reference.labels, question)
    seconds = time.time() - t0
    q = calibrate(config, "student")["questions"][question]
    [decision] = run_gate(config, "student")
    chosen = next(t for t in q["thresholds"] if abs(t["target_precision"] - target) < 1e-9)
    gate = {"target_item_precision": target, "threshold": chosen["threshold"], "auto_share": chosen["coverage"],
            "held_out_precision": chosen["precision"], "held_out_precision_lower": chosen["precision_lower"],
            "decision": decision.decision, "reason": decision.reason}
    precision = gate["held_out_precision"]
    print(f"gate at item precision {target}: {gate['auto_share']:.1%} of {what} accepted (cross-fitted), held-out "
          f"precision {'n/a' if precision is None else round(precision, 3)}; gate {decision.decision}: "
          f"{decision.reason}")
    return q, student.identity, gate, seconds


def multi_label(args: argparse.Namespace) -> dict:
    """The GoEmotions figures (see the module docstring)."""
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

    run = Path(tempfile.mkdtemp(prefix="bench-shapes-")) / "run"
    config = config.model_copy(update={"run_dir": run})
    t0 = time.time()
    embed_items(config)
    embed_s = time.time() - t0
    q, identity, gate, student_s = _student_and_gate(config, "emotions", args.target, "items")
    result = {
        "data": "GoEmotions sample (data/goemotions, Apache-2.0)", "items": len(items), "labels": len(labels),
        "human_human": {"masi_alpha": overall.alpha, "ci95": overall.ci95, "units": overall.units,
                        "per_label_alpha": per_label},
        "student": {"encoder": config.embeddings.model or "all-MiniLM-L6-v2", "classifier": identity,
                    "embed_seconds": round(embed_s, 1), "student_seconds": round(student_s, 1),
                    "reference_items": q["n"], "exact_set_accuracy": q["accuracy"], "micro_f1": q["micro_f1"],
                    "macro_f1": q["macro_f1"], "hamming_loss": q["hamming_loss"], "mean_label_kappa": q["kappa"],
                    "masi_alpha_with_student": q["alpha"], "ece": q["ece"], "auroc": q["auroc"],
                    "per_label": q["per_class"]},
        "gate": gate,
        "seconds": round(time.time() - started, 1),
    }
    s = result["student"]
    print(f"student (out-of-fold, {s['reference_items']} items): exact-set {s['exact_set_accuracy']:.3f}, micro-F1 "
          f"{s['micro_f1']:.3f}, macro-F1 {s['macro_f1']:.3f}, Hamming {s['hamming_loss']:.4f}, mean label kappa "
          f"{s['mean_label_kappa']:.3f}")
    return result


def _crowd_sentences(path: Path) -> list[tuple[list[str], dict[str, list[str]]]]:
    """(tokens, {worker: IOB2 tags}) per sentence of the crowd answers file ('?' = that worker did not label it)."""
    out, tokens, columns = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if tokens:
                workers = {f"worker{j}": [c[j] for c in columns] for j in range(len(columns[0]))
                           if all(c[j] != "?" for c in columns)}
                out.append((tokens, workers))
            tokens, columns = [], []
            continue
        parts = line.split()
        tokens.append(parts[0])
        columns.append(parts[1:])
    return out


def span(args: argparse.Namespace) -> dict:
    """The WNUT-17 student and, when the crowd answers are on hand, the human-human figures."""
    import tempfile

    from workspaces.agreement import bio_alpha
    from workspaces.config import QuestionConfig
    from workspaces.shapes import overlapping_spans, span_f1, spans_from_tags

    started = time.time()
    result: dict = {"data": "WNUT-17 (data/wnut17, CC-BY-4.0)"}
    crowd = ROOT.parent / "shared" / "data" / "ner_mturk_answers_15pct.txt"
    if crowd.is_file():
        sentences = _crowd_sentences(crowd)
        question = QuestionConfig(name="ner", kind="span", field="text",
                                  labels={"PER": "", "LOC": "", "ORG": "", "MISC": ""})
        rows, texts, exact, overlap = [], {}, [], []
        for n, (tokens, workers) in enumerate(sentences):
            text = " ".join(tokens)
            texts[f"s{n}"] = text
            spans = {w: spans_from_tags(text, tags) for w, tags in workers.items()}
            for w, value in spans.items():
                rows.append({"unit": f"s{n}", "annotator": w,
                             "value": json.dumps([{"start": a, "end": b, "label": c} for a, b, c in value])})
            names = sorted(spans)
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    exact.append(span_f1(spans[a], spans[b]))
                    x, y = spans[a], spans[b]
                    hits = overlapping_spans(x, y) + overlapping_spans(y, x)
                    overlap.append(1.0 if not x and not y else hits / (len(x) + len(y)))
        alpha = bio_alpha(pd.DataFrame(rows), question, texts, bootstrap=200, seed=0)
        result["human_human"] = {
            "data": "CoNLL-2003 crowd answers (Rodrigues & Pereira 2018), read from ../shared/data: licence unclear, "
                    "never vendored", "sentences": len(sentences), "pairs": len(exact),
            "pairwise_span_f1_exact": float(np.mean(exact)), "pairwise_span_f1_overlap": float(np.mean(overlap)),
            "token_iob2_alpha": alpha.alpha, "ci95": alpha.ci95, "tokens": alpha.units}
        h = result["human_human"]
        print(f"crowd NER (898 sentences, AMT workers): pairwise span F1 exact {h['pairwise_span_f1_exact']:.3f}, "
              f"overlap {h['pairwise_span_f1_overlap']:.3f}; token IOB2 alpha {h['token_iob2_alpha']:.3f} "
              f"(95% CI {h['ci95'][0]:.3f}..{h['ci95'][1]:.3f})")
    else:
        result["human_human"] = {"skipped": f"{crowd} is not here (it is never vendored: licence unclear)"}
        print(f"crowd NER: skipped ({crowd} is not here)")
    config = load_config(ROOT / "configs" / "wnut17_entities.yaml")
    config = config.model_copy(update={"run_dir": Path(tempfile.mkdtemp(prefix="bench-spans-")) / "run"})
    q, identity, result["gate"], student_s = _student_and_gate(config, "entities", args.target, "sentences")
    result["student"] = {"classifier": identity, "seconds": round(student_s, 1), "reference_items": q["n"],
                         "exact_set_accuracy": q["accuracy"], "span_precision": q["span_precision"],
                         "span_recall": q["span_recall"], "span_f1": q["span_f1"], "overlap_f1": q["overlap_f1"],
                         "token_alpha_with_student": q["alpha"], "ece": q["ece"], "auroc": q["auroc"],
                         "per_label": q["per_class"]}
    result["seconds"] = round(time.time() - started, 1)
    s = result["student"]
    print(f"CRF student (out-of-fold, {s['reference_items']} sentences): span P {s['span_precision']:.3f} R "
          f"{s['span_recall']:.3f} F1 {s['span_f1']:.3f}, overlap F1 {s['overlap_f1']:.3f}, exact set "
          f"{s['exact_set_accuracy']:.3f}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["multi_label", "span"], choices=["multi_label", "span"])
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench_shapes.json")
    args = parser.parse_args()
    previous = json.loads(args.json.read_text()) if args.json.is_file() else {}
    result = {k: v for k, v in previous.items() if k in ("multi_label", "span")}
    for shape in args.shapes:
        result[shape] = {"multi_label": multi_label, "span": span}[shape](args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
