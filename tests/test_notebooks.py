"""The analysis notebooks run top to bottom (nbclient, a real kernel) on a real run dir and draw the figures they
promise.

The run dir is built the way a project builds it: 160 ConvAbuse items on the real embedded Argilla server, `curate
embed` (real MiniLM vectors), `curate select` (a batch of 70 with honeypots from a gold set), the recorded ConvAbuse
annotators submitting their own labels for the published records, `curate sync`, `curate student` (scikit-learn on
the embeddings), `calibrate` / `gate` / `triage` with the student, `curate report` and `curate push` to a folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import argilla as rg
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from support.notebooks import assert_figures as _assert_figures, images as _images, outputs as _outputs
from support.notebooks import run_notebook as _run_notebook

from workspaces.argilla_io.publish import get_dataset
from workspaces.argilla_io.replay import replay_recorded_labels
from workspaces.argilla_io.sync import sync
from workspaces.cli import app
from workspaces.config import load_config
from workspaces.items import load_items, recorded_labels

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "convabuse_demo.yaml"
N_ITEMS = 160


def _invoke(*args: str, env: dict[str, str], codes: tuple[int, ...] = (0,)) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code in codes, f"curate {' '.join(args)}: exit {result.exit_code}\n{result.output}"
    return result.output


@pytest.fixture(scope="module")
def run(argilla_client: rg.Argilla, argilla_server, tmp_path_factory) -> dict:
    """A real run dir of a small ConvAbuse project, every stage the notebooks read (see the module docstring)."""
    tmp = tmp_path_factory.mktemp("notebooks")
    raw = yaml.safe_load(DEMO.read_text())
    raw["data"].update(path=str(ROOT / "data" / "convabuse" / "valid.jsonl"), limit=N_ITEMS)
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["argilla"].update(dataset="notebooks-convabuse", workspace="tests")
    raw["run_dir"] = str(tmp / "run")
    raw["reference"] = {"recorded": False}  # only what humans submitted in Argilla (and the gold set) counts
    raw["honeypots"] = {"share": 0.1, "min_seen": 3, "min_accuracy": 0.7}
    raw["selection"] = {"batch": 70, "strategy": "default"}
    raw["gate"] = {"metric": "kappa", "min": 0.2, "target_precision": 0.9, "min_reference": 50}
    raw["calibration"] = {"target_precisions": [0.9], "min_per_label": 30}
    raw["triage"] = {"labeler": "student", "audit_share": 0.15}
    path = tmp / "notebooks.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    votes = recorded_labels(config, load_items(config))
    abusive = votes[votes["question"] == "is_abusive"]
    # gold: items whose 3+ recorded annotators have a strict majority, some of them not unanimous (so the
    # honeypots can tell annotators apart)
    majority = [item for item, group in abusive.groupby("item_id", sort=False)
                if len(group) >= 3 and group["value"].value_counts().iloc[0] * 2 > len(group)]
    (tmp / "gold.txt").write_text("\n".join(majority[:30]) + "\n")
    raw["hub"]["gold_ids_path"] = str(tmp / "gold.txt")
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    env = {"ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key}

    _invoke("embed", str(path), env=env)
    _invoke("select", str(path), env=env)
    plan = pd.read_parquet(config.run_path / "review_plan.parquet")
    published = set(plan["item_id"])
    replay_recorded_labels(config, argilla_client, labels=votes[votes["item_id"].isin(published)])
    sync(config, argilla_client)
    _invoke("student", str(path), env=env)
    _invoke("calibrate", str(path), "--labeler", "student", env=env)
    gate = _invoke("gate", str(path), "--labeler", "student", env=env, codes=(0, 7))
    _invoke("triage", str(path), "--labeler", "student", env=env)
    _invoke("report", str(path), "--bootstrap", "200", env=env)
    _invoke("push", str(path), env=env)
    yield {"path": path, "config": config, "plan": plan, "gate": gate}
    dataset = get_dataset(argilla_client, config)
    if dataset is not None:
        dataset.delete()


def test_agreement_notebook_draws_alpha_and_annotators_from_the_run(run, monkeypatch, tmp_path: Path) -> None:
    notebook = _run_notebook("agreement", monkeypatch, tmp_path, CURATE_CONFIG=str(run["path"]))
    text = _outputs(notebook)
    report = json.loads((run["config"].run_path / "report.json").read_text())
    assert f"report.json of {report['created']}" in text and "synced from Argilla" in text
    for name in ("is_abusive", "severity"):
        assert f"{report['questions'][name]['alpha']:.3f}" in text  # the run's alpha, as displayed
    honeypots = report["sections"]["honeypots"]
    assert honeypots["honeypots"] == int((run["plan"]["role"] == "honeypot").sum()) > 0
    assert "no honeypots in this run" not in text
    assert {a["annotator"] for a in report["annotators"]["is_abusive"]} <= {f"annotator{i}" for i in range(1, 9)}
    assert _images(notebook) == 3
    _assert_figures(tmp_path, ["alpha_per_question", "annotator_agreement", "alpha_by_level"])


def test_judge_calibration_notebook_draws_the_confusion_matrix_and_reliability(run, monkeypatch,
                                                                               tmp_path: Path) -> None:
    notebook = _run_notebook("judge_calibration", monkeypatch, tmp_path, CURATE_CONFIG=str(run["path"]))
    text = _outputs(notebook)
    calibration = json.loads((run["config"].run_path / "calibration.json").read_text())
    q = calibration["questions"]["is_abusive"]
    assert calibration["labeler"] == "student" and q["n"] >= 50
    assert f"calibration of {calibration['created']}: labeler student" in text
    assert sum(map(sum, q["confusion"]["matrix"])) == q["n"]
    gate = [json.loads(line) for line in (run["config"].run_path / "gate_history.jsonl").read_text().splitlines()]
    assert gate[-1]["decision"] in text and gate[-1]["reason"][:40] in text
    assert _images(notebook) == 2
    _assert_figures(tmp_path, ["confusion_matrix", "reliability"])


def test_routes_and_curated_notebook_draws_routes_and_splits(run, monkeypatch, tmp_path: Path) -> None:
    notebook = _run_notebook("routes_and_curated", monkeypatch, tmp_path, CURATE_CONFIG=str(run["path"]))
    text = _outputs(notebook)
    routes = pd.read_parquet(run["config"].run_path / "routes.parquet")
    assert len(routes) == N_ITEMS
    pushed = json.loads((run["config"].run_path / "push.json").read_text())
    assert f"pushed to {pushed['location']} {pushed['rows']}" in text
    assert "gold" in pushed["rows"]  # the gold set is its own split
    for route, n in routes["route"].value_counts().items():
        assert f"'{route}': {n}" in text  # the notebook's route counts are the run's
    assert _images(notebook) == 2
    _assert_figures(tmp_path, ["confidence_by_route", "labels_per_split"])


def test_agreement_notebook_runs_before_anything_was_synced(monkeypatch, tmp_path: Path) -> None:
    """No run dir yet: the notebook falls back to the labels recorded with the vendored sample."""
    notebook = _run_notebook("agreement", monkeypatch, tmp_path / "figures", CURATE_RUN_DIR=str(tmp_path / "no-run"))
    text = _outputs(notebook)
    assert "recorded labels of the vendored sample - 4886 values" in text
    assert "built here with workspaces.agreement.build_report" in text
    assert "annotator5" in text.lower() and "no honeypots in this run" in text
    assert _images(notebook) == 3
    _assert_figures(tmp_path / "figures", ["alpha_per_question", "annotator_agreement", "alpha_by_level"])
