"""Small real projects for tests: the shipped ConvAbuse demo config on a slice of its data, in a test's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "convabuse_demo.yaml"


def convabuse_project(tmp_path: Path, dataset: str, *, limit: Optional[int] = 24, **changes: Any) -> Path:
    """`configs/convabuse_demo.yaml` on the first `limit` ConvAbuse validation items (None: all), publishing to
    `dataset` in workspace `tests`, its run in `tmp_path/run`; `changes` set top-level keys (a mapping is merged into
    the section there; None drops the key). Returns the config file's path."""
    raw = yaml.safe_load(DEMO.read_text())
    raw["data"].update(path=str(ROOT / "data" / "convabuse" / "valid.jsonl"), limit=limit)
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["argilla"].update(dataset=dataset, workspace="tests")
    raw["run_dir"] = str(tmp_path / "run")
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        elif isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    path = tmp_path / f"{dataset}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
