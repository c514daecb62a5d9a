"""Report sections that later stages add (audit against the promise, honeypots, anchoring, consensus, redaction).

Each section has a builder `(config, annotations) -> dict | None` that reads the run-dir files it needs (never another
stage's code) and a renderer `(section) -> list[MarkdownTable]`. `write_report` runs every builder.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import pandas as pd

from ..config import ProjectConfig
from .render import MarkdownTable

__all__ = ["SECTION_BUILDERS", "SECTION_RENDERERS", "section"]

Builder = Callable[[ProjectConfig, pd.DataFrame], Optional[dict[str, Any]]]
Renderer = Callable[[dict[str, Any]], list[MarkdownTable]]

SECTION_BUILDERS: dict[str, Builder] = {}
SECTION_RENDERERS: dict[str, Renderer] = {}


def section(name: str, renderer: Renderer) -> Callable[[Builder], Builder]:
    """Register a report section: `@section("audit", render_audit)` above its builder."""

    def register(builder: Builder) -> Builder:
        SECTION_BUILDERS[name] = builder
        SECTION_RENDERERS[name] = renderer
        return builder

    return register


def _f(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render_audit(section: dict[str, Any]) -> list[MarkdownTable]:
    """The audit: observed error of audited labels against the threshold's promise."""
    rows = [[question, str(q["routed"]), str(q["audited"]), str(q["errors"]), _f(q["error"]),
             f"[{_f(q['error_low'])}, {_f(q['error_high'])}]", _f(q["promised_error"]), q["verdict"]]
            for question, q in section.get("questions", {}).items()]
    return [MarkdownTable(title="Audit of auto-accepted labels",
                          columns=["question", "routed to audit", "reviewed", "wrong", "observed error",
                                   "95% interval", "promised error (at most)", "verdict"], rows=rows)]


SECTION_RENDERERS["audit"] = render_audit  # computed by the judge (`workspaces.judge.audit`), passed in by the CLI
