"""``store.engine``: the catalog's connections come from DuckDB's engine until something needs its
Python package, which then loads by itself: a connection opened before works on, relation methods,
Arrow scans (a registered table, a variable named in a query) and all. Each case in a fresh
interpreter, where nothing has imported the package yet."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", "import sys\nfrom abfluss.store import engine\n" + code],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_the_engine_alone_until_the_package_is_needed():
    out = _run("db = engine.module()\ncon = db.connect()\n"
               "print(db.__name__, con.execute('SELECT 42').fetchall(), 'duckdb' in sys.modules)\n"
               "print(con.sql('SELECT 1 AS a').fetchall(), 'duckdb' in sys.modules)\n"
               "import _duckdb\nprint('__getattr__' in _duckdb.DuckDBPyConnection.__dict__, engine.module().__name__)\n"
               "try:\n    con.no_such_method\nexcept AttributeError as e:\n    print('AttributeError', e)\n")
    assert out.splitlines() == [
        "_duckdb [(42,)] False", "[(1,)] True", "False duckdb",
        "AttributeError 'DuckDBPyConnection' object has no attribute 'no_such_method'"]


@pytest.mark.parametrize("scan", ["con.register('t', arrow)", "t = arrow"])
def test_an_arrow_scan_loads_the_package(scan):
    out = _run("import pyarrow as pa\ndb = engine.module()\ncon = db.connect()\n"
               "arrow = pa.table({'a': list(range(100)), 'b': [str(i) for i in range(100)]})\n"
               f"{scan}\n"
               "print(con.execute(\"SELECT sum(a) FROM t WHERE a > 50 AND b LIKE '6%'\").fetchall(), "
               "'duckdb' in sys.modules)\n"
               "print(db.connect().execute('SELECT count(*) FROM arrow').fetchall())\n")
    assert out.splitlines() == ["[(645,)] True", "[(100,)]"]


def test_the_package_when_loaded_already():
    assert _run("import duckdb\nprint(engine.module() is duckdb)\n").strip() == "True"


def test_the_same_errors():
    out = _run("db = engine.module()\nimport _duckdb\n"
               "try:\n    db.connect().execute('SELECT * FROM nowhere')\n"
               "except _duckdb.CatalogException as e:\n    print(type(e).__name__)\n"
               "import duckdb\nprint(duckdb.Error is db.Error, duckdb.IOException is db.IOException)\n")
    assert out.splitlines() == ["CatalogException", "True True"]
