"""Draw the package import graph of the project and check its arrows.

    python scripts/import_graph.py            # print the Mermaid picture
    python scripts/import_graph.py --write    # rewrite docs/import_graph.md

Packages: `core` (the modules directly in `workspaces/`), the stages (`pipelines`, `argilla_io`, `judge`, `review`,
`agreement`, `curated`) and `cli`. Imports go down only: cli -> stages -> core. `ALLOWED` lists every arrow that may
exist; `tests/test_layout.py` fails on any other arrow, on a stale picture, and on an import circle between modules
(inside one package too: `module_cycles`, which also counts imports deferred into a function body).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("pipelines", "argilla_io", "judge", "review", "agreement", "curated")
# The arrows that may exist (importer -> imported). Stages talk through run-dir files; a stage imports an upstream
# stage only for its typed readers and rules: the judge measures with agreement's alpha; triage routes by the judge's
# gate and selection asks the student (pipelines) how uncertain it is; the curated dataset publishes by the gate and renders agreement's report. Argilla I/O imports no stage.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "pipelines": {"core"},
    "argilla_io": {"core"},
    "judge": {"core", "agreement"},
    "review": {"core", "judge", "pipelines"},
    "agreement": {"core"},
    "curated": {"core", "agreement", "judge"},
    "cli": {"core", *STAGES},
}
PICTURE = ROOT / "docs" / "import_graph.md"


def package_of(path: Path) -> str:
    """The package a source file belongs to."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == "pipelines":
        return "pipelines"
    if parts == ("workspaces", "__main__.py"):
        return "cli"  # `python -m workspaces` is the command line
    if len(parts) == 2:  # workspaces/<module>.py
        return "core"
    return parts[1]


def _target(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "pipelines":
        return "pipelines"
    if parts[0] != "workspaces":
        return None
    if len(parts) == 1:
        return "core"
    return parts[1] if parts[1] in (*STAGES, "cli") else "core"


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = list(path.relative_to(ROOT).with_suffix("").parts)
    if package[-1] != "__init__":
        package = package[:-1]
    else:
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join(base + ([node.module] if node.module else []))


def edges() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) -> the files that make the arrow."""
    found: dict[tuple[str, str], list[str]] = {}
    files = sorted((ROOT / "workspaces").rglob("*.py")) + sorted((ROOT / "pipelines").rglob("*.py"))
    for path in files:
        if "server" in path.parts and path.name in ("_engine.py", "_launch.py"):
            continue  # run inside the server's own venv; import only argilla_server
        source = package_of(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(path, node)
                modules = [base] + [f"{base}.{alias.name}" for alias in node.names if base in ("workspaces",)]
            for module in modules:
                target = _target(module)
                if target is not None and target != source:
                    found.setdefault((source, target), []).append(str(path.relative_to(ROOT)))
    return found


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_edges() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in its body (a deferred import inside a function is still an
    arrow: it only hides a circle from the interpreter until the function runs)."""
    files = sorted((ROOT / "workspaces").rglob("*.py")) + sorted((ROOT / "pipelines").rglob("*.py"))
    known = {_module_name(path): path for path in files}
    graph: dict[str, set[str]] = {name: set() for name in known}
    for path in files:
        source = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(path, node)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            for target in targets:
                while target and target not in known:  # `import a.b.c` of a module: the longest known prefix
                    target = target.rpartition(".")[0]
                if target and target != source:
                    graph[source].add(target)
    return graph


def module_cycles(graph: dict[str, set[str]] | None = None) -> list[list[str]]:
    """The import circles: every strongly connected set of two or more modules (Tarjan), each sorted.

    A package's `__init__` that re-exports its modules is a node like any other, so `__init__ -> report -> __init__`
    counts as a circle too."""
    graph = module_edges() if graph is None else graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def violations(found: dict[tuple[str, str], list[str]]) -> list[str]:
    return [f"{a} -> {b} ({', '.join(sorted(set(files)))})" for (a, b), files in sorted(found.items())
            if b not in ALLOWED.get(a, set())]


def mermaid(found: dict[tuple[str, str], list[str]]) -> str:
    lines = ["```mermaid", "flowchart TD"]
    for a, b in sorted(found):
        lines.append(f"    {a} --> {b}")
    lines.append("```")
    return "\n".join(lines)


def render(found: dict[tuple[str, str], list[str]]) -> str:
    return ("# Import graph\n\nWho imports whom, between the packages of the loop (generated by "
            "`python scripts/import_graph.py --write`; `tests/test_layout.py` checks the arrows and that this "
            "picture is current). Imports go down only: cli -> stages -> core; stages talk through run-dir files.\n\n"
            + mermaid(found) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {PICTURE.relative_to(ROOT)}")
    args = parser.parse_args()
    found = edges()
    bad = violations(found)
    if args.write:
        PICTURE.write_text(render(found), encoding="utf-8")
    else:
        print(mermaid(found))
    for line in bad:
        print(f"not allowed: {line}", file=sys.stderr)
    cycles = module_cycles()
    for cycle in cycles:
        print(f"import circle: {' <-> '.join(cycle)}", file=sys.stderr)
    return 1 if bad or cycles else 0


if __name__ == "__main__":
    sys.exit(main())
