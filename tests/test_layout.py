"""The tree shows the loop, and its imports go down only (cli -> stages -> core): checked on the real source."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
import_graph = importlib.util.module_from_spec(spec)
sys.modules["import_graph"] = import_graph
spec.loader.exec_module(import_graph)


def test_imports_go_down_only() -> None:
    found = import_graph.edges()
    assert import_graph.violations(found) == []
    assert ("cli", "core") in found and ("pipelines", "core") in found  # the check sees real arrows
    assert not [edge for edge in found if edge[1] == "cli" and edge[0] != "cli"], "no stage imports the CLI"
    argilla_targets = {b for a, b in found if a == "argilla_io"}
    assert argilla_targets <= {"core"}, "the Argilla I/O package reads other stages' run-dir files, not their code"


def test_the_import_graph_picture_is_current() -> None:
    assert import_graph.PICTURE.read_text(encoding="utf-8") == import_graph.render(import_graph.edges()), \
        "run `python scripts/import_graph.py --write`"


def test_a_forbidden_arrow_is_caught(tmp_path: Path, monkeypatch) -> None:
    """The checker itself: an argilla_io module importing the judge is reported."""
    fake_root = tmp_path / "repo"
    (fake_root / "workspaces" / "argilla_io").mkdir(parents=True)
    (fake_root / "workspaces" / "judge").mkdir(parents=True)
    (fake_root / "pipelines").mkdir()
    (fake_root / "workspaces" / "argilla_io" / "bad.py").write_text("from ..judge import gate\n")
    monkeypatch.setattr(import_graph, "ROOT", fake_root)
    assert import_graph.violations(import_graph.edges()) == ["argilla_io -> judge (workspaces/argilla_io/bad.py)"]


def test_no_module_imports_itself_back() -> None:
    """No import circle between modules, inside a package too (issue 26.7: agreement.report <-> sections)."""
    graph = import_graph.module_edges()
    assert "workspaces.agreement.tables" in graph["workspaces.agreement.sections"]  # the check sees real arrows
    assert import_graph.module_cycles(graph) == []


def test_an_import_circle_is_caught_even_when_deferred_into_a_function(tmp_path: Path, monkeypatch) -> None:
    fake_root = tmp_path / "repo"
    (fake_root / "workspaces" / "agreement").mkdir(parents=True)
    (fake_root / "pipelines").mkdir()
    (fake_root / "workspaces" / "agreement" / "__init__.py").write_text("")
    (fake_root / "workspaces" / "agreement" / "report.py").write_text("from .sections import BUILDERS\n")
    (fake_root / "workspaces" / "agreement" / "sections.py").write_text(
        "def build():\n    from .report import table\n    return table\n")
    (fake_root / "workspaces" / "agreement" / "leaf.py").write_text("from . import report\n")
    monkeypatch.setattr(import_graph, "ROOT", fake_root)
    assert import_graph.module_cycles() == [["workspaces.agreement.report", "workspaces.agreement.sections"]]


def test_the_tree_shows_the_loop() -> None:
    for package in ("argilla_io", "judge", "review", "agreement", "curated", "cli"):
        assert (ROOT / "workspaces" / package / "__init__.py").is_file(), package
    for core in ("config", "items", "rundir", "votes", "errors"):
        assert (ROOT / "workspaces" / f"{core}.py").is_file(), core
    assert (ROOT / "workspaces" / "py.typed").is_file() and (ROOT / "pipelines" / "py.typed").is_file()
