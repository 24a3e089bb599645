"""Imports run one way (issue 14): ``abfluss.cli`` -> ``abfluss.api`` -> the library. Nothing in
the library imports the CLI, the web console or the service layer, the service layer imports
neither shell, the web console never the CLI, and the CLI's modules import each other without a
cycle. Read from the source (every ``import`` statement, inside functions too), not from what a
run happens to load."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            mod = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            found.add(mod)
            for a in node.names:  # ``from . import x`` may name a submodule
                if (SRC / Path(*f"{mod}.{a.name}".split("."))).with_suffix(".py").exists() or \
                        (SRC / Path(*f"{mod}.{a.name}".split("."))).is_dir():
                    found.add(f"{mod}.{a.name}")
    return {m for m in found if m == "abfluss" or m.startswith("abfluss.")}


GRAPH = {_module(p): _imports(p) for p in sorted((SRC / "abfluss").rglob("*.py"))}


def _under(mod: str, pkg: str) -> bool:
    return mod == pkg or mod.startswith(pkg + ".")


def test_the_graph_was_read():
    assert "abfluss.api" in GRAPH and "abfluss.cli.app" in GRAPH and len(GRAPH) > 50


def test_the_library_imports_no_shell_and_not_the_service_layer():
    shells = ("abfluss.cli", "abfluss.web")
    bad = []
    for mod, deps in GRAPH.items():
        if any(_under(mod, s) for s in shells) or mod in ("abfluss", "abfluss.__main__"):
            continue
        for d in deps:
            # the service layer is a package (abfluss.api and its private modules): only it, and
            # the shells, may import it
            if any(_under(d, s) for s in shells) or (not _under(mod, "abfluss.api") and _under(d, "abfluss.api")):
                bad.append(f"{mod} imports {d}")
    assert bad == []


def test_the_web_console_never_imports_the_cli():
    assert [f"{m} imports {d}" for m, deps in GRAPH.items() if _under(m, "abfluss.web")
            for d in deps if _under(d, "abfluss.cli")] == []


def test_no_cycle_between_cli_modules():
    cli = {m: {d for d in deps if _under(d, "abfluss.cli") and d != m and d in GRAPH}
           for m, deps in GRAPH.items() if _under(m, "abfluss.cli")}
    # the package imports its command modules to register them; they import only ``app`` (and the
    # library), so an edge back to the package itself would be a cycle too
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in cli.get(m, ()):
            assert state.get(d) != 1, "import cycle: " + " -> ".join(path + [d])
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in cli:
        if m not in state:
            visit(m, [m])
