"""Outflow accounting: every byte out in a window attributed to exactly one class.

The answer to "did data leave?" rests on accounting, not on the absence of alerts. Each row of
the outflow ledger (internal host x external destination x hour) for the window and tenant falls
in the first class that applies, so the five classes sum to the ledger's bytes out, to the byte:

``local``        multicast, broadcast, link-local or unspecified destination (``dest_class``
                 ``local``; checked by address too: ``enrich.LOCAL_NETWORKS``)
``allowlisted``  an allowlisted network or domain (``dest_class`` ``allowlisted``)
``flagged``      covered by a finding of an exfiltration or indicator detection of
                 ``FLAGGED_MIN_SEVERITY`` or more naming the host and the destination (a finding
                 without a destination, such as a host's volume, covers that host's hours it spans)
``baseline``     a destination that received data from the tenant's hosts in the ``LOOKBACK``
                 before the window, and this host-hour is within its normal range: at most
                 median + ``BASELINE_Z`` x 1.4826 x MAD of the destination's host-hours before
                 the window, or their p99, whichever is larger
``unexplained``  everything else: listed per host and destination, largest first

Only medium findings and above flag bytes: those are the findings that make a verdict
``EXFIL_INDICATED`` at least, so no byte is explained away by a finding nobody acts on.

Which findings: those given (the evidence report analyses its window afresh and passes its
own), else the stored findings when stored analyses cover the window (``stored_findings``: runs
over a window containing it, after the last input was stored, that together ran every flagging
detection), else a fresh analysis of the window. The rows come from the ledger, which reads the
stored hourly ledger (``ledger_store``): so ``account`` over analysed data reads no flow but the
window's few top pairs' and its telemetry summary. The rows are classified and summed per pair
in DuckDB (``accounting_sql``), so no ledger row reaches Python.
"""

from __future__ import annotations

import copy
import ipaddress
import statistics
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from . import ledger_store
from .analysis import LOOKBACK
from .enrich import LOCAL_NETWORKS
from .errors import AbflussError
from .findings import Finding
from .ledger import LedgerQuery, grouped_sql, labelled_sql
from .statecache import StateCache
from .store import Workspace

CATEGORIES = ("allowlisted", "local", "baseline", "flagged", "unexplained")
#: Detections whose findings are evidence of data leaving (a finding of these of high severity
#: or more with bytes out confirms an outflow) ...
EXFIL_DETECTIONS = ("bulk_outbound", "upload_heavy", "dns_tunnel", "icmp_tunnel", "cleartext_sensitive_data")
#: ... and indicators of a channel out without proof that data used it.
INDICATOR_DETECTIONS = ("beaconing", "threat_intel", "rare_destination", "long_connection", "off_hours",
                        "protocol_mismatch", "tunnel_encapsulation")
#: Findings below this severity flag no bytes (they do not make a verdict suspicious either).
FLAGGED_MIN_SEVERITY = "medium"
#: Baseline: the robust z above a destination's median host-hour (history: ``analysis.LOOKBACK``).
BASELINE_Z = 3.5
#: Unexplained host x destination pairs listed (the full list: ``abfluss account --format csv``).
TOP_UNEXPLAINED = 10
#: Accountings kept in the process (the console's repeated calls, its warm-up's), counted in
#: host x destination pairs listed (about 1 KB each): see ``_generation``, ``statecache``.
CACHE_PAIRS = 200_000
#: ... each of at most this many pairs (the CLI's full list over ten million flows is hundreds of MB).
CACHE_MAX_PAIRS = 20_000
_LOCAL = tuple(ipaddress.ip_network(n) for n in LOCAL_NETWORKS)


@lru_cache(maxsize=65536)
def is_local(addr: str | None) -> bool:
    """Multicast, broadcast, link-local or unspecified (never a destination data leaves to)."""
    try:
        a = ipaddress.ip_address(addr or "")
    except ValueError:
        return False
    return any(a.version == n.version and a in n for n in _LOCAL)


def baseline(values: list[int]) -> dict | None:
    """Median, MAD, p99 and the threshold of hourly byte counts (None without history)."""
    if not values:
        return None
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    s = sorted(values)
    p99 = s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]
    return {"hours": len(values), "median": med, "mad": mad, "p99": p99,
            "threshold": max(med + BASELINE_Z * 1.4826 * mad, p99)}


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _iso(t) -> str | None:
    return None if t is None else _utc(t).astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def classify(rows: list[dict], history: list[dict], findings: list[Finding]) -> list[tuple[str, dict, list[str]]]:
    """Each ledger row (a dict) with its class and the ids of the findings that flag it: the
    rules ``account`` applies (``accounting_sql``), over rows given in Python."""
    from .accounting_sql import classify_rows
    return classify_rows(rows, history, findings)


def account(ws: Workspace, start: datetime | None = None, end: datetime | None = None,
            tenant: str | None = None, findings: list[Finding] | None = None, limit: int | None = None) -> dict:
    """The accounting of [start, end) (default: all data) for ``tenant`` (default: all).

    ``findings`` default to the stored findings when stored analyses cover the window
    (``stored_findings``), else to a fresh analysis of exactly this window (not stored), as the
    report does. Returns a JSON-ready dict: ``categories`` (bytes per class, summing to
    ``bytes_out``, the ledger's total), their shares, the top unexplained destinations, the
    flagged pairs, every host x destination x class (``pairs``; the ``limit`` largest when
    given: the console's API) and the facts about the telemetry that decide whether the window
    can be assessed at all (``telemetry``).

    The rows are classified and summed per pair in DuckDB (``accounting_sql``): over ten
    million flows the window and its history are millions of host-hours, and only the pairs
    asked for reach Python. An accounting from stored findings is kept per process
    (``CACHE_PAIRS``) and given again while the workspace is unchanged (``_generation``); two
    callers asking for the same one at once share one computation (``statecache``).
    """
    if tenant and tenant != "default" and tenant not in ws.config.tenants:
        raise AbflussError(f"unknown tenant {tenant!r}; configured: {', '.join(ws.config.tenants) or 'none'}")
    start, end = _utc(start), _utc(end)
    if findings is not None:  # given by the caller (the evidence report's own analysis): not kept
        return _account(ws, start, end, tenant, findings, limit)
    # from what is stored: the same until the workspace changes; computed once per key, also
    # when two requests (or a request and the console's warm-up) ask at once
    root, *state = _generation(ws)
    key = (root, tuple(state), start, end, tenant, limit)
    return copy.deepcopy(_CACHE.get(key, lambda: _account(ws, start, end, tenant, None, limit, key[:2])))


_CACHE = StateCache(budget=CACHE_PAIRS, weight=lambda acc: len(acc["pairs"]) + len(acc["flagged"]) + 1,
                    max_weight=CACHE_MAX_PAIRS)
#: What every tenant's accounting of a window shares (its stored findings, the telemetry summary:
#: a pass over the window's flows), kept per workspace state for the next tenant's.
_SHARED = StateCache(budget=64)


def newest_day(ws: Workspace) -> tuple[datetime, datetime] | None:
    """The UTC day of the newest record, ``[00:00, 00:00 next day)``: the window of a daily
    accounting of "today" (or of the last day a sensor delivered), which the console's warm-up
    computes ahead (``abfluss.web.warm``). None for an empty workspace."""
    from . import analysis
    hi = analysis.data_span(ws)[1]
    if hi is None:
        return None
    day = _utc(hi).astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day + timedelta(days=1)


def _generation(ws: Workspace) -> tuple:
    """What an accounting from stored data is computed from, in a few small reads: the workspace,
    its configuration, the stored files and inputs (every table's rows, so the ledger store too),
    the analyses and the stored findings, and whether the stored ledger is read. A new ingest,
    ``watch`` file, analysis or configuration gives another key, so a cached accounting is never
    stale."""
    row = ws.con.execute("""
        SELECT (SELECT count(*) FROM files), (SELECT coalesce(sum(hash(path, rows)), 0) FROM files),
               (SELECT count(*) FROM inputs), (SELECT max(ingested_at) FROM inputs),
               (SELECT count(*) FROM analyses), (SELECT max(id) FROM analyses),
               (SELECT count(*) FROM findings),
               (SELECT coalesce(sum(hash(id, severity, start_ts, end_ts, updated)), 0) FROM findings)""").fetchall()[0]
    return str(ws.root.resolve()), repr(ws.config), row, ledger_store.current(ws)


def _account(ws: Workspace, start, end, tenant: str | None, findings: list[Finding] | None,
             limit: int | None, state: tuple | None = None) -> dict:
    """``account``'s computation; ``state`` (the workspace and its state, when the findings are
    the stored ones) shares the window's tenant-independent parts between tenants (``_SHARED``)."""
    from . import analysis

    lo, hi = analysis.data_span(ws)
    start, end = _utc(start or lo), _utc(end or hi)
    if start is None or end is None:
        raise AbflussError("the workspace holds no records yet: nothing to account for (abfluss ingest FILE)")
    if end <= start:
        raise AbflussError(f"empty window: --to {_iso(end)} is not after --from {_iso(start)}")

    def shared(part: str, compute):
        return compute() if state is None else _SHARED.get(state + (part, start, end), compute)
    def window_findings() -> list[Finding]:  # the stored ones, else a fresh analysis of the window (not stored)
        got = stored_findings(ws, start, end)
        return got if got is not None else analysis.analyze(ws, start, end, store=False).findings
    if findings is None:
        findings = shared("findings", window_findings)
    from . import accounting_sql as sql

    con = ws.con
    try:
        sql.prepare(con, *_window_sql(ws, start, end, tenant), *_limits_of_history(ws, start, tenant),
                    sql.Flags(findings))
        con.execute(sql.PAIRS_SQL)
        cats = {c: 0 for c in CATEGORIES}
        total = flows = count = 0
        for cat, b, n, k in con.execute("SELECT category, sum(bytes_out)::BIGINT, sum(flows)::BIGINT, count(*) "
                                        "FROM _acc_pairs GROUP BY category").fetchall():
            cats[cat], total, flows = int(b), total + int(b), flows + int(n)
            count += k if cat == "unexplained" else 0
        order = "ORDER BY bytes_out DESC, category, internal_host, external_host"
        unexplained = sql.fetch_pairs(con, f"WHERE category = 'unexplained' {order} LIMIT {TOP_UNEXPLAINED}")
        flagged = sql.fetch_pairs(con, f"WHERE category = 'flagged' {order}")
        pairs = sql.fetch_pairs(con, order + (f" LIMIT {int(limit)}" if limit else ""))
    finally:
        sql.drop(con)
    details = _pair_details(ws, start, end, unexplained + flagged)
    return {
        "window": {"start": _iso(start), "end": _iso(end)}, "tenant": tenant,
        "bytes_out": total, "flows": flows,
        "categories": cats,
        "shares": {c: round(v / total, 6) if total else 0.0 for c, v in cats.items()},
        "top_unexplained": [_public(p, details) for p in unexplained],
        "unexplained_destinations": count,
        "flagged": [_public(p, details) for p in flagged],
        "pairs": [_public(p, {}) for p in pairs],
        "telemetry": copy.deepcopy(shared("telemetry", lambda: _telemetry(ws, start, end))),
        "settings": {"flagged_min_severity": FLAGGED_MIN_SEVERITY, "baseline_z": BASELINE_Z,
                     "lookback_days": LOOKBACK.days, "local_networks": list(LOCAL_NETWORKS)},
    }


def _window_sql(ws: Workspace, start: datetime, end: datetime, tenant: str | None) -> tuple[str, list]:
    """The window's ledger rows; ``check_local`` where ``dest_class`` may miss a local address
    (a proxied connection's class is ``proxy``; a destination known by name only has no address)."""
    return labelled_sql(ws, LedgerQuery(start, end, tenant=tenant),
                        ", g.transit OR g.external_id IS NULL AS check_local")


def _limits_of_history(ws: Workspace, start: datetime, tenant: str | None) -> tuple[str, list]:
    """Per destination the threshold over the positive byte counts of the tenant's host-hours in
    the ``LOOKBACK`` before the window (each ledger group is one host x destination x hour: no
    sum needed), computed per address id (or name) and labelled after."""
    from .accounting_sql import limits_sql

    sql, args = grouped_sql(ws, LedgerQuery(start - LOOKBACK, start))
    cond, targs = ("tenant = ?", [tenant]) if tenant else ("true", [])
    values = f"""
        SELECT external_id, external_text, bytes_out AS v FROM ({sql})
        WHERE bytes_out > 0 AND internal_id IN (SELECT id FROM address_class WHERE {cond})"""
    return f"""
        SELECT coalesce(ce.addr, l.external_text) AS external_host, l.threshold
        FROM ({limits_sql(values, "external_id, external_text")}) l
        LEFT JOIN address_class ce ON ce.id = l.external_id""", args + targs


def stored_findings(ws: Workspace, start: datetime, end: datetime) -> list[Finding] | None:
    """The stored findings of the flagging detections whose span meets [start, end), when stored
    analyses cover it: each flagging detection that is enabled ran in an analysis whose window
    contains the window's data, started after the last input was stored. None otherwise."""
    from . import analysis, detections

    lo, hi = analysis.data_span(ws)
    if lo is None:
        return None
    s, e = max(_utc(start), _utc(lo)), min(_utc(end), _utc(hi))
    enabled = {d for d in EXFIL_DETECTIONS + INDICATOR_DETECTIONS if d in detections.MODULES
               and ws.config.detections.get(d, {}).get("enabled", True) is not False}
    ran = set()
    for (dets,) in ws.con.execute("""
            SELECT detections FROM analyses
            WHERE window_start <= ? AND window_end >= ? AND engine <> 'watch'
              AND started_at >= (SELECT coalesce(max(ingested_at), '-infinity'::TIMESTAMPTZ) FROM inputs)""",
                                  [s, e]).fetchall():
        ran.update(dets or ())
    if not enabled <= ran:
        return None
    return [f for f in analysis.load(ws) if f.detection in enabled
            and (f.start is None or f.end is None or (_utc(f.start) < _utc(end) and _utc(f.end) >= _utc(start)))]


def _public(p: dict, details: dict) -> dict:
    d = details.get((p["internal_host"], p["external_host"]), {})
    out = {"category": p["category"], "host": p["internal_host"], "destination": p["external_host"],
           "name": p["external_name"], "bytes": p["bytes_out"], "flows": p["flows"],
           "first_seen": _iso(p["first_seen"]), "last_seen": _iso(p["last_seen"])}
    if p["category"] == "flagged":
        out["findings"] = sorted(p["findings"])
    if d:
        out |= {"channel": d["channel"], "largest_flow": d["largest_flow"],
                "destination_first_seen": _iso(d["destination_first_seen"]), "other_hosts": d["other_hosts"]}
    return out


def _pair_details(ws: Workspace, start, end, pairs: list[dict]) -> dict:
    """Per host x destination: main channel and largest single flow in the window, when any
    internal host first contacted the destination (all data), and how many other hosts did."""
    if not pairs:
        return {}
    keys = [[p["internal_host"], p["external_host"]] for p in pairs]
    dests = sorted({p["external_host"] for p in pairs})
    got = {}
    for h, x, chan, big in ws.con.execute("""
            SELECT internal_host, external_host,
                   arg_max(coalesce(service, proto || '/' || coalesce(resp_p, 0)), bytes_out),
                   max(bytes_out)::BIGINT
            FROM flows_directed WHERE direction IN ('outbound', 'inbound') AND ts >= ? AND ts < ?
              AND [internal_host, external_host] IN (SELECT unnest(?))
            GROUP BY ALL""", [start, end, keys]).fetchall():
        got[(h, x)] = {"channel": chan, "largest_flow": int(big or 0)}
    sql, stored = _first_contact_sql(ws)
    seen = {x: (t, hosts) for x, t, hosts in ws.con.execute(sql, [dests, dests] if stored else [dests]).fetchall()}
    for (h, x), d in got.items():
        t, hosts = seen.get(x, (None, []))
        d["destination_first_seen"] = t
        d["other_hosts"] = len(set(hosts) - {h})
    return got


def _first_contact_sql(ws: Workspace) -> tuple[str, bool]:
    """Per destination (all data): its first contact and the internal hosts that talked to it;
    from the stored hourly ledger's groups (their first_seen is their flows' first ts) when
    current (then True: the destinations are bound twice, as address ids and as names)."""
    if ledger_store.current(ws):
        return """
            SELECT coalesce(ce.addr, g.external_text) AS external_host, min(g.first_seen), list(DISTINCT ci.addr)
            FROM ledger_hourly g JOIN address_class ci ON ci.id = g.internal_id
            LEFT JOIN address_class ce ON ce.id = g.external_id
            WHERE g.external_id IN (SELECT id FROM addresses WHERE addr IN (SELECT unnest(?::VARCHAR[])))
               OR (g.external_id IS NULL AND g.external_text IN (SELECT unnest(?::VARCHAR[])))
            GROUP BY ALL""", True
    return """
            SELECT external_host, min(ts), list(DISTINCT internal_host) FROM flows_directed
            WHERE direction IN ('outbound', 'inbound') AND external_host IN (SELECT unnest(?))
            GROUP BY ALL""", False


def _telemetry(ws: Workspace, start, end) -> dict:
    """What the window's flow telemetry holds: flows, flows across the boundary, flows between
    two external addresses, internal addresses seen, and the busiest addresses (what ``[networks] internal`` should match)."""
    # One pass over the window's flows; addresses counted by id (by text only where an address
    # has none: a proxied connection's target known by name), labelled for the three busiest.
    flows, crossing, external, internal, busiest = ws.con.execute("""
        WITH f AS MATERIALIZED (
            SELECT direction, orig_internal, resp_internal, orig_id, resp_id,
                   CASE WHEN orig_id IS NULL THEN orig_h END AS orig_t, CASE WHEN resp_id IS NULL THEN resp_h END AS resp_t
            FROM flows_directed WHERE ts >= ? AND ts < ?),
        a AS (SELECT orig_id AS id, orig_t AS t, orig_internal AS i FROM f
              UNION ALL SELECT resp_id, resp_t, resp_internal FROM f),
        n AS (SELECT id, t, count(*) AS n FROM a WHERE id IS NOT NULL OR t IS NOT NULL GROUP BY id, t)
        SELECT (SELECT count(*) FROM f), (SELECT coalesce(count_if(direction IN ('outbound', 'inbound')), 0) FROM f),
               (SELECT coalesce(count_if(direction = 'external'), 0) FROM f),
               (SELECT count(DISTINCT id) + count(DISTINCT t) FROM a WHERE i),
               (SELECT list([addr, n::VARCHAR]) FROM (
                    SELECT coalesce(ad.addr, n.t) AS addr, n.n FROM n LEFT JOIN addresses ad ON ad.id = n.id
                    ORDER BY n.n DESC, addr LIMIT 3))""", [start, end]).fetchall()[0]
    return {"flows": int(flows), "boundary_flows": int(crossing), "external_flows": int(external),
            "internal_addresses": int(internal),
            "busiest_addresses": [{"address": a, "flows": int(n)} for a, n in busiest or []]}
