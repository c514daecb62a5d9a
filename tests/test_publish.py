"""Publishing untrusted items: one bad item never spoils the others (issue 13), on the real server."""

from __future__ import annotations

import json
from pathlib import Path

import argilla as rg
import pandas as pd
import yaml

from workspaces.argilla_io.publish import get_dataset, publish
from workspaces.config import load_config


def _project(tmp_path: Path, texts: list[str], dataset: str) -> Path:
    pd.DataFrame({"id": [f"item-{n:03d}" for n in range(len(texts))], "text": texts}).to_csv(tmp_path / "items.csv",
                                                                                             index=False)
    config = {"name": "bad-items", "data": {"path": "items.csv", "max_chars": 5000},
              "fields": [{"name": "text", "title": "Text"}],
              "questions": [{"name": "q", "kind": "label", "labels": {"a": "first", "b": "second"}}],
              "argilla": {"dataset": dataset, "workspace": "tests"}, "run_dir": str(tmp_path / "run")}
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_empty_and_over_long_items_are_skipped_with_their_reason(argilla_client: rg.Argilla, tmp_path: Path) -> None:
    texts = [f"query number {n}" for n in range(300)]
    texts[17], texts[140] = "", "y" * 6000
    config = load_config(_project(tmp_path, texts, "publish-bad-items"))
    result = publish(config, argilla_client, batch_size=256)
    try:
        assert result.records == 298 and result.created
        assert result.skipped["item-017"].startswith("empty: required field(s) text")
        assert result.skipped["item-140"].startswith("too long: text (6,000 chars)")
        dataset = get_dataset(argilla_client, config)
        assert dataset.progress()["total"] == 298
    finally:
        get_dataset(argilla_client, config).delete()


def test_a_record_the_server_refuses_fails_alone(argilla_client: rg.Argilla, tmp_path: Path) -> None:
    """A suggestion outside the label set (e.g. from a labeler prompted with other labels) makes the server refuse
    that record; the rest of its batch is still published and the failure is reported with the server's reason."""
    config = load_config(_project(tmp_path, [f"text {n}" for n in range(10)], "publish-refused"))
    (tmp_path / "run").mkdir()
    labels = [{"item_id": f"item-{n:03d}", "question": "q", "label": "zzz" if n == 4 else "a", "confidence": 0.9,
               "probabilities": json.dumps({"a": 0.9}), "model": "m", "prompt_hash": "h", "raw_output": "{}",
               "status": "ok", "error": None} for n in range(10)]
    pd.DataFrame(labels).to_parquet(tmp_path / "run" / "labels.parquet")
    result = publish(config, argilla_client)
    try:
        assert list(result.failed) == ["item-004"] and "zzz" in result.failed["item-004"]
        assert result.records == 9
        dataset = get_dataset(argilla_client, config)
        published = {r.id: r for r in dataset.records(with_suggestions=True)}
        assert set(published) == {f"item-{n:03d}" for n in range(10)} - {"item-004"}
        assert all(r.suggestions["q"].value == "a" for r in published.values())
    finally:
        get_dataset(argilla_client, config).delete()
