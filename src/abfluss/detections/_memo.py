"""Keeping the detections' Ibis expressions from one analysis to the next in a long-running
process (``abfluss watch``), instead of building them again.

Building a detection's Ibis expressions is pure Python (every node validated, every filter and
join dereferenced): about 0.6 CPU s of each analysis on a small workspace, as much as DuckDB
takes to run the queries. The watch runs the same detections over tables of the same names and
columns again and again, so most of what they build is what they built last time. Within
:func:`Memo.active`, Ibis's relational methods (``filter``, ``mutate``, ``select``, ``join``,
``aggregate`` ...) return the expression they returned before for the same receiver and the
same arguments. Only building is skipped: every query still runs over this analysis's rows,
so the findings are those of a fresh run (tests/test_expr_memo.py compares them).

An expression is immutable, and these methods are functions of their receiver and arguments,
so the kept one is the one the call would build. The key is exact: the receiver and every
expression among the arguments stand for themselves (an expression this memo returned) or for
their operation tree, every other value for its type and value (``1``, ``1.0`` and ``True``
apart). A call whose arguments hold anything else (an in-memory table and its rows, a function
with state, an unknown object) is not kept: it builds, as without this module. ``view`` and
``alias`` are never kept (each call must make a new reference).

Entries not used by an analysis are dropped at its end (:meth:`Memo.sweep`), so what is kept is
what the last analysis built: bounded by the detections, not by the watch's running time.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import functools
import types
import uuid
from collections.abc import Mapping
from contextlib import contextmanager
from contextvars import ContextVar

#: The memo active in this thread (``Memo.active``); None outside one.
_current: ContextVar["Memo | None"] = ContextVar("abfluss_expr_memo", default=None)

_PLAIN = (type(None), bool, int, float, str, bytes, decimal.Decimal, _dt.datetime, _dt.date, _dt.time,
          _dt.timedelta, uuid.UUID)

#: Relational methods kept, by class: what the detections build their queries with.
_TABLE = ("filter", "mutate", "select", "join", "aggregate", "group_by", "union", "order_by", "distinct",
          "drop", "rename", "limit")
_JOIN_FINISHED = ("filter", "mutate", "aggregate", "group_by", "distinct", "drop", "limit", "order_by",
                  "union")
_GROUPED = ("aggregate", "select", "mutate", "order_by")


class _Uncacheable(Exception):
    pass


class Memo:
    """The expressions one process keeps between its analyses (one thread uses it at a time)."""

    #: Entries kept at most (a safety bound: an analysis builds a few thousand).
    LIMIT = 50_000

    def __init__(self) -> None:
        self.entries: dict[tuple, tuple[object, list]] = {}
        self.used: set[tuple] = set()
        self.stable: dict[int, object] = {}  # id -> expression or operation this memo returned
        self.pinned: dict[int, object] = {}  # id -> operation kept stable across sweeps (a table)
        #: id of a kept operation -> (operation, what was derived from it: its backend, its SQL key)
        self.derived: dict[int, tuple[object, dict]] = {}
        self.hits = self.misses = 0

    @contextmanager
    def active(self):
        """Keep and reuse expressions built in this block (in this thread); sweep at its end."""
        _install()
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)
            self.sweep()

    def sweep(self) -> None:
        """Keep only the entries this analysis used."""
        if len(self.used) > self.LIMIT:
            self.used.clear()
        self.entries = {k: self.entries[k] for k in self.used if k in self.entries}
        self.used = set()
        self.stable = dict(self.pinned)
        for result, _refs in self.entries.values():
            self._register(result)
        self.derived = {k: v for k, v in self.derived.items() if self.stable.get(k) is v[0]}

    def clear(self) -> None:
        self.entries, self.used, self.stable, self.pinned, self.derived = {}, set(), {}, {}, {}

    def pin(self, tables: dict) -> None:
        """Make ``tables`` (name -> Ibis table) the base tables that stand for themselves."""
        self.pinned = {id(t.op()): t.op() for t in tables.values()}
        self.stable.update(self.pinned)

    def kept(self, node) -> bool:
        return self.stable.get(id(node)) is node

    def derive(self, node, what: str, make):
        """``make()``, computed once per kept operation ``node`` (its backend, its SQL's key)."""
        if not self.kept(node):
            return make()
        got = self.derived.get(id(node))
        if got is None or got[0] is not node:
            got = self.derived[id(node)] = (node, {})
        if what not in got[1]:
            got[1][what] = make()
        return got[1][what]

    # -- calls -------------------------------------------------------------------------
    def call(self, fn, name: str, recv, args: tuple, kwargs: dict):
        refs: list = []
        try:
            key = (name, self._receiver(recv, refs), self._enc(args, refs), self._enc(kwargs, refs))
        except _Uncacheable:
            return fn(recv, *args, **kwargs)
        kept = self.entries.get(key)
        if kept is not None:
            self.hits += 1
            self.used.add(key)
            return kept[0]
        self.misses += 1
        result = fn(recv, *args, **kwargs)
        self.entries[key] = (result, refs)
        self.used.add(key)
        self._register(result)
        return result

    def _register(self, result) -> None:
        self.stable[id(result)] = result
        op = getattr(result, "op", None)
        if callable(op) and not isinstance(result, type):
            node = result.op()
            self.stable[id(node)] = node

    # -- keys --------------------------------------------------------------------------
    def _receiver(self, recv, refs: list):
        from ibis.expr.types.joins import Join

        if isinstance(recv, Join):  # it carries name collisions beside its operation: itself only
            if self.stable.get(id(recv)) is not recv:
                raise _Uncacheable("join")
            refs.append(recv)
            return ("join", id(recv))
        return self._enc(recv, refs)

    def _enc(self, v, refs: list):
        if isinstance(v, _PLAIN):
            return (type(v), v)
        if isinstance(v, (tuple, list)):
            return (type(v), tuple(self._enc(x, refs) for x in v))
        if isinstance(v, dict):  # ordered: mutate(a=..., b=...) keeps its order
            return (dict, tuple((self._enc(k, refs), self._enc(x, refs)) for k, x in v.items()))
        if isinstance(v, (frozenset, set)):
            return (type(v), frozenset(self._enc(x, refs) for x in v))
        if isinstance(v, enum.Enum):
            return (type(v), v.name)
        return self._enc_ibis(v, refs)

    def _enc_ibis(self, v, refs: list):
        import ibis.expr.operations as ops
        from ibis.backends import BaseBackend
        from ibis.common.bases import Slotted
        from ibis.common.deferred import Deferred
        from ibis.common.grounds import Concrete
        from ibis.expr.types import Expr

        if isinstance(v, Expr):
            return ("expr", type(v), self._enc(v.op(), refs))
        if isinstance(v, ops.Node):
            refs.append(v)
            if self.stable.get(id(v)) is v:
                return ("@", id(v))
            # Ibis's own equality: the same class and arguments all the way down (its hash is
            # computed once, when the node is built), as Ibis itself tells equal operations apart;
            # an in-memory table's name is new for each one
            return ("node", v)
        if isinstance(v, BaseBackend):  # a table's connection: this very one
            refs.append(v)
            return ("backend", id(v))
        if isinstance(v, Deferred):
            return ("deferred", self._enc(v._resolver, refs))
        if isinstance(v, Concrete):  # data types, schemas, grouped tables, selectors
            return (type(v), tuple(self._enc(a, refs) for a in v.__args__))
        if isinstance(v, Slotted):  # a deferred's resolvers
            return (type(v), tuple(self._enc(getattr(v, f), refs) for f in v.__fields__))
        if isinstance(v, Mapping):
            return (type(v), tuple((self._enc(k, refs), self._enc(x, refs)) for k, x in v.items()))
        if isinstance(v, type):  # the list in ``_.x.isin([...])``
            return ("class", v)
        if isinstance(v, types.BuiltinFunctionType):  # operator.eq in ``_.x == 1``
            refs.append(v)
            return ("function", id(v))
        if isinstance(v, types.FunctionType):
            # its code, and what it closes over (``Value.over``'s deferred binds the value and
            # window it was given); a function that reads a closed-over variable it could change
            # later does not occur in Ibis's deferred expressions
            refs.append(v.__code__)
            try:
                cells = tuple(self._enc(c.cell_contents, refs) for c in v.__closure__ or ())
            except ValueError:  # an empty cell
                raise _Uncacheable("function") from None
            return ("function", id(v.__code__), cells, self._enc(v.__defaults__, refs),
                    self._enc(v.__kwdefaults__, refs))
        raise _Uncacheable(type(v).__name__)


def current() -> Memo | None:
    """The memo active in this thread, if any."""
    return _current.get()


def built(fn):
    """Decorate a function that only builds an expression from its arguments (``_stats.channel``):
    within ``Memo.active`` it returns what it returned before for the same arguments."""
    name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        memo = _current.get()
        if memo is None:
            return fn(*args, **kwargs)
        return memo.call(lambda _none, *a, **k: fn(*a, **k), name, None, args, kwargs)

    return wrapper


def _kept(fn, name: str):
    @functools.wraps(fn)
    def method(self, *args, **kwargs):
        memo = _current.get()
        if memo is None:
            return fn(self, *args, **kwargs)
        return memo.call(fn, name, self, args, kwargs)

    method.__abfluss_memo__ = fn
    return method


_installed = False


def _install() -> None:
    """Wrap Ibis's relational methods once (outside ``Memo.active`` they only call through)."""
    global _installed
    if _installed:
        return
    from ibis.expr.types.groupby import GroupedTable
    from ibis.expr.types.joins import Join, finished
    from ibis.expr.types.relations import Table

    for cls, names in ((Table, _TABLE), (GroupedTable, _GROUPED)):
        for name in names:
            setattr(cls, name, _kept(getattr(cls, name), f"{cls.__name__}.{name}"))
    for name in ("join", "select"):
        setattr(Join, name, _kept(Join.__dict__[name], f"Join.{name}"))
    for name in _JOIN_FINISHED:  # Join's copies call the Table methods they were made from
        setattr(Join, name, finished(getattr(Table, name)))
    _installed = True
