"""Dawid-Skene (crowd-kit) recovers a planted bad annotator on synthetic data, and the report carries it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workspaces.agreement.consensus import dawid_skene
from workspaces.config import QuestionConfig
from workspaces.votes import human_label

QUESTION = QuestionConfig(name="q", kind="label", labels={"a": "", "b": "", "c": ""})


def _crowd(seed: int = 0) -> tuple[pd.DataFrame, dict[str, str]]:
    rng = np.random.default_rng(seed)
    truth = {f"u{i}": str(rng.choice(["a", "b", "c"])) for i in range(300)}
    skills = {"good1": 0.9, "good2": 0.85, "good3": 0.8, "bad": 0.2}  # bad answers at random (worse than chance)
    rows = []
    for unit, label in truth.items():
        for annotator, skill in skills.items():
            answer = label if rng.uniform() < skill else str(rng.choice([x for x in "abc" if x != label]))
            rows.append({"unit": unit, "annotator": annotator, "value": answer})
    return pd.DataFrame(rows), truth


def test_dawid_skene_finds_the_bad_annotator_and_beats_the_majority() -> None:
    table, truth = _crowd()
    result = dawid_skene(table, QUESTION)
    assert result is not None
    assert min(result.skill, key=result.skill.get) == "bad"
    assert result.skill["bad"] < 0.4 < 0.7 < min(v for k, v in result.skill.items() if k != "bad")
    ds_accuracy = np.mean([result.labels[u] == t for u, t in truth.items()])
    majority = {u: human_label(QUESTION, g["value"].tolist()).label for u, g in table.groupby("unit")}
    majority_accuracy = np.mean([majority[u] == t for u, t in truth.items()])
    assert ds_accuracy >= majority_accuracy and ds_accuracy > 0.9
    assert all(0 <= c <= 1 for c in result.confidence.values())
    for d in result.disagreements:
        assert d["majority"] != d["dawid_skene"]


def test_the_curated_label_can_come_from_dawid_skene_with_its_posterior(tmp_path) -> None:
    """`consensus: {method: dawid-skene}`: the curated label is Dawid-Skene's, its posterior the item's confidence;
    items with no strict majority get a label; the report section lists skills and the disagreements."""
    import yaml

    from workspaces.agreement.sections import SECTION_BUILDERS, render_consensus
    from workspaces.config import load_config
    from workspaces.curated import build_curated

    table, truth = _crowd(1)
    units = sorted(truth)
    pd.DataFrame({"id": units, "text": [f"text {u}" for u in units]}).to_csv(tmp_path / "items.csv", index=False)
    raw = {"name": "crowd", "data": {"path": "items.csv"}, "fields": [{"name": "text"}],
           "questions": [{"name": "q", "kind": "label", "labels": {"a": "", "b": "", "c": ""}}],
           "argilla": {"dataset": "crowd", "workspace": "tests"}, "run_dir": str(tmp_path / "run"),
           "hub": {"exclude_no_majority": True}}
    annotations = pd.DataFrame({"record_id": table["unit"], "item_id": table["unit"], "question": "q",
                                "annotator": table["annotator"], "value": table["value"], "status": "submitted",
                                "updated_at": pd.Timestamp("2026-01-02", tz="UTC")})
    (tmp_path / "run").mkdir()
    annotations.to_parquet(tmp_path / "run" / "annotations.parquet")
    for method in ("majority", "dawid-skene"):
        (tmp_path / f"{method}.yaml").write_text(yaml.safe_dump({**raw, "consensus": {"method": method}}))
    majority = build_curated(load_config(tmp_path / "majority.yaml"))
    config = load_config(tmp_path / "dawid-skene.yaml")
    curated = build_curated(config)
    model = dawid_skene(table, QUESTION)
    rows = pd.concat(curated.splits.values()).set_index("item_id")
    assert len(rows) == len(units) and curated.excluded["no_majority"] == 0  # every item gets a label
    assert majority.excluded["no_majority"] > 0  # ties among four annotators: the majority has none
    assert all(rows.at[u, "q"] == model.labels[u] for u in units)
    assert all(rows.at[u, "q_posterior"] == pytest.approx(model.confidence[u]) for u in units)
    ds_right = sum(rows.at[u, "q"] == truth[u] for u in units)
    by_majority = pd.concat(majority.splits.values()).set_index("item_id")
    majority_right = sum(by_majority.at[u, "q"] == truth[u] for u in by_majority.index)
    assert ds_right > 0.9 * len(units) and ds_right > majority_right  # more right labels: ties get one too
    assert by_majority["q_posterior"].isna().all()

    section = SECTION_BUILDERS["consensus"](config, annotations)
    assert min(section["q"]["skill"], key=section["q"]["skill"].get) == "bad"
    assert {d["unit"] for d in section["q"]["disagreements"]} == {d["unit"] for d in model.disagreements}
    [table_md] = render_consensus(section)
    assert [row[0] for row in table_md.rows] == sorted(section["q"]["skill"])


def test_the_report_puts_each_annotators_skill_next_to_their_honeypot_accuracy(tmp_path) -> None:
    """Sixty of the items are honeypots with a gold label (run dir only): the report's consensus table shows
    Dawid-Skene's skill and the honeypot accuracy side by side, and both single out the bad annotator."""
    import yaml

    from workspaces.agreement import write_report
    from workspaces.config import load_config
    from workspaces.review.honeypots import honeypot_section

    table, truth = _crowd(2)
    units = sorted(truth)
    honeypots = units[:60]
    pd.DataFrame({"id": units, "text": [f"text {u}" for u in units],
                  "gold": [truth[u] if u in honeypots else None for u in units]}).to_csv(tmp_path / "items.csv",
                                                                                       index=False)
    (tmp_path / "crowd.yaml").write_text(yaml.safe_dump({
        "name": "crowd", "data": {"path": "items.csv"}, "fields": [{"name": "text"}],
        "questions": [{"name": "q", "kind": "label", "labels": {"a": "", "b": "", "c": ""}}],
        "argilla": {"dataset": "crowd", "workspace": "tests"}, "run_dir": str(tmp_path / "run"),
        "reference": {"gold_columns": {"q": "gold"}}, "honeypots": {"share": 0.1, "min_seen": 10,
                                                                    "min_accuracy": 0.7}}))
    config = load_config(tmp_path / "crowd.yaml")
    config.run_path.mkdir()
    pd.DataFrame({"record_id": table["unit"], "item_id": table["unit"], "question": "q",
                  "annotator": table["annotator"], "value": table["value"], "status": "submitted",
                  "updated_at": pd.Timestamp("2026-01-02", tz="UTC")}).to_parquet(
        config.run_path / "annotations.parquet")
    pd.DataFrame({"item_id": units, "batch": "b1", "role": ["honeypot" if u in honeypots else "selected"
                                                            for u in units],
                  "suppressed": False, "position": range(len(units)), "created": "2026-01-01"}).to_parquet(
        config.run_path / "review_plan.parquet")
    section = honeypot_section(config)
    accuracy = {a["annotator"]: a for a in section["annotators"]}
    expected = {annotator: np.mean([value == truth[unit] for unit, a, value in table.itertuples(index=False)
                                    if a == annotator and unit in honeypots]) for annotator in accuracy}
    assert all(accuracy[a]["seen"] == 60 and accuracy[a]["accuracy"] == pytest.approx(expected[a]) for a in accuracy)
    report, _ = write_report(config, bootstrap=0, extra_sections={"honeypots": section})
    consensus = report.sections["consensus"]["q"]
    assert consensus["honeypot_accuracy"] == {a: accuracy[a]["accuracy"] for a in accuracy}
    assert min(consensus["skill"], key=consensus["skill"].get) == "bad"
    assert min(consensus["honeypot_accuracy"], key=consensus["honeypot_accuracy"].get) == "bad"
    markdown = (config.run_path / "report.md").read_text()
    assert "annotator skill (Dawid-Skene" in markdown and "honeypot accuracy" in markdown
