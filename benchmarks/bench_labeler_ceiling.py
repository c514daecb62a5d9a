"""The most the student could give on BANKING77 under the loop's rules, the threshold set with the gold column itself.

    python benchmarks/bench_labeler_ceiling.py [--gold 300] [--first 200] [--batch 200] [--max-labels 3400]
                                               [--precision 0.975] [--audit 0.05] [--fine-tune-at N] [--json OUT]
                                               [--embeddings PATH [PATH ...]]

An upper bound for `bench_triage.py`, not a run of the loop: the same human labels (a random gold set, a k-center
first batch, then margin batches among the items no human labeled) and the project's student (`StudentFeatures` +
`StudentClassifier`, the defaults of `curate student`), but at each round the threshold is set by an oracle. Items no
human labeled are sorted by the student's confidence and the largest top share whose precision against gold is at
least `--precision` is taken (0.975: with 80% of the items auto-accepted, the least precision that keeps the final
accuracy at 0.98). No gate, no lower bound, no cross-fitting: the real loop can only do worse. The audit (`--audit` of
the accepted items, 5% being the least the issue allows) is labeled by humans, so the share with no human label is
`(1 - audit) x accepted / items`. A second column drops the audit and the precision target and gives the largest share
with no human label whose final accuracy is still >= 0.98.

With `--fine-tune-at N` the run stops at the first round with at least N human labels and compares, on those labels,
the frozen encoder with one fine-tuned on them (all-MiniLM-L6-v2 + a linear head, cross-entropy, `--epochs`, gold
items left out of the fine-tuning so that a calibration on them would stay honest), each under the same student.

`--embeddings` takes precomputed embeddings (parquet: `item_id, vector`, e.g. all-mpnet-base-v2's; several are
concatenated, as in `bench_triage.py`); the default is the project's all-MiniLM-L6-v2 embeddings.

Prints a table per round and writes `{"rounds": [...], "best": {...}, "fine_tune": {...}}` to `--json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.embed import default_embedding_model, embedded_texts  # noqa: E402
from pipelines.student import StudentClassifier, StudentFeatures  # noqa: E402
from workspaces.config import load_config  # noqa: E402
from workspaces.items import load_items  # noqa: E402
from workspaces.review.select import select_batch, uncertainty  # noqa: E402
from workspaces.rundir import EMBEDDINGS, read_table, write_table  # noqa: E402


def ceiling(confidence: np.ndarray, correct: np.ndarray, *, precision: float, audit: float, labeled: int,
            items: int) -> dict[str, Any]:
    """The oracle's figures for one round: `confidence` and `correct` of the items no human labeled."""
    order = np.argsort(-confidence, kind="stable")
    hits = correct[order]
    running = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    reaching = np.flatnonzero(running >= precision)
    accepted = int(reaching.max() + 1) if len(reaching) else 0
    no_human = (1 - audit) * accepted
    errors = np.cumsum(~hits)
    within = np.flatnonzero(errors <= 0.02 * items)  # final accuracy >= 0.98, every other item human-labeled
    return {"human_labels_before": labeled, "pool_accuracy": round(float(hits.mean()), 4),
            "accepted_share_of_pool": round(accepted / len(hits), 4),
            "accepted_precision": round(float(running[accepted - 1]), 4) if accepted else None,
            "no_human_share": round(no_human / items, 4),
            "human_labels_total": int(round(items - no_human)),
            "no_human_share_final98_no_audit": round((within.max() + 1) / items, 4) if len(within) else 0.0}


def fine_tuned_embeddings(texts: list[str], labels: np.ndarray, train: np.ndarray, *, epochs: int,
                          seed: int = 0) -> np.ndarray:
    """all-MiniLM-L6-v2 fine-tuned on `texts[train]` with a linear head (cross-entropy on scaled cosine logits);
    returns every text's normalised embedding from the fine-tuned encoder."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(seed)
    encoder = SentenceTransformer(default_embedding_model(), device="cpu")
    encoder.max_seq_length = 64
    classes = sorted(set(labels[train]))
    index = {c: i for i, c in enumerate(classes)}
    head = torch.nn.Linear(encoder.get_embedding_dimension(), len(classes))
    optimiser = torch.optim.AdamW([{"params": encoder.parameters(), "lr": 4e-5},
                                   {"params": head.parameters(), "lr": 2e-3}])
    rows = np.flatnonzero(train)
    for epoch in range(epochs):
        encoder.train()
        total = 0.0
        order = np.random.default_rng(seed + epoch).permutation(rows)
        for start in range(0, len(order), 32):
            batch = order[start:start + 32]
            features = encoder.preprocess([texts[i] for i in batch])
            vectors = torch.nn.functional.normalize(encoder(features)["sentence_embedding"], dim=-1) * 20
            loss = torch.nn.functional.cross_entropy(head(vectors), torch.tensor([index[labels[i]] for i in batch]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        print(f"  fine-tune epoch {epoch + 1}/{epochs}: loss {total / len(rows):.3f}", flush=True)
    encoder.eval()
    return np.asarray(encoder.encode(texts, batch_size=128, normalize_embeddings=True, show_progress_bar=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold", type=int, default=300)
    parser.add_argument("--first", type=int, default=200)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--max-labels", type=int, default=3400)
    parser.add_argument("--precision", type=float, default=0.975)
    parser.add_argument("--audit", type=float, default=0.05)
    parser.add_argument("--fine-tune-at", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--embeddings", type=Path, nargs="+", default=None,
                        help="precomputed embeddings (parquet: item_id, vector); several are concatenated")
    args = parser.parse_args()
    started = time.perf_counter()

    config = load_config(ROOT / "configs" / "banking77_intents.yaml")
    joined = None
    if args.embeddings:
        from bench_triage import joined_embeddings

        joined = joined_embeddings(args.embeddings)
    run = ROOT / "runs" / "bench" / ("ceiling" if joined is None else f"ceiling-{joined['model'].iloc[0]}")
    run.mkdir(parents=True, exist_ok=True)
    config = config.model_copy(update={"run_dir": run})
    if joined is not None:
        write_table(EMBEDDINGS.path(run), joined)
    for source in (ROOT / "runs" / "banking77_intents", ROOT / "runs" / "bench" / "triage"):
        if not EMBEDDINGS.path(run).is_file() and EMBEDDINGS.path(source).is_file():
            shutil.copy(EMBEDDINGS.path(source), EMBEDDINGS.path(run))
    if not EMBEDDINGS.path(run).is_file():
        from pipelines.embed import embed_items

        embed_items(config)
    items = load_items(config)
    gold = items["gold_intent"].astype(str).to_numpy()
    texts = [str(t) for t in embedded_texts(config, items)]
    vectors = read_table(run, EMBEDDINGS)
    by_id = dict(zip(vectors["item_id"], vectors["vector"]))
    embeddings = np.stack([np.asarray(by_id[i], dtype=np.float32) for i in items["item_id"]])
    features = StudentFeatures().build(embeddings, texts)
    n = len(gold)

    labeled = np.zeros(n, dtype=bool)
    gold_rows = np.random.default_rng(args.seed).choice(n, args.gold, replace=False)
    labeled[gold_rows] = True
    first, _ = select_batch(embeddings, batch=args.first, strategy="kcenter", labeled=labeled, seed=args.seed)
    labeled[first] = True
    rounds: list[dict[str, Any]] = []
    fine_tune: Optional[dict[str, Any]] = None
    model: Optional[StudentClassifier] = None
    print(f"{'labels':>7} {'pool acc':>8} {'accepted':>8} {'prec':>6} {'no human':>8} {'humans':>7} "
          f"{'no audit, final>=.98':>20}")
    while labeled.sum() <= args.max_labels:
        model = StudentClassifier(seed=args.seed).fit(features[labeled], gold[labeled], warm_from=model)
        pool = np.flatnonzero(~labeled)
        proba = model.predict_proba(features[pool])
        predicted = np.asarray(model.classes_)[proba.argmax(axis=1)]
        row = ceiling(proba.max(axis=1), predicted == gold[pool], precision=args.precision, audit=args.audit,
                      labeled=int(labeled.sum()), items=n)
        rounds.append(row)
        print(f"{row['human_labels_before']:>7,} {row['pool_accuracy']:>8.4f} {row['accepted_share_of_pool']:>8.1%} "
              f"{row['accepted_precision'] or 0:>6.3f} {row['no_human_share']:>8.1%} {row['human_labels_total']:>7,} "
              f"{row['no_human_share_final98_no_audit']:>20.1%}", flush=True)
        if args.fine_tune_at and labeled.sum() >= args.fine_tune_at:
            train = labeled.copy()
            train[gold_rows] = False
            print(f"fine-tuning the encoder on {int(train.sum()):,} non-gold human labels, {args.epochs} epochs")
            tuned = fine_tuned_embeddings(texts, gold, train, epochs=args.epochs, seed=args.seed)
            tuned_features = StudentFeatures().build(tuned, texts)
            tuned_model = StudentClassifier(seed=args.seed).fit(tuned_features[labeled], gold[labeled])
            tuned_proba = tuned_model.predict_proba(tuned_features[pool])
            tuned_predicted = np.asarray(tuned_model.classes_)[tuned_proba.argmax(axis=1)]
            fine_tune = {"frozen": row, "fine_tuned": ceiling(
                tuned_proba.max(axis=1), tuned_predicted == gold[pool], precision=args.precision, audit=args.audit,
                labeled=int(labeled.sum()), items=n), "epochs": args.epochs, "trained_on": int(train.sum())}
            print(f"fine-tuned: pool accuracy {fine_tune['fine_tuned']['pool_accuracy']:.4f} (frozen "
                  f"{row['pool_accuracy']:.4f}), no human {fine_tune['fine_tuned']['no_human_share']:.1%} (frozen "
                  f"{row['no_human_share']:.1%})")
            break
        labeled[pool[np.argsort(-uncertainty(proba, "margin"), kind="stable")[:args.batch]]] = True

    best = max(rounds, key=lambda r: r["no_human_share"])
    print(f"\nbest: {best['no_human_share']:.1%} of {n:,} items with no human label ({best['human_labels_total']:,} "
          f"human labels), accepting at precision >= {args.precision} with a {args.audit:.0%} audit, after "
          f"{best['human_labels_before']:,} labels; with no audit and final accuracy >= 0.98: "
          f"{max(r['no_human_share_final98_no_audit'] for r in rounds):.1%} ({time.perf_counter() - started:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps({"settings": {k: (str(v) if isinstance(v, Path) else
                                                          [str(x) for x in v] if isinstance(v, list) else v)
                                                      for k, v in vars(args).items()},
                                         "encoder": str(vectors["model"].iloc[0]),
                                         "items": n, "rounds": rounds, "best": best, "fine_tune": fine_tune},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
