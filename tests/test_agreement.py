"""Krippendorff's alpha against published reference values, through the library function and `curate agreement`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from workspaces.agreement import AgreementError, annotator_agreement, krippendorff_alpha
from workspaces.votes import strict_majority
from workspaces.cli import app

DATA = Path(__file__).parent / "data"
runner = CliRunner()

# Krippendorff, K. (2011). Computing Krippendorff's Alpha-Reliability. Annenberg School for Communication,
# University of Pennsylvania, section C ("nominal data, any number of observers, missing data") and the values the
# paper reports for the same 4 observers x 12 units at each level of measurement.
KRIPPENDORFF_2011 = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}
# The reliability-data example of the Wikipedia article "Krippendorff's alpha" (3 coders, 15 units, many missing).
WIKIPEDIA = {"nominal": 0.691, "interval": 0.811}


@pytest.mark.parametrize("level, expected", sorted(KRIPPENDORFF_2011.items()))
def test_cli_matches_krippendorff_2011(level: str, expected: float) -> None:
    result = runner.invoke(app, ["agreement", str(DATA / "krippendorff2011_c.csv"), "--level", level, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert round(payload["alpha"], 3) == expected
    assert payload["level"] == level
    assert payload["units"] == 11  # unit 12 has a single value: not pairable
    assert payload["annotators"] == 4
    assert payload["pairable"] == 40
    low, high = payload["ci95"]
    assert low <= payload["alpha"] <= high


@pytest.mark.parametrize("level, expected", sorted(WIKIPEDIA.items()))
def test_cli_matches_wikipedia_example_with_missing_data(level: str, expected: float) -> None:
    result = runner.invoke(app, ["agreement", str(DATA / "krippendorff_wiki.jsonl"), "--level", level, "--json",
                                 "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert round(payload["alpha"], 3) == expected
    assert payload["ci95"] is None
    assert payload["units"] == 12 and payload["annotators"] == 3  # units 1, 2 and 14 have < 2 values


def test_parquet_input_and_human_readable_output(tmp_path: Path) -> None:
    table = pd.read_csv(DATA / "krippendorff2011_c.csv")
    table.to_parquet(tmp_path / "t.parquet")
    result = runner.invoke(app, ["agreement", str(tmp_path / "t.parquet"), "--level", "ordinal"])
    assert result.exit_code == 0, result.output
    assert "0.8154" in result.output and "pairable values 40" in result.output


def test_bootstrap_is_reproducible_and_seeded() -> None:
    table = pd.read_csv(DATA / "krippendorff2011_c.csv")
    a = krippendorff_alpha(table, "interval", bootstrap=200, seed=1)
    b = krippendorff_alpha(table, "interval", bootstrap=200, seed=1)
    c = krippendorff_alpha(table, "interval", bootstrap=200, seed=2)
    assert a.ci95 == b.ci95
    assert a.ci95 != c.ci95


def test_string_labels_ordinal_needs_domain() -> None:
    table = pd.DataFrame({"unit": [1, 1, 2, 2, 3, 3], "annotator": ["a", "b"] * 3,
                          "value": ["low", "low", "high", "mid", "mid", "mid"]})
    with pytest.raises(AgreementError, match="numeric values"):
        krippendorff_alpha(table, "ordinal")
    ranked = krippendorff_alpha(table, "ordinal", value_domain=["low", "mid", "high"], bootstrap=0)
    numeric = krippendorff_alpha(table.replace({"low": 1, "mid": 2, "high": 3}), "ordinal", bootstrap=0)
    assert ranked.alpha == pytest.approx(numeric.alpha)


def test_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("item,coder,label\n1,a,x\n")
    result = runner.invoke(app, ["agreement", str(bad), "--json"])
    assert result.exit_code != 0
    assert "missing column(s)" in result.output and "bad.csv" in result.output
    dup = pd.DataFrame({"unit": [1, 1], "annotator": ["a", "a"], "value": [1, 2]})
    with pytest.raises(AgreementError, match="more than one value"):
        krippendorff_alpha(dup)
    result = runner.invoke(app, ["agreement", str(tmp_path / "missing.csv")])
    assert result.exit_code != 0 and "not found" in result.output


def test_perfect_and_undefined_agreement() -> None:
    perfect = pd.DataFrame({"unit": [1, 1, 2, 2], "annotator": ["a", "b"] * 2, "value": ["x", "x", "y", "y"]})
    assert krippendorff_alpha(perfect, bootstrap=0).alpha == pytest.approx(1.0)
    constant = pd.DataFrame({"unit": [1, 1, 2, 2], "annotator": ["a", "b"] * 2, "value": ["x"] * 4})
    assert krippendorff_alpha(constant, bootstrap=0).alpha is None


def test_strict_majority_and_leave_one_out() -> None:
    assert strict_majority(["a", "a", "b"]) == "a"
    assert strict_majority(["a", "b"]) is None
    assert strict_majority([]) is None
    table = pd.DataFrame({"unit": [1, 1, 1, 2, 2, 2], "annotator": ["a", "b", "c"] * 2,
                          "value": ["x", "x", "y", "y", "y", "y"]})
    by = {r.annotator: r for r in annotator_agreement(table)}
    assert by["c"].agreement == pytest.approx(0.5) and by["c"].compared == 2
    assert by["a"].agreement == pytest.approx(1.0)
    # on unit 1, a's others are (b=x, c=y): no majority, so a is compared on unit 2 only
    assert by["a"].compared == 1


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_bootstrap_resamples_equal_the_library_on_each_resampled_matrix(level: str) -> None:
    """The CI's resamples are evaluated from distinct unit rows; each must equal `krippendorff.alpha` on the
    resampled counts matrix itself (same seed, same draws)."""
    import krippendorff
    import numpy as np

    from workspaces.agreement.alpha import _bootstrap_alphas
    from workspaces.config import AlphaLevel

    rng = np.random.default_rng(5)
    counts = rng.multinomial(3, [0.5, 0.2, 0.2, 0.1], size=40)
    counts[:5] = [2, 0, 0, 0]  # repeated rows, and units with one value only
    domain = [1, 2, 4, 7]
    draws = _bootstrap_alphas(counts, domain, AlphaLevel(level), 50, seed=11)
    replay = np.random.default_rng(11)
    numeric = list(range(4)) if level in ("nominal", "ordinal") else [float(v) for v in domain]
    expected = [krippendorff.alpha(value_counts=counts[replay.integers(0, 40, 40)], value_domain=numeric,
                                   level_of_measurement=level) for _ in range(50)]
    assert draws == pytest.approx(expected, abs=1e-12)
    table = pd.DataFrame([(u, f"a{k}", domain[v]) for u, row in enumerate(counts) for v, n in enumerate(row)
                          for k in range(n)], columns=["unit", "annotator", "value"])
    result = krippendorff_alpha(table.drop_duplicates(["unit", "annotator"]), level, value_domain=domain,
                                bootstrap=200)
    assert result.ci95 is not None and result.ci95[0] <= result.alpha <= result.ci95[1]
