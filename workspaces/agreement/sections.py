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
