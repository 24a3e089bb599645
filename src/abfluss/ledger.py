"""The outflow ledger: bytes out and in per internal host x external destination x hour.

Every flow with one internal and one external endpoint is counted once, in the hour it
started; interim records of connections still open count and are flagged (``open_flows``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable

from . import ledger_store
from .enrich import dest_class_sql
from .errors import AbflussError

if TYPE_CHECKING:  # pyarrow loads where an Arrow table is made: `abfluss ledger` needs none
    import pyarrow as pa

    from .store import Workspace

#: The columns of a ledger row, in output order (JSON field names: a contract).
COLUMNS = ("internal_host", "external_host", "external_name", "hour", "bytes_out", "bytes_in",
           "flows", "open_flows", "first_seen", "last_seen", "tenant", "dest_class", "name_source")
SORT_KEYS = {"bytes_out": "bytes_out DESC", "bytes_in": "bytes_in DESC", "flows": "flows DESC",
             "hour": "hour", "first_seen": "first_seen", "host": "internal_host", "destination": "external_host"}


@dataclass(frozen=True)
class LedgerQuery:
    start: datetime | None = None
    end: datetime | None = None
    host: str | None = None
    tenant: str | None = None
    destination: str | None = None  # an address, a name, or a domain (matches its subdomains)
    sort: str = "bytes_out"
    limit: int | None = None
    tenants: frozenset[str] | None = None  # the caller's scope (abfluss.api): None is all tenants


def _where(q: LedgerQuery, start: datetime | None, end: datetime | None) -> tuple[str, list]:
    cond, args = [], []
    if start is not None:
        cond.append("ts >= ?")
        args.append(start)
    if end is not None:
        cond.append("ts < ?")
        args.append(end)
    if q.host:
        cond.append("internal_id = (SELECT id FROM addresses WHERE addr = ?)")
        args.append(q.host)
    return " AND ".join(cond) or "true", args


def _post_where(q: LedgerQuery) -> tuple[str, list]:
    """Filters on what only the aggregated row knows: the tenant and the destination's name."""
    cond, args = ["true"], []
    if q.tenant:
        cond.append("tenant = ?")
        args.append(q.tenant)
    if q.tenants is not None:
        cond.append("tenant IN (SELECT unnest(?::VARCHAR[]))")
        args.append(sorted(q.tenants))
    if q.destination:
        d = q.destination.lower()
        cond.append("(external_host = ? OR external_name = ? OR ends_with(external_name, ?))")
        args += [q.destination, d, "." + d]
    return " AND ".join(cond), args


def _grouped_sql(ws: Workspace, q: LedgerQuery) -> tuple[str, list, bool]:
    """The groups (internal id x destination x hour) of ``q``'s window and host: read from the
    stored hourly ledger when it is current (``ledger_store``), the hours the window cuts and
    everything else grouped from the flows; and whether it reads stored rows only."""
    if not ledger_store.current(ws):
        where, args = _where(q, q.start, q.end)
        return ledger_store.grouped_flows_sql(where), args, False
    whole, parts = ledger_store.split(q.start, q.end)
    sqls, args = [], []
    if whole is not None:
        lo, hi = whole
        cond, a = ["true"], []
        if lo is not None:
            cond.append(f"hour_key >= {int(lo)}")
        if hi is not None:
            cond.append(f"hour_key < {int(hi)}")
        if q.host:
            cond.append("internal_id = (SELECT id FROM addresses WHERE addr = ?)")
            a.append(q.host)
        sqls.append(f"SELECT {ledger_store.GROUP_COLUMNS} FROM ledger_hourly WHERE {' AND '.join(cond)}")
        args += a
    for start, end in parts:
        where, a = _where(q, start, end)
        sqls.append(f"SELECT {ledger_store.GROUP_COLUMNS} FROM ({ledger_store.grouped_flows_sql(where)})")
        args += a
    if not sqls:  # an empty window
        sqls.append(f"SELECT {ledger_store.GROUP_COLUMNS} FROM ledger_hourly WHERE false")
    return " UNION ALL ".join(sqls), args, not parts


def _labelled_sql(ws: Workspace, source: str, extra: str = "") -> str:
    """The ledger's columns of the groups in ``source`` (``g``); ``extra``: more columns after them."""
    return f"""
        SELECT ci.addr AS internal_host, coalesce(ce.addr, g.external_text) AS external_host,
               coalesce(g.flow_name, n.name) AS external_name,
               make_timestamptz(g.hour_key * 3600000000) AS hour,
               g.bytes_out, g.bytes_in, g.flows, g.open_flows, g.first_seen, g.last_seen,
               ci.tenant AS tenant,
               CASE WHEN g.transit THEN 'proxy' ELSE
               {dest_class_sql(ws.config, "'outbound'", "ce.allow_net", "coalesce(g.flow_name, n.name)", "ce.local")}
               END AS dest_class,
               CASE WHEN g.flow_name IS NOT NULL THEN 'connection' WHEN n.name IS NOT NULL THEN 'resolver'
                    END AS name_source{extra}
        FROM {source} g
        JOIN address_class ci ON ci.id = g.internal_id
        LEFT JOIN address_class ce ON ce.id = g.external_id
        LEFT JOIN dns_names n ON n.addr = ce.addr"""


def labelled_sql(ws: Workspace, q: LedgerQuery, extra: str = "") -> tuple[str, list]:
    """The SQL of ``q``'s ledger rows (window, host, tenants and destination applied; neither sorted
    nor limited) and its arguments, for a caller that aggregates them in DuckDB (the accounting);
    ``extra``: more columns of the grouped rows ``g`` (``ledger_store.GROUP_COLUMNS``)."""
    sql, args, _stored = _grouped_sql(ws, q)
    post, post_args = _post_where(q)
    return f"SELECT * FROM ({_labelled_sql(ws, f'({sql})', extra)}) WHERE {post}", args + post_args


def grouped_sql(ws: Workspace, q: LedgerQuery) -> tuple[str, list]:
    """The SQL of the groups (``ledger_store.GROUP_COLUMNS``, unlabelled) of ``q``'s window and
    host, and its arguments (stored rows where current, else grouped from the flows)."""
    sql, args, _stored = _grouped_sql(ws, q)
    return sql, args


#: Sort keys the grouped rows already carry, so a limited ledger can be cut before labelling.
_NUMERIC = {"bytes_out", "bytes_in", "flows", "hour", "first_seen"}
_GROUPED_KEYS = {"bytes_out": "bytes_out DESC", "bytes_in": "bytes_in DESC", "flows": "flows DESC",
                 "hour": "hour_key", "first_seen": "first_seen"}


def ledger_with_totals(ws: Workspace, q: LedgerQuery = LedgerQuery()) -> tuple[pa.Table, dict]:
    """The ledger rows matching ``q`` (sorted, limited) and the totals over all matching rows."""
    return _query(ws, q, lambda sql, params: ws.con.sql(sql, params=params).to_arrow_table())


#: The ledger's time columns (TIMESTAMPTZ), fetched as microseconds by ``ledger_rows``.
_TIMES = ("hour", "first_seen", "last_seen")


def ledger_rows(ws: Workspace, q: LedgerQuery = LedgerQuery()) -> tuple[list[dict], dict]:
    """``ledger_with_totals`` with the rows as ``to_rows`` gives them, fetched without Arrow:
    importing pyarrow is a fifth of a second of a command meant to answer in half of one."""
    def fetch(sql: str, params: list) -> list[dict]:
        times = ", ".join(f"epoch_us({c}) AS {c}" for c in _TIMES)
        cur = ws.con.execute(f"SELECT * REPLACE ({times}) FROM ({sql})", params)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        for r in rows:
            for c in _TIMES:
                if r[c] is not None:
                    r[c] = _EPOCH + timedelta(microseconds=r[c])
        return rows
    return _query(ws, q, fetch)


def _query(ws: Workspace, q: LedgerQuery, fetch: Callable[[str, list], object]) -> tuple[object, dict]:
    if q.sort not in SORT_KEYS:
        raise AbflussError(f"unknown sort key {q.sort!r}; use one of {', '.join(SORT_KEYS)}")
    sql, args, stored = _grouped_sql(ws, q)
    if stored:  # a filtered read of stored rows: cheap enough to do for the rows and the totals
        grouped, src_args = f"({sql})", args
    else:
        # grouped once into a temporary table, not an Arrow table registered with DuckDB:
        # registering makes DuckDB import pandas (half a second of a command that should answer in less)
        ws.con.execute(f"CREATE OR REPLACE TEMP TABLE _ledger_grouped AS {sql}", args)
        grouped, src_args = "_ledger_grouped", []
    try:
        post, post_args = _post_where(q)
        limit = f"LIMIT {int(q.limit)}" if q.limit else ""
        source = grouped
        if limit and q.sort in _NUMERIC and not post_args:
            source = (f"(SELECT * FROM {grouped} ORDER BY {_GROUPED_KEYS[q.sort]}, internal_id, "
                      f"external_id, external_text, hour_key {limit})")
        rows = fetch(f"SELECT * FROM ({_labelled_sql(ws, source)}) WHERE {post} "
                     f"ORDER BY {SORT_KEYS[q.sort]}, internal_host, external_host, hour {limit}",
                     src_args + post_args)
        if post_args:
            tot = _totals_of(ws, f"(SELECT * FROM ({_labelled_sql(ws, grouped)}) WHERE {post})",
                             "internal_host", "external_host", src_args + post_args)
        else:
            # a destination is an address id or, reached through a proxy by name only, its name
            tot = _totals_of(ws, grouped, "internal_id", "(external_id, external_text)", src_args)
        return rows, tot
    finally:
        if not stored:
            ws.con.execute("DROP TABLE IF EXISTS _ledger_grouped")


def to_rows(table: pa.Table) -> list[dict]:
    """The ledger's rows as dicts, times as UTC datetimes: converted here, because pyarrow's own
    conversion of zoned timestamps imports pandas (half a second of a command meant to answer
    in less)."""
    import pyarrow as pa

    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            us = col.cast(pa.timestamp("us", col.type.tz)).cast(pa.int64()).to_pylist()
            cols[name] = [None if v is None else _EPOCH + timedelta(microseconds=v) for v in us]
        else:
            cols[name] = col.to_pylist()
    return [dict(zip(cols, vals)) for vals in zip(*cols.values())] if cols else []


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ledger(ws: Workspace, q: LedgerQuery = LedgerQuery()) -> pa.Table:
    """The ledger rows matching ``q``, sorted as asked."""
    return ledger_with_totals(ws, q)[0]


def totals(ws: Workspace, q: LedgerQuery = LedgerQuery()) -> dict:
    """Sums over the same selection: bytes out/in, flows, open flows, distinct hosts and destinations."""
    return ledger_with_totals(ws, replace(q, limit=1))[1]


def _totals_of(ws: Workspace, source: str, host: str, dest: str, args: list) -> dict:
    row = ws.con.execute(f"""
        SELECT coalesce(sum(bytes_out), 0)::BIGINT, coalesce(sum(bytes_in), 0)::BIGINT,
               coalesce(sum(flows), 0)::BIGINT, coalesce(sum(open_flows), 0)::BIGINT,
               count(DISTINCT {host}), count(DISTINCT {dest}) FROM {source}""", args).fetchall()[0]
    keys = ("bytes_out", "bytes_in", "flows", "open_flows", "internal_hosts", "external_hosts")
    return dict(zip(keys, row))
