"""Importing Ibis for one engine without the SQL compilers of every other.

``ibis.backends.sql.compilers`` imports the compiler of each of Ibis's twenty SQL engines when
its DuckDB backend (or any other) is imported: BigQuery, Trino, ClickHouse, Snowflake and the
rest, with their sqlglot dialects, about a third of a CPU second on every fresh ``abfluss
analyze`` (issue 15) that runs only DuckDB's, or Spark's. :func:`lazy_compilers` puts that
package in place without running its ``__init__``: a compiler module is imported when its name
(``DuckDBCompiler``, ``sc.duckdb``) is first asked for, so the engines Ibis uses load exactly what
they did before and the others nothing. Where Ibis's layout is not the one expected, it does
nothing and Ibis imports as usual (tests/test_cli_imports.py checks that it took effect).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

_PACKAGE = "ibis.backends.sql.compilers"


def lazy_compilers() -> None:
    """Make ``ibis.backends.sql.compilers`` load its compiler modules on first use. Call before
    the first import of an Ibis backend (``analysis.duckdb_backend``, ``spark.connect``, Ibis's
    ``to_sql``); later calls, or after Ibis loaded it, do nothing. It imports Ibis itself (to find
    the package), so it is called where Ibis is needed anyway, never at an import of abfluss."""
    if _PACKAGE in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(_PACKAGE)
    except ImportError:  # no Ibis: its users raise their own error
        return
    if spec is None or not spec.submodule_search_locations:
        return
    real = _all_names(spec.origin)
    if real is None:
        return
    module = importlib.util.module_from_spec(spec)  # the package, its __init__ not run

    def __getattr__(name: str):
        sub = real.get(name)
        if sub is None and name.lower() == name and name in real.values():
            sub = name  # a compiler module by its own name (``sc.duckdb``)
        if sub is None:
            raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}")
        loaded = importlib.import_module(f"{_PACKAGE}.{sub}")
        value = loaded if sub == name else getattr(loaded, name)
        setattr(module, name, value)
        return value

    module.__getattr__ = __getattr__
    module.__all__ = sorted(real)
    sys.modules[_PACKAGE] = module
    parent = importlib.import_module(_PACKAGE.rsplit(".", 1)[0])
    setattr(parent, _PACKAGE.rsplit(".", 1)[1], module)


def _all_names(init_path: str | None) -> dict[str, str] | None:
    """{class name: module name} from the package's ``from ibis.backends.sql.compilers.<m> import
    <Name>`` lines; None if its ``__init__`` holds anything else that would have to run."""
    import ast

    if not init_path:
        return None
    try:
        with open(init_path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError):
        return None
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(_PACKAGE + "."):
            sub = node.module[len(_PACKAGE) + 1:]
            if "." in sub:
                return None
            for alias in node.names:
                names[alias.asname or alias.name] = sub
        elif isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id == "__all__"
                                                  for t in node.targets):
            continue
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):  # a docstring
            continue
        else:
            return None
    return names or None
