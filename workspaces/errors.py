"""One error root for the whole loop, and one exit code per class of failure.

Every error a user can meet is a `CurateError`: its message says what went wrong, where (file, key, URL, item) and
what to do. The CLI prints that one message (no traceback) and exits with the class's `exit_code`, the same in every
command: a bad config exits 2 in `curate label` as in `curate publish`.

| exit | class               | meaning                                                                              |
|------|---------------------|--------------------------------------------------------------------------------------|
| 1    | `CurateError`       | anything else the loop refuses (e.g. a push of 0 rows)                               |
| 2    | `ConfigError`       | the config or the input data is wrong (file, key, column, row named)                 |
| 3    | `RunFileError`      | a run-dir file is missing or corrupt (names the command that writes it)              |
| 4    | `ArgillaError`      | the Argilla server is unreachable, refused the credentials, or rejected a request    |
| 5    | `ModelError`        | the LLM / embedding model cannot be set up, or every item failed                     |
| 6    | `HubError`          | the Hugging Face Hub or the target folder refused the curated dataset                |
| 7    | `GateClosedError`   | `curate gate`: the labeler is not trusted (the history entry says why)               |
| 8    | `DataLossError`     | a step would lose human responses or files it does not own; nothing was changed     |
| 9    | `PromiseBrokenError`| labels accepted without a human measured below their promise on held-back labels     |
"""

from __future__ import annotations

__all__ = [
    "ArgillaError",
    "ConfigError",
    "CurateError",
    "DataLossError",
    "EXIT_CODES",
    "GateClosedError",
    "HubError",
    "ModelError",
    "PromiseBrokenError",
    "RunFileError",
]


class CurateError(Exception):
    """The root of every error the loop raises on purpose. `exit_code` is what the CLI exits with."""

    exit_code: int = 1


class ConfigError(CurateError, ValueError):
    """A config or input data file is missing, unreadable or invalid. The message names the file and the key/row."""

    exit_code = 2


class RunFileError(CurateError):
    """A run-dir file is missing or corrupt. The message names the file and the command that writes it."""

    exit_code = 3


class ArgillaError(CurateError):
    """The Argilla server cannot be reached, refused the credentials, or rejected a request (URL named)."""

    exit_code = 4


class ModelError(CurateError):
    """A model (LLM, embeddings, student) cannot be set up or produced nothing usable."""

    exit_code = 5


class HubError(CurateError):
    """The curated dataset could not be published (token, repo, unreachable Hub, unsafe folder). Never holds a token."""

    exit_code = 6


class GateClosedError(CurateError):
    """The gate refuses the labeler: its labels may not be accepted without human review."""

    exit_code = 7


class DataLossError(CurateError):
    """A step would lose human responses (or files it did not write); nothing was changed."""

    exit_code = 8


class PromiseBrokenError(CurateError):
    """`curate demo`: the labels accepted without a human scored below their promise against the labels held back
    (a defect of the gate, not a detail); the report says which label and by how much."""

    exit_code = 9


EXIT_CODES: dict[int, str] = {cls.exit_code: cls.__name__ for cls in (
    CurateError, ConfigError, RunFileError, ArgillaError, ModelError, HubError, GateClosedError, DataLossError,
    PromiseBrokenError)}
