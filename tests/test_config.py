"""Config validation: one clear error naming the file and the key; nothing is written on a bad config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from workspaces.cli import app
from workspaces.config import AlphaLevel, ConfigError, load_config
from workspaces.items import load_items, recorded_labels

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "convabuse_demo.yaml"
runner = CliRunner()


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["data"]["path"] = str(ROOT / "data" / "convabuse" / "valid.jsonl")
    raw.setdefault("llm", {})
    if raw.get("llm") and raw["llm"].get("few_shot_path"):
        raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["run_dir"] = str(tmp_path / "run")
    mutate(raw)
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_demo_config_loads_and_resolves_paths() -> None:
    config = load_config(DEMO)
    assert config.data.path == ROOT / "data" / "convabuse" / "valid.jsonl"
    assert [q.name for q in config.questions] == ["is_abusive", "severity"]
    assert config.question("is_abusive").alpha_level == AlphaLevel.nominal
    assert config.question("severity").alpha_level == AlphaLevel.ordinal
    assert config.argilla.min_submitted == 3
    assert config.run_path == Path("runs") / "convabuse_demo"


def test_vendored_sample_maps_to_the_question_scales() -> None:
    config = load_config(DEMO)
    items = load_items(config)
    assert len(items) == 831 and items["item_id"].is_unique
    labels = recorded_labels(config, items)
    assert set(labels["annotator"]) == {f"Annotator{i}" for i in range(1, 9)}
    severity = labels[labels["question"] == "severity"]["value"]
    assert set(severity) <= {1, 2, 3, 4, 5}
    # x -> 2 - x on the source scale, checked on the raw file for one item
    raw = items.set_index("item_id").loc[items["item_id"].iloc[0], "annotations"]
    mapped = labels[(labels["item_id"] == items["item_id"].iloc[0]) & (labels["question"] == "severity")]
    assert sorted(mapped["value"]) == sorted(2 - a["severity"] for a in raw)


@pytest.mark.parametrize("mutate, key", [
    (lambda raw: raw["argilla"].pop("dataset"), "argilla.dataset"),
    (lambda raw: raw.update(questionz=[]), "questionz"),
    (lambda raw: raw["questions"][0].update(kind="multiple"), "questions[is_abusive].kind"),  # by name, not index (issue 26.6)
    (lambda raw: raw["questions"][1].update(values=[1]), "questions[severity]"),
    (lambda raw: raw["argilla"].update(min_submitted=0), "argilla.min_submitted"),
    (lambda raw: raw["questions"][0].update(name="Is Abusive"), "questions[Is Abusive].name"),
    (lambda raw: raw["human_labels"]["values"].update(toxicity={"key": "x"}), "toxicity"),
    (lambda raw: raw["fields"].append({"label": "no name"}), "fields[4].name"),  # no name: the index
    (lambda raw: raw["llm"].update(questions=["nope"]), "nope"),
])
def test_bad_config_names_file_and_key(tmp_path: Path, mutate, key: str) -> None:
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message


def test_cli_bad_config_exits_nonzero_and_writes_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda raw: raw["questions"][0].update(kind="multiple"))
    for command in (["publish", str(path)], ["sync", str(path)], ["report", str(path)]):
        result = runner.invoke(app, command)
        assert result.exit_code != 0
        assert "questions[is_abusive].kind" in result.output
    assert not (tmp_path / "run").exists()


def test_unknown_question_and_missing_file(tmp_path: Path) -> None:
    config = load_config(DEMO)
    with pytest.raises(ConfigError, match="unknown question 'toxicity'"):
        config.question("toxicity")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_bad_data_file_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda raw: raw["data"].update(path=str(tmp_path / "missing.jsonl")))
    with pytest.raises(ConfigError, match="missing.jsonl: data file not found"):
        load_items(load_config(path))
    path = _write(tmp_path, lambda raw: raw["data"].update(id_column="uid"))
    with pytest.raises(ConfigError, match="data.id_column"):
        load_items(load_config(path))
