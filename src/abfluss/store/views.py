"""One ``<table>_raw`` view per table of the schema, over exactly the Parquet files the catalog
records (an empty table of the table's schema while it has none)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import engine

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from .workspace import Workspace


def create_empty_tables(con: duckdb.DuckDBPyConnection, new: bool = False) -> None:
    """Create what is missing of the empty tables and their ``<table>_raw`` views (all of them in
    a ``new`` catalog). What exists is read in two queries, not three statements per table: every
    writer (``analyze`` included) opens the catalog through here, and fifteen catalog lookups
    were a tenth of an ``analyze``."""
    from .. import schema
    empty = [f"_empty_{t}" for t in schema.TABLES]
    have = {} if new else _columns(con, empty)
    views = set() if new else {r[0] for r in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT temporary AND view_name IN (SELECT unnest(?))",
        [[f"{t}_raw" for t in schema.TABLES]]).fetchall()}
    for table, sch in schema.TABLES.items():
        cols = have.get(f"_empty_{table}")
        columns = ", ".join(f'"{f.name}" {_sql_type(f.type)}' for f in sch)
        if cols != sch.names:  # missing, or from before a column was added: the current schema's table
            con.execute(f"CREATE OR REPLACE TABLE _empty_{table} ({columns})")
        if f"{table}_raw" not in views:
            con.execute(f"CREATE VIEW IF NOT EXISTS {table}_raw AS SELECT * FROM _empty_{table}")


def _columns(con: duckdb.DuckDBPyConnection, tables: list[str]) -> dict[str, list[str]]:
    """The columns of those of ``tables`` that exist, in order. Not from ``duckdb_columns()``:
    that binds every view of the catalog, and the enrichment views are bound only when used
    (``enrich.deferring``)."""
    present = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND "
                                         "table_name IN (SELECT unnest(?))", [tables]).fetchall()]
    if not present:
        return {}
    return dict(con.execute(" UNION ALL ".join(
        f"SELECT '{t}', list(name ORDER BY cid) FROM pragma_table_info('{t}')" for t in present)).fetchall())


def refresh_views(ws: Workspace, tables: Iterable[str] | None = None, added: dict | None = None) -> None:
    """(Re)create one view per table (or only per one of ``tables``: those a commit added
    files to) over exactly the files the catalog records. ``added``: the files (relative paths
    by table) when adding them is all that changed, for the views that depend on what the files
    hold (``after_refresh``)."""
    from .. import schema
    from .catalog import transaction
    wanted = set(schema.TABLES if tables is None else tables)
    listed: dict[str, list[str]] = {}
    defer = deferring(ws.con)
    for name, path in ws.con.execute(
            "SELECT table_name, path FROM files WHERE table_name IN (SELECT unnest(?)) ORDER BY path",
            [sorted(wanted)]).fetchall():
        listed.setdefault(name, []).append(path)
    with transaction(ws.con, ws.write):
        for table in (t for t in schema.TABLES if t in wanted):
            files = listed.get(table)
            if files:
                sql = f"SELECT * FROM {read_files(ws.root, files)}"
            else:
                sql = f"SELECT * FROM _empty_{table}"
            ws.con.execute(defer(f"CREATE OR REPLACE VIEW {table}_raw AS {sql}"))
        hook = getattr(ws, "after_refresh", None)
        if hook is not None:  # views over these that depend on what the files hold (enrich.py)
            hook(added)


def read_files(root, rel: Iterable[str]) -> str:
    """SQL reading the stored Parquet files ``rel`` (paths relative to the workspace ``root``);
    by name: files written before a column was added read it as null."""
    listing = ", ".join("'" + str(root / p).replace("'", "''") + "'" for p in rel)
    return f"read_parquet([{listing}], union_by_name = true)"


def _sql_type(t: pa.DataType) -> str:
    """The DuckDB type of an Arrow type of the schema (as DuckDB itself maps it when scanning
    Arrow; spelled out because handing DuckDB an Arrow table makes it import pandas)."""
    import pyarrow as pa

    if pa.types.is_list(t):
        return _sql_type(t.value_type) + "[]"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    names = {pa.bool_(): "BOOLEAN", pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INTEGER",
             pa.int64(): "BIGINT", pa.float32(): "FLOAT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR",
             pa.large_string(): "VARCHAR", pa.binary(): "BLOB", pa.date32(): "DATE"}
    if t not in names:
        raise TypeError(f"no DuckDB type for {t}")
    return names[t]


_DEFERRABLE = re.compile(r"^(\s*CREATE OR REPLACE (?:TEMP )?VIEW \w+) AS\b")
_DEFER: dict = {}  # DuckDB version -> whether it takes WITH (DEFER_BINDING)


def deferring(con):
    """A view statement as one DuckDB binds when the view is used, not when it is created
    (``WITH (DEFER_BINDING)``, DuckDB 2.0): a query binds the views it reads each time anyway,
    and binding the nested enrichment views at creation was most of opening a new workspace,
    binding the ``<table>_raw`` views (every file's Parquet footer) most of refreshing them after
    a commit. Other statements, and every statement where DuckDB lacks the option, as they are."""
    db = engine.module()
    version = getattr(db, "__duckdb_version__", db.__version__)  # the engine's, package or not
    if version not in _DEFER:
        try:
            con.execute("CREATE OR REPLACE TEMP VIEW _abfluss_defer_probe WITH (DEFER_BINDING) AS SELECT 1")
            con.execute("DROP VIEW _abfluss_defer_probe")
            _DEFER[version] = True
        except db.Error:
            _DEFER[version] = False
    if not _DEFER[version]:
        return lambda sql: sql
    return lambda sql: _DEFERRABLE.sub(r"\1 WITH (DEFER_BINDING) AS", sql, count=1)
