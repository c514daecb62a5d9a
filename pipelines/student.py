"""`curate student`: a student labeler, scikit-learn logistic regression on the items' sentence embeddings, trained on
the human reference labels.

On CPU the local LLM is weak; a student trained on a few hundred human labels is often the strongest labeler on hand.
It writes `<run dir>/student_labels.parquet` in the schema of `labels.parquet` (label, confidence, per-label
probabilities, model, prompt_hash = the student's identity) plus `out_of_fold`, so calibrate, gate and triage take
either labeler. Every reference item is scored out-of-fold (by a model that never saw it), so calibration never
measures the student on its own training items; the other items are scored by the model trained on all of them.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neighbors import kneighbors_graph
from sklearn.preprocessing import normalize

from workspaces.config import ProjectConfig
from workspaces.errors import ModelError
from workspaces.items import load_items
from workspaces.rundir import EMBEDDINGS, STUDENT_LABELS, read_table, write_table
from workspaces.shapes import iob2_tags, shape_of, spans_from_tags, whitespace_tokens

from .label import LABEL_COLUMNS

__all__ = ["STUDENT_COLUMNS", "MultiLabelStudent", "PairStudent", "SpanStudent", "StudentClassifier", "StudentFeatures",
           "StudentRun", "class_uncertainty", "out_of_fold_proba", "pair_inputs", "run_student", "student_features",
           "student_for"]

STUDENT_COLUMNS = [*LABEL_COLUMNS, "out_of_fold"]


class StudentFeatures(BaseModel):
    """What the student sees of an item: its sentence embedding (scaled by `embedding_weight`) and, with `chars`, the
    TF-IDF of its character 2-5-grams (fitted on every item's text: unsupervised, no label is used); with
    `neighbours`, each item's features blended with the mean features of its k nearest neighbours in embedding space
    (cosine, the item included; `smoothing` is the neighbours' share). Nothing here uses a label.

    In the BANKING77 simulation the character n-grams cut the labels needed for 88% accuracy by about a tenth
    (intents hinge on words like "top up", "PIN", "refund" that the sentence embedding blurs), and the neighbour
    blend lifts the accuracy at 700 random labels from 0.79 to 0.83 (an intent is a cluster: a query's neighbours
    say what its own wording leaves out).
    """

    chars: bool = True
    embedding_weight: float = Field(default=2.0, gt=0)
    min_df: int = Field(default=2, ge=1)
    neighbours: int = Field(default=10, ge=0, description="k nearest neighbours blended in (0: off)")
    smoothing: float = Field(default=0.5, ge=0, lt=1, description="the neighbours' share of the blend")

    def build(self, embeddings: np.ndarray, texts: Optional[Sequence[str]] = None) -> Any:
        """The feature matrix (sparse when `chars`), one row per item."""
        dense = np.asarray(embeddings, dtype=np.float64) * self.embedding_weight
        features: Any = dense
        if self.chars and texts is not None:
            vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                                         min_df=min(self.min_df, max(1, len(texts) // 2)))
            grams = vectorizer.fit_transform([str(t) for t in texts])
            features = sparse.hstack([sparse.csr_matrix(dense), grams]).tocsr()
        k = min(self.neighbours, len(dense) - 1)
        if k >= 1 and self.smoothing > 0:
            graph = normalize(kneighbors_graph(np.asarray(embeddings, dtype=np.float32), k + 1, metric="cosine",
                                               include_self=True), norm="l1")  # the item and its k neighbours
            features = (1 - self.smoothing) * features + self.smoothing * (graph @ features)
            features = features.tocsr() if sparse.issparse(features) else np.asarray(features)
        return features

    def identity(self) -> dict[str, Any]:
        return {"chars": self.chars, "embedding_weight": self.embedding_weight, "min_df": self.min_df,
                "neighbours": self.neighbours, "smoothing": self.smoothing}


_LAST_FEATURES: dict[str, Any] = {}  # the last matrix built in this process, by what it was built from


def student_features(config: ProjectConfig, items: pd.DataFrame, embeddings: np.ndarray,
                     features: Optional[StudentFeatures] = None) -> Any:
    """The student's feature matrix for `items` (their embeddings in the same order).

    The last matrix is kept for the process: a loop that retrains the student every round (the triage benchmark,
    a notebook) builds the neighbour graph and the n-gram vocabulary once, not once per round. Treat it as read-only.
    """
    from .embed import embedded_texts

    features = features or StudentFeatures()
    texts = embedded_texts(config, items)
    digest = hashlib.sha256(np.ascontiguousarray(embeddings, dtype=np.float64).tobytes())
    digest.update(json.dumps([features.identity(), [str(t) for t in texts]]).encode())
    key = digest.hexdigest()
    if key not in _LAST_FEATURES:
        _LAST_FEATURES.clear()
        _LAST_FEATURES[key] = features.build(embeddings, texts)
    return _LAST_FEATURES[key]


def class_uncertainty(proba: np.ndarray, kind: str) -> np.ndarray:
    """Higher is more uncertain, for one probability distribution per row: `margin` (1 - (p1 - p2)) or `entropy`
    (nats)."""
    if kind == "margin":
        top = np.partition(proba, -2, axis=1)[:, -2:] if proba.shape[1] > 1 else np.c_[np.zeros(len(proba)), proba]
        return 1.0 - (top[:, 1] - top[:, 0])
    if kind == "entropy":
        p = np.clip(proba, 1e-12, 1.0)
        return -(p * np.log(p)).sum(axis=1)
    raise ValueError(f"unknown uncertainty {kind!r}")


class StudentClassifier(BaseModel):
    """Logistic regression (scikit-learn) on the student's features, with explicit fit / predict_proba.

    Input: `X` (n x d features: `StudentFeatures.build`, or plain embeddings), `y` (n labels).
    Output: `predict_proba(X)` (n x len(classes_)), columns in `classes_` order.

    Defaults (C=100, balanced class weights) are the best of the BANKING77 simulation (README, benchmarks).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    C: float = Field(default=100.0, gt=0, description="inverse regularisation strength")
    max_iter: int = Field(default=3000, ge=10)
    class_weight: Optional[str] = Field(default="balanced", description="None or 'balanced'")
    seed: int = 0
    _model: Optional[LogisticRegression] = PrivateAttr(default=None)
    _constant: Optional[str] = PrivateAttr(default=None)

    def fit(self, X: np.ndarray, y: Sequence[str], *, warm_from: Optional["StudentClassifier"] = None
            ) -> "StudentClassifier":
        """Fit on `X`, `y`. With `warm_from` (a fitted student on the same features and the same classes), the
        solver starts from its coefficients: a few iterations instead of a cold fit, as when each active-learning
        round adds a batch of labels."""
        labels = np.asarray([str(v) for v in y])
        if len(set(labels)) == 1:  # one class seen: a constant predictor, not an error
            self._model, self._constant = None, str(labels[0])
            return self
        self._constant = None
        previous = warm_from._model if warm_from is not None else None
        warm = previous is not None and np.array_equal(previous.classes_, np.unique(labels)) \
            and previous.coef_.shape[1] == X.shape[1]
        self._model = LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight,
                                         random_state=self.seed, warm_start=warm)
        if warm:
            assert previous is not None
            self._model.coef_, self._model.intercept_ = previous.coef_.copy(), previous.intercept_.copy()
        with warnings.catch_warnings():  # "more classes than half the samples" is expected with few labels
            warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
            self._model.fit(X if sparse.issparse(X) else np.asarray(X, dtype=np.float64), labels)
        return self

    @property
    def classes_(self) -> list[str]:
        if self._constant is not None:
            return [self._constant]
        if self._model is None:
            raise ModelError("the student is not fitted")
        return [str(c) for c in self._model.classes_]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self._constant is not None:
            return np.ones((X.shape[0], 1))
        if self._model is None:
            raise ModelError("the student is not fitted")
        return self._model.predict_proba(X if sparse.issparse(X) else np.asarray(X, dtype=np.float64))

    def predict(self, X: np.ndarray) -> list[str]:
        """The likeliest label of each row."""
        classes = self.classes_
        return [classes[j] for j in np.argmax(self.predict_proba(X), axis=1)]

    def uncertainty(self, proba: np.ndarray, kind: str) -> np.ndarray:
        """Higher is more uncertain (`class_uncertainty`: margin or entropy of one distribution per row)."""
        return class_uncertainty(proba, kind)

    def identity(self) -> dict[str, Any]:
        return {"backend": "student", "classifier": "logistic-regression", "C": self.C,
                "class_weight": self.class_weight}


class MultiLabelStudent(BaseModel):
    """One logistic regression per label (scikit-learn `OneVsRestClassifier`), for a `multi_label` question.

    Input: `X` (n x d features, as for `StudentClassifier`), `y` (n label sets: tuples of the question's labels).
    Output: `predict_proba(X)` (n x len(labels)): each label's own probability of being in the set (the columns do
    not sum to 1), columns in `labels` order; `predict(X)`, the question shape's decision for each row. A label no training item holds gets probability 0, one every item
    holds 1 (scikit-learn's constant predictor).

    C=4 without class weights is the best of a small grid on the GoEmotions sample (`benchmarks/bench_shapes.py`):
    balanced weights flood rare labels with false positives, and the item-level decision needs every label sure.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    question: Any  # the multi_label QuestionConfig: its labels, and its `min`/`max` for `predict`
    C: float = Field(default=4.0, gt=0, description="inverse regularisation strength")
    max_iter: int = Field(default=2000, ge=10)
    class_weight: Optional[str] = Field(default=None, description="None or 'balanced'")
    seed: int = 0
    _model: Any = PrivateAttr(default=None)

    def fit(self, X: np.ndarray, y: Sequence[Sequence[str]], *, warm_from: Optional["MultiLabelStudent"] = None
            ) -> "MultiLabelStudent":
        """Fit one classifier per label on `X`, `y` (`warm_from` is accepted for the shared contract and unused)."""
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.preprocessing import MultiLabelBinarizer

        targets = MultiLabelBinarizer(classes=self.labels).fit_transform([tuple(v) for v in y])
        self._model = OneVsRestClassifier(LogisticRegression(C=self.C, max_iter=self.max_iter,
                                                             class_weight=self.class_weight, random_state=self.seed))
        with warnings.catch_warnings():  # a label held by no training item is a constant 0: expected, not news
            warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
            warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")
            self._model.fit(X if sparse.issparse(X) else np.asarray(X, dtype=np.float64), targets)
        return self

    @property
    def labels(self) -> list[str]:
        return [str(v) for v in self.question.allowed_values]

    @property
    def classes_(self) -> list[str]:
        return self.labels

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self._model is None:
            raise ModelError("the student is not fitted")
        return np.asarray(self._model.predict_proba(X if sparse.issparse(X) else np.asarray(X, dtype=np.float64)))

    def predict(self, X: np.ndarray) -> list[tuple[str, ...]]:
        """Each row's label set, by the question's decision rule (`MultiLabelShape.decide`: p >= 0.5, topped up to
        `min`, cut to `max`)."""
        shape, labels = shape_of(self.question), self.labels
        return [tuple(shape.decide(dict(zip(labels, row)))[0]) for row in self.predict_proba(X)]

    def uncertainty(self, proba: np.ndarray, kind: str) -> np.ndarray:
        """Higher is more uncertain: `entropy`, the mean binary entropy of the labels (nats); `margin`, the least
        sure label's 1 - |p - (1 - p)|, the label whose decision is closest to a coin flip."""
        p = np.clip(proba, 1e-12, 1 - 1e-12)
        if kind == "entropy":
            return -(p * np.log(p) + (1 - p) * np.log(1 - p)).mean(axis=1)
        if kind == "margin":
            return (1.0 - np.abs(2 * p - 1)).max(axis=1)
        raise ValueError(f"unknown uncertainty {kind!r}")

    def identity(self) -> dict[str, Any]:
        return {"backend": "student", "classifier": "one-vs-rest-logistic-regression", "C": self.C,
                "class_weight": self.class_weight}


def pair_inputs(prompt: np.ndarray, response_a: np.ndarray, response_b: np.ndarray) -> np.ndarray:
    """A pair's student input: the embeddings of its prompt and of the two responses side by side (n x 3d)."""
    return np.hstack([prompt, response_a, response_b]).astype(np.float32)


class PairStudent(BaseModel):
    """A Bradley-Terry reward-model student: P(A beats B) = sigmoid(r(prompt, A) - r(prompt, B)), with a linear
    reward r(p, x) = w . [x, p * x] on sentence embeddings, fitted by logistic regression (scikit-learn) on the
    difference of the two rewards' features, without intercept. Swapping A and B negates the input, so the
    probability swaps exactly: the student has no position bias by construction.

    Input: `X` (n x 3d: `pair_inputs` of prompt, response A, response B), `y` ("A" or "B": the human choice).
    Output: `predict_proba(X)` (n x 2), columns `classes_` = ["A", "B"].
    """

    C: float = Field(default=1.0, gt=0, description="inverse regularisation strength")
    max_iter: int = Field(default=3000, ge=10)
    seed: int = 0
    _model: Optional[LogisticRegression] = PrivateAttr(default=None)

    @staticmethod
    def _difference(X: np.ndarray) -> np.ndarray:
        d = X.shape[1] // 3
        prompt, a, b = X[:, :d], X[:, d:2 * d], X[:, 2 * d:]
        return np.hstack([a - b, prompt * (a - b)]).astype(np.float64)

    def fit(self, X: np.ndarray, y: Sequence[str], *, warm_from: Any = None) -> "PairStudent":
        """Fit on pairs `X` with choices `y` (A / B; each pair is seen in both orders, so the classes balance)."""
        wins = np.asarray([str(v) == "A" for v in y])
        if len(set(str(v) for v in y) - {"A", "B"}):
            raise ModelError(f"a pair student learns choices A or B, not {sorted(set(map(str, y)) - {'A', 'B'})}")
        D = self._difference(np.asarray(X))
        self._model = LogisticRegression(C=self.C, max_iter=self.max_iter, fit_intercept=False,
                                         random_state=self.seed)
        self._model.fit(np.vstack([D, -D]), np.concatenate([wins, ~wins]).astype(int))
        return self

    @property
    def classes_(self) -> list[str]:
        return ["A", "B"]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self._model is None:
            raise ModelError("the pair student is not fitted")
        p_a = self._model.predict_proba(self._difference(np.asarray(X)))[:, 1]
        return np.column_stack([p_a, 1.0 - p_a])

    def predict(self, X: np.ndarray) -> list[str]:
        return ["A" if p >= 0.5 else "B" for p in self.predict_proba(X)[:, 0]]

    def uncertainty(self, proba: np.ndarray, kind: str) -> np.ndarray:
        return class_uncertainty(proba, kind)

    def identity(self) -> dict[str, Any]:
        return {"backend": "student", "classifier": "bradley-terry", "C": self.C}


def _token_features(tokens: list[str], i: int) -> dict[str, Any]:
    """What the CRF sees of token i: the word, its lower case, shape, affixes, and its neighbours'."""
    word = tokens[i]
    features: dict[str, Any] = {"bias": 1.0, "lower": word.lower(), "suffix3": word[-3:].lower(),
                                "prefix3": word[:3].lower(), "upper": word.isupper(), "title": word.istitle(),
                                "digit": word.isdigit(), "handle": word.startswith("@"), "hashtag": word.startswith("#"),
                                "shape": "".join("X" if c.isupper() else "x" if c.islower() else "d" if c.isdigit()
                                                 else c for c in word[:6])}
    for offset, name in ((-1, "prev"), (1, "next")):
        j = i + offset
        if 0 <= j < len(tokens):
            features.update({f"{name}_lower": tokens[j].lower(), f"{name}_title": tokens[j].istitle()})
        else:
            features[f"{name}_edge"] = True
    return features


class SpanStudent(BaseModel):
    """A linear-chain CRF (`sklearn-crfsuite`) over the whitespace tokens of a span question's field, tagging IOB2.

    Input: `X` (the field texts), `y` (span sets: tuples of `(start, end, label)`).
    Output: `predict_marginals(X)`, per text one `{tag: p}` per token (the CRF's marginal probabilities);
    `decide(text, marginals)` gives the spans of the likeliest tags, one score per span (the least marginal of its
    tokens' tags) and the item's confidence (the least marginal of any token's tag: an item is sure only when no
    token, inside a span or not, is in doubt).

    Token features: the word, lower case, shape, 3-letter affixes, @handle/#tag, and the neighbours' words. No
    sentence-embedding feature yet (a per-token encoder is not on hand here).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    question: Any
    embedding_features: ClassVar[bool] = False  # it reads the texts, not `student_features`
    c1: float = Field(default=0.1, ge=0, description="L1 regularisation")
    c2: float = Field(default=0.05, ge=0, description="L2 regularisation")
    max_iterations: int = Field(default=100, ge=1)
    seed: int = 0
    _model: Any = PrivateAttr(default=None)

    @staticmethod
    def _sequence(text: str) -> list[dict[str, Any]]:
        tokens = [text[a:b] for a, b in whitespace_tokens(text)]
        return [_token_features(tokens, i) for i in range(len(tokens))]

    def fit(self, X: Sequence[str], y: Sequence[Any], *, warm_from: Any = None) -> "SpanStudent":
        import sklearn_crfsuite

        self._model = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=self.c1, c2=self.c2,
                                           max_iterations=self.max_iterations, all_possible_transitions=True)
        self._model.fit([self._sequence(str(t)) for t in X], [iob2_tags(str(t), spans) for t, spans in zip(X, y)])
        return self

    def predict_marginals(self, X: Sequence[str]) -> list[list[dict[str, float]]]:
        if self._model is None:
            raise ModelError("the student is not fitted")
        return self._model.predict_marginals([self._sequence(str(t)) for t in X])

    def decide(self, text: str, marginals: list[dict[str, float]]) -> tuple[tuple[Any, ...], float, list[float]]:
        tags = [max(m, key=m.get) if m else "O" for m in marginals]
        sure = [float(m.get(tag, 0.0)) if m else 1.0 for m, tag in zip(marginals, tags)]
        spans = spans_from_tags(text, tags)
        positions = whitespace_tokens(text)
        scores = [min(s for (a, b), s in zip(positions, sure) if start < b and a < end) for start, end, _ in spans]
        return spans, (min(sure) if sure else 1.0), scores

    def identity(self) -> dict[str, Any]:
        return {"backend": "student", "classifier": "crf", "c1": self.c1, "c2": self.c2,
                "max_iterations": self.max_iterations}


def student_for(question: Any, *, seed: int = 0) -> Any:
    """The student estimator for a question's shape: `MultiLabelStudent` for `multi_label`, else
    `StudentClassifier`. Both have `fit(X, y)`, `predict_proba(X)` (columns `classes_`), `uncertainty(proba, kind)`
    and `identity()`; the shape's `decide` turns a row of probabilities into the labeler's answer."""
    if shape_of(question).single_choice:
        return StudentClassifier(seed=seed)
    if getattr(question.kind, "value", question.kind) == "span":
        return SpanStudent(question=question, seed=seed)
    return MultiLabelStudent(question=question, seed=seed)


def _expand(proba: np.ndarray, classes: list[str], labels: list[str]) -> np.ndarray:
    """Probabilities over `labels` (0 for a label the model never saw)."""
    out = np.zeros((len(proba), len(labels)))
    index = {label: i for i, label in enumerate(labels)}
    for j, cls in enumerate(classes):
        out[:, index[cls]] = proba[:, j]
    return out


def out_of_fold_proba(X: np.ndarray, y: Sequence[Any], *, labels: Optional[list[str]] = None, folds: int = 5,
                      seed: int = 0, classifier: Optional[Any] = None) -> np.ndarray:
    """Every row of `X` scored by a model trained on the other folds only (never on itself).

    `y`: the training values (labels, or label sets for a `MultiLabelStudent`). Stratified folds when every value
    has at least `folds` members, else plain shuffled folds. Columns follow `labels` (default: the sorted labels of
    `y`). `classifier`: the estimator to copy per fold (default `StudentClassifier`).
    """
    values = list(y)
    strata = np.asarray([str(v) for v in values])
    labels = labels or sorted(set(strata))
    template = classifier or StudentClassifier(seed=seed)
    out = np.zeros((len(values), len(labels)))
    counts = pd.Series(strata).value_counts()
    folds = max(2, min(folds, len(values)))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed) if counts.min() >= folds \
        else KFold(folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(X, strata):
        model = template.model_copy().fit(X[train], [values[i] for i in train])
        out[test] = _expand(model.predict_proba(X[test]), model.classes_, labels)
    return out


@dataclass
class StudentRun:
    """What `run_student` did."""

    path: Path
    labels: pd.DataFrame
    trained_on: int
    identity: dict[str, Any]
    seconds: float


def _identity_hash(classifier: StudentClassifier, features: str, reference: dict[str, str]) -> str:
    payload = json.dumps({"classifier": classifier.identity(), "features": features,
                          "training": sorted(reference.items())}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def run_student(config: ProjectConfig, reference: dict[str, str], question: str, *, folds: int = 5, seed: int = 0,
                classifier: Optional[Any] = None, features: Optional[StudentFeatures] = None) -> StudentRun:
    """Train the student on `reference` (item id -> human label as text) and label every item of `question`.

    The estimator is the question shape's (`student_for`: one-vs-rest for `multi_label`), and each item's label and
    confidence are the shape's decision from its probabilities (`Shape.decide`: the likeliest label; for tags, every
    label with p >= 0.5 and the confidence of the least sure label). Reference items are scored out-of-fold; the
    others by the model trained on every reference item. Items with no embedding are failed rows (run `curate
    embed`). Writes `student_labels.parquet` (other questions' rows kept).

    Raises:
        RunFileError: no `embeddings.parquet` (run `curate embed`).
        ModelError: fewer than 2 reference labels.
    """
    started = time.perf_counter()
    spec = config.question(question)
    shape = shape_of(spec)
    classifier = classifier or student_for(spec, seed=seed)
    if isinstance(classifier, SpanStudent):  # a sequence labeler: texts, not embeddings
        return _run_span_student(config, reference, question, classifier, folds=folds, seed=seed, started=started)
    labels = [str(v) for v in spec.allowed_values]
    embeddings = read_table(config.run_path, EMBEDDINGS, columns=["item_id", "vector"])
    assert embeddings is not None
    vectors = dict(zip(embeddings["item_id"], embeddings["vector"]))
    encoder = str(embeddings["model"].iloc[0]) if "model" in embeddings.columns and len(embeddings) else "embeddings"
    all_items = load_items(config)
    items = all_items["item_id"].tolist()
    embedded = all_items[all_items["item_id"].isin(set(vectors))].reset_index(drop=True)
    row_of = {item_id: n for n, item_id in enumerate(embedded["item_id"])}
    train_ids = [i for i in sorted(reference) if i in row_of]
    if len(train_ids) < 2:
        raise ModelError(f"the student needs at least 2 reference labels with embeddings for {question!r}; it has "
                         f"{len(train_ids)} (label more items, or run `curate embed`)")
    features = features or StudentFeatures()
    matrix = student_features(config, embedded, np.stack([np.asarray(vectors[i], dtype=np.float64)
                                                           for i in embedded["item_id"]]), features)
    X_train = matrix[[row_of[i] for i in train_ids]]
    y_train = [shape.parse(reference[i]) for i in train_ids]
    oof = out_of_fold_proba(X_train, y_train, labels=labels, folds=folds, seed=seed, classifier=classifier)
    model = classifier.model_copy().fit(X_train, y_train)
    rest = [i for i in items if i in row_of and i not in reference]
    proba_rest = _expand(model.predict_proba(matrix[[row_of[i] for i in rest]]), model.classes_, labels) \
        if rest else np.zeros((0, len(labels)))
    description = (f"{encoder}{'+char-ngrams' if features.chars else ''}"
                   f"{f'+knn{features.neighbours}' if features.neighbours and features.smoothing else ''}")
    identity_hash = _identity_hash(classifier, description + json.dumps(features.identity(), sort_keys=True),
                                   {i: reference[i] for i in train_ids})
    short = {"logistic-regression": "logreg", "one-vs-rest-logistic-regression": "ovr-logreg"}
    kind = classifier.identity()["classifier"]
    name = f"student:{short.get(kind, kind)}(C={classifier.C:g})@{description}"
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    now = pd.Timestamp.now(tz="UTC").isoformat()
    rows = []
    for ids, proba, oof_flag in ((train_ids, oof, True), (rest, proba_rest, False)):
        for item_id, p in zip(ids, proba):
            probabilities = {label: float(v) for label, v in zip(labels, p)}
            value, confidence = shape.decide(probabilities)
            rows.append({"item_id": item_id, "question": question, "label": shape.dump(value),
                         "confidence": confidence, "probabilities": json.dumps(probabilities),
                         "model": name, "prompt_hash": identity_hash, "raw_output": None, "status": "ok",
                         "error": None, "run_id": run_id, "labeled_at": now, "out_of_fold": oof_flag})
    for item_id in (i for i in items if i not in row_of):
        rows.append({"item_id": item_id, "question": question, "label": None, "confidence": None,
                     "probabilities": None, "model": name, "prompt_hash": identity_hash, "raw_output": None,
                     "status": "failed", "error": "no embedding: run `curate embed`", "run_id": run_id,
                     "labeled_at": now, "out_of_fold": False})
    return _write_rows(config, question, rows, trained_on=len(train_ids), started=started,
                       identity={**classifier.identity(), "features": description, "hash": identity_hash})


def _write_rows(config: ProjectConfig, question: str, rows: list[dict[str, Any]], *, trained_on: int,
                started: float, identity: dict[str, Any]) -> StudentRun:
    """Write one question's student rows into `student_labels.parquet` (other questions' rows kept)."""
    frame = pd.DataFrame(rows, columns=STUDENT_COLUMNS)
    path = STUDENT_LABELS.path(config.run_path)
    previous = read_table(config.run_path, STUDENT_LABELS, required=False)
    if previous is not None:
        frame = pd.concat([previous[previous["question"] != question], frame], ignore_index=True)[STUDENT_COLUMNS]
    frame["confidence"] = frame["confidence"].astype("float64")
    write_table(path, frame)
    mine = frame[frame["question"] == question].reset_index(drop=True)
    return StudentRun(path=path, labels=mine, trained_on=trained_on, identity=identity,
                      seconds=time.perf_counter() - started)


def _run_span_student(config: ProjectConfig, reference: dict[str, str], question: str, classifier: "SpanStudent",
                      *, folds: int, seed: int, started: float) -> StudentRun:
    """The CRF student of a span question: trained on the field's texts and the reference spans; reference items
    scored out-of-fold. `probabilities` holds one score per predicted span (`"start:end:label"`)."""
    spec = config.question(question)
    shape = shape_of(spec)
    items = load_items(config)
    column = config.field_spec(spec.field or "").source_column
    texts = dict(zip(items["item_id"], items[column].fillna("").astype(str)))
    train_ids = [i for i in sorted(reference) if i in texts]
    if len(train_ids) < 2:
        raise ModelError(f"the student needs at least 2 reference labels for {question!r}; it has {len(train_ids)}")
    spans = {i: shape.parse(reference[i]) for i in train_ids}
    marginals: dict[str, Any] = {}
    splits = KFold(max(2, min(folds, len(train_ids))), shuffle=True, random_state=seed).split(train_ids)
    for train, test in splits:
        model = classifier.model_copy().fit([texts[train_ids[n]] for n in train], [spans[train_ids[n]] for n in train])
        held = [train_ids[n] for n in test]
        marginals.update(zip(held, model.predict_marginals([texts[i] for i in held])))
    model = classifier.model_copy().fit([texts[i] for i in train_ids], [spans[i] for i in train_ids])
    rest = [i for i in items["item_id"] if i not in reference]
    marginals.update(zip(rest, model.predict_marginals([texts[i] for i in rest])) if rest else [])
    identity_hash = _identity_hash(classifier, "crf-token-features", {i: reference[i] for i in train_ids})
    name = f"student:crf(c1={classifier.c1:g},c2={classifier.c2:g})@token-features"
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    now = pd.Timestamp.now(tz="UTC").isoformat()
    rows = []
    for item_id in items["item_id"]:
        found, sure, scores = classifier.decide(texts[item_id], marginals[item_id])
        rows.append({"item_id": item_id, "question": question, "label": shape.dump(found), "confidence": sure,
                     "probabilities": json.dumps({f"{a}:{b}:{c}": score for (a, b, c), score in zip(found, scores)}),
                     "model": name, "prompt_hash": identity_hash, "raw_output": None, "status": "ok", "error": None,
                     "run_id": run_id, "labeled_at": now, "out_of_fold": item_id in reference})
    return _write_rows(config, question, rows, trained_on=len(train_ids), started=started,
                       identity={**classifier.identity(), "features": "token-features", "hash": identity_hash})
