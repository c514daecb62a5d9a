"""`curate redact [CONFIG]`: lines of standard input, redacted, one per line (for trying the rules and patterns)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ._app import app, command, load
from .console import warn


@command(app, "redact")
def redact_command(
    config: Optional[Path] = typer.Argument(None, help="Project config YAML whose `redaction` kinds and patterns to "
                                                       "use (default: every built-in kind)."),
) -> None:
    """Print each line of standard input with its PII replaced by tokens, in order, one line per line.

    Tokens are numbered in order within this run (`<EMAIL_1>`, ...); nothing is written and no run dir's map is read
    or changed.
    """
    from ..config import RedactionConfig
    from ..redaction import Redactor

    spec = RedactionConfig()
    if config is not None:
        project = load(config)
        spec = project.redaction
        if not spec.enabled:
            warn(f"{config}: redaction.enabled is false, so no stage redacts; showing what its kinds and patterns "
                 "would replace")
    redactor = Redactor(spec)
    for stream in (sys.stdin, sys.stdout):  # undecodable bytes pass through as they came
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    # Plain stdout, not the rich console: a filter must give back each line exactly (tabs, markup-like text).
    for line in sys.stdin:
        text = line[:-1] if line.endswith("\n") else line
        sys.stdout.write(redactor.redact(text) + "\n")
        sys.stdout.flush()
