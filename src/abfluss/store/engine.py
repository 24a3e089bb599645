"""DuckDB for the catalog, its Python package loaded only when something needs it.

The ``duckdb`` package is its compiled engine (``_duckdb``: connections, ``execute``, ``fetchall``)
plus a Python layer: relations (``con.sql``, ``read_parquet``, ``to_arrow_table``), expressions,
the sources Arrow scans read, and its version read from the package metadata. Importing the
package is 0.11-0.12 CPU s, the engine alone 0.02-0.03: most of what ``abfluss findings`` or
``abfluss ledger`` spend before their first query, and they only ``execute`` and fetch.

``module()`` is the package if something imported it already, else the engine, set up so that the
first use of what only the package provides imports it: an attribute a connection lacks (the
relation methods the package adds to the engine's connection class) and the first Arrow object a
query scans. After that the package is what it always is, for every connection, open or new.
The engine's exceptions are the package's (``duckdb.Error`` is ``_duckdb.Error``).
"""

from __future__ import annotations

import sys
import threading

_LOCK = threading.RLock()


def module():
    """``duckdb`` if loaded, else ``_duckdb`` with the package loading on first need."""
    package = sys.modules.get("duckdb")
    if package is not None:
        return package
    try:
        import _duckdb

        with _LOCK:
            if "duckdb" not in sys.modules and not getattr(_duckdb, "_abfluss_lazy", False):
                _duckdb.DuckDBPyConnection.__getattr__ = _attribute
                _duckdb._set_arrow_sources(_Sources)
                _duckdb._abfluss_lazy = True
        return _duckdb
    except (ImportError, AttributeError, TypeError):  # a DuckDB made otherwise: the package it is
        return _load()


def _load():
    """Import the package: it adds its methods to the connection class and sets its Arrow sources."""
    import duckdb

    with _LOCK:
        if duckdb.DuckDBPyConnection.__dict__.get("__getattr__") is _attribute:
            del duckdb.DuckDBPyConnection.__getattr__
    return duckdb


def _attribute(con, name: str):
    """A connection's attribute the engine lacks: the package's, once loaded (AttributeError if
    the package has none by that name either)."""
    _load()
    return object.__getattribute__(con, name)


class _Nodes:
    def __getattr__(self, name: str):
        _load()
        from duckdb._sources import nodes

        return getattr(nodes, name)


class _Sources:
    """Stands in for ``duckdb._sources`` (the engine takes its ``adapt`` and ``nodes`` when they
    are set) until a query scans an Arrow object (a registered table, a Python variable named in
    a query): loading the package then sets the package's own, used from that moment on."""

    nodes = _Nodes()

    @staticmethod
    def adapt(obj):
        _load()
        from duckdb._sources import adapt

        return adapt(obj)
