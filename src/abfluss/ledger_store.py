"""The stored hourly ledger: the outflow ledger's grouped rows kept in the catalog.

The ledger (``abfluss.ledger``) groups every flow that crosses the boundary by internal host id x
destination id x hour. Grouping ten million flows per request takes seconds; the groups
themselves are what the ledger, the host page and the accounting read. So the writer keeps them
in the catalog table ``ledger_hourly`` (one row per group, the columns of
``ledger._grouped_sql``), and a query reads those rows instead of the flows.

Written by the writer (``update``: after an ingest, before an analysis), incrementally: only
the UTC days whose groups new inputs can change are grouped again —

- the days of the new flow files;
- the days of stored flows that a new TLS or HTTP record names by (sensor, uid) (the flow's
  destination name, a proxied connection's real destination), and of stored interim records of
  connections the new flows complete or continue (``flows_dedup`` keeps one record each);
- everything, when what applies to all days changed: the configuration's internal networks,
  proxies or resolvers, the set of proxies seen or the address a proxied name resolves to
  (``globals_key``), a file that went away, or the grouping's version.

Labels (addresses, names, tenants, destination classes) are not stored: they are attached to
the groups per query from the current configuration, as before. A query uses the stored rows
only when they are current (``current``: the same configuration, made from exactly the
catalog's flow, TLS, HTTP and DNS files); otherwise it groups the flows as it always did, so an
answer never depends on whether the stored ledger was brought up to date. Hours a window cuts
(``--from 10:30``) are grouped from the flows of that part of the hour.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import datetime, timedelta, timezone

from .store.views import read_files

#: Bump when the grouping changes: every stored ledger is then grouped again.
VERSION = 1
#: The tables whose rows decide a flow's group (flows, names from TLS/HTTP, proxies, resolvers).
TRACKED = ("flows", "tls", "http", "dns")
#: The stored groups: the columns of ``ledger._grouped_sql`` plus nothing.
DDL = """
CREATE TABLE IF NOT EXISTS ledger_hourly (
    internal_id BIGINT, external_id BIGINT, external_text VARCHAR, hour_key BIGINT,
    bytes_out BIGINT, bytes_in BIGINT, flows BIGINT, open_flows BIGINT,
    first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, flow_name VARCHAR, transit BOOLEAN);
-- the catalog files (of TRACKED tables) the stored ledger was made from
CREATE TABLE IF NOT EXISTS ledger_files (path VARCHAR PRIMARY KEY);
-- 'config': the configuration it was made under; 'globals': what applies to every day
CREATE TABLE IF NOT EXISTS ledger_state (key VARCHAR PRIMARY KEY, value VARCHAR);
"""
GROUP_COLUMNS = ("internal_id, external_id, external_text, hour_key, bytes_out, bytes_in, flows, open_flows, "
                 "first_seen, last_seen, flow_name, transit")
_HOUR_US = 3_600_000_000
_DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def config_key(cfg) -> str:
    """What of the configuration decides the groups: direction, proxies and resolvers."""
    tuned = cfg.detections.get("dns_tunnel", {})
    return json.dumps({"version": VERSION, "internal": list(cfg.internal), "proxies": list(cfg.proxies),
                       "resolvers": list(cfg.resolvers),
                       "learn": [tuned.get("learn_min_clients"), tuned.get("learn_min_domains")]}, sort_keys=True)


def _tables_exist(con) -> bool:
    return con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name IN "
                       "('ledger_hourly', 'ledger_files', 'ledger_state')").fetchall()[0][0] == 3


def _tracked(column: str = "table_name") -> str:
    return f"{column} IN ({', '.join(repr(t) for t in TRACKED)})"


def current(ws) -> bool:
    """Whether the stored ledger holds exactly the groups the flows give under ``ws.config``."""
    cfg = getattr(ws, "config", None)
    if cfg is None or not _tables_exist(ws.con):
        return False
    key, new, gone = ws.con.execute(f"""
        SELECT (SELECT value FROM ledger_state WHERE key = 'config'),
               (SELECT count(*) FROM files WHERE {_tracked()} AND path NOT IN (SELECT path FROM ledger_files)),
               (SELECT count(*) FROM ledger_files WHERE path NOT IN (SELECT path FROM files))""").fetchall()[0]
    return key == config_key(cfg) and new == 0 and gone == 0


def _proxies(ws, relation: str = "proxies") -> str | None:
    """The proxies, configured or seen (comma-separated), or None: there are none."""
    return ws.con.execute(
        f"SELECT string_agg(addr, ',' ORDER BY addr) FROM (SELECT DISTINCT addr FROM {relation})").fetchall()[0][0]


def globals_key(ws, proxies: str | None, targets_relation: str = "proxy_targets") -> str:
    """What applies to the flows of every day: the proxies (configured or seen: ``_proxies``) and
    the address each proxied name resolves to (the most frequent answer, which new DNS answers
    can change)."""
    # proxy_targets holds requests to proxies only: without a proxy it is empty, and its query
    # (every A/AAAA answer grouped by name) is not run: on a DNS-heavy capture that was 0.2 CPU s
    targets = None if proxies is None else ws.con.execute(f"""
        SELECT string_agg(target || '=' || coalesce(addr, ''), ',' ORDER BY target, addr)
        FROM (SELECT DISTINCT target, addr FROM {targets_relation})""").fetchall()[0][0]
    return hashlib.sha256(json.dumps([proxies, targets]).encode()).hexdigest()


#: Temporary tables holding the rows of the views ``proxies`` and ``proxy_targets`` while the
#: writer updates (``_update``); only the writer's connection sees them.
_PROXY_ROWS = ("_ledger_proxies", "_ledger_proxy_targets")


def _dirty_days(ws, new: list[tuple[str, str, object]]) -> set[int]:
    """The UTC days (as day numbers) whose groups the new files can change."""
    days = {(d - _EPOCH.date()).days for _p, t, d in new if t == "flows" and d is not None}
    named = [p for p, t, _d in new if t in ("tls", "http")]
    if named:  # stored flows a new TLS or HTTP record names
        days |= {r[0] for r in ws.con.execute(f"""
            SELECT DISTINCT epoch_us(f.ts) // {_DAY_US} FROM flows_raw f
            JOIN (SELECT DISTINCT sensor, uid FROM {read_files(ws.root, named)}
                  WHERE uid IS NOT NULL) k ON k.sensor = f.sensor AND k.uid = f.uid""").fetchall()}
    flows = [p for p, t, _d in new if t == "flows"]
    if flows:  # stored interim records the new flows complete or continue (flows_dedup keeps one)
        days |= {r[0] for r in ws.con.execute(f"""
            SELECT DISTINCT epoch_us(o.ts) // {_DAY_US} FROM flows_raw o
            JOIN (SELECT DISTINCT sensor, uid FROM {read_files(ws.root, flows)}) n
              ON n.sensor IS NOT DISTINCT FROM o.sensor AND n.uid IS NOT DISTINCT FROM o.uid
            WHERE o.open""").fetchall()}
    return {d for d in days if d is not None}


def grouped_flows_sql(where: str, directed: str = "flows_directed") -> str:
    """The groups of the boundary flows matching ``where`` (over ``flows_directed``, or the
    relation ``directed`` that gives the same rows)."""
    # Group on integer address ids and an hour number: the one pass over all flows does no
    # string work; addresses, names, tenants and classes are attached to the ledger rows after.
    # A destination reached through a proxy may be known by name only (no address id): its
    # name is then the key (``external_text``), null for every other flow.
    return f"""
        SELECT internal_id, external_id, CASE WHEN external_id IS NULL THEN external_host END AS external_text,
               epoch_us(ts) // {_HOUR_US} AS hour_key,
               sum(bytes_out)::BIGINT AS bytes_out, sum(bytes_in)::BIGINT AS bytes_in,
               count(*) AS flows, count_if(coalesce(open, false))::BIGINT AS open_flows,
               min(ts) AS first_seen, max(coalesce(ts_end, ts)) AS last_seen, max(flow_name) AS flow_name,
               bool_and(proxy_transit) AS transit
        FROM {directed} WHERE direction IN ('outbound', 'inbound') AND {where}
        GROUP BY internal_id, external_id, external_text, hour_key"""


def update(ws) -> dict | None:
    """Bring the stored ledger up to date (a writer with its enrichment views applied); what it
    did: ``{"full": bool, "days": n, "rows": n}``, or None when there was nothing to do."""
    cfg = getattr(ws, "config", None)
    if cfg is None or not ws.write or getattr(ws, "enriched_with", None) is not cfg:
        return None  # no configuration, or its views not applied: the ledger is grouped per query
    con = ws.con
    con.execute(DDL)
    new = con.execute(f"SELECT path, table_name, day FROM files WHERE {_tracked()} "
                      "AND path NOT IN (SELECT path FROM ledger_files) ORDER BY path").fetchall()
    state = dict(con.execute("SELECT key, value FROM ledger_state").fetchall())
    gone = con.execute("SELECT count(*) FROM ledger_files WHERE path NOT IN (SELECT path FROM files)").fetchall()[0][0]
    key = config_key(cfg)
    if not new and not gone and state.get("config") == key:
        return None
    try:
        return _update(ws, new, state, gone, key)
    finally:
        with contextlib.suppress(Exception):  # never hides what went wrong; gone with the connection anyway
            for table in _PROXY_ROWS:
                con.execute(f"DROP TABLE IF EXISTS {table}")


def _update(ws, new: list, state: dict, gone: int, key: str) -> dict:
    from .enrich import directed_sql, proxy_targets_sql

    con = ws.con
    # The proxy views are read twice (globals_key, and the grouping's flows_directed), and each
    # read ran their queries again: the learned resolvers, every HTTP request to a proxy, every
    # A/AAAA answer (0.3 of the 0.8 CPU s an update of 360 hourly Zeek logs took). Their rows are
    # computed once into temporary tables instead, and flows_directed's query reads those.
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_PROXY_ROWS[0]} AS SELECT addr FROM proxies")
    proxies = _proxies(ws, _PROXY_ROWS[0])
    if proxies is None:
        # no proxy configured or seen: the flows grouped without joining the (then empty) proxy views
        glob = globals_key(ws, None)
        directed = f"({directed_sql(proxies=False)}) flows_directed"
    else:
        # proxy_targets' own query reads the proxies twice: from the table too
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_PROXY_ROWS[1]} AS {proxy_targets_sql(_PROXY_ROWS[0])}")
        glob = globals_key(ws, proxies, _PROXY_ROWS[1])
        directed = f"({directed_sql(relations=_PROXY_ROWS)}) flows_directed"
    full = gone > 0 or state.get("config") != key or state.get("globals") != glob
    days = None if full else _dirty_days(ws, new)
    con.execute("BEGIN TRANSACTION")
    try:
        if full:
            con.execute("DELETE FROM ledger_hourly")
            con.execute("DELETE FROM ledger_files")
            where = "true"
        elif days:
            listed = ", ".join(str(int(d)) for d in sorted(days))
            con.execute(f"DELETE FROM ledger_hourly WHERE hour_key // 24 IN ({listed})")
            lo, hi = min(days), max(days) + 1  # a range the Parquet statistics can prune with
            where = (f"ts >= make_timestamptz({lo * _DAY_US}::BIGINT) AND ts < make_timestamptz({hi * _DAY_US}::BIGINT) "
                     f"AND epoch_us(ts) // {_DAY_US} IN ({listed})")
        else:
            where = None
        rows = 0
        if where is not None:
            before = con.execute("SELECT count(*) FROM ledger_hourly").fetchall()[0][0]
            con.execute(f"INSERT INTO ledger_hourly ({GROUP_COLUMNS}) SELECT {GROUP_COLUMNS} FROM ({grouped_flows_sql(where, directed)}) "
                        "ORDER BY hour_key, internal_id")
            rows = con.execute("SELECT count(*) FROM ledger_hourly").fetchall()[0][0] - before
        con.execute(f"INSERT INTO ledger_files SELECT path FROM files WHERE {_tracked()} "
                    "AND path NOT IN (SELECT path FROM ledger_files)")
        con.execute("INSERT OR REPLACE INTO ledger_state VALUES ('config', ?), ('globals', ?)", [key, glob])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return {"full": full, "days": None if days is None else len(days), "rows": rows}


def hour_floor(t: datetime) -> datetime:
    t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def hour_key(t: datetime) -> int:
    return (hour_floor(t) - _EPOCH) // timedelta(hours=1)


def split(start: datetime | None, end: datetime | None):
    """The window's whole hours, which the stored rows answer (``(lo_key, hi_key)``, either None
    for open; None when there are none), and the cut parts of hours at its edges, which the flows
    answer (``[(start, end)]``)."""
    lo = None if start is None else hour_key(start) + (hour_floor(start) != _aware(start))
    hi = None if end is None else hour_key(end)
    if lo is not None and hi is not None and hi < lo:  # inside one hour
        return None, [(start, end)]
    whole = None if lo is not None and hi is not None and hi == lo else (lo, hi)
    parts = []
    if start is not None and hour_floor(start) != _aware(start):
        parts.append((start, _EPOCH + timedelta(hours=lo)))
    if end is not None and hour_floor(end) != _aware(end):
        parts.append((_EPOCH + timedelta(hours=hi), end))
    return whole, parts


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
