"""`curate calibrate`: measure a labeler against the human reference, and fit the confidence thresholds at which its
labels reach a promised precision.

Per question, on reference items the labeler was neither trained nor prompted on (and, with
`calibration.reference_sources`, only those from the listed sources, e.g. a random gold set): n, accuracy, Cohen's
kappa, Krippendorff's alpha with the labeler as one more coder, per-class precision/recall/F1, the confusion matrix,
MAE/MSE for ratings, and the quality of the confidence (a 10-bin reliability table, ECE, Brier score and AUROC of
confidence for correctness; Brier and AUROC treat "the label is right" as the binary outcome).

Thresholds, for each target precision: the smallest confidence threshold whose accepted items' precision has a
one-sided 95% Clopper-Pearson lower bound at or above the target (so it accepts the most items while keeping the
promise with evidence). The figures reported for it are cross-fitted: the threshold is fitted on k-1 folds and applied
to the held-out fold, and the held-out accepted items give the coverage, the precision and its lower bound. A
predicted label with at least `calibration.min_per_label` reference items gets its own threshold (fitted to reach the
target's point precision on its own items, never below the global threshold; a label that cannot reach it is never
accepted); others use the global one.

Class-conditional (Mondrian) thresholds, with `calibration.per_class_min` (default None: off): a predicted class with
at least that many reference items gets its own threshold, the smallest whose accepted items of that class alone have
a one-sided 95% Clopper-Pearson lower bound at or above the target; it may be below or above the shared threshold. A
class with fewer items, or whose own items cannot certify any threshold, uses the shared one. The promise is made on
the pooled accepted items, not on each class: the per-class bounds are only the fitting rule (a class needs real
evidence of its own to leave the shared threshold), and what the gate checks is the cross-fitted held-out precision
of every accepted item pooled over the classes, with its one exact lower bound. One bound on one quantity: no union
over classes is claimed, so none has to be paid for (a per-class promise would need a Bonferroni split, alpha / the
number of classes, and more evidence than a gold set of a few hundred items gives 77 classes).

Audit evidence (`calibration.audit_evidence`, default off): the items routed `audit` under a pass of the labeler being
calibrated (same identity) are a random sample of the items it accepts, never used to fit a threshold. With a human
label they are pooled with the held-out accepted reference items above the threshold they were audited at, and the
bound on the pooled precision is a betting confidence sequence (`sequential_error_upper`), valid however often it is
recomputed as audit labels accumulate over rounds.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Optional

import numpy as np
import pandas as pd
from scipy.stats import beta
from sklearn.metrics import (accuracy_score, brier_score_loss, cohen_kappa_score, confusion_matrix,
                             mean_absolute_error, mean_squared_error, precision_recall_fscore_support, roc_auc_score)
from sklearn.model_selection import KFold

from ..agreement import bio_alpha, krippendorff_alpha, masi_alpha
from ..config import ProjectConfig, QuestionKind
from ..errors import ConfigError, CurateError
from ..items import field_texts
from ..rundir import (CALIBRATION, CALIBRATION_ITEMS, CALIBRATION_MD, GATE_HISTORY, ROUTES, read_jsonl, read_table,
                      write_json, write_table, write_text)
from ..shapes import iob2_tags, overlapping_spans, shape_of
from ..votes import human_label
from .labeler import LabelerLabels, load_labeler
from .reference import Reference, human_reference, human_votes

__all__ = [
    "NoReferenceError",
    "Policy",
    "audit_items",
    "calibrate",
    "calibration_items",
    "clopper_pearson_lower",
    "cross_fitted",
    "expected_calibration_error",
    "fit_threshold",
    "label_promise",
    "labeler_questions",
    "promise_for_final_accuracy",
    "review_question",
    "reliability_table",
    "sequential_error_upper",
    "sequential_evidence",
    "wilson_interval",
]

LABELER_CODER = "labeler"
BINS = 10


# ---- statistics ------------------------------------------------------------------------------------------------

def clopper_pearson_lower(successes: Any, n: Any, confidence: float = 0.95) -> Any:
    """One-sided lower bound of a binomial proportion (exact; 0 when n is 0). Vectorised over arrays."""
    successes, n = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = beta.ppf(1 - confidence, successes, n - successes + 1)
    lower = np.where((successes <= 0) | (n <= 0), 0.0, lower)
    return float(lower) if lower.ndim == 0 else lower


_BETS = (np.arange(1, 41) - 0.5) / 40  # the mixture's bets: the share of wealth staked on each item, 0 < c < 1


def _log_mixture(wins: float, losses: float, gain: float) -> float:
    """log of the mean over the bets c of (1 + c * gain)^wins * (1 - c)^losses."""
    logs = wins * np.log1p(_BETS * gain) + losses * np.log1p(-_BETS)
    top = logs.max()
    return float(top + np.log(np.exp(logs - top).mean()))


def sequential_evidence(errors: int, n: int, null_error: float) -> float:
    """The wealth of a bettor against "the error rate is at most `null_error`" after `n` audited items, `errors` wrong.

    A test supermartingale (Waudby-Smith & Ramdas 2023, testing by betting): each item multiplies the wealth by
    `1 + lam (x - null_error)` (x = 1 for a wrong label), averaged over a fixed grid of bets `lam = c / null_error`.
    Each fixed bet gives a product that depends only on (n, errors), so the order the labels arrive in does not matter
    and neither does how often it is looked at: by Ville's inequality, under the null the wealth ever reaching
    1/alpha has probability at most alpha. Wealth >= 20 is evidence at the 95% level that the promise is broken.
    """
    if n <= 0:
        return 1.0
    null_error = float(np.clip(null_error, 1e-9, 1 - 1e-9))
    return float(np.exp(_log_mixture(errors, n - errors, (1 - null_error) / null_error)))


def sequential_error_upper(errors: int, n: int, confidence: float = 0.95) -> float:
    """An upper confidence sequence of an error rate: valid at every n at once (anytime-valid), not only at a fixed n.

    The smallest e at which a bettor against "the error rate is at least e" (each item multiplies the wealth by
    `1 - lam (x - e)`, the same grid of fixed bets as `sequential_evidence`) reaches 1/(1 - confidence); 1 when n is 0.
    Wider than a fixed-n Clopper-Pearson bound (about 20% at a few hundred items), the price of being allowed to look
    after every round.
    """
    if n <= 0:
        return 1.0
    threshold = np.log(1 / (1 - confidence))
    low, high = errors / n, 1.0
    if errors >= n:
        return 1.0
    if _log_mixture(n - errors, errors, low / (1 - low)) >= threshold:
        return float(low)
    for _ in range(50):  # the wealth grows with e: bisect
        mid = (low + high) / 2
        if mid >= 1 or _log_mixture(n - errors, errors, mid / (1 - mid)) >= threshold:
            high = mid
        else:
            low = mid
    return float(high)


def promise_for_final_accuracy(final_accuracy: float, items: int, human_labels: int, audit_share: float) -> float:
    """The least precision to promise for auto-accepted labels so that the final accuracy over all items holds.

    With h items labeled by humans (taken as right) and at most a = (items - h) (1 - audit_share) auto-accepted, the
    final accuracy is at least 1 - (1 - p) a / items, so p = 1 - (1 - final_accuracy) items / a keeps it at
    `final_accuracy` whatever share the threshold accepts.
    """
    most_auto = (items - human_labels) * (1 - audit_share)
    if most_auto <= 0:
        return final_accuracy
    return float(min(max(1 - (1 - final_accuracy) * items / most_auto, 0.5 + 1e-6), 1 - 1e-6))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[Optional[float], Optional[float]]:
    """Two-sided Wilson score interval of a proportion (None, None when n is 0)."""
    if n <= 0:
        return None, None
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def reliability_table(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[dict[str, Any]]:
    """Equal-width confidence bins: count, mean confidence and accuracy (None for an empty bin)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table = []
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        table.append({"bin": [float(edges[b]), float(edges[b + 1])], "count": count,
                      "confidence": float(confidence[mask].mean()) if count else None,
                      "accuracy": float(correct[mask].mean()) if count else None})
    return table


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> Optional[float]:
    """ECE: the count-weighted mean gap between confidence and accuracy over the reliability bins."""
    if len(confidence) == 0:
        return None
    table = reliability_table(confidence, correct, bins)
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in table if row["count"])
                 / len(confidence))


def fit_threshold(confidence: np.ndarray, correct: np.ndarray, target: float, *, bound: bool = True
                  ) -> Optional[float]:
    """The smallest threshold t such that the items with confidence >= t reach `target` precision.

    With `bound`, "reach" means the one-sided 95% Clopper-Pearson lower bound is >= target; else the point precision.
    None when no threshold reaches it.
    """
    if len(confidence) == 0:
        return None
    order = np.argsort(-confidence, kind="stable")
    conf, hits = confidence[order], correct[order].astype(float)
    accepted = np.arange(1, len(conf) + 1)
    right = np.cumsum(hits)
    last = np.r_[conf[1:] != conf[:-1], True]  # cut only between distinct confidence values
    accepted, right, cuts = accepted[last], right[last], conf[last]
    score = clopper_pearson_lower(right, accepted) if bound else right / accepted
    ok = np.flatnonzero(score >= target)
    return None if ok.size == 0 else float(cuts[ok[-1]])


class Policy:
    """Which labels are accepted: a shared threshold and per-label thresholds (None: that label is never accepted).

    `own` lists the labels whose threshold is their own class-conditional (Mondrian) one: those are accepted at it
    even when no shared threshold reaches the target (then every other label is refused).
    """

    def __init__(self, threshold: Optional[float], per_label: Optional[dict[str, Optional[float]]] = None,
                 own: Optional[set[str]] = None) -> None:
        self.threshold = threshold
        self.per_label = per_label or {}
        self.own = set(own or ())

    def accepts(self, labels: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        if self.threshold is None and not any(v is not None for v in self.per_label.values()):
            return np.zeros(len(labels), dtype=bool)
        cut = np.array([self.per_label[str(label)] if str(label) in self.per_label else self.threshold
                        for label in labels], dtype=object)
        blocked = np.array([c is None for c in cut], dtype=bool)
        cut = np.where(blocked, np.inf, cut).astype(float)
        return (confidence >= cut) & ~blocked

    @classmethod
    def fit(cls, labels: np.ndarray, confidence: np.ndarray, correct: np.ndarray, target: float,
            min_per_label: int, per_class_min: Optional[int] = None) -> "Policy":
        threshold = fit_threshold(confidence, correct, target, bound=True)
        per_label: dict[str, Optional[float]] = {}
        own: set[str] = set()
        for label in sorted({str(v) for v in labels}):
            mask = labels == label
            if per_class_min is not None and mask.sum() >= per_class_min:
                mine = fit_threshold(confidence[mask], correct[mask], target, bound=True)
                if mine is not None:  # the class certifies a threshold of its own
                    per_label[label] = mine
                    own.add(label)
                    continue
            if threshold is not None and mask.sum() >= min_per_label:
                fitted = fit_threshold(confidence[mask], correct[mask], target, bound=False)
                per_label[label] = None if fitted is None else max(fitted, threshold)
        return cls(threshold, per_label, own)


def _accepted_figures(hits: int, kept: int) -> dict[str, Any]:
    return {"accepted": kept, "precision": hits / kept if kept else None,
            "precision_lower": clopper_pearson_lower(hits, kept) if kept else 0.0}


def cross_fitted(labels: np.ndarray, confidence: np.ndarray, correct: np.ndarray, target: float, *, folds: int,
                 min_per_label: int, seed: int, per_class_min: Optional[int] = None,
                 audit: Optional[pd.DataFrame] = None) -> dict[str, Any]:
    """Fit the policy on k-1 folds, apply it to the held-out fold; the held-out accepted items give the honest
    coverage, precision and lower bound. The policy reported is the one fitted on every item.

    With `per_class_min`, class-conditional thresholds (see the module docstring); `per_class` then gives each class
    with its own threshold its held-out figures, and the pooled figures stay the promise's evidence. With `audit`
    (label, confidence, correct, threshold: audited items of this labeler and the threshold they were audited at),
    the audited items the final policy accepts, at a threshold no lower than theirs, are pooled with the held-out
    accepted items in `audit`, bounded by the betting confidence sequence.
    """
    n = len(labels)
    accepted = np.zeros(n, dtype=bool)
    if n >= folds * 2:
        for train, test in KFold(n_splits=folds, shuffle=True, random_state=seed).split(labels):
            policy = Policy.fit(labels[train], confidence[train], correct[train], target, min_per_label,
                                per_class_min)
            accepted[test] = policy.accepts(labels[test], confidence[test])
    final = Policy.fit(labels, confidence, correct, target, min_per_label, per_class_min)
    hits = int(correct[accepted].sum())
    kept = int(accepted.sum())
    result = {"target_precision": target, "threshold": final.threshold,
              "per_label": {k: v for k, v in final.per_label.items()},
              "coverage": kept / n if n else 0.0, **_accepted_figures(hits, kept)}
    if per_class_min is not None:
        result["per_class"] = {label: {"threshold": final.per_label[label], **_accepted_figures(
            int(correct[accepted & (labels == label)].sum()), int((accepted & (labels == label)).sum()))}
            for label in sorted(final.own)}
    if audit is not None:
        result["audit"] = _audit_evidence(final, audit, hits, kept)
    return result


def label_promise(labels: np.ndarray, confidence: np.ndarray, correct: np.ndarray, label: str, target: float, *,
                  folds: int, seed: int) -> dict[str, Any]:
    """One label's promise (`gate.targets`): a threshold on the items the labeler gave `label`, the smallest whose
    accepted items reach `target` with a one-sided 95% Clopper-Pearson lower bound. Cross-fitted like `cross_fitted`
    (fit on k-1 folds of those items, apply to the held-out fold): `precision` and `precision_lower` are the held-out
    accepted items', `coverage` their share of all reference items, `label_coverage` of the label's. `threshold` is
    fitted on every item of the label (None: no threshold keeps the promise with evidence)."""
    mask = labels == label
    conf, hits = confidence[mask], correct[mask]
    n = len(conf)
    accepted = np.zeros(n, dtype=bool)
    if n >= folds * 2:
        for train, test in KFold(n_splits=folds, shuffle=True, random_state=seed).split(conf):
            cut = fit_threshold(conf[train], hits[train], target, bound=True)
            if cut is not None:
                accepted[test] = conf[test] >= cut
    kept, right = int(accepted.sum()), int(hits[accepted].sum())
    return {"label": label, "target_precision": target, "threshold": fit_threshold(conf, hits, target, bound=True),
            "n": n, "coverage": kept / len(labels) if len(labels) else 0.0, "label_coverage": kept / n if n else 0.0,
            **_accepted_figures(right, kept)}


def _audit_evidence(policy: Policy, audit: pd.DataFrame, hits: int, kept: int) -> dict[str, Any]:
    """The audited items as evidence for `policy`: those it accepts at a cut no lower than the one they were drawn
    above (a random sample of its accepted items there), pooled with the held-out accepted reference items."""
    labels = audit["label"].astype(str).to_numpy()
    confidence = audit["confidence"].astype(float).to_numpy()
    cut = np.array([policy.per_label.get(label, policy.threshold) for label in labels], dtype=object)
    covered = np.array([c is not None and c >= drawn for c, drawn in zip(cut, audit["threshold"].astype(float))],
                       dtype=bool)
    use = covered & policy.accepts(labels, confidence)
    right = int(audit["correct"].to_numpy()[use].sum())
    pooled_n, pooled_errors = kept + int(use.sum()), (kept - hits) + int(use.sum()) - right
    return {"audited": int(use.sum()), "audited_errors": int(use.sum()) - right, "pooled": pooled_n,
            "pooled_errors": pooled_errors,
            "precision_lower": 1 - sequential_error_upper(pooled_errors, pooled_n) if pooled_n else 0.0}


# ---- calibration -----------------------------------------------------------------------------------------------

def labeler_questions(config: ProjectConfig) -> list[str]:
    """The questions a labeler answers: `llm.questions`, else every question whose shape a labeler answers
    (label, rating, multi_label: `Shape.labelable`)."""
    if config.llm is not None and config.llm.questions:
        return list(config.llm.questions)
    return [q.name for q in config.questions if shape_of(q).labelable]


def review_question(config: ProjectConfig) -> Optional[str]:
    """The question that review batches, honeypots and anchoring are about: the first labeler question, else the
    first voted one (a span project, with no span labeler yet); None when nothing is voted on."""
    asked = labeler_questions(config) or [q.name for q in config.questions if shape_of(q).voted]
    return asked[0] if asked else None


def calibration_items(labels: LabelerLabels, reference: Reference) -> pd.DataFrame:
    """Reference items the labeler labeled (and was not prompted or trained on): item_id, reference, label,
    confidence, correct."""
    frame = labels.labels[labels.labels["item_id"].isin(set(reference.labels) - labels.excluded)].copy()
    frame["reference"] = frame["item_id"].map(reference.labels)
    frame["source"] = frame["item_id"].map(reference.sources)
    frame["correct"] = frame["label"].astype(str) == frame["reference"].astype(str)
    frame["question"] = labels.question
    columns = ["item_id", "question", "reference", "source", "label", "confidence", "correct"]
    return frame[columns].sort_values("item_id").reset_index(drop=True)


def _alpha(config: ProjectConfig, question: str, items: pd.DataFrame, votes: pd.DataFrame,
           texts: dict[str, str]) -> Optional[float]:
    spec = config.question(question)
    mine = votes[(votes["question"] == question) & votes["item_id"].isin(set(items["item_id"]))]
    humans = pd.DataFrame({"unit": mine["item_id"], "annotator": mine["annotator"], "value": mine["value"]})
    no_votes = items[~items["item_id"].isin(set(mine["item_id"]))]  # gold-column items: the reference is a coder
    reference = pd.DataFrame({"unit": no_votes["item_id"], "annotator": "reference", "value": no_votes["reference"]})
    labeler = pd.DataFrame({"unit": items["item_id"], "annotator": LABELER_CODER, "value": items["label"]})
    table = pd.concat([humans, reference, labeler], ignore_index=True)
    table["value"] = table["value"].astype(str)
    try:
        if spec.kind == QuestionKind.span:  # spans: token-level alpha over IOB2 tags
            return bio_alpha(table, spec, texts, bootstrap=0).alpha
        if spec.kind == QuestionKind.multi_label:  # label sets: the MASI distance
            return masi_alpha(table, bootstrap=0).alpha
        return krippendorff_alpha(table, spec.alpha_level, value_domain=[str(v) for v in spec.allowed_values],
                                  bootstrap=0).alpha
    except ConfigError:
        return None


def _label_set_figures(spec: Any, human: np.ndarray, guess: np.ndarray,
                       probabilities: Optional[list[Optional[dict[str, float]]]]) -> dict[str, Any]:
    """A multi-label question's figures against the human label sets: per label precision, recall, F1, support,
    Cohen's kappa of its yes/no and the Brier score of its probability; micro/macro F1 and Hamming loss; `kappa` is
    the mean of the per-label kappas that are defined (a label nobody and no labeler picked has none)."""
    from sklearn.metrics import f1_score, hamming_loss, multilabel_confusion_matrix
    from sklearn.preprocessing import MultiLabelBinarizer

    shape = shape_of(spec)
    labels = [str(v) for v in spec.allowed_values]
    binarizer = MultiLabelBinarizer(classes=labels)
    truth = binarizer.fit_transform([shape.parse(v) for v in human])
    predicted = binarizer.transform([shape.parse(v) for v in guess])
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    scores = None
    if probabilities is not None and all(p is not None for p in probabilities):
        scores = np.array([[float((p or {}).get(label, 0.0)) for label in labels] for p in probabilities])
    per_label, kappas = {}, []
    for j, label in enumerate(labels):
        defined = len(set(truth[:, j]) | set(predicted[:, j])) > 1
        kappa = float(cohen_kappa_score(truth[:, j], predicted[:, j], labels=[0, 1])) if defined else None
        if kappa is not None and not np.isnan(kappa):
            kappas.append(kappa)
        per_label[label] = {"precision": float(precision[j]), "recall": float(recall[j]), "f1": float(f1[j]),
                            "support": int(support[j]), "kappa": kappa,
                            "brier": None if scores is None else float(np.mean((scores[:, j] - truth[:, j]) ** 2))}
    return {"kappa": float(np.mean(kappas)) if kappas else None, "per_class": per_label,
            "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
            "hamming_loss": float(hamming_loss(truth, predicted)),
            "confusion": {"labels": labels, "matrix": [],
                          "per_label": {label: m.tolist() for label, m in
                                        zip(labels, multilabel_confusion_matrix(truth, predicted))}}}


def _span_figures(spec: Any, items: pd.DataFrame, human: np.ndarray, guess: np.ndarray,
                  texts: dict[str, str]) -> dict[str, Any]:
    """A span question's figures against the human spans, entity level (`seqeval`, strict IOB2 over the whitespace
    tokens of the field): micro precision/recall/F1 and per label; `overlap_f1` counts a predicted span as right when
    it overlaps a human span of the same label. `kappa` is undefined for spans (None)."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    shape = shape_of(spec)
    truth = [shape.parse(v) for v in human]
    predicted = [shape.parse(v) for v in guess]
    tags_true = [iob2_tags(str(texts.get(i, "")), t) for i, t in zip(items["item_id"], truth)]
    tags_pred = [iob2_tags(str(texts.get(i, "")), p) for i, p in zip(items["item_id"], predicted)]
    report = classification_report(tags_true, tags_pred, mode="strict", scheme=IOB2, output_dict=True,
                                   zero_division=0)
    found, wanted = sum(len(p) for p in predicted), sum(len(t) for t in truth)
    hit_p = sum(overlapping_spans(p, t) for p, t in zip(predicted, truth))
    hit_t = sum(overlapping_spans(t, p) for p, t in zip(predicted, truth))
    precision, recall = (hit_p / found if found else 0.0), (hit_t / wanted if wanted else 0.0)
    micro = report.get("micro avg", {})
    return {"kappa": None,
            "per_class": {label: {"precision": float(report[label]["precision"]),
                                  "recall": float(report[label]["recall"]), "f1": float(report[label]["f1-score"]),
                                  "support": int(report[label]["support"])}
                          for label in (spec.labels or {}) if label in report},
            "span_precision": float(micro.get("precision", 0.0)), "span_recall": float(micro.get("recall", 0.0)),
            "span_f1": float(micro.get("f1-score", 0.0)),
            "overlap_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0}


def question_metrics(config: ProjectConfig, question: str, items: pd.DataFrame, votes: pd.DataFrame,
                     identity: dict[str, Any], probabilities: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Every figure of one question's calibration (see the module docstring). `probabilities`: item id -> the
    labeler's probabilities, for the per-label Brier scores of a multi-label question.

    For a multi-label question, `accuracy` is exact-set accuracy and the confidence is the least sure label's, so
    that the thresholds make their promise on whole items; see `_label_set_figures` for the per-label figures."""
    spec = config.question(question)
    allowed = [str(v) for v in spec.allowed_values]
    human, guess = items["reference"].astype(str).to_numpy(), items["label"].astype(str).to_numpy()
    confidence = items["confidence"].astype(float).to_numpy()
    correct = items["correct"].astype(bool).to_numpy()
    n = len(items)
    block: dict[str, Any] = {"labeler": identity, "n": n, "accuracy": None, "kappa": None, "alpha": None,
                             "ece": None, "brier": None, "auroc": None, "reliability": [], "thresholds": [],
                             "per_class": {}, "confusion": {"labels": allowed, "matrix": []}}
    if n == 0:
        return block
    texts = field_texts(config, spec)  # a span question's field, read once ({} for other questions)
    if shape_of(spec).single_choice:
        kappa = cohen_kappa_score(human, guess, labels=allowed)
        precision, recall, f1, support = precision_recall_fscore_support(human, guess, labels=allowed,
                                                                         zero_division=0)
        block.update(
            kappa=None if np.isnan(kappa) else float(kappa),
            per_class={label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                       for label, p, r, f, s in zip(allowed, precision, recall, f1, support)},
            confusion={"labels": allowed, "matrix": confusion_matrix(human, guess, labels=allowed).tolist()})
    elif spec.kind == QuestionKind.span:
        block.update(_span_figures(spec, items, human, guess, texts))
    else:
        block.update(_label_set_figures(spec, human, guess, None if probabilities is None else
                                        [probabilities.get(i) for i in items["item_id"]]))
    block.update(
        accuracy=float(accuracy_score(human, guess)),
        alpha=_alpha(config, question, items, votes, texts),
        reliability=reliability_table(confidence, correct),
        ece=expected_calibration_error(confidence, correct),
        brier=float(brier_score_loss(correct.astype(int), confidence)),
        auroc=float(roc_auc_score(correct, confidence)) if 0 < correct.sum() < n else None,
    )
    if spec.kind == QuestionKind.rating:
        block["mae"] = float(mean_absolute_error(human.astype(float), guess.astype(float)))
        block["mse"] = float(mean_squared_error(human.astype(float), guess.astype(float)))
    targets = sorted({*config.calibration.target_precisions, config.gate.target_precision})
    audit = None
    if config.calibration.audit_evidence:
        audit = audit_items(config, question, votes, labeler=identity)
        audit = audit[~audit["item_id"].isin(set(items["item_id"]))]  # an item is evidence once
    block["thresholds"] = [cross_fitted(guess, confidence, correct, target, folds=config.calibration.folds,
                                        min_per_label=config.calibration.min_per_label, seed=config.calibration.seed,
                                        per_class_min=config.calibration.per_class_min, audit=audit)
                           for target in targets]
    if question in config.gate.targets:
        block["label_promises"] = {str(label): label_promise(guess, confidence, correct, str(label), target,
                                                             folds=config.calibration.folds,
                                                             seed=config.calibration.seed)
                                   for label, target in config.gate.targets[question].items()}
    return block


def audit_items(config: ProjectConfig, question: str, votes: pd.DataFrame,
                labeler: Optional[dict[str, Any]] = None, *, routes: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """The items routed `audit` (in `routes.parquet`) that humans have labeled: item_id, gate_id, label, confidence,
    threshold (the cut the item was drawn above: its label's threshold in the gate entry, else the shared one),
    human, correct. With `labeler`, only items routed under that labeler identity. `routes`: the table when the
    caller has read it already (else read here)."""
    columns = ["item_id", "gate_id", "label", "confidence", "threshold", "human", "correct"]
    if routes is None:
        routes = read_table(config.run_path, ROUTES, required=False)
    if routes is None:
        return pd.DataFrame(columns=columns)
    rows = routes[(routes["route"] == "audit") & (routes["question"] == question)]
    if labeler is not None:
        rows = rows[rows["labeler"] == json.dumps(labeler, sort_keys=True)]
    spec = config.question(question)
    mine = votes[votes["question"] == question]
    humans = {item: group["value"].tolist() for item, group in mine.groupby("item_id")}
    gates = {entry.get("id"): entry for entry in read_jsonl(config.run_path, GATE_HISTORY)}
    out = []
    for row in rows.itertuples(index=False):
        vote = human_label(spec, humans.get(row.item_id, []))
        if vote.label is None:
            continue
        per_label = (gates.get(row.gate_id) or {}).get("per_label") or {}
        cut = per_label.get(str(row.label), row.threshold)
        human = shape_of(spec).dump(vote.label)
        out.append({"item_id": row.item_id, "gate_id": row.gate_id, "label": str(row.label),
                    "confidence": float(row.confidence), "threshold": float("inf") if cut is None else float(cut),
                    "human": human, "correct": human == str(row.label)})
    return pd.DataFrame(out, columns=columns)


class NoReferenceError(CurateError):
    """`curate calibrate` had nothing to measure the labeler on: no item with both a human reference label and a
    label from the labeler (exit 1). The calibration written records 0 items, so the gate refuses."""


def require_reference(calibration: dict[str, Any]) -> None:
    """Raise `NoReferenceError` naming every question measured on 0 items (and why), else return."""
    empty = []
    for name, q in calibration["questions"].items():
        if q["n"]:
            continue
        reference = q["reference"]["n"]
        empty.append(f"{name}: no human reference (no submitted response or gold label)" if not reference else
                     f"{name}: the {calibration['labeler']} labeler labeled none of the {reference} reference items")
    if empty:
        raise NoReferenceError("calibrate: nothing to measure the labeler on (" + "; ".join(empty) + "). "
                               "calibration.json records 0 items, so the gate refuses the labeler: sync submitted "
                               "responses (`curate sync`) or label the reference items, then calibrate again")


def calibrate(config: ProjectConfig, labeler: str = "llm") -> dict[str, Any]:
    """Measure `labeler` on the human reference; write `calibration.json`, `calibration.md` and the per-item table.

    Returns the calibration (the JSON written).
    """
    votes = human_votes(config)
    questions: dict[str, Any] = {}
    references: dict[str, Reference] = {}
    frames = []
    for question in labeler_questions(config):
        labels = load_labeler(config, labeler, question)
        reference = human_reference(config, question, votes=votes)
        references[question] = reference
        items = calibration_items(labels, reference)
        if config.calibration.reference_sources is not None:
            items = items[items["source"].isin(config.calibration.reference_sources)].reset_index(drop=True)
        frames.append(items)
        block = question_metrics(config, question, items, votes, labels.identity,
                                 dict(zip(labels.labels["item_id"], labels.labels["probabilities"])))
        block["reference"] = {"n": len(reference), "hash": reference.hash, "sources": reference.counts(),
                              "excluded_prompted_or_trained": len(labels.excluded & set(reference.labels)),
                              "measured_on": config.calibration.reference_sources or "all"}
        questions[question] = block
    total = sum(len(r) for r in references.values())
    calibration = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "project": config.name,
        "labeler": labeler,
        "reference": {"n": total, "hash": _combined_hash(references),
                      "sources": _merge_counts(r.counts() for r in references.values())},
        "questions": questions,
    }
    run = config.run_path
    write_json(CALIBRATION.path(run), calibration)
    write_text(CALIBRATION_MD.path(run), render_calibration(calibration))
    write_table(CALIBRATION_ITEMS.path(run), pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())
    return calibration


def _combined_hash(references: dict[str, Reference]) -> str:
    import hashlib

    return hashlib.sha256("|".join(f"{q}:{r.hash}" for q, r in sorted(references.items())).encode()).hexdigest()[:16]


def _merge_counts(counts: Any) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for key, value in count.items():
            merged[key] = merged.get(key, 0) + value
    return dict(sorted(merged.items()))


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_calibration(calibration: dict[str, Any]) -> str:
    """calibration.md: the figures, readable."""
    lines = [f"# Calibration: {calibration['project']} ({calibration['labeler']})", "",
             f"{calibration['created']}. Reference: {calibration['reference']['n']} item labels "
             f"({', '.join(f'{k} {v}' for k, v in calibration['reference']['sources'].items()) or 'none'}), "
             f"hash `{calibration['reference']['hash']}`.", ""]
    for name, q in calibration["questions"].items():
        identity = q["labeler"]
        lines += [f"## {name}", "", f"Labeler: `{identity}`", "",
                  "| n | accuracy | Cohen's kappa | alpha (labeler as a coder) | ECE | Brier | AUROC |",
                  "|---|---|---|---|---|---|---|",
                  f"| {q['n']} | {_f(q['accuracy'])} | {_f(q['kappa'])} | {_f(q['alpha'])} | {_f(q['ece'])} | "
                  f"{_f(q['brier'])} | {_f(q['auroc'])} |", ""]
        if "mae" in q:
            lines += [f"MAE {_f(q['mae'])}, MSE {_f(q['mse'])}.", ""]
        if "span_f1" in q:
            lines += [f"Spans: accuracy is exact-match accuracy of the whole span set; entity-level (seqeval, strict "
                      f"IOB2) precision {_f(q['span_precision'])}, recall {_f(q['span_recall'])}, F1 "
                      f"{_f(q['span_f1'])}; overlap F1 {_f(q['overlap_f1'])}. An item is accepted only when no token "
                      "is in doubt (its confidence is the least sure token's).", ""]
        if "hamming_loss" in q:
            lines += [f"Label sets: accuracy is exact-set accuracy, kappa the mean per-label kappa; micro-F1 "
                      f"{_f(q['micro_f1'])}, macro-F1 {_f(q['macro_f1'])}, Hamming loss {_f(q['hamming_loss'], 4)}. "
                      "An item is accepted only when every label's decision is sure (its confidence is the least "
                      "sure label's).", ""]
        lines += ["Thresholds (cross-fitted: fitted on the other folds, measured on the held-out one):", "",
                  "| target precision | threshold | coverage | held-out precision | 95% lower bound | per-label |",
                  "|---|---|---|---|---|---|"]
        for t in q["thresholds"]:
            per_label = ", ".join(f"{k}: {_f(v)}" for k, v in t["per_label"].items()) or "-"
            lines.append(f"| {t['target_precision']:.2f} | {_f(t['threshold'])} | {_f(t['coverage'])} | "
                         f"{_f(t['precision'])} | {_f(t['precision_lower'])} | {per_label} |")
        lines += ["", "Reliability (10 bins):", "", "| bin | count | mean confidence | accuracy |",
                  "|---|---|---|---|"]
        lines += [f"| {r['bin'][0]:.1f}-{r['bin'][1]:.1f} | {r['count']} | {_f(r['confidence'])} | "
                  f"{_f(r['accuracy'])} |" for r in q["reliability"]]
        lines += ["", "Per label:" if "hamming_loss" in q else "Per class:", "",
                  "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {label} | {_f(c['precision'])} | {_f(c['recall'])} | {_f(c['f1'])} | {c['support']} |"
                  for label, c in q["per_class"].items()]
        lines.append("")
    return "\n".join(lines)
