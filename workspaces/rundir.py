"""The run directory: every file a stage writes, named once, with one reader and one atomic writer.

Stages talk to each other only through these files, so any stage can be re-run alone and a crash loses at most the
current batch. Facts that must never reach reviewers (gold labels, honeypots, audit and suppressed items, the
redaction map) live here and nowhere on the Argilla server.

Reading a file that is absent raises `RunFileError` naming the command that writes it; a file that cannot be parsed
raises `RunFileError` saying it is corrupt (and where). Writes go to a unique temporary file in the same folder and
are renamed over the target, so a reader never sees half a file and two writers never share a temporary name.

A run directory is its owner's alone: every file written here is 0600 and every folder 0700 (the files hold human
responses, gold labels and which items are audits). A run directory that an earlier version left readable by other
users is tightened to 0700, with a warning, the next time a stage writes into it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import pandas as pd

from .errors import RunFileError

__all__ = [
    "StagedTable",
    "ANNOTATIONS",
    "ANNOTATIONS_HISTORY",
    "CALIBRATION",
    "CALIBRATION_ITEMS",
    "CALIBRATION_MD",
    "EMBEDDINGS",
    "GATE_BASELINE",
    "GATE_HISTORY",
    "GOLD_IDS",
    "GUIDELINE_CHANGES",
    "LABELS",
    "LEDGER",
    "LEDGER_HEAD",
    "LOOP_ROUNDS",
    "PAUSED",
    "QUALIFICATION",
    "PREFERENCES",
    "PROMPT_EXAMPLES",
    "PREFERENCES_REPORT",
    "PUSH",
    "REDACTION",
    "REDACTION_COUNTS",
    "REPORT",
    "REPORT_MD",
    "REVIEW_PLAN",
    "REVIEWER_LOGIN",
    "ROUTES",
    "RUN_DIR_MODE",
    "RUN_FILES",
    "RUN_FILE_MODE",
    "RunDirWarning",
    "RunFile",
    "SELECTION",
    "STUDENT_LABELS",
    "append_jsonl",
    "file_sha256",
    "locked",
    "private_dir",
    "read_arrow",
    "read_json",
    "read_jsonl",
    "read_table",
    "run_path",
    "write_bytes",
    "write_json",
    "write_table",
    "write_text",
]


@dataclass(frozen=True)
class RunFile:
    """A file of the run directory: its name and the command that writes it."""

    name: str
    command: str
    description: str

    def path(self, run: Union[str, "os.PathLike[str]"]) -> Path:
        """The file under run directory `run` (or `run` itself when it already names this file)."""
        run = Path(run)
        return run if run.name == self.name and not run.is_dir() else run / self.name


ANNOTATIONS = RunFile("annotations.parquet", "curate sync", "every human response on the server, as last synced")
ANNOTATIONS_HISTORY = RunFile("annotations_history.parquet", "curate sync",
                              "append-only: every response version ever synced, and when it left the server")
LABELS = RunFile("labels.parquet", "curate label", "LLM labels with confidence and per-label probabilities")
STUDENT_LABELS = RunFile("student_labels.parquet", "curate student",
                         "student labels (out-of-fold on reference items), same schema as labels.parquet")
EMBEDDINGS = RunFile("embeddings.parquet", "curate embed", "one vector per item")
PREFERENCES = RunFile("preferences.parquet", "curate prefer", "preference pairs with judge ratings")
PREFERENCES_REPORT = RunFile("preferences_report.json", "curate prefer", "judge vs human preference")
REPORT = RunFile("report.json", "curate report", "agreement report (workspaces.agreement.Report)")
REPORT_MD = RunFile("report.md", "curate report", "the report, readable")
CALIBRATION = RunFile("calibration.json", "curate calibrate", "labeler quality on the human reference, thresholds")
CALIBRATION_MD = RunFile("calibration.md", "curate calibrate", "the calibration, readable")
CALIBRATION_ITEMS = RunFile("calibration_items.parquet", "curate calibrate",
                            "per reference item: reference label, labeler label, confidence, correct")
GATE_BASELINE = RunFile("gate_baseline.parquet", "curate gate",
                        "the calibration items of the last passing gate: what drift compares against")
PROMPT_EXAMPLES = RunFile("prompt_examples.json", "curate label",
                          "per question: the few-shot examples' item ids and pool file (never calibrated on)")
GATE_HISTORY = RunFile("gate_history.jsonl", "curate gate", "append-only: every gate, audit and drift decision")
ROUTES = RunFile("routes.parquet", "curate triage", "auto / audit / review per labeled item")
SELECTION = RunFile("selection.jsonl", "curate select", "append-only: every batch selected for human review")
REVIEW_PLAN = RunFile("review_plan.parquet", "curate select",
                      "what each published review item is (selected, honeypot, audit) and whether its suggestion "
                      "was suppressed; never sent to the server")
PAUSED = RunFile("paused_annotators.json", "curate annotators pause", "annotators paused by the honeypot rule")
REDACTION = RunFile("redaction_map.json", "curate publish", "token -> original value; never published, pushed or "
                    "logged")
REDACTION_COUNTS = RunFile("redaction_counts.json", "curate publish",
                           "what redaction replaced per data file, by kind (counts only, no value)")
PUSH = RunFile("push.json", "curate push", "where the last push went (no credentials)")
REVIEWER_LOGIN = RunFile("reviewer_login.json", "curate demo", "the demo reviewer's login")
LOOP_ROUNDS = RunFile("loop_rounds.jsonl", "curate demo", "append-only: what each round of the label loop did")
LEDGER = RunFile("ledger.jsonl", "curate sync / gate / triage / push",
                 "append-only, hash-chained: every response synced, gate decision, route and pushed row")
LEDGER_HEAD = RunFile("ledger_head.json", "curate sync / gate / triage / push", "the ledger's entry count and last hash")
GUIDELINE_CHANGES = RunFile("guideline_changes.jsonl", "curate publish",
                            "append-only: each guideline change and the items labelled under an earlier version")
QUALIFICATION = RunFile("qualification.json", "curate sync / annotators qualify",
                        "qualification batches, answers and every reviewer's standing")
GOLD_IDS = RunFile("gold_ids.txt", "curate demo", "the label loop's random gold set (`selection.gold`), one id a line")

RUN_FILES: tuple[RunFile, ...] = (
    ANNOTATIONS, ANNOTATIONS_HISTORY, LABELS, STUDENT_LABELS, EMBEDDINGS, PREFERENCES, PREFERENCES_REPORT, REPORT,
    REPORT_MD, CALIBRATION, CALIBRATION_MD, CALIBRATION_ITEMS, GATE_BASELINE, PROMPT_EXAMPLES, GATE_HISTORY, ROUTES, SELECTION, REVIEW_PLAN, PAUSED, REDACTION, REDACTION_COUNTS, PUSH,
    REVIEWER_LOGIN, GOLD_IDS, LOOP_ROUNDS, LEDGER, LEDGER_HEAD, QUALIFICATION, GUIDELINE_CHANGES,
)

RUN_DIR_MODE = 0o700  # every folder of a run directory: its owner only
RUN_FILE_MODE = 0o600  # every file of a run directory: its owner only


class RunDirWarning(UserWarning):
    """A run directory was (or still is) open to other users; the CLI shows it as one plain `warning:` line."""


def run_path(config: Any) -> Path:
    """The run directory of a project config (`config.run_path`), or a path given as is."""
    return Path(getattr(config, "run_path", config))


def _missing(path: Path, file: RunFile) -> RunFileError:
    return RunFileError(f"{path}: no {file.name} yet; run `{file.command} CONFIG` first")


def _corrupt(path: Path, file: RunFile, exc: BaseException) -> RunFileError:
    return RunFileError(f"{path}: {file.name} is corrupt ({type(exc).__name__}: {exc}); "
                        f"move it away and run `{file.command} CONFIG` again")


def _existing(run: Union[str, "os.PathLike[str]"], file: RunFile, required: bool) -> Optional[Path]:
    """The file's path when it exists; None when it does not and is not required; else `RunFileError`."""
    path = file.path(run)
    if path.is_file():
        return path
    if required:
        raise _missing(path, file)
    return None


def read_table(run: Union[str, "os.PathLike[str]"], file: RunFile, *, required: bool = True,
               columns: Optional[list[str]] = None) -> Optional[pd.DataFrame]:
    """Read a parquet run file; `item_id` is kept as text.

    Args:
        run: the run directory (or the file itself).
        file: which run file.
        required: raise when absent (else return None).
        columns: columns the file must have (a missing one is reported as corrupt).

    Raises:
        RunFileError: absent (when required) or unreadable, naming the command that writes it.
    """
    path = _existing(run, file, required)
    if path is None:
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise _corrupt(path, file, exc) from None
    if columns:
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise _corrupt(path, file, ValueError(f"missing column(s) {absent}"))
    if "item_id" in frame.columns:
        frame["item_id"] = frame["item_id"].astype(str)
    return frame


def read_arrow(run: Union[str, "os.PathLike[str]"], file: RunFile, *, columns: list[str], required: bool = True,
               optional: tuple[str, ...] = (),
               text: tuple[str, ...] = ("item_id",)) -> Optional["pa.Table"]:
    """Read only some columns of a parquet run file as an Arrow table (compact: no Python object per value).

    Args:
        run: the run directory (or the file itself).
        file: which run file.
        columns: columns the file must have (a missing one is reported as corrupt); read.
        required: raise when absent (else return None).
        optional: columns read when the file has them (no other column is read).
        text: columns read as text (`item_id` by default; an empty file's all-null columns too).

    Raises `RunFileError` as `read_table` does.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _existing(run, file, required)
    if path is None:
        return None
    try:
        names = pq.read_schema(path).names
        absent = [c for c in columns if c not in names]
        if absent:
            raise ValueError(f"missing column(s) {absent}")
        table = pq.read_table(path, columns=[*columns, *(c for c in optional if c in names)])
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise _corrupt(path, file, exc) from None
    for name in text:
        if name in table.column_names and table.schema.field(name).type != pa.string():
            table = table.set_column(table.column_names.index(name), name, table[name].cast(pa.string()))
    return table


def read_json(run: Union[str, "os.PathLike[str]"], file: RunFile, *, required: bool = True) -> Any:
    """Read a JSON run file (None when absent and not required). Raises `RunFileError` (absent / corrupt)."""
    path = _existing(run, file, required)
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(path, file, exc) from None


def read_jsonl(run: Union[str, "os.PathLike[str]"], file: RunFile, *, required: bool = False) -> list[dict[str, Any]]:
    """Read a JSON-lines run file (an empty list when absent and not required)."""
    path = _existing(run, file, required)
    if path is None:
        return []
    entries = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        entries.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise _corrupt(path, file, ValueError(f"line {number}: {exc}")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _corrupt(path, file, exc) from None
    return entries


def private_dir(path: Union[str, "os.PathLike[str]"]) -> Path:
    """Make `path` an owner-only folder (`RUN_DIR_MODE`) and return it.

    Every missing folder on the way is created owner-only; an existing `path` that other users may read or enter
    (an earlier version made run directories 0755) is tightened, with a warning. Folders above an existing one are
    left as they are.
    """
    path = Path(path)
    missing = []
    probe = path
    while not probe.is_dir() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=RUN_DIR_MODE)
        except FileExistsError:  # made meanwhile by another writer (or a file: the write below names it)
            continue
        os.chmod(folder, RUN_DIR_MODE)  # whatever the umask
    if path in missing:
        return path
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        try:
            os.chmod(path, RUN_DIR_MODE)
        except OSError as exc:
            warnings.warn(f"{path}: other users may read this run folder (mode {mode:04o}) and it could not be made "
                          f"owner-only ({exc.strerror}); run `chmod 700 {path}`", RunDirWarning, stacklevel=2)
        else:
            warnings.warn(f"{path}: other users could read this run folder (mode {mode:04o}); made it owner-only "
                          f"({RUN_DIR_MODE:04o})", RunDirWarning, stacklevel=2)
    return path


def _temporary(path: Path) -> tuple[int, Path]:
    """A unique owner-only temporary file next to `path` (same folder, so the final rename is atomic): fd and path."""
    private_dir(path.parent)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    return fd, Path(temporary)


def _put_in_place(temporary: Path, path: Path) -> None:
    """Give the finished temporary file the run file mode (owner-only) and rename it over `path`."""
    os.chmod(temporary, RUN_FILE_MODE)
    os.replace(temporary, path)


def write_bytes(path: Union[str, "os.PathLike[str]"], data: bytes) -> Path:
    """Write `data` to `path` atomically (unique temporary file + rename), owner-only, in an owner-only folder."""
    path = Path(path)
    fd, temporary = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        _put_in_place(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


class StagedTable:
    """A parquet file written row group by row group under a unique temporary name next to `path`, for outputs too
    large to hold at once.

    `commit()` renames it over `path` (atomic, owner-only as in `write_bytes`: a reader sees the old file
    or the new one, never half of one); `discard()` removes it (a no-op after `commit`).
    """

    def __init__(self, path: Path, schema: "pa.Schema") -> None:
        import pyarrow.parquet as pq

        fd, self.temporary = _temporary(path)
        os.close(fd)
        self.path, self.schema, self.rows = path, schema, 0
        self._writer: Optional[pq.ParquetWriter] = pq.ParquetWriter(self.temporary, schema)

    def write(self, table: "pa.Table") -> None:
        """Append `table` (its columns of the schema, cast to it) as one row group."""
        import pyarrow as pa

        if table.num_rows:
            assert self._writer is not None
            self._writer.write_table(pa.table([table[f.name].cast(f.type) for f in self.schema], schema=self.schema))
            self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def commit(self) -> None:
        self.close()
        _put_in_place(self.temporary, self.path)

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temporary)


def write_text(path: Union[str, "os.PathLike[str]"], text: str) -> Path:
    """Write `text` (UTF-8) atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Union[str, "os.PathLike[str]"], payload: Any) -> Path:
    """Write `payload` as indented JSON atomically."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def write_table(path: Union[str, "os.PathLike[str]"], frame: pd.DataFrame) -> Path:
    """Write a DataFrame as parquet atomically."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return write_bytes(path, buffer.getvalue())


def file_sha256(path: Union[str, "os.PathLike[str]"]) -> str:
    """The sha256 (hex) of a file's bytes, read in chunks (never whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _owner_only(path: Path) -> "io.BufferedWriter":
    """`path` opened for appending (bytes), created owner-only; one an earlier version left open is tightened."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, RUN_FILE_MODE)
    if stat.S_IMODE(os.fstat(fd).st_mode) != RUN_FILE_MODE:  # whatever the umask, or an earlier version, made it
        os.fchmod(fd, RUN_FILE_MODE)
    return os.fdopen(fd, "ab")


@contextlib.contextmanager
def locked(path: Union[str, "os.PathLike[str]"]) -> Iterator[None]:
    """An exclusive advisory lock next to `path` (`.<name>.lock`), for read-modify-write of a run file."""
    path = Path(path)
    private_dir(path.parent)
    with _owner_only(path.parent / f".{path.name}.lock") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_jsonl(path: Union[str, "os.PathLike[str]"], entry: dict[str, Any]) -> Path:
    """Append one JSON object as a line (under a lock, fsynced): the file is only ever appended to."""
    path = Path(path)
    line = json.dumps(entry, sort_keys=False, default=str) + "\n"
    with locked(path):
        with _owner_only(path) as handle:
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
    return path
