"""Collect the evidence of one report: what was looked at, with what, what was found, how sure.

:func:`collect` reads a workspace over an exact window (and optionally one tenant) and returns
a plain, JSON-ready dict with the sections of DOMAIN.md §4.3: scope, telemetry and coverage,
per-host outflow against its own baseline, encrypted vs cleartext share, each exfiltration
technique checked (with its data source and coverage, or why it could not be checked),
cleartext sensitive data counts, and the integrity manifest. The verdict is derived from this
dict alone (``abfluss.report.verdict``), so the report can be re-judged from its JSON.
Sensitive values never appear: only category counts (the store holds keyed hashes).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime, timezone

from .. import __version__, accounting, analysis, detections
from ..coverage import coverage, payload_coverage
from ..detections.cleartext_sensitive_data import CATEGORIES, PERSON, STRONGEST
from ..errors import AbflussError
from ..findings import SEVERITIES, Finding
from ..ledger import LedgerQuery, ledger
from ..store import Workspace

#: Destinations listed per host, and host x destination rows in ``exfiltration`` beyond those
#: named by findings.
TOP_DESTINATIONS = 5
TOP_PAIRS = 25
#: Hosts drawn in the timeline plot.
PLOT_HOSTS = 5
#: A host-hour is above its baseline when it exceeds median + BASELINE_Z x 1.4826 x MAD of the
#: host's own hourly bytes out before the window (robust z-score), and the baseline's p99.
BASELINE_Z = accounting.BASELINE_Z
#: Timeline bucket sizes (s): the smallest giving at most TIMELINE_BUCKETS buckets is used.
BUCKETS = (1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)
TIMELINE_BUCKETS = 60

#: Detection -> (technique family, data source). Families group the checks in the report.
TECHNIQUES = {
    "bulk_outbound": ("exfiltration", "flows"),
    "upload_heavy": ("exfiltration", "flows"),
    "dns_tunnel": ("exfiltration", "dns"),
    "icmp_tunnel": ("exfiltration", "flows"),
    "cleartext_sensitive_data": ("exfiltration", "payload"),
    "rare_destination": ("indicator", "flows"),
    "beaconing": ("indicator", "flows"),
    "long_connection": ("indicator", "flows"),
    "threat_intel": ("indicator", "flows+dns"),
    "off_hours": ("indicator", "flows"),
    "protocol_mismatch": ("indicator", "flows"),
    "scan_and_lateral": ("other", "flows"),
    "brute_force": ("other", "flows"),
    "executable_download": ("indicator", "http"),
    "suspicious_user_agent": ("indicator", "http"),
    "software_change": ("indicator", "software"),
    "tunnel_encapsulation": ("indicator", "flows"),
    "ids_alert": ("other", "alerts"),
}
#: What each input format can show (DOMAIN.md §4.3 no. 2): fidelity, payload, sampling.
FORMATS = {
    "pcap": ("full packet capture", True, False),
    "zeek-tsv": ("Zeek logs (flow and protocol records)", False, False),
    "zeek-json": ("Zeek logs (flow and protocol records)", False, False),
    "suricata-eve": ("Suricata eve.json (flow and protocol records)", False, False),
    "netflow": ("NetFlow/IPFIX flow records", False, None),  # sampling renormalised, rate not kept
    "nfdump": ("nfdump flow records (NetFlow/IPFIX/sFlow)", False, None),  # nfdump keeps no sampling rate
    "argus-binetflow": ("Argus bidirectional flow records", False, False),
    "squid": ("Squid proxy log (requests; bytes received only)", False, False),
}


def utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def iso(t) -> str | None:
    if t is None:
        return None
    return utc(t).astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()


def collect(ws: Workspace, start: datetime | None = None, end: datetime | None = None,
            tenant: str | None = None, findings: list[Finding] | None = None) -> dict:
    """The evidence for [start, end) (default: all data) and ``tenant`` (default: all).

    ``findings`` defaults to a fresh analysis of exactly this window (not stored), so the
    report does not depend on when ``abfluss analyze`` last ran.
    """
    if tenant and tenant != "default" and tenant not in ws.config.tenants:
        raise AbflussError(f"unknown tenant {tenant!r}; configured: {', '.join(ws.config.tenants) or 'none'}")
    lo, hi = analysis.data_span(ws)
    start, end = utc(start or lo), utc(end or hi)
    if start is None or end is None:
        raise AbflussError("the workspace holds no records yet: nothing to report on (abfluss ingest FILE)")
    if end <= start:
        raise AbflussError(f"empty window: --to {iso(end)} is not after --from {iso(start)}")
    errors: dict[str, str] = {}
    if findings is None:
        res = analysis.analyze(ws, start, end, store=False)
        findings, errors = res.findings, res.errors
    findings = [f for f in findings if _in_tenant(ws, f, tenant)]
    rows = _ledger_rows(ws, LedgerQuery(start, end, tenant=tenant))
    sensors = _sensors(ws, start, end)
    return {
        "window": {"start": iso(start), "end": iso(end), "seconds": (end - start).total_seconds()},
        "tenant": tenant,
        "scope": _scope(ws, rows, tenant),
        "telemetry": sensors,
        "hosts": _hosts(ws, rows, start, tenant),
        "timeline": _timeline(ws, start, end, tenant, rows),
        "payload": payload_coverage(ws, start, end),
        "exfiltration": _pairs(ws, start, end, tenant, findings),
        "findings": [_finding_summary(f) for f in findings],
        "techniques": _techniques(ws, start, end, findings, sensors, errors),
        "sensitive_data": _sensitive(ws, start, end, findings),
        "integrity": _integrity(ws, start, end),
        "accounting": accounting.account(ws, start, end, tenant, findings),
    }


def _in_tenant(ws: Workspace, f: Finding, tenant: str | None) -> bool:
    if not tenant:
        return True
    if f.tenant:
        return f.tenant == tenant
    got = ws.con.execute("SELECT count(*) FROM address_class WHERE tenant = ? AND addr IN (SELECT unnest(?))",
                         [tenant, f.internal_hosts]).fetchall()[0][0]
    return got > 0


def _ledger_rows(ws: Workspace, q: LedgerQuery) -> list[dict]:
    return ledger(ws, q).to_pylist()


def _scope(ws: Workspace, rows: list[dict], tenant: str | None) -> dict:
    cfg = ws.config
    hosts = sorted({r["internal_host"] for r in rows})
    tags = {}
    if hosts:
        tags = {a: list(t) for a, t in ws.con.execute(
            "SELECT addr, tags FROM address_class WHERE addr IN (SELECT unnest(?)) AND len(tags) > 0",
            [hosts]).fetchall()}
    tenants = sorted(set(cfg.tenants) | {r["tenant"] for r in rows if r["tenant"]})
    return {
        "internal_networks": list(cfg.internal),
        "tenants": [{"name": t, "networks": list(cfg.tenants.get(t, ())),
                     "hosts": sum(1 for h in hosts if any(r["tenant"] == t and r["internal_host"] == h
                                                          for r in rows))}
                    for t in tenants if not tenant or t == tenant],
        "systems": [{"host": h, "tags": tags.get(h, [])} for h in hosts],
        "services": sorted({t for ts in tags.values() for t in ts}),
        "allowlisted_destinations": {"networks": list(cfg.allow_networks), "domains": list(cfg.allow_domains)},
        "config_source": cfg.source,
    }


def _sensors(ws: Workspace, start: datetime, end: datetime) -> list[dict]:
    """Per sensor: what it is, its span and gaps, capture loss, and its share of the window."""
    fmts: dict[str, set] = {}
    for i in ws.inputs():
        fmts.setdefault(i["sensor"], set()).add(i["format"])
    window = (end - start).total_seconds()
    out = []
    for c in coverage(ws):
        kinds = sorted(fmts.get(c["sensor"], {"unknown"}))
        info = [FORMATS.get(k, (k, False, None)) for k in kinds]
        first, last = utc(c["first_seen"]), utc(c["last_seen"])
        overlap = max(0.0, (min(end, last) - max(start, first)).total_seconds()) if first and last else 0.0
        gap_s = sum(max(0.0, (min(end, utc(g["end"])) - max(start, utc(g["start"]))).total_seconds())
                    for g in c["largest_gaps"])
        unlisted = max(0.0, c["gap_minutes"] * 60 - sum(g["minutes"] * 60 for g in c["largest_gaps"]))
        seen = max(0.0, overlap - gap_s - unlisted)
        out.append({
            "sensor": c["sensor"], "formats": kinds, "fidelity": "; ".join(i[0] for i in info),
            "payload": all(i[1] for i in info),
            "sampled": None if any(i[2] is None for i in info) else any(i[2] for i in info),
            "first_seen": iso(first), "last_seen": iso(last), "span_minutes": c["span_minutes"],
            "records": c["records"], "gaps": c["gaps"], "gap_minutes": c["gap_minutes"],
            "largest_gaps": [{"start": iso(g["start"]), "end": iso(g["end"]), "minutes": g["minutes"]}
                             for g in c["largest_gaps"]],
            "bytes": c["bytes"], "missed_bytes": c["missed_bytes"], "missed_share": round(c["missed_share"], 6),
            "interim_flows": c["interim_flows"],
            "window_share": round(min(1.0, seen / window), 4) if window else 0.0,
        })
    return out


def _hosts(ws: Workspace, rows: list[dict], start: datetime, tenant: str | None) -> list[dict]:
    """Per internal host: bytes out, hourly series, top destinations, and its own baseline."""
    hist = _ledger_rows(ws, LedgerQuery(start - analysis.LOOKBACK, start, tenant=tenant))
    base: dict[str, dict] = {}
    for r in hist:
        base.setdefault(r["internal_host"], {}).setdefault(r["hour"], 0)
        base[r["internal_host"]][r["hour"]] += r["bytes_out"]
    per: dict[str, dict] = {}
    for r in rows:
        h = per.setdefault(r["internal_host"], {"hours": {}, "dest": {}, "bytes_in": 0, "flows": 0,
                                                 "tenant": r["tenant"]})
        h["hours"][r["hour"]] = h["hours"].get(r["hour"], 0) + r["bytes_out"]
        key = (r["external_host"], r["external_name"], r["dest_class"])
        h["dest"][key] = h["dest"].get(key, 0) + r["bytes_out"]
        h["bytes_in"] += r["bytes_in"]
        h["flows"] += r["flows"]
    out = []
    for host, h in per.items():
        b = _baseline(list(base.get(host, {}).values()))
        hours = sorted(h["hours"].items())
        above = [{"hour": iso(t), "bytes_out": v} for t, v in hours if b and v > b["threshold"]]
        top = sorted(h["dest"].items(), key=lambda kv: (-kv[1], str(kv[0][0])))[:TOP_DESTINATIONS]
        out.append({
            "host": host, "tenant": h["tenant"], "bytes_out": sum(h["hours"].values()), "bytes_in": h["bytes_in"],
            "flows": h["flows"], "destinations": len(h["dest"]),
            "hourly": [{"hour": iso(t), "bytes_out": v} for t, v in hours],
            "baseline": b, "hours_above_baseline": above,
            "top_destinations": [{"external_host": k[0], "external_name": k[1], "dest_class": k[2], "bytes_out": v}
                                 for k, v in top],
        })
    out.sort(key=lambda x: (-x["bytes_out"], x["host"]))
    return out


def _baseline(values: list[int]) -> dict | None:
    """Median, MAD and p99 of a host's hourly bytes out before the window (hours with traffic)."""
    return accounting.baseline(values)


def _timeline(ws: Workspace, start: datetime, end: datetime, tenant: str | None, rows: list[dict]) -> dict:
    """Bytes out per bucket for the hosts sending most (the plot's data)."""
    span = (end - start).total_seconds()
    bucket = next((b for b in BUCKETS if span / b <= TIMELINE_BUCKETS), BUCKETS[-1])
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["internal_host"]] = totals.get(r["internal_host"], 0) + r["bytes_out"]
    hosts = [h for h, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:PLOT_HOSTS]]
    series = {h: [] for h in hosts}
    if hosts:
        cond, args = "", [start, end, hosts]
        if tenant:
            cond, args = " AND tenant = ?", args + [tenant]
        for h, t, b in ws.con.execute(f"""
                SELECT internal_host, time_bucket(INTERVAL {bucket} SECOND, ts, ?::TIMESTAMPTZ) AS t,
                       sum(bytes_out)::BIGINT FROM flows
                WHERE direction IN ('outbound', 'inbound') AND ts >= ? AND ts < ?
                  AND internal_host IN (SELECT unnest(?)){cond}
                GROUP BY ALL ORDER BY 1, 2""", [start] + args).fetchall():
            series[h].append([iso(t), int(b)])
    return {"bucket_seconds": bucket, "start": iso(start), "end": iso(end),
            "series": [{"host": h, "points": series[h]} for h in hosts]}


def _pairs(ws: Workspace, start, end, tenant, findings: list[Finding]) -> list[dict]:
    """Per internal host x destination: bytes out, channel, and the findings naming the pair."""
    cond, args = "", [start, end]
    if tenant:
        cond, args = " AND tenant = ?", args + [tenant]
    got = ws.con.execute(f"""
        SELECT internal_host, external_host, max(external_name), sum(bytes_out)::BIGINT, sum(bytes_in)::BIGINT,
               count(*), arg_max(coalesce(nullif(service, ''), proto || '/' || coalesce(resp_p, 0)), bytes_out), max(dest_class)
        FROM flows WHERE direction IN ('outbound', 'inbound') AND ts >= ? AND ts < ?{cond}
        GROUP BY 1, 2 ORDER BY 4 DESC, 1, 2""", args).fetchall()
    named: dict[tuple, list[Finding]] = {}
    for f in findings:
        for h in f.internal_hosts:
            for x in f.external_hosts or [None]:
                named.setdefault((h, x), []).append(f)
    out = []
    for i, (h, x, name, b_out, b_in, n, chan, cls) in enumerate(got):
        fs = named.pop((h, x), [])
        if i >= TOP_PAIRS and not fs:
            continue
        out.append(_pair(h, x, name, b_out, b_in, n, chan, cls, fs))
    for (h, x), fs in sorted(named.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):  # DNS, ICMP: no flow row
        out.append(_pair(h, x, fs[0].external_names[0] if fs[0].external_names else None,
                         max(f.bytes_out for f in fs), 0, 0, fs[0].channel, "unknown", fs))
    return out


def _pair(h, x, name, b_out, b_in, n, chan, cls, fs: list[Finding]) -> dict:
    top = max(fs, key=lambda f: (SEVERITIES.index(f.severity), f.score), default=None)
    return {"internal_host": h, "external_host": x, "external_name": name, "bytes_out": int(b_out or 0),
            "bytes_in": int(b_in or 0), "flows": int(n), "channel": (top.channel if top else None) or chan,
            "dest_class": cls, "detections": sorted({f.detection for f in fs}),
            "severity": top.severity if top else None,
            "estimated_bytes_out": max((f.bytes_out for f in fs), default=0)}


def _finding_summary(f: Finding) -> dict:
    return {"id": f.id, "detection": f.detection, "severity": f.severity, "score": f.score,
            "internal_hosts": f.internal_hosts, "external_hosts": f.external_hosts,
            "external_names": f.external_names, "channel": f.channel, "bytes_out": f.bytes_out,
            "start": iso(f.start), "end": iso(f.end), "attack": f.attack, "tenant": f.tenant,
            "explanation": f.explanation}


def _techniques(ws: Workspace, start, end, findings: list[Finding], sensors: list[dict],
                errors: dict[str, str] | None = None) -> list[dict]:
    """Each detection as a check: result, data source, what of it was available in the window.
    A detection that failed (``errors``) is ``error``: not checked, whatever its data."""
    one = lambda sql: ws.con.execute(sql, [start, end]).fetchall()[0]  # noqa: E731
    flows, outbound = one("SELECT count(*), count_if(direction IN ('outbound', 'inbound')) FROM flows "
                          "WHERE ts >= ? AND ts < ?")
    icmp = one("SELECT count(*) FROM flows WHERE proto LIKE 'icmp%' AND ts >= ? AND ts < ?")[0]
    # dns_tunnel also judges DNS as flows (bytes over port 53, detections/_dns_flows.py): flow
    # records of port-53 traffic (NetFlow) let it run without any decoded DNS message
    dns_flows = one("SELECT count(*) FROM flows WHERE resp_p = 53 AND proto IN ('udp', 'tcp') "
                    "AND ts >= ? AND ts < ?")[0]
    dns_q, dns_sensors = one("SELECT count(*), string_agg(DISTINCT sensor, ', ') FROM dns_raw "
                             "WHERE query IS NOT NULL AND ts >= ? AND ts < ?")
    inspected = one("SELECT count(*) FROM inspected_raw WHERE ts >= ? AND ts < ?")[0]
    alerts, alert_sensors = one("SELECT count(*), string_agg(DISTINCT sensor, ', ') FROM alerts_raw "
                                "WHERE ts >= ? AND ts < ?")
    http_n = one("SELECT count(*) FROM http_raw WHERE ts >= ? AND ts < ?")[0]
    files_n = one("SELECT count(*) FROM files_raw WHERE ts >= ? AND ts < ?")[0]
    software_n = one("SELECT count(*) FROM software_raw WHERE ts >= ? AND ts < ?")[0]
    pay = payload_coverage(ws, start, end)
    indicators = len(detections.module("threat_intel").prepare(
        detections.settings_for("threat_intel", _overrides(ws, "threat_intel"))))
    flow_sensors = ", ".join(s["sensor"] for s in sensors) or "-"
    avail = {
        "flows": (flows > 0, {"flows": flows, "outbound_flows": outbound, "sensors": flow_sensors}),
        "dns": (dns_q > 0, {"dns_queries": dns_q, "sensors": dns_sensors or "-"}),
        "payload": (inspected > 0, {"inspected_flow_sides": inspected, "cleartext_share": pay["cleartext_share"],
                                    "encrypted_share": pay["encrypted_share"],
                                    "not_inspected_share": pay["not_inspected_share"]}),
        "alerts": (alerts > 0, {"alerts": alerts, "sensors": alert_sensors or "-"}),
        "http": (http_n + files_n > 0, {"http_requests": http_n, "files": files_n}),
        "software": (software_n > 0, {"software_records": software_n}),
    }
    out = []
    for det in detections.MODULES:
        family, source = TECHNIQUES.get(det, ("other", "flows"))
        meta = detections.module(det).META
        ok, cov = avail.get(source, avail["flows"])
        if det == "threat_intel":
            ok, cov = indicators > 0 and flows + dns_q > 0, {"indicators": indicators, "flows": flows,
                                                            "dns_queries": dns_q}
            why = "no indicator list configured" if not indicators else "no flow or DNS telemetry"
        elif det == "dns_tunnel":
            ok, cov = dns_q + dns_flows > 0, dict(cov, dns_flows=dns_flows)
            why = "no DNS telemetry"  # neither DNS messages nor port-53 flows
        elif det == "icmp_tunnel":
            cov = dict(cov, icmp_flows=icmp)
            why = "no flow telemetry"
        else:
            why = {"flows": "no flow telemetry", "dns": "no DNS telemetry",
                   "payload": "no payload inspected (flow records only, or inspection off)",
                   "alerts": "no IDS alerts in the telemetry (Suricata eve alerts, Zeek notice.log)",
                   "http": "no HTTP or file records (Zeek http.log/files.log, cleartext HTTP in a capture)",
                   "software": "no software records (Zeek software.log, SSH banners in a capture)"}[source]
        enabled = _overrides(ws, det).get("enabled", True) is not False
        mine = [f for f in findings if f.detection == det]
        strongest = max((f.severity for f in mine), key=SEVERITIES.index, default=None)
        failed = (errors or {}).get(det) if enabled else None
        result = ("disabled" if not enabled else "error" if failed else "not_checkable" if not ok
                  else "finding" if mine else "no_finding")
        out.append({"id": det, "title": meta.title, "family": family, "attack": list(meta.attack),
                    "data_source": source, "result": result, "reason": None if ok and enabled and not failed else
                    ("disabled in the configuration" if not enabled else
                     f"the detection failed: {failed}" if failed else why),
                    "findings": len(mine), "max_severity": strongest,
                    "bytes_out": max((f.bytes_out for f in mine), default=0), "coverage": cov})
    return out


def _overrides(ws: Workspace, det: str) -> dict:
    """The configured settings of ``det`` (``enabled`` is no setting: a disabled detection broke the report)."""
    return {k: v for k, v in ws.config.detections.get(det, {}).items() if k != "enabled"}


def _sensitive(ws: Workspace, start, end, findings: list[Finding]) -> dict:
    """Distinct sensitive values per category over all cleartext findings (one value sent to three
    destinations counts once), and the bounds of records and data subjects."""
    mine = [f for f in findings if f.detection == "cleartext_sensitive_data"]
    pairs = [[f.internal_hosts[0], (f.external_hosts or [f.key[1]])[0]] for f in mine]
    counts = {c: 0 for c in CATEGORIES}
    if pairs:
        for cat, n in ws.con.execute("""
                SELECT category, count(DISTINCT hmac) FROM dlp_raw
                WHERE ts >= ? AND ts < ?
                  AND [CASE sender WHEN 'orig' THEN orig_h ELSE resp_h END,
                       CASE sender WHEN 'orig' THEN resp_h ELSE orig_h END] IN (SELECT unnest(?))
                GROUP BY 1""", [start, end, pairs]).fetchall():
            counts[cat] = int(n)
    lower = next((counts[c] for c in STRONGEST if counts[c]), 0)
    upper = sum(counts[c] for c in PERSON)
    return {
        "categories": counts,
        "records_lower": max((counts[c] for c in PERSON), default=0), "records_upper": upper,
        "subjects_lower": lower, "subjects_upper": upper,
        "per_destination": [{"internal_host": f.internal_hosts[0], "external_host": (f.external_hosts or [None])[0],
                             "external_name": (f.external_names or [None])[0], "channel": f.channel,
                             "severity": f.severity, "counts": f.metrics.get("counts", {}),
                             "subjects_lower": f.metrics.get("subjects_lower", 0),
                             "subjects_upper": f.metrics.get("subjects_upper", 0), "bytes_out": f.bytes_out}
                            for f in mine],
    }


def _integrity(ws: Workspace, start, end) -> dict:
    cfg = asdict(ws.config)
    cfg.pop("source", None)
    settings = {d: {n: getattr(detections.settings_for(d, {k: v for k, v in _overrides(ws, d).items()
                                                           if k != "enabled"}), n)
                    for n, _, _ in detections.settings_help(d)} for d in detections.MODULES}
    return {
        "tool": "abfluss", "version": __version__,
        "config_sha256": sha256_json(cfg), "detection_settings_sha256": sha256_json(settings),
        "window": {"start": iso(start), "end": iso(end)},
        "inputs": [{"sha256": i["input_id"], "path": i["path"], "size": i["size"], "format": i["format"],
                    "sensor": i["sensor"], "first_ts": iso(i["first_ts"]), "last_ts": iso(i["last_ts"]),
                    "records": i["records"], "skipped": i["skipped"], "ingested_at": iso(i["ingested_at"])}
                   for i in sorted(ws.inputs(), key=lambda i: (i["sensor"], i["input_id"]))],
        "generated_at": iso(datetime.now(timezone.utc)),
    }
