"""Running a detection's Ibis expression on DuckDB without compiling it again each time.

Compiling an Ibis expression to SQL costs 10-50 ms of Python (rewrites and sqlglot), about a third
of an ``analyze`` on a small workspace, and the same few dozen expressions are compiled on every
run. Here each expression gets a fingerprint: a SHA-256 over its operation graph (every node's
class and arguments: column names and types, literals, settings), computed in a few milliseconds.
The SQL Ibis compiles for a fingerprint is kept in this process (``watch`` compiles each query
once) and in the workspace (``cache/sql``: the next ``abfluss analyze`` starts warm), and DuckDB
runs that SQL; the result goes through Ibis's own type conversion, so the rows are the same as
with ``expr.to_pyarrow()``. Kept in the workspace, not in the user's home: a query may hold
literals that came from the data (addresses a detection looks up again), which must stay, and
go, with the data.

An expression the fingerprint cannot describe exactly (an in-memory table, an unknown argument
type) is compiled as before, never guessed. The key also holds the Ibis and sqlglot versions,
so an upgrade compiles afresh. ``ABFLUSS_SQL_CACHE`` names another cache directory, or ``off``
(compile every time, as without this module).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import hashlib
import os
import tempfile
import uuid
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from . import _memo

#: Bump when the fingerprint's encoding changes: old cache entries are then never read.
FORMAT = "2"

_memory: dict[str, str] = {}  # fingerprint -> SQL, for this process


class _Uncacheable(Exception):
    pass


class _Ref:
    """A child node's digest inside its parent's encoding (never equal to a literal's repr)."""

    __slots__ = ("hex",)

    def __init__(self, hex_: str):
        self.hex = hex_

    def __repr__(self) -> str:
        return f"<{self.hex}>"


_PLAIN = (type(None), bool, int, float, str, bytes, decimal.Decimal, _dt.datetime, _dt.date, _dt.time,
          _dt.timedelta, uuid.UUID)


def _encode(v, ibis_types, node_ref) -> str:
    """``v`` as text that differs whenever ``v`` differs (type included: 1, 1.0 and True apart);
    a node in it as its digest (``node_ref``)."""
    node_t, concrete_t, backend_t = ibis_types
    if isinstance(v, _PLAIN):
        return f"{type(v).__name__}:{v!r}"
    if isinstance(v, node_t):
        return repr(node_ref(v))
    if isinstance(v, enum.Enum):
        return f"{type(v).__module__}.{type(v).__qualname__}.{v.name}"
    if isinstance(v, (tuple, list)):
        return f"{type(v).__name__}(" + ",".join(_encode(x, ibis_types, node_ref) for x in v) + ")"
    if isinstance(v, (frozenset, set)):
        return f"{type(v).__name__}{{" + ",".join(sorted(_encode(x, ibis_types, node_ref) for x in v)) + "}"
    if isinstance(v, backend_t):  # a table's source: the SQL names the table, not the connection
        return "backend"
    if isinstance(v, concrete_t):  # data types, schemas, namespaces: Ibis compares them by these args
        return (f"{type(v).__module__}.{type(v).__qualname__}("
                + ",".join(f"{n}={_encode(a, ibis_types, node_ref)}" for n, a in zip(v.__argnames__, v.__args__))
                + ")")
    if isinstance(v, Mapping):  # ordered (a Select's fields): order kept
        return (f"{type(v).__name__}{{" + ",".join(
            f"{_encode(k, ibis_types, node_ref)}:{_encode(x, ibis_types, node_ref)}" for k, x in v.items()) + "}")
    raise _Uncacheable(type(v).__name__)


#: Digests of nodes without an in-memory table below them, by node (id, and the node kept so the
#: id stays its own), shared by the expressions of one analysis (``kept_in`` empties it): a
#: detection's queries share their subgraphs (the same filtered flows, the same grouping), and
#: Ibis's nodes never change once built.
_shared: dict[int, tuple[object, "_Ref"]] = {}


def fingerprint(expr) -> tuple[str, list[str]] | None:
    """A stable digest of ``expr``'s operation graph and the names of its in-memory tables in the
    order the digest numbered them; None when the graph holds something a digest cannot stand for
    (a user-defined function, an unknown argument type).

    Each node's digest is a SHA-256 over its class and arguments, a child node standing as its
    own digest. An in-memory table enters the digest as its number and schema, not its rows or
    its random name: the cached SQL names it by a placeholder that ``to_pyarrow`` replaces with
    this run's name after Ibis registered this run's rows with DuckDB.
    """
    import ibis
    import sqlglot
    from ibis.backends import BaseBackend
    from ibis.common.grounds import Concrete
    from ibis.common.graph import Node
    from ibis.expr.operations import InMemoryTable
    from ibis.expr.operations.udf import AggUDF, ScalarUDF
    from ibis.expr.operations.vectorized import VectorizedUDF

    types = (Node, Concrete, BaseBackend)
    memtables: list[str] = []
    local: dict[int, _Ref] = {}  # this expression's nodes, those over in-memory tables too
    tainted: set[int] = set()  # nodes with an in-memory table at or below them
    stack: list[bool] = []  # per node being digested: whether a child was tainted

    def node_ref(node) -> _Ref:
        key = id(node)
        ref = local.get(key)
        if ref is None:
            kept = _shared.get(key)
            if kept is not None and kept[0] is node:
                ref = kept[1]
            else:
                ref = digest(node)
            local[key] = ref
        if key in tainted and stack:
            stack[-1] = True
        return ref

    def digest(node) -> _Ref:
        if isinstance(node, (ScalarUDF, AggUDF, VectorizedUDF)):  # registered code: never cached
            raise _Uncacheable(type(node).__name__)
        if isinstance(node, InMemoryTable):
            memtables.append(node.name)
            args = {"name": _placeholder(len(memtables) - 1), "schema": node.schema}
            body = f"{type(node).__module__}.{type(node).__qualname__}(" + ",".join(
                f"{k}={_encode(v, types, node_ref)}" for k, v in args.items()) + ")"
            tainted.add(id(node))
            return _Ref(hashlib.sha256(body.encode()).hexdigest())
        stack.append(False)
        try:
            body = f"{type(node).__module__}.{type(node).__qualname__}(" + ",".join(
                f"{k}={_encode(v, types, node_ref)}" for k, v in zip(node.__argnames__, node.__args__)) + ")"
        finally:
            below = stack.pop()
        ref = _Ref(hashlib.sha256(body.encode()).hexdigest())
        if below:
            tainted.add(id(node))
        elif _workspace_dir.get() is not None:  # within an analysis (kept_in), emptied at its end
            _shared[id(node)] = (node, ref)
        return ref

    try:
        root = node_ref(expr.op())
    except (_Uncacheable, RecursionError):
        return None
    head = f"{FORMAT}|ibis {ibis.__version__}|sqlglot {sqlglot.__version__}|{root.hex}"
    return hashlib.sha256(head.encode()).hexdigest(), memtables


def _placeholder(i: int) -> str:
    return f"__abfluss_memtable_{i}__"


#: The workspace's cache directory while ``kept_in`` is active (analysis sets it).
_workspace_dir: ContextVar[Path | None] = ContextVar("abfluss_sql_cache", default=None)


@contextmanager
def kept_in(directory: Path):
    """Keep compiled SQL in ``directory`` (a workspace's ``cache/sql``) within this block."""
    token = _workspace_dir.set(directory)
    try:
        yield
    finally:
        _workspace_dir.reset(token)
        memo = _memo.current()
        if memo is None:
            _shared.clear()  # the digests of this analysis's nodes (see fingerprint) go with it
        else:  # those of the expressions kept for the next analysis (see _memo) stay with them
            for key in [k for k, (node, _ref) in _shared.items() if not memo.kept(node)]:
                del _shared[key]


def cache_dir() -> Path | None:
    """Where compiled SQL is kept: ``$ABFLUSS_SQL_CACHE``, else the workspace's (``kept_in``);
    None when ``ABFLUSS_SQL_CACHE=off`` or outside a workspace (kept in this process only)."""
    spec = os.environ.get("ABFLUSS_SQL_CACHE")
    if spec == "off":
        return None
    if spec:
        return Path(spec)
    return _workspace_dir.get()


def _read(key: str) -> str | None:
    d = cache_dir()
    if d is None:
        return None
    try:
        return (d / key[:2] / f"{key}.sql").read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _write(key: str, sql: str) -> None:
    """Store atomically (a reader never sees half an entry); a cache that cannot be written is
    only slower, never an error."""
    d = cache_dir()
    if d is None:
        return
    try:
        sub = d / key[:2]
        sub.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=sub, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.write(sql)
        os.replace(tmp, sub / f"{key}.sql")
    except OSError:
        pass


def _duckdb(expr):
    """The expression's DuckDB backend, or None (another engine, or memtables alone)."""
    from .._ibis import lazy_compilers

    lazy_compilers()
    from ibis.backends.duckdb import Backend as DuckDB

    memo = _memo.current()
    try:
        backend = expr._find_backend() if memo is None else memo.derive(expr.op(), "backend", expr._find_backend)
    except Exception:  # noqa: BLE001 - no table of a connection (memtables alone): Ibis picks its default
        return None
    return backend if isinstance(backend, DuckDB) else None


def _sql_of(expr, backend) -> str:
    """The SQL DuckDB runs for ``expr``: from the cache where the fingerprint allows, with this
    run's in-memory tables registered and named. An expression kept from an earlier analysis
    (``_memo``) keeps its fingerprint too."""
    if os.environ.get("ABFLUSS_SQL_CACHE") == "off":
        fp = None
    else:
        memo = _memo.current()
        fp = fingerprint(expr) if memo is None else memo.derive(expr.op(), "fingerprint", lambda: fingerprint(expr))
    if fp is None:  # not cached, but the same SQL and registration as a cached one
        backend._run_pre_execute_hooks(expr)
        return backend.compile(expr.as_table())
    key, memtables = fp
    sql = _memory.get(key)
    if sql is None:
        sql = _read(key)
        if sql is None:
            sql = backend.compile(expr.as_table())
            if "__abfluss_memtable_" in sql:  # a literal that looks like a placeholder: never cached
                backend._run_pre_execute_hooks(expr)
                return sql
            for i, name in enumerate(memtables):
                sql = sql.replace(name, _placeholder(i))
            _write(key, sql)
        _memory[key] = sql
    if memtables:
        backend._run_pre_execute_hooks(expr)  # registers this run's in-memory tables, as to_pyarrow does
        for i, name in enumerate(memtables):
            sql = sql.replace(_placeholder(i), name)
    return sql


def to_pyarrow(expr):
    """``expr.to_pyarrow()``, with the SQL from the cache on DuckDB."""
    backend = _duckdb(expr)
    if backend is None:
        return expr.to_pyarrow()
    table = _arrow(backend.con, _sql_of(expr, backend))
    return expr.__pyarrow_result__(table, data_mapper=_arrow_mapper())


def materialize(expr, name: str):
    """``expr`` computed once into DuckDB's temporary table ``name`` (replacing one of that
    name), as an Ibis table later queries read instead of computing ``expr`` again; on another
    engine ``expr`` itself (Spark computes it where it is used). Not Ibis's ``Table.cache()``:
    its random table name would give every later query a new fingerprint (and a new entry in
    the SQL cache on every run), and with the sqlglot installed here its release writes a
    ``DROP TABLE`` DuckDB cannot parse. The table goes with the connection."""
    backend = _duckdb(expr)
    if backend is None:
        return expr
    backend.con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {_sql_of(expr, backend)}')
    # The expression's types as Ibis sees them: DuckDB stores a sum of BIGINT as HUGEINT, which
    # Ibis would read back as a decimal where the expression says int64 (results are converted
    # as for any other query, see _arrow_mapper, saturating rather than failing on overflow).
    # An expression kept from an earlier analysis (``_memo``) keeps its table's expression too,
    # so what was built on that table is kept as well.
    memo = _memo.current()
    make = lambda: backend.table(name).op().copy(schema=expr.schema()).to_expr()  # noqa: E731
    table = make() if memo is None else memo.derive(expr.op(), f"table {name}", make)
    if memo is not None and memo.kept(expr.op()):
        memo.stable[id(table.op())] = table.op()
    return table


#: DuckDB's note that a DB-API result's Arrow output is a copy (see ``_arrow``).
_COPY_NOTE = "Arrow output on a DB-API result"


def _arrow(con, sql: str):
    """``sql``'s rows as an Arrow table, the statement planned once.

    ``con.sql(sql).to_arrow_table()`` binds the statement to describe a lazy relation, then parses
    and plans it again to run it; ``execute`` does it once. Over the 52 queries of an ``analyze``
    of the demo workspace that is 0.46 instead of 0.70 CPU s. DuckDB warns that the DB-API result
    is copied into Arrow: a detection's rows are aggregates and evidence (small), so the copy
    costs less than the second planning, and the warning is silenced for this call only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _COPY_NOTE, UserWarning)
        return con.execute(sql).to_arrow_table()


def pylist(table) -> list[dict]:
    """``table.to_pylist()``: the same rows, values and key order. Time-zone-aware timestamps are
    converted here as Arrow converts them (``TimestampScalar.as_py``): Arrow asks whether pandas
    is installed before it looks at the unit, which imports pandas (0.3 s) for every
    ``analyze`` although only nanosecond timestamps would use it, and these never do."""
    import pyarrow as pa

    columns = []
    for fld, col in zip(table.schema, table.columns):
        t = fld.type
        if pa.types.is_timestamp(t) and t.tz and t.unit in _UNIT:
            columns.append(_aware(col.cast(pa.int64()).to_pylist(), t))
        else:
            columns.append(col.to_pylist())
    if not columns:
        return [{} for _ in range(table.num_rows)]
    names = table.column_names
    return [dict(zip(names, r)) for r in zip(*columns)]


_UNIT = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}
_EPOCH = _dt.datetime(1970, 1, 1)


def _aware(values: list, t) -> list:
    from pyarrow.lib import string_to_tzinfo

    tz = string_to_tzinfo(t.tz, prefer_zoneinfo=True)
    unit = _UNIT[t.unit]
    utc = _dt.timezone.utc
    return [None if v is None else (_EPOCH + _dt.timedelta(**{unit: v})).replace(tzinfo=utc).astimezone(tz)
            for v in values]


_MAPPER = None


def _arrow_mapper():
    """Ibis's Arrow type mapping as its DuckDB backend applies it (a NULL-typed column becomes
    nulls of the expression's type), without the module that also loads pandas (0.3 s)."""
    global _MAPPER
    if _MAPPER is None:
        import pyarrow as pa
        from ibis.formats.pyarrow import PyArrowData

        class DuckDBArrow(PyArrowData):
            @classmethod
            def convert_scalar(cls, scalar, dtype):
                return pa.scalar(None) if dtype.is_null() else super().convert_scalar(scalar, dtype)

            @classmethod
            def convert_column(cls, column, dtype):
                if dtype.is_null():
                    return pa.nulls(len(column))
                try:
                    return super().convert_column(column, dtype)
                except pa.ArrowInvalid:
                    if not (dtype.is_integer() and pa.types.is_decimal(column.type)):
                        raise
                    # DuckDB sums BIGINT into HUGEINT: byte counters a broken exporter reports near
                    # 2**63 add up beyond int64. Saturate at int64's bounds (a detection then sees
                    # "at least 9.2 EB") rather than lose the whole detection's findings.
                    import pyarrow.compute as pc

                    wide = column.cast(pa.float64())
                    clipped = pc.min_element_wise(pc.max_element_wise(wide, -2.0**63), float(2**63 - 1024))
                    return clipped.cast(pa.int64(), safe=False).cast(dtype.to_pyarrow())

        _MAPPER = DuckDBArrow
    return _MAPPER


_VALUES = None  # a private in-memory DuckDB that turns Python values into Arrow (arrow_table)


def arrow_table(columns: Mapping[str, list], schema) -> "pa.Table":
    """``pa.Table.from_pydict(columns, schema)`` without pyarrow's conversion of Python objects,
    which imports pandas (0.3 CPU s, a tenth of an ``analyze``) to check every value for pandas'
    missing-value markers. DuckDB converts the lists instead (no pandas), and Arrow casts its
    columns to ``schema`` (a ``pyarrow.Schema``): the same table, for the small in-memory tables
    (keys of findings already fetched) that detections join with."""
    import duckdb

    global _VALUES
    if _VALUES is None:
        _VALUES = duckdb.connect(":memory:")
    names = list(schema.names)
    if not names:
        raise ValueError("an in-memory table needs at least one column")
    select = ", ".join(f'unnest(${i + 1}) AS "c{i}"' for i in range(len(names)))
    values = [list(columns[n]) for n in names]
    if len({len(v) for v in values}) != 1:
        raise ValueError("columns of different lengths")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _COPY_NOTE, UserWarning)
        got = _VALUES.execute(f"SELECT {select}", values).to_arrow_table()
    return got.rename_columns(names).cast(schema)


def memtable(table):
    """``ibis.memtable(table)`` for a ``pyarrow.Table``, without Ibis's type dispatch: its first
    call for an Arrow type imports every Arrow type it could dispatch on, ``pyarrow.dataset``
    among them, and that module imports pandas (0.3 CPU s). The same operation Ibis builds for an
    Arrow table (tests/test_sql_cache.py compares the two)."""
    import ibis.expr.operations as ops
    from ibis import util
    from ibis.expr.schema import Schema
    from ibis.formats.pyarrow import PyArrowTableProxy

    return ops.InMemoryTable(name=util.gen_name("pyarrow_memtable"), schema=Schema.from_pyarrow(table.schema),
                             data=PyArrowTableProxy(table)).to_expr()
