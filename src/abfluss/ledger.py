"""The outflow ledger: bytes out and in per internal host x external destination x hour.

Every flow with one internal and one external endpoint is counted once, in the hour it
started; interim records of connections still open count and are flagged (``open_flows``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from .errors import AbflussError
from .store import Workspace

#: The columns of a ledger row, in output order (JSON field names: a contract).
COLUMNS = ("internal_host", "external_host", "external_name", "hour", "bytes_out", "bytes_in",
           "flows", "open_flows", "first_seen", "last_seen", "tenant", "dest_class")
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


def _where(q: LedgerQuery) -> tuple[str, list]:
    cond, args = ["direction IN ('outbound', 'inbound')"], []
    if q.start is not None:
        cond.append("ts >= ?")
        args.append(q.start)
    if q.end is not None:
        cond.append("ts < ?")
        args.append(q.end)
    if q.host:
        cond.append("internal_host = ?")
        args.append(q.host)
    if q.tenant:
        cond.append("tenant = ?")
        args.append(q.tenant)
    if q.destination:
        d = q.destination.lower()
        cond.append("(external_host = ? OR external_name = ? OR ends_with(external_name, ?))")
        args += [q.destination, d, "." + d]
    return " AND ".join(cond), args


def ledger(ws: Workspace, q: LedgerQuery = LedgerQuery()) -> pa.Table:
    """The ledger rows matching ``q``, sorted as asked."""
    if q.sort not in SORT_KEYS:
        raise AbflussError(f"unknown sort key {q.sort!r}; use one of {', '.join(SORT_KEYS)}")
    where, args = _where(q)
    limit = f"LIMIT {int(q.limit)}" if q.limit else ""
    sql = f"""
        SELECT internal_host, external_host, max(external_name) AS external_name,
               time_bucket(INTERVAL 1 HOUR, ts) AS hour,
               sum(bytes_out)::BIGINT AS bytes_out, sum(bytes_in)::BIGINT AS bytes_in,
               count(*) AS flows, count_if(coalesce(open, false))::BIGINT AS open_flows,
               min(ts) AS first_seen, max(coalesce(ts_end, ts)) AS last_seen,
               any_value(tenant) AS tenant, max(dest_class) AS dest_class
        FROM flows WHERE {where}
        GROUP BY internal_host, external_host, hour
        ORDER BY {SORT_KEYS[q.sort]}, internal_host, external_host, hour {limit}"""
    return ws.con.sql(sql, params=args).to_arrow_table().select(list(COLUMNS))


def totals(ws: Workspace, q: LedgerQuery = LedgerQuery()) -> dict:
    """Sums over the same selection: bytes out/in, flows, distinct hosts and destinations."""
    where, args = _where(q)
    row = ws.con.execute(f"""
        SELECT coalesce(sum(bytes_out), 0)::BIGINT, coalesce(sum(bytes_in), 0)::BIGINT, count(*),
               coalesce(count_if(coalesce(open, false)), 0)::BIGINT, count(DISTINCT internal_host), count(DISTINCT external_host)
        FROM flows WHERE {where}""", args).fetchall()[0]
    keys = ("bytes_out", "bytes_in", "flows", "open_flows", "internal_hosts", "external_hosts")
    return dict(zip(keys, row))
