"""Checkpoints: every finished batch is a parquet part, folded into the stage's output when the run ends.

A killed run resumes from its parts; `consolidate` writes the output atomically and removes the parts.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import pandas as pd

from workspaces.rundir import write_table

__all__ = ["PartsWatcher", "consolidate", "read_with_parts", "write_part"]

Progress = Callable[[int, int], None]


def write_part(directory: Path, run_id: str, batch: int, rows: List[Dict[str, Any]]) -> Path:
    """Write one finished batch atomically as `<run_id>-<batch>-<rows>.parquet` (the resume checkpoint)."""
    final = directory / f"{run_id}-{batch:05d}-{len(rows)}.parquet"
    return write_table(final, pd.DataFrame(rows))


class PartsWatcher:
    """Polls the checkpoint folder and reports (rows done, total) while the pipeline runs in the main thread."""

    def __init__(self, directory: Path, run_id: str, total: int, progress: Optional[Progress]) -> None:
        self.directory, self.run_id, self.total, self.progress = directory, run_id, total, progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def done(self) -> int:
        if not self.directory.is_dir():
            return 0
        return sum(int(p.stem.rsplit("-", 1)[1]) for p in self.directory.glob(f"{self.run_id}-*.parquet"))

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            if self.progress:
                self.progress(self.done(), self.total)

    def __enter__(self) -> "PartsWatcher":
        if self.progress:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.progress:
            self._thread.join(timeout=2)
            self.progress(self.done(), self.total)


def read_with_parts(path: Path, parts: Path, columns: Sequence[str], key: Sequence[str]) -> pd.DataFrame:
    """The output file plus every checkpoint part not yet folded in; the newest row wins per `key`."""
    frames = []
    if path.is_file():
        frames.append(pd.read_parquet(path))
    if parts.is_dir():
        frames.extend(pd.read_parquet(p) for p in sorted(parts.glob("*.parquet"), key=lambda p: p.stat().st_mtime))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    frame = pd.concat(frames, ignore_index=True)
    frame["item_id"] = frame["item_id"].astype(str)
    return frame.drop_duplicates(list(key), keep="last").reset_index(drop=True)


def consolidate(path: Path, parts: Path, columns: Sequence[str], key: Sequence[str],
                floats: Sequence[str] = ()) -> pd.DataFrame:
    """Fold checkpoint parts into the output file (atomically) and remove them; returns the output."""
    frame = read_with_parts(path, parts, columns, key)
    for column in columns:
        if column not in frame.columns:
            frame[column] = None
    frame = frame[list(columns)]
    for column in floats:
        frame[column] = frame[column].astype("float64")
    write_table(path, frame)
    shutil.rmtree(parts, ignore_errors=True)
    return frame
