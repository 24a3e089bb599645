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
window's few top pairs' and its telemetry summary.
"""

from __future__ import annotations

import ipaddress
import statistics
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from . import ledger_store
from .analysis import LOOKBACK
from .enrich import LOCAL_NETWORKS
from .errors import AbflussError
from .findings import SEVERITIES, Finding
from .ledger import LedgerQuery, ledger_rows
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

    def covering(self, r: dict) -> list[str]:
        h = r["internal_host"]
        ids = list(self.pairs.get((h, r["external_host"]), ()))
        name = (r["external_name"] or "").lower()
        if name:
            ids += [i for n, i in self.names.get(h, ()) if name == n or name.endswith("." + n)]
        hour = _utc(r["hour"])
        ids += [i for lo, hi, i in self.hosts.get(h, ()) if hour <= hi and hour + timedelta(hours=1) > lo]
        return sorted(set(ids))


def classify(rows: list[dict], history: list[dict], findings: list[Finding]) -> list[tuple[str, dict, list[str]]]:
    """Each ledger row with its class and the ids of the findings that flag it."""
    per_dest: dict[str, dict[tuple, int]] = {}
    for r in history:
        k = (r["internal_host"], r["hour"])
        d = per_dest.setdefault(r["external_host"], {})
        d[k] = d.get(k, 0) + r["bytes_out"]
    limits = {x: baseline([v for v in hours.values() if v > 0]) for x, hours in per_dest.items()}
    flags = _Flags(findings)
    out = []
    for r in rows:
        ids: list[str] = []
        if r["dest_class"] == "local" or is_local(r["external_host"]):
            cat = "local"
        elif r["dest_class"] == "allowlisted":
            cat = "allowlisted"
        elif ids := flags.covering(r):
            cat = "flagged"
        elif (b := limits.get(r["external_host"])) is not None and r["bytes_out"] <= b["threshold"]:
            cat = "baseline"
        else:
            cat = "unexplained"
        out.append((cat, r, ids))
    return out


def account(ws: Workspace, start: datetime | None = None, end: datetime | None = None,
            tenant: str | None = None, findings: list[Finding] | None = None) -> dict:
    """The accounting of [start, end) (default: all data) for ``tenant`` (default: all).

    ``findings`` default to a fresh analysis of exactly this window (not stored), as the report
    does. Returns a JSON-ready dict: ``categories`` (bytes per class, summing to
    ``bytes_out``, the ledger's total), their shares, the top unexplained destinations, the
    flagged pairs, every host x destination x class (``pairs``) and the facts about the
    telemetry that decide whether the window can be assessed at all (``telemetry``).
    """
    from . import analysis  # noqa: F811  (the detections, imported when needed)

    if tenant and tenant != "default" and tenant not in ws.config.tenants:
        raise AbflussError(f"unknown tenant {tenant!r}; configured: {', '.join(ws.config.tenants) or 'none'}")
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
    rows, tot = ledger_rows(ws, LedgerQuery(start, end, tenant=tenant))
    history = ledger_rows(ws, LedgerQuery(start - LOOKBACK, start, tenant=tenant))[0]
    cats = {c: 0 for c in CATEGORIES}
    pairs: dict[tuple, dict] = {}
    for cat, r, ids in classify(rows, history, findings):
        cats[cat] += r["bytes_out"]
        p = pairs.setdefault((cat, r["internal_host"], r["external_host"]), {
            "category": cat, "internal_host": r["internal_host"], "external_host": r["external_host"],
            "external_name": r["external_name"], "bytes_out": 0, "flows": 0, "findings": set(),
            "first_seen": r["first_seen"], "last_seen": r["last_seen"]})
        p["bytes_out"] += r["bytes_out"]
        p["flows"] += r["flows"]
        p["external_name"] = p["external_name"] or r["external_name"]
        p["findings"].update(ids)
        p["first_seen"] = min(p["first_seen"], r["first_seen"])
        p["last_seen"] = max(p["last_seen"], r["last_seen"])
    total = int(tot["bytes_out"])
    ordered = sorted(pairs.values(), key=lambda p: (-p["bytes_out"], p["category"], p["internal_host"],
                                                    p["external_host"]))
    unexplained = [p for p in ordered if p["category"] == "unexplained"]
    flagged = [p for p in ordered if p["category"] == "flagged"]
    details = _pair_details(ws, start, end, unexplained[:TOP_UNEXPLAINED] + flagged)
    return {
        "window": {"start": _iso(start), "end": _iso(end)}, "tenant": tenant,
        "bytes_out": total, "flows": int(tot["flows"]),
        "categories": cats,
        "shares": {c: round(v / total, 6) if total else 0.0 for c, v in cats.items()},
        "top_unexplained": [_public(p, details) for p in unexplained[:TOP_UNEXPLAINED]],
        "unexplained_destinations": len(unexplained),
        "flagged": [_public(p, details) for p in flagged],
        "pairs": [_public(p, {}) for p in ordered],
        "telemetry": _telemetry(ws, start, end),
        "settings": {"flagged_min_severity": FLAGGED_MIN_SEVERITY, "baseline_z": BASELINE_Z,
                     "lookback_days": LOOKBACK.days, "local_networks": list(LOCAL_NETWORKS)},
    }


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
    seen = {x: (t, hosts) for x, t, hosts in ws.con.execute(_first_contact_sql(ws), [dests]).fetchall()}
    for (h, x), d in got.items():
        t, hosts = seen.get(x, (None, []))
        d["destination_first_seen"] = t
        d["other_hosts"] = len(set(hosts) - {h})
    return got


def _first_contact_sql(ws: Workspace) -> str:
    """Per destination (all data): its first contact and the internal hosts that talked to it;
    from the stored hourly ledger's groups (their first_seen is their flows' first ts) when current."""
    if ledger_store.current(ws):
        return """
            SELECT coalesce(ce.addr, g.external_text) AS external_host, min(g.first_seen), list(DISTINCT ci.addr)
            FROM ledger_hourly g JOIN address_class ci ON ci.id = g.internal_id
            LEFT JOIN address_class ce ON ce.id = g.external_id
            WHERE coalesce(ce.addr, g.external_text) IN (SELECT unnest(?))
            GROUP BY ALL"""
    return """
            SELECT external_host, min(ts), list(DISTINCT internal_host) FROM flows_directed
            WHERE direction IN ('outbound', 'inbound') AND external_host IN (SELECT unnest(?))
            GROUP BY ALL"""


def _telemetry(ws: Workspace, start, end) -> dict:
    """What the window's flow telemetry holds: flows, flows across the boundary, flows between
    two external addresses, internal addresses seen, and the busiest addresses (what ``[networks] internal`` should match)."""
    flows, crossing, external = ws.con.execute("""
        SELECT count(*), coalesce(count_if(direction IN ('outbound', 'inbound')), 0),
               coalesce(count_if(direction = 'external'), 0)
        FROM flows_directed WHERE ts >= ? AND ts < ?""", [start, end]).fetchall()[0]
    internal = ws.con.execute("""
        SELECT count(DISTINCT a) FROM (SELECT orig_h AS a, orig_internal AS i, ts FROM flows_directed
                                       UNION ALL SELECT resp_h, resp_internal, ts FROM flows_directed)
        WHERE i AND ts >= ? AND ts < ?""", [start, end]).fetchall()[0][0]
    busiest = ws.con.execute("""
        SELECT a, count(*) AS n FROM (SELECT orig_h AS a, ts FROM flows_directed UNION ALL
                                      SELECT resp_h, ts FROM flows_directed)
        WHERE ts >= ? AND ts < ? AND a IS NOT NULL GROUP BY a ORDER BY n DESC, a LIMIT 3""",
                             [start, end]).fetchall()
    return {"flows": int(flows), "boundary_flows": int(crossing), "external_flows": int(external),
            "internal_addresses": int(internal),
            "busiest_addresses": [{"address": a, "flows": int(n)} for a, n in busiest]}
