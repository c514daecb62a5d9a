"""Inter-annotator agreement: Krippendorff's alpha with a bootstrap CI, and per-annotator agreement.

Input is a tidy table with one row per (unit, annotator) value; a missing value is simply an absent row. Alpha itself
is computed by the `krippendorff` package; this module only shapes the data, bootstraps over units and counts.

Example (notebook)::

    from workspaces.agreement import krippendorff_alpha
    result = krippendorff_alpha(table, level="ordinal")          # columns unit, annotator, value
    result.alpha, result.ci95
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import krippendorff
import numpy as np
import pandas as pd
from pydantic import BaseModel

from ..config import AlphaLevel, QuestionConfig
from ..errors import ConfigError
from ..shapes import iob2_names, iob2_tags, masi_distance, shape_of
from ..votes import vote_table

__all__ = [
    "AgreementError",
    "AlphaResult",
    "AnnotatorAgreement",
    "annotator_agreement",
    "krippendorff_alpha",
    "bio_alpha",
    "distance_alpha",
    "masi_alpha",
    "read_tidy_table",
]


_MAJORITY = QuestionConfig(name="majority", kind="label", labels={"a": "", "b": ""})  # rule: the strict majority


class AgreementError(ConfigError):
    """The table cannot be used to compute agreement (missing columns, non-numeric values for an interval level...)."""


class AlphaResult(BaseModel):
    """Krippendorff's alpha for one question.

    `units` counts the pairable units (>= 2 values), `pairable` the values in them: the only data alpha uses.
    `ci95` is a percentile bootstrap over units (None when there are fewer than 2 pairable units).
    """

    alpha: Optional[float]
    ci95: Optional[tuple[float, float]]
    level: AlphaLevel
    units: int
    annotators: int
    pairable: int
    distance: Optional[str] = None  # set-valued alpha: the distance it used ("masi")


class AnnotatorAgreement(BaseModel):
    """How often one annotator matches the strict majority of the *other* annotators on the same units."""

    annotator: str
    units: int
    compared: int
    agreement: Optional[float]


def read_tidy_table(path: Union[str, Path]) -> pd.DataFrame:
    """Read a csv / jsonl / parquet table with columns `unit, annotator, value`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise AgreementError(f"{path}: file not found")
    if suffix == ".csv":
        frame = pd.read_csv(path, dtype={"unit": str, "annotator": str})
    elif suffix in {".jsonl", ".ndjson"}:
        frame = pd.read_json(path, lines=True, dtype=False)
    elif suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        raise AgreementError(f"{path}: unsupported file type {suffix!r} (use .csv, .jsonl or .parquet)")
    missing = [c for c in ("unit", "annotator", "value") if c not in frame.columns]
    if missing:
        raise AgreementError(f"{path}: missing column(s) {missing}; expected columns unit, annotator, value")
    return frame


def _require_columns(table: pd.DataFrame) -> None:
    missing = [c for c in ("unit", "annotator", "value") if c not in table.columns]
    if missing:
        raise AgreementError(f"missing column(s) {missing}; expected columns unit, annotator, value")


def _percentile_ci(draws: Sequence[Optional[float]]) -> Optional[tuple[float, float]]:
    """The 95% percentile interval of the bootstrap draws that are defined (None when none is)."""
    finite = np.array([d for d in draws if d is not None])
    if not finite.size:
        return None
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def _value_domain(values: pd.Series, level: AlphaLevel, domain: Optional[Sequence[Any]]) -> list[Any]:
    if domain is not None:
        unknown = sorted({str(v) for v in values.unique()} - {str(d) for d in domain})
        if unknown:
            raise AgreementError(f"value(s) {unknown} are not in the value domain {list(domain)}")
        return list(domain)
    if level == AlphaLevel.nominal:
        return sorted(values.unique(), key=str)
    try:
        return sorted(values.unique(), key=float)
    except (TypeError, ValueError):
        raise AgreementError(f"{level.value} alpha needs numeric values (or an explicit value domain in scale order); "
                             f"got {sorted(map(str, values.unique()))[:5]}") from None


def _value_counts(table: pd.DataFrame, domain: list[Any]) -> tuple[np.ndarray, int, int]:
    """Units x values count matrix over pairable units, plus the numbers of pairable units and annotators."""
    position = {str(v): i for i, v in enumerate(domain)}
    codes = table["value"].map(str).map(position).to_numpy(dtype=np.int64)
    unit_codes, units = pd.factorize(table["unit"], sort=True)  # rows in unit order, as a crosstab's
    known = unit_codes >= 0
    matrix = np.bincount(unit_codes[known] * len(domain) + codes[known],
                         minlength=len(units) * len(domain)).reshape(len(units), len(domain))
    matrix = matrix[matrix.sum(axis=1) >= 2]
    return matrix, matrix.shape[0], table["annotator"].nunique()


def _alpha_from_counts(counts: np.ndarray, domain: list[Any], level: AlphaLevel) -> Optional[float]:
    if counts.shape[0] == 0 or counts.sum() < 2:
        return None
    # nominal and ordinal alpha depend only on the identity / order of the values, so ranks are the honest domain
    ranked = level in (AlphaLevel.nominal, AlphaLevel.ordinal)
    numeric_domain = list(range(len(domain))) if ranked else [float(v) for v in domain]
    if np.count_nonzero(counts.sum(axis=0)) < 2:
        return None  # one value only: no variation, alpha undefined
    value = krippendorff.alpha(value_counts=counts, value_domain=numeric_domain, level_of_measurement=level.value)
    return None if np.isnan(value) else float(value)


def _bootstrap_alphas(counts: np.ndarray, domain: list[Any], level: AlphaLevel, bootstrap: int,
                      seed: int) -> list[Optional[float]]:
    """Alpha of `bootstrap` resamples of the units (rows of `counts`), each `counts[rng.integers(0, units, units)]`.

    Alpha depends on the units only through their coincidence matrix, a sum over units; units with the same counts
    contribute the same matrix. So each resample is the number of times it drew each distinct row, and its alpha the
    formula `krippendorff.alpha` evaluates (same coincidences, expected coincidences and distances; checked against
    it in the tests), without building the resampled matrix: O(distinct rows) per resample instead of O(units).
    """
    units, values = counts.shape
    patterns, inverse = np.unique(counts, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    pairable = patterns.sum(axis=1)
    eye = np.eye(values)
    coincidences = ((patterns[:, :, None] * patterns[:, None, :] - patterns[:, None, :] * eye)
                    / (pairable - 1)[:, None, None])  # per distinct row, as krippendorff's `_coincidences`
    ranked = level in (AlphaLevel.nominal, AlphaLevel.ordinal)
    numeric = np.arange(values, dtype=float) if ranked else np.array([float(v) for v in domain])
    low, high = np.minimum.outer(np.arange(values), np.arange(values)), np.maximum.outer(np.arange(values),
                                                                                            np.arange(values))
    rng = np.random.default_rng(seed)
    draws: list[Optional[float]] = []
    for _ in range(bootstrap):
        weights = np.bincount(inverse[rng.integers(0, units, units)], minlength=len(patterns)).astype(float)
        totals = weights @ patterns
        if totals.sum() < 2 or np.count_nonzero(totals) < 2:
            draws.append(None)
            continue
        o = np.tensordot(weights, coincidences, axes=1)
        n_v = o.sum(axis=0)
        e = (np.outer(n_v, n_v) - np.diagflat(n_v)) / (n_v.sum() - 1)
        if level == AlphaLevel.nominal:
            d = (numeric[:, None] != numeric[None, :]).astype(float)
        elif level == AlphaLevel.ordinal:
            cumulative = np.concatenate([[0.0], np.cumsum(n_v)])
            d = (cumulative[high + 1] - cumulative[low] - (n_v[low] + n_v[high]) / 2) ** 2
        elif level == AlphaLevel.interval:
            d = (numeric[:, None] - numeric[None, :]) ** 2
        else:
            total = numeric[:, None] + numeric[None, :]
            d = np.divide(numeric[:, None] - numeric[None, :], total, out=np.zeros_like(total), where=total != 0) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            value = 1 - (o * d).sum() / (e * d).sum()
        draws.append(None if np.isnan(value) else float(value))
    return draws


def krippendorff_alpha(
    table: pd.DataFrame,
    level: Union[AlphaLevel, str] = AlphaLevel.nominal,
    *,
    value_domain: Optional[Sequence[Any]] = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> AlphaResult:
    """Krippendorff's alpha for a tidy table with columns `unit, annotator, value`.

    Args:
        table: one row per value; missing values are absent rows (NaN values are dropped too).
        level: nominal, ordinal, interval or ratio.
        value_domain: the values in scale order (needed for ordinal labels that are not numbers).
        bootstrap: resamples of the pairable units for the 95% CI (0 disables it).
        seed: the bootstrap's random seed, so the CI is reproducible.
    """
    level = AlphaLevel(level)
    _require_columns(table)
    table = table.dropna(subset=["value"])
    duplicated = table.duplicated(subset=["unit", "annotator"])
    if duplicated.any():
        first = table[duplicated].iloc[0]
        raise AgreementError(f"annotator {first['annotator']!r} has more than one value for unit {first['unit']!r}")
    domain = _value_domain(table["value"], level, value_domain)
    counts, units, annotators = _value_counts(table, domain)
    alpha = _alpha_from_counts(counts, domain, level)
    ci95 = None
    if alpha is not None and bootstrap > 0 and units >= 2:
        ci95 = _percentile_ci(_bootstrap_alphas(counts, domain, level, bootstrap, seed))
    return AlphaResult(alpha=alpha, ci95=ci95, level=level, units=units, annotators=annotators,
                       pairable=int(counts.sum()))


def masi_alpha(table: pd.DataFrame, *, bootstrap: int = 1000, seed: int = 0) -> AlphaResult:
    """Krippendorff's alpha of label sets with the MASI distance (Passonneau 2006), by the `krippendorff` package.

    `value` holds one label set per row (a JSON list, or a list/tuple). Each distinct set is one value of the domain
    and the distance between two is `workspaces.shapes.masi_distance`; the CI is a percentile bootstrap over the
    pairable units, each resample given to `krippendorff.alpha` again.
    """
    _require_columns(table)
    table = table.dropna(subset=["value"])
    sets = [tuple(sorted(json.loads(v) if isinstance(v, str) else v)) for v in table["value"]]
    return distance_alpha(table, sets, masi_distance, "masi", bootstrap=bootstrap, seed=seed)


def distance_alpha(table: pd.DataFrame, values: Sequence[Any], distance: Any, name: str, *, bootstrap: int = 1000,
                   seed: int = 0) -> AlphaResult:
    """Krippendorff's alpha (the `krippendorff` package) of structured values with a distance of their own.

    `table`: `unit`, `annotator` (rows without a value dropped); `values`: the parsed value of each row (hashable,
    e.g. a label set or a span set); `distance(a, b)` in [0, 1]. Each distinct value is one value of the domain; the
    CI is a percentile bootstrap over the pairable units. `name` is recorded as the result's `distance`.
    """
    domain = sorted(set(values))
    index = {value: i for i, value in enumerate(domain)}
    keyed = pd.DataFrame({"unit": table["unit"].to_numpy(), "annotator": table["annotator"].to_numpy(),
                          "value": [str(index[v]) for v in values]})
    counts, units, annotators = _value_counts(keyed, [str(i) for i in range(len(domain))])
    distances = np.array([[distance(a, b) for b in domain] for a in domain])

    def metric(v1: Any, v2: Any, i1: np.ndarray, i2: np.ndarray, n_v: Any = None, dtype: Any = np.float64) -> Any:
        return distances[i1, i2].astype(dtype)

    def alpha_of(matrix: np.ndarray) -> Optional[float]:
        if matrix.shape[0] == 0 or np.count_nonzero(matrix.sum(axis=0)) < 2:
            return None
        value = krippendorff.alpha(value_counts=matrix, value_domain=list(range(len(domain))),
                                   level_of_measurement=metric)
        return None if np.isnan(value) else float(value)

    alpha = alpha_of(counts)
    ci95 = None
    if alpha is not None and bootstrap > 0 and units >= 2:
        rng = np.random.default_rng(seed)
        ci95 = _percentile_ci([alpha_of(counts[rng.integers(0, units, units)]) for _ in range(bootstrap)])
    return AlphaResult(alpha=alpha, ci95=ci95, level=AlphaLevel.nominal, units=units, annotators=annotators,
                       pairable=int(counts.sum()), distance=name)


def bio_alpha(table: pd.DataFrame, question: QuestionConfig, texts: dict[str, str], *, bootstrap: int = 1000,
              seed: int = 0) -> AlphaResult:
    """Token-level Krippendorff's alpha of span answers: each row's spans become IOB2 tags over the whitespace
    tokens of its unit's text (`texts`: unit -> the question's field), and every (unit, token) is a unit of a
    nominal alpha over the tags (`krippendorff_alpha`). Rows whose value does not parse are left out. The CI
    resamples tokens, so it is narrower than one over whole texts would be."""
    _require_columns(table)
    shape = shape_of(question)
    rows = []
    for unit, annotator, value in table[["unit", "annotator", "value"]].itertuples(index=False):
        stored = shape.canonical(value)
        if stored is None or unit not in texts:
            continue
        for n, tag in enumerate(iob2_tags(texts[unit], shape.parse(stored))):
            rows.append((f"{unit}#{n}", annotator, tag))
    tokens = pd.DataFrame(rows, columns=["unit", "annotator", "value"])
    return krippendorff_alpha(tokens, AlphaLevel.nominal, value_domain=iob2_names(question), bootstrap=bootstrap,
                              seed=seed)


def annotator_agreement(table: pd.DataFrame, question: Optional[QuestionConfig] = None) -> list[AnnotatorAgreement]:
    """Per annotator: the share of their units where they match the human label of the *other* annotators.

    The human label is `workspaces.votes.human_label` for `question` (strict majority, or the lower median of a
    rating); with no question, the strict majority. Units where the others give no label are not compared.
    Vectorised (`votes.vote_table` over a self-join on the unit): no Python loop per unit.
    """
    table = table.dropna(subset=["value"])
    rows = pd.DataFrame({"unit": table["unit"].to_numpy(), "annotator": table["annotator"].to_numpy(),
                         "value": table["value"].map(str).to_numpy()})
    pairs = rows.drop_duplicates(["unit", "annotator"])  # an annotator's own value on a unit: their first one
    others = pairs[["unit", "annotator"]].merge(rows.rename(columns={"annotator": "other"}), on="unit")
    others = others[others["other"] != others["annotator"]]
    rule = question if question is not None else _MAJORITY
    majority = vote_table(others, rule, keys=("unit", "annotator"))
    majority = majority[majority["label"].notna()]
    compared = pairs.merge(majority[["unit", "annotator", "label"]], on=["unit", "annotator"], how="inner")
    compared["agreed"] = compared["value"] == compared["label"].map(shape_of(rule).dump)  # as its stored text
    per_pair = rows.groupby(["unit", "annotator"], sort=False).size().rename("rows").reset_index()
    compared = compared.merge(per_pair, on=["unit", "annotator"])  # every row of the pair counts, as before
    totals = rows.groupby("annotator", sort=True).size()
    done = compared.assign(agreed=compared["agreed"] * compared["rows"]).groupby("annotator")[["rows", "agreed"]].sum()
    results = []
    for annotator, units in totals.items():
        n = int(done["rows"].get(annotator, 0))
        agreed = int(done["agreed"].get(annotator, 0))
        results.append(AnnotatorAgreement(annotator=str(annotator), units=int(units), compared=n,
                                          agreement=agreed / n if n else None))
    return results
