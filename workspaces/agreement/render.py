"""One table renderer for every figure table (report.md, the dataset card, the console)."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel

__all__ = ["MarkdownTable", "fmt"]


def fmt(value: Optional[float], digits: int = 3) -> str:
    """A figure for a table: `n/a` for None, else `digits` decimals."""
    return "n/a" if value is None else f"{value:.{digits}f}"


class MarkdownTable(BaseModel):
    """A titled table of text cells, rendered as Markdown here and as a rich table by the CLI."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: Optional[str] = None

    def to_markdown(self) -> list[str]:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return lines
