"""Running the analysis notebooks in tests: a fresh kernel (nbclient), the Agg backend, figures saved to a folder."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"

__all__ = ["assert_figures", "images", "outputs", "run_notebook"]


def run_notebook(name: str, monkeypatch, figures: Path, **env: str) -> nbformat.NotebookNode:
    """Execute notebooks/<name>.ipynb in a fresh kernel (Agg backend, figures saved under `figures`)."""
    monkeypatch.setenv("CURATE_ROOT", str(ROOT))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("CURATE_FIGURES", str(figures))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return notebook


def outputs(notebook) -> str:
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") + str(output.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


def images(notebook) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


def assert_figures(figures: Path, names: list[str]) -> None:
    for name in names:
        path = figures / f"{name}.png"
        assert path.is_file(), f"the notebook did not draw {name}"
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5_000, f"{name}.png is not a drawn figure"
