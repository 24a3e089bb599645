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
in DuckDB (``_CLASSIFIED_SQL``), so no ledger row reaches Python.
"""

from __future__ import annotations

import copy
import ipaddress
import statistics
import threading
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from . import ledger_store
from .analysis import LOOKBACK
from .enrich import LOCAL_NETWORKS
from .errors import AbflussError
from .findings import SEVERITIES, Finding
from .ledger import LedgerQuery, grouped_sql, labelled_sql
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
#: Accountings kept in the process (the console's repeated calls for a window): see ``_generation``.
CACHE_SIZE = 8
#: ... of at most this many pairs (the CLI's full list over ten million flows is hundreds of MB).
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


class _Flags:
    """Which ledger rows the flagging findings cover."""

    def __init__(self, findings: list[Finding]):
        floor = SEVERITIES.index(FLAGGED_MIN_SEVERITY)
        self.pairs: dict[tuple[str, str], list[str]] = {}
        self.names: dict[str, list[tuple[str, str]]] = {}
        self.hosts: dict[str, list[tuple[datetime, datetime, str]]] = {}
        for f in findings:
            if f.detection not in EXFIL_DETECTIONS + INDICATOR_DETECTIONS or SEVERITIES.index(f.severity) < floor:
                continue
            for h in f.internal_hosts:
                for x in f.external_hosts:
                    self.pairs.setdefault((h, x), []).append(f.id)
                for n in f.external_names:
                    self.names.setdefault(h, []).append((n.lower(), f.id))
                if not f.external_hosts and not f.external_names and f.start:
                    self.hosts.setdefault(h, []).append((f.start, f.end or f.start, f.id))

    def by_name(self, host: str, name: str | None) -> list[str]:
        """The findings naming ``name`` (or a domain above it) for ``host``."""
        name = (name or "").lower()
        return [i for n, i in self.names.get(host, ()) if name == n or name.endswith("." + n)] if name else []

    def tables(self, con, names: list[tuple[str, str]]) -> None:
        """The flags as the temporary tables the classification joins: ``_acc_fp`` (host,
        destination, id), ``_acc_fn`` (host, name, ids: ``names``' pairs, matched here) and
        ``_acc_fh`` (host, first and last microsecond of a finding's span, id)."""
        fp = [(h, x, i) for (h, x), ids in self.pairs.items() for i in ids]
        fn = [(h, n, ids) for h, n in names if (ids := self.by_name(h, n))]
        fh = [(h, _us(lo), _us(hi), i) for h, spans in self.hosts.items() for lo, hi, i in spans]
        con.execute("CREATE OR REPLACE TEMP TABLE _acc_fp AS SELECT unnest(?::VARCHAR[]) AS h, "
                    "unnest(?::VARCHAR[]) AS x, unnest(?::VARCHAR[]) AS id", [list(c) for c in zip(*fp)] or [[], [], []])
        con.execute("CREATE OR REPLACE TEMP TABLE _acc_fn AS SELECT unnest(?::VARCHAR[]) AS h, "
                    "unnest(?::VARCHAR[]) AS name, unnest(?::VARCHAR[][]) AS ids", [list(c) for c in zip(*fn)] or [[], [], []])
        con.execute("CREATE OR REPLACE TEMP TABLE _acc_fh AS SELECT unnest(?::VARCHAR[]) AS h, unnest(?::BIGINT[]) AS lo, "
                    "unnest(?::BIGINT[]) AS hi, unnest(?::VARCHAR[]) AS id", [list(c) for c in zip(*fh)] or [[], [], [], []])


def _us(t: datetime) -> int:
    return (_utc(t) - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_TEMP = ("_acc_rows", "_acc_limits", "_acc_local", "_acc_fp", "_acc_fn", "_acc_fh", "_acc_pairs")


def _limits_sql(values: str, keys: str) -> str:
    """Per destination (``keys``), ``baseline``'s threshold over ``values`` (rows of ``keys`` and
    ``v``, a positive host-hour byte count before the window): the same arithmetic in DuckDB on
    each destination's sorted list, so no host-hour reaches Python (tests/test_accounting.py
    compares the two). The median of an even count is the mean of the two middle values, as
    ``statistics.median`` (exact in doubles for byte counts below 2^50)."""
    return f"""
        SELECT {keys}, greatest(med + '{BASELINE_Z * 1.4826!r}'::DOUBLE * mad, p99) AS threshold FROM (
            SELECT *, CASE WHEN n % 2 = 1 THEN d[n // 2 + 1] ELSE (d[n // 2] + d[n // 2 + 1]) / 2 END AS mad
            FROM (SELECT *, list_sort(list_transform(s, lambda x: abs(x - med))) AS d FROM (
                SELECT {keys}, s, n,
                       CASE WHEN n % 2 = 1 THEN s[n // 2 + 1]::DOUBLE
                            ELSE (s[n // 2] + s[n // 2 + 1])::DOUBLE / 2 END AS med,
                       -- Python's round() halves to even: round_even
                       s[least(n - 1, round_even(0.99::DOUBLE * (n - 1), 0)::BIGINT) + 1]::DOUBLE AS p99
                FROM (SELECT {keys}, s, len(s) AS n FROM (
                    SELECT {keys}, list_sort(list(v)) AS s FROM ({values}) GROUP BY {keys})))))"""


#: Each row of ``_acc_rows`` with its class and the ids of the findings that flag it (the
#: module's rules, in their order): ``_acc_limits`` holds the destinations' thresholds,
#: ``_acc_local`` the destinations ``is_local`` says are local among the rows ``check_local``
#: marks (those whose ``dest_class`` does not already say so from the address: proxied, or
#: named only), ``_acc_fp``/``_acc_fn``/``_acc_fh`` the flags (``_Flags.tables``).
_CLASSIFIED_SQL = """
    WITH c AS (
        SELECT w.*, lim.threshold,
               w.dest_class = 'local' OR (w.check_local AND w.external_host IN (SELECT x FROM _acc_local)) AS local_,
               list_sort(list_distinct(list_concat(coalesce(p.ids, []::VARCHAR[]), coalesce(n.ids, []::VARCHAR[]),
                                                   coalesce(hs.ids, []::VARCHAR[])))) AS ids_
        FROM _acc_rows w
        LEFT JOIN _acc_limits lim ON lim.external_host = w.external_host
        LEFT JOIN (SELECT h, x, list(id) AS ids FROM _acc_fp GROUP BY h, x) p
               ON p.h = w.internal_host AND p.x = w.external_host
        LEFT JOIN _acc_fn n ON n.h = w.internal_host AND n.name = w.external_name
        LEFT JOIN (SELECT k.h, k.hour, list(f.id) AS ids
                   FROM (SELECT DISTINCT internal_host AS h, hour FROM _acc_rows
                         WHERE internal_host IN (SELECT h FROM _acc_fh)) k
                   JOIN _acc_fh f ON f.h = k.h AND epoch_us(k.hour) <= f.hi AND epoch_us(k.hour) + 3600000000 > f.lo
                   GROUP BY k.h, k.hour) hs ON hs.h = w.internal_host AND hs.hour = w.hour)
    SELECT * EXCLUDE (threshold, local_, ids_),
           CASE WHEN local_ THEN 'local' WHEN dest_class = 'allowlisted' THEN 'allowlisted'
                WHEN len(ids_) > 0 THEN 'flagged' WHEN bytes_out <= threshold THEN 'baseline'
                ELSE 'unexplained' END AS category,
           CASE WHEN local_ OR dest_class = 'allowlisted' THEN []::VARCHAR[] ELSE ids_ END AS ids
    FROM c"""


def _prepare(con, rows: str, rows_args: list, limits: str, values_args: list, flags: _Flags) -> None:
    """The temporary tables ``_CLASSIFIED_SQL`` reads: ``rows`` (ledger rows with ``check_local``),
    ``limits`` (``external_host`` and ``threshold``: ``_limits_sql``), the local destinations and the flags."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _acc_rows AS {rows}", rows_args)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _acc_limits AS {limits}", values_args)
    maybe = [x for (x,) in con.execute("SELECT DISTINCT external_host FROM _acc_rows "
                                       "WHERE check_local AND dest_class <> 'local'").fetchall()]
    con.execute("CREATE OR REPLACE TEMP TABLE _acc_local AS SELECT unnest(?::VARCHAR[]) AS x",
                [[x for x in maybe if is_local(x)]])
    names = con.execute("""
        SELECT DISTINCT internal_host, external_name FROM _acc_rows
        WHERE internal_host IN (SELECT unnest(?::VARCHAR[])) AND external_name <> ''""",
                        [sorted(flags.names)]).fetchall() if flags.names else []
    flags.tables(con, names)


def _drop(con) -> None:
    for t in _TEMP:
        con.execute(f"DROP TABLE IF EXISTS {t}")


def classify(rows: list[dict], history: list[dict], findings: list[Finding]) -> list[tuple[str, dict, list[str]]]:
    """Each ledger row with its class and the ids of the findings that flag it: the rules
    ``account`` applies in DuckDB, here over rows given as dicts (an in-memory database)."""
    import duckdb

    per_dest: dict[str, dict[tuple, int]] = {}
    for r in history:
        k = (r["internal_host"], r["hour"])
        d = per_dest.setdefault(r["external_host"], {})
        d[k] = d.get(k, 0) + r["bytes_out"]
    values = [(x, v) for x, hours in per_dest.items() for v in hours.values() if v > 0]
    cols = ("internal_host", "external_host", "external_name", "dest_class")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        _prepare(con, f"""
            SELECT unnest(?::BIGINT[]) AS i, {', '.join(f'unnest(?::VARCHAR[]) AS {c}' for c in cols)},
                   make_timestamptz(unnest(?::BIGINT[])) AS hour, unnest(?::BIGINT[]) AS bytes_out,
                   true AS check_local""",
                 [list(range(len(rows)))] + [[r[c] for r in rows] for c in cols]
                 + [[_us(r["hour"]) for r in rows], [r["bytes_out"] for r in rows]],
                 _limits_sql("SELECT unnest(?::VARCHAR[]) AS external_host, unnest(?::BIGINT[]) AS v", "external_host"),
                 [[x for x, _ in values], [v for _, v in values]], _Flags(findings))
        got = con.execute(f"SELECT category, ids FROM ({_CLASSIFIED_SQL}) ORDER BY i").fetchall()
    finally:
        con.close()
    return [(cat, r, list(ids)) for r, (cat, ids) in zip(rows, got)]


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

    The rows are classified and summed per pair in DuckDB (``_CLASSIFIED_SQL``): over ten
    million flows the window and its history are millions of host-hours, and only the pairs
    asked for reach Python. An accounting from stored findings is kept per process
    (``CACHE_SIZE``) and given again while the workspace is unchanged (``_generation``).
    """
    if tenant and tenant != "default" and tenant not in ws.config.tenants:
        raise AbflussError(f"unknown tenant {tenant!r}; configured: {', '.join(ws.config.tenants) or 'none'}")
    start, end = _utc(start), _utc(end)
    key = None
    if findings is None:  # from what is stored: the same until the workspace changes
        key = (_generation(ws), start, end, tenant, limit)
        with _CACHE_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return copy.deepcopy(_CACHE[key])
    acc = _account(ws, start, end, tenant, findings, limit)
    if key is not None and len(acc["pairs"]) <= CACHE_MAX_PAIRS:
        with _CACHE_LOCK:
            _CACHE[key] = copy.deepcopy(acc)
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
    return acc


_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()


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
             limit: int | None) -> dict:
    from . import analysis

    lo, hi = analysis.data_span(ws)
    start, end = _utc(start or lo), _utc(end or hi)
    if start is None or end is None:
        raise AbflussError("the workspace holds no records yet: nothing to account for (abfluss ingest FILE)")
    if end <= start:
        raise AbflussError(f"empty window: --to {_iso(end)} is not after --from {_iso(start)}")
    if findings is None:
        findings = stored_findings(ws, start, end)
    if findings is None:
        findings = analysis.analyze(ws, start, end, store=False).findings
    con = ws.con
    try:
        _prepare(con, *_window_sql(ws, start, end, tenant), *_limits_of_history(ws, start, tenant), _Flags(findings))
        # the pair's name: that of its first named row in the ledger's order (bytes out, hour),
        # else (none named) the last row's, as a running ``name or row's name`` over them gives
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _acc_pairs AS
            SELECT category, internal_host, external_host,
                   coalesce(arg_min(external_name, [-bytes_out, epoch_us(hour)]) FILTER (WHERE external_name <> ''),
                            nullif(arg_max(coalesce(external_name, chr(0)), [-bytes_out, epoch_us(hour)]), chr(0)))
                       AS external_name,
                   sum(bytes_out)::BIGINT AS bytes_out, sum(flows)::BIGINT AS flows,
                   list_sort(list_distinct(flatten(list(ids)))) AS findings,
                   epoch_us(min(first_seen)) AS first_seen, epoch_us(max(last_seen)) AS last_seen
            FROM ({_CLASSIFIED_SQL}) GROUP BY category, internal_host, external_host""")
        cats = {c: 0 for c in CATEGORIES}
        total = flows = count = 0
        for cat, b, n, k in con.execute("SELECT category, sum(bytes_out)::BIGINT, sum(flows)::BIGINT, count(*) "
                                        "FROM _acc_pairs GROUP BY category").fetchall():
            cats[cat], total, flows = int(b), total + int(b), flows + int(n)
            count += k if cat == "unexplained" else 0
        order = "ORDER BY bytes_out DESC, category, internal_host, external_host"
        unexplained = _fetch_pairs(con, f"WHERE category = 'unexplained' {order} LIMIT {TOP_UNEXPLAINED}")
        flagged = _fetch_pairs(con, f"WHERE category = 'flagged' {order}")
        pairs = _fetch_pairs(con, order + (f" LIMIT {int(limit)}" if limit else ""))
    finally:
        _drop(con)
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
        "telemetry": _telemetry(ws, start, end),
        "settings": {"flagged_min_severity": FLAGGED_MIN_SEVERITY, "baseline_z": BASELINE_Z,
                     "lookback_days": LOOKBACK.days, "local_networks": list(LOCAL_NETWORKS)},
    }


_PAIR_COLUMNS = ("category", "internal_host", "external_host", "external_name", "bytes_out", "flows", "findings",
                 "first_seen", "last_seen")


def _fetch_pairs(con, tail: str) -> list[dict]:
    out = []
    for row in con.execute(f"SELECT {', '.join(_PAIR_COLUMNS)} FROM _acc_pairs {tail}").fetchall():
        p = dict(zip(_PAIR_COLUMNS, row))
        p["first_seen"] = _EPOCH + timedelta(microseconds=p["first_seen"])
        p["last_seen"] = _EPOCH + timedelta(microseconds=p["last_seen"])
        out.append(p)
    return out


def _window_sql(ws: Workspace, start: datetime, end: datetime, tenant: str | None) -> tuple[str, list]:
    """The window's ledger rows; ``check_local`` where ``dest_class`` may miss a local address
    (a proxied connection's class is ``proxy``; a destination known by name only has no address)."""
    return labelled_sql(ws, LedgerQuery(start, end, tenant=tenant),
                        ", g.transit OR g.external_id IS NULL AS check_local")


def _limits_of_history(ws: Workspace, start: datetime, tenant: str | None) -> tuple[str, list]:
    """Per destination the threshold over the positive byte counts of the tenant's host-hours in
    the ``LOOKBACK`` before the window (each ledger group is one host x destination x hour: no
    sum needed), computed per address id (or name) and labelled after."""
    sql, args = grouped_sql(ws, LedgerQuery(start - LOOKBACK, start))
    cond, targs = ("tenant = ?", [tenant]) if tenant else ("true", [])
    values = f"""
        SELECT external_id, external_text, bytes_out AS v FROM ({sql})
        WHERE bytes_out > 0 AND internal_id IN (SELECT id FROM address_class WHERE {cond})"""
    return f"""
        SELECT coalesce(ce.addr, l.external_text) AS external_host, l.threshold
        FROM ({_limits_sql(values, "external_id, external_text")}) l
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
