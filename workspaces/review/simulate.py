"""`curate simulate`: the active-learning loop in memory, a data column standing in for the human.

For each strategy and seed: start from `seed_size` labeled items (diversity, or a random draw for `random`), train
the student (`pipelines.student.student_for` the first labeler question: one-vs-rest for tags) on the oracle's
answers, measure its accuracy on the evaluation split (never selected from; exact-set accuracy for tags, whose
oracle column holds lists), pick the next `batch` items with the strategy, ask the oracle, and repeat until the
accuracy reaches `stop_at` or `budget` labels are spent. Only oracle answers count as human labels.

Evaluation split: rows whose `split` column is `test` when the data has one, else a seeded 20%.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from pipelines.student import StudentClassifier, StudentFeatures, student_features, student_for

from ..config import ProjectConfig
from ..errors import ConfigError
from ..items import load_items
from ..judge import labeler_questions
from ..shapes import ShapeValueError, shape_of
from .select import STRATEGIES, kcenter_greedy, select_batch

__all__ = ["SimulationResult", "labels_to", "simulate"]

TARGETS = (0.85, 0.88, 0.90)
Progress = Callable[[str, int, int, float], None]  # strategy, seed, labels, accuracy


@dataclass
class SimulationResult:
    """One strategy's curves over seeds, and the labels it needed to reach each accuracy target (mean over seeds)."""

    strategy: str
    curves: list[dict[str, Any]] = field(default_factory=list)
    labels_to: dict[str, Optional[float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "curves": self.curves, "labels_to": self.labels_to}


def labels_to(points: Sequence[dict[str, float]], target: float) -> Optional[int]:
    """Labels spent when the accuracy first reached `target` (None when it never did)."""
    for point in points:
        if point["accuracy"] >= target:
            return int(point["labels"])
    return None


def _split(items: pd.DataFrame, eval_split: Optional[str], seed: int) -> np.ndarray:
    if "split" in items.columns and eval_split != "random":
        wanted = eval_split or "test"
        mask = (items["split"].astype(str) == wanted).to_numpy()
        if mask.any() and not mask.all():
            return mask
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(items), dtype=bool)
    mask[rng.choice(len(items), int(round(0.2 * len(items))), replace=False)] = True
    return mask


def _embeddings(config: ProjectConfig, items: pd.DataFrame) -> np.ndarray:
    from pipelines.embed import embed_items, read_embeddings

    path = config.run_path / "embeddings.parquet"
    frame = read_embeddings(path) if path.is_file() else None
    if frame is None or not set(items["item_id"]) <= set(frame["item_id"]):
        embed_items(config)
        frame = read_embeddings(path)
    vectors = dict(zip(frame["item_id"], frame["vector"]))
    return np.stack([np.asarray(vectors[i], dtype=np.float32) for i in items["item_id"]])


def simulate(config: ProjectConfig, oracle: str, *, strategies: Sequence[str] = ("default", "random"), seeds: int = 3,
             seed_size: int = 100, batch: int = 50, budget: int = 3000, targets: Sequence[float] = TARGETS,
             stop_at: Optional[float] = None, eval_split: Optional[str] = None,
             classifier: Optional[StudentClassifier] = None, features: Optional[StudentFeatures] = None,
             progress: Optional[Progress] = None, X: Optional[np.ndarray] = None) -> list[SimulationResult]:
    """Run the loop for each strategy over `seeds` seeds (see the module docstring).

    Args:
        config: the project (its data needs a text field and the `oracle` column).
        oracle: the data column that answers like a human.
        strategies: names from `select.STRATEGIES`.
        seeds: repetitions (seeds 0..seeds-1).
        seed_size: labeled items before the first selection.
        batch: items per round.
        budget: the most oracle labels a run may spend.
        targets: accuracies whose label cost is reported.
        stop_at: stop a run once it reaches this accuracy (default: the highest target).
        eval_split: the split column's value to evaluate on (default `test`), or `random` for a seeded 20%.
        classifier: the student (default `StudentClassifier()`).
        features: what the student sees (default `StudentFeatures()`: embeddings + character n-grams); selection's
            diversity always uses the embeddings.
        progress: called after every evaluation.
        X: the embeddings in item order (default: the run's embeddings.parquet, computed when missing).
    """
    items = load_items(config)
    if oracle not in items.columns:
        raise ConfigError(f"{config.data.path}: no oracle column {oracle!r}; columns: {list(items.columns)}")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ConfigError(f"unknown strategy {unknown}; choose from {list(STRATEGIES)}")
    question = config.question(labeler_questions(config)[0]) if labeler_questions(config) else None
    shape = shape_of(question) if question is not None else None
    if shape is None or shape.single_choice:
        y = items[oracle].astype(str).to_numpy()
        classifier = classifier or StudentClassifier()
    else:  # label sets: the oracle column holds lists (or JSON lists), checked by the shape
        y = np.empty(len(items), dtype=object)
        try:
            y[:] = [shape.parse(v) for v in items[oracle]]
        except ShapeValueError as error:
            raise ConfigError(f"{config.data.path}: oracle column {oracle!r}: {error}") from None
        classifier = classifier or student_for(question)
    X = _embeddings(config, items) if X is None else X
    F = student_features(config, items, X, features)
    stop_at = max(targets) if stop_at is None else stop_at
    results = []
    for strategy in strategies:
        result = SimulationResult(strategy=strategy)
        for seed in range(seeds):
            evaluation = _split(items, eval_split, seed)
            pool = np.flatnonzero(~evaluation)
            labeled = np.zeros(len(items), dtype=bool)
            if strategy == "random":
                first = np.random.default_rng(seed).choice(pool, min(seed_size, len(pool)), replace=False)
            else:
                first = kcenter_greedy(X, seed_size, candidates=pool, seed=seed)
            labeled[first] = True
            points = []
            model = None
            while True:  # each fit starts from the last round's coefficients (a few solver steps)
                model = classifier.model_copy(update={"seed": seed}).fit(F[labeled], y[labeled], warm_from=model)
                accuracy = float(np.mean([a == b for a, b in zip(model.predict(F[evaluation]), y[evaluation])]))
                points.append({"labels": int(labeled.sum()), "accuracy": accuracy})
                if progress:
                    progress(strategy, seed, int(labeled.sum()), accuracy)
                if accuracy >= stop_at or labeled.sum() >= min(budget, len(pool)):
                    break
                proba = model.predict_proba(F)
                size = min(batch, budget - int(labeled.sum()))
                chosen, _ = select_batch(X, batch=size, strategy=strategy, labeled=labeled, proba=proba, seed=seed,
                                         candidates=pool, scorer=model.uncertainty)
                labeled[chosen] = True
            result.curves.append({"seed": seed, "points": points})
        for target in targets:
            reached = [labels_to(curve["points"], target) for curve in result.curves]
            result.labels_to[f"{target:.2f}"] = None if any(r is None for r in reached) else float(np.mean(reached))
        results.append(result)
    return results
