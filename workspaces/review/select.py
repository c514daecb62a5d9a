"""What humans label next: active-learning strategies over the items' embeddings and the student's uncertainty.

Strategies (`STRATEGIES`):
- `random`: a seeded uniform draw;
- `margin`: the smallest gap between the student's two most probable labels (multi-label: the label whose
  yes/no is closest to a coin flip);
- `entropy`: the largest entropy of the student's label distribution (multi-label: the mean per-label entropy);
- `kcenter`: greedy k-center (farthest-first) in embedding space, away from everything already labeled;
- `hybrid`: uncertainty and diversity together: the `hybrid_pool` x batch most uncertain items by margin, then
  k-center among them;
- `default`: `margin` with the student's default features (embeddings + character n-grams, balanced class weights),
  the best of these in the BANKING77 simulation (`curate simulate`, README: hybrid and a class-capped margin did not
  beat it).
A cold start (fewer labeled items than `min_labels_for_student`, or no student probabilities) uses `kcenter`.

k-center keeps one running min-distance vector: picking k of N costs k passes over N x d (one matrix-vector product
each), not k x |selected|.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Iterable, Optional

import numpy as np

if TYPE_CHECKING:
    from ..config import ProjectConfig

__all__ = ["STRATEGIES", "Selection", "kcenter_greedy", "select_batch", "select_items", "uncertainty"]

STRATEGIES = ("random", "margin", "entropy", "kcenter", "hybrid", "default")
DEFAULT = "margin"


@dataclass
class Selection:
    """A batch chosen for human review."""

    item_ids: list[str]
    scores: list[float]
    strategy: str
    seed: int
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


def uncertainty(proba: np.ndarray, kind: str) -> np.ndarray:
    """Higher is more uncertain: `margin` (1 - (p1 - p2)) or `entropy` (nats) of one distribution per row
    (`pipelines.student.class_uncertainty`; a multi-label student scores its own rows: `MultiLabelStudent`)."""
    from pipelines.student import class_uncertainty

    return class_uncertainty(proba, kind)


def kcenter_greedy(X: np.ndarray, k: int, selected: Optional[np.ndarray] = None, *, candidates: Optional[np.ndarray]
                   = None, seed: int = 0) -> np.ndarray:
    """Greedy k-center: each pick is the candidate farthest (squared Euclidean) from everything picked or selected.

    Args:
        X: n x d points (float32 is fastest).
        k: how many to pick.
        selected: indices already chosen (labeled items): distances start from them.
        candidates: indices that may be picked (default: all).
        seed: picks the first point when nothing is selected yet.

    Returns the picked indices, in pick order. One matrix-vector product over the points per pick.
    """
    X = np.ascontiguousarray(X)
    n = len(X)
    allowed = np.zeros(n, dtype=bool)
    allowed[np.arange(n) if candidates is None else np.asarray(candidates, dtype=int)] = True
    k = min(k, int(allowed.sum()))
    if k <= 0:
        return np.zeros(0, dtype=int)
    norms = np.einsum("ij,ij->i", X, X)
    min_dist = np.full(n, np.inf, dtype=X.dtype if X.dtype.kind == "f" else np.float64)
    selected = np.asarray([] if selected is None else selected, dtype=int)
    for start in range(0, len(selected), 1024):  # distances to what is already labeled, a block at a time
        block = selected[start:start + 1024]
        d = norms[:, None] + norms[block][None, :] - 2.0 * (X @ X[block].T)
        np.minimum(min_dist, d.min(axis=1), out=min_dist)
    picks = np.empty(k, dtype=int)
    score = np.where(allowed, min_dist, -np.inf)
    for i in range(k):
        if i == 0 and not len(selected):
            choice = int(np.random.default_rng(seed).choice(np.flatnonzero(allowed)))
        else:
            choice = int(np.argmax(score))
        picks[i] = choice
        d = norms + norms[choice] - 2.0 * (X @ X[choice])
        np.minimum(min_dist, d, out=min_dist)
        np.copyto(score, min_dist, where=allowed)
        score[picks[: i + 1]] = -np.inf
    return picks


def select_batch(X: np.ndarray, *, batch: int, strategy: str = "default", labeled: Optional[np.ndarray] = None,
                 proba: Optional[np.ndarray] = None, seed: int = 0, candidates: Optional[Iterable[int]] = None,
                 min_labels_for_student: int = 20, hybrid_pool: int = 5,
                 scorer: Optional[Callable[[np.ndarray, str], np.ndarray]] = None) -> tuple[np.ndarray, np.ndarray]:
    """Choose `batch` rows of `X` for human review.

    Args:
        X: n x d embeddings.
        batch: how many to choose.
        strategy: one of `STRATEGIES`.
        labeled: boolean mask of rows that already have a human label (never chosen).
        proba: n x c student probabilities (needed by margin, entropy, hybrid).
        seed: for random and the first k-center pick.
        candidates: rows that may be chosen (default: every unlabeled row).
        min_labels_for_student: below this many labeled rows, uncertainty is not trusted (cold start: kcenter).
        hybrid_pool: hybrid considers the `hybrid_pool` x batch most uncertain rows.
        scorer: `scorer(proba, "margin" | "entropy")`, higher is more uncertain: the student's own `uncertainty`
            (default `uncertainty`, one distribution per row).

    Returns (chosen row indices, their scores), most valuable first.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    strategy = DEFAULT if strategy == "default" else strategy
    n = len(X)
    labeled = np.zeros(n, dtype=bool) if labeled is None else np.asarray(labeled, dtype=bool)
    pool = np.flatnonzero(~labeled) if candidates is None else np.array(
        [i for i in candidates if not labeled[i]], dtype=int)
    batch = min(batch, len(pool))
    if batch <= 0:
        return np.zeros(0, dtype=int), np.zeros(0)
    cold = proba is None or labeled.sum() < min_labels_for_student
    if strategy == "random":
        rng = np.random.default_rng([seed, int(labeled.sum())])  # a fresh draw each round, reproducible
        chosen = rng.choice(pool, batch, replace=False)
        return chosen, np.ones(batch)
    if strategy == "kcenter" or (cold and strategy in ("margin", "entropy", "hybrid")):
        chosen = kcenter_greedy(X, batch, np.flatnonzero(labeled), candidates=pool, seed=seed)
        return chosen, np.zeros(len(chosen))
    assert proba is not None
    scores = (scorer or uncertainty)(proba[pool], "entropy" if strategy == "entropy" else "margin")
    if strategy in ("margin", "entropy"):
        order = np.argsort(-scores, kind="stable")[:batch]
        return pool[order], scores[order]
    top = np.argsort(-scores, kind="stable")[: batch * hybrid_pool]  # hybrid: diversity among the most uncertain
    shortlist = pool[top]
    chosen = kcenter_greedy(X, batch, np.flatnonzero(labeled), candidates=shortlist, seed=seed)
    by_row = dict(zip(shortlist, scores[top]))
    return chosen, np.array([by_row[i] for i in chosen])


def select_items(config: "ProjectConfig", *, batch: int, strategy: str = "default", seed: int = 0,
                 candidates: Optional[Iterable[str]] = None, exclude: Iterable[str] = ()) -> Selection:
    """The next `batch` items for human review of a project, from its run dir.

    Reads the embeddings (`curate embed`) and the human labels so far (recorded and synced votes; the first labeler
    question decides), trains the student on them when there are enough, and picks with `strategy` among
    `candidates` (default: items without a human label; once triaged, only items routed review or audit), never
    one of `exclude` (items already in an earlier batch).
    """
    from pipelines.student import student_features, student_for

    from ..items import load_items
    from ..judge import human_votes, review_question
    from ..rundir import EMBEDDINGS, ROUTES, read_table
    from ..shapes import shape_of
    from ..votes import human_label

    items = load_items(config)
    embeddings = read_table(config.run_path, EMBEDDINGS, columns=["item_id", "vector"])
    assert embeddings is not None
    vectors = dict(zip(embeddings["item_id"], embeddings["vector"]))
    items = items[items["item_id"].isin(set(vectors))].reset_index(drop=True)
    ids = items["item_id"].tolist()
    X = np.stack([np.asarray(vectors[i], dtype=np.float32) for i in ids])
    # the first labeler question decides; without one (spans: no span labeler yet) the first voted question says
    # which items have a human label, and selection is by diversity only
    asked = review_question(config)
    question = config.question(asked) if asked else None
    known: dict[str, object] = {}
    if question is not None:
        votes = human_votes(config, items)
        votes = votes[votes["question"] == question.name]
        known = {item: human_label(question, group["value"].tolist()).label
                 for item, group in votes.groupby("item_id")}
        known = {item: label if isinstance(label, tuple) else str(label) for item, label in known.items()
                 if label is not None}
    labeled = np.array([i in known for i in ids])
    allowed = set(ids) if candidates is None else set(candidates)
    routes = read_table(config.run_path, ROUTES, required=False)
    if candidates is None and routes is not None:
        allowed &= set(routes.loc[routes["route"] != "auto", "item_id"])
    allowed -= set(exclude)
    pool = [n for n, item in enumerate(ids) if item in allowed and not labeled[n]]
    proba, model = None, None
    student = student_for(question, seed=seed) if question is not None and shape_of(question).labelable else None
    if getattr(student, "embedding_features", True) is False:  # a sequence labeler (spans): diversity only, for now
        student = None
    if student is not None and labeled.sum() >= 20 and len(set(known.values())) > 1:
        model = student
        features = student_features(config, items, X)
        model.fit(features[labeled], [known[i] for i in np.array(ids)[labeled]])
        proba = model.predict_proba(features)
    chosen, scores = select_batch(X, batch=batch, strategy=strategy, labeled=labeled, proba=proba, seed=seed,
                                  candidates=pool, scorer=model.uncertainty if model is not None else None)
    return Selection(item_ids=[ids[n] for n in chosen], scores=[float(s) for s in scores],
                     strategy=DEFAULT if strategy == "default" else strategy, seed=seed)
