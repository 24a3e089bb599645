"""The calibrated verdict (DOMAIN.md §4.1): never stronger than the telemetry allows.

Rules, applied in this order to the evidence dict of :func:`abfluss.report.evidence.collect`
(its ``accounting`` section is :func:`abfluss.accounting.account`):

``EXFIL_CONFIRMED``
    at least one finding of an exfiltration-type detection (``EXFIL_DETECTIONS``: bulk
    outbound, upload-heavy, DNS tunnel, ICMP tunnel, cleartext sensitive data) of severity
    high or critical with bytes out > 0 (confidence 0.9 for critical, 0.8 for high); or
    findings that corroborate each other on one host and destination (``corroborate``): an
    upload-heavy finding, a destination first seen in the window and contacted by no other
    internal host, and one more of: a single connection that sent ``CONFIRM_SINGLE_FLOW_BYTES``
    or more, an off-hours finding, a volume far above the host's baseline (bulk outbound).
    Confidence 0.8: data left to an unexplained destination.
``EXFIL_INDICATED``
    otherwise, any finding of medium or more of an exfiltration-type or indicator detection
    (``INDICATOR_DETECTIONS``: beaconing, threat intelligence, rare destination, long
    connection, off-hours); confidence 0.4 + 0.3 x (strongest score / 100). Or an unexplained
    outflow that is not small (``unexplained_small``), with the unexplained destinations as
    its basis; confidence 0.4 + 0.3 x the unexplained share of the bytes out.
``NOT_ASSESSABLE``
    otherwise, when the telemetry cannot support a statement (``missing``): no flow telemetry in
    the window, internal networks that match no observed address (or most flows between two
    external addresses), no flow between an internal and an external address, sensors
    covering less than ``MIN_WINDOW_SHARE`` of the window, or a channel check (``CHANNEL_CHECKS``)
    that could not run. Each item names what is missing and how to fix it. Confidence 0: no
    statement about outflow is made; the notification drafts say the extent cannot yet be
    determined (Art. 33(4)).
``NO_EXFIL_EVIDENCE``
    otherwise: the unexplained outflow is small and every channel check ran. The statement is
    "no outflow was found in the telemetry listed", so its confidence starts at
    ``NO_EXFIL_START`` times one factor per measured share of the telemetry (``confidence_factors``:
    time covered, capture kept, content inspected, checks runnable, outflow explained, bytes with
    a baseline, span, sampling known); each weakness lists what it costs.

Every verdict carries the coverage it rests on and a non-empty ``would_lower`` list: the
reasons that reduce (or would reduce) confidence in it, and ``reevaluate_on``: the events that
call for a follow-up report (Art. 33(4)). Labels: high >= 0.8 > medium >= 0.5 > low.
"""

from __future__ import annotations

from ..accounting import EXFIL_DETECTIONS, INDICATOR_DETECTIONS

VERDICTS = ("EXFIL_CONFIRMED", "EXFIL_INDICATED", "NO_EXFIL_EVIDENCE", "NOT_ASSESSABLE")
#: Unexplained outflow up to this many bytes is small whatever its share ...
UNEXPLAINED_NEGLIGIBLE_BYTES = 100_000
#: ... and up to this many bytes when it is at most this share of all bytes out; above
#: UNEXPLAINED_MAX_BYTES it is never small (a missed DNS tunnel of ~300 KB must show).
UNEXPLAINED_MAX_BYTES = 250_000
UNEXPLAINED_MAX_SHARE = 0.05
#: A single connection that sent at least this much corroborates an upload (1 MB).
CONFIRM_SINGLE_FLOW_BYTES = 1_000_000
#: Sensors must cover at least this share of the window in time for any statement.
MIN_WINDOW_SHARE = 0.5
#: More than this share of flows between two external addresses: the internal networks are wrong.
EXTERNAL_FLOWS_MAX_SHARE = 0.5
#: The checks of the ways data leaves; each must have run for NO_EXFIL_EVIDENCE.
CHANNEL_CHECKS = ("bulk_outbound", "upload_heavy", "dns_tunnel", "icmp_tunnel")
NO_EXFIL_START = 0.95
#: The NO_EXFIL_EVIDENCE confidence is NO_EXFIL_START times one factor per measured share of the
#: telemetry (``confidence_factors``), each 1 when that part is complete:
#:   time_covered       share of the window the sensors saw (gaps, late start, early end)
#:   capture_kept       1 - the largest share of bytes a sensor reported as missed
#:   content_inspected  1 - WEIGHTS x share of the outflow whose content was not inspected
#:   checks_runnable    share of the enabled outflow and indicator checks that could run
#:   explained          1 - WEIGHTS x unexplained bytes / UNEXPLAINED_MAX_BYTES (the allowance used)
#:   baseline           1 - WEIGHTS x share of the bytes out from hosts without a baseline
#:   span               1 - WEIGHTS x the part of a day the window falls short of
#:   sampling           1 - WEIGHTS when a NetFlow/IPFIX sensor's sampling is unknown
#: Evaluated with ``make eval`` (bench/eval.py; table in docs/report.md).
WEIGHTS = {"content_inspected": 0.2, "explained": 0.5, "baseline": 0.15, "span": 0.1, "sampling": 0.15}
#: Which factor each weakness lowers (its ``points``: the confidence it costs, with the others kept).
FACTOR_OF = {"time_gap": "time_covered", "capture_loss": "capture_kept", "encrypted": "content_inspected",
             "no_dns": "checks_runnable", "no_threat_intel": "checks_runnable", "short_span": "span",
             "no_baseline": "baseline", "unexplained": "explained", "sampling_unknown": "sampling"}
SHORT_SPAN_SECONDS = 86400
FLOOR = 0.05
_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}

#: Re-evaluation triggers (§4.3 no. 9), listed with every verdict; for NO_EXFIL_EVIDENCE they are
#: also what would lower it.
ALWAYS = ("new_iocs", "leak_site", "unmonitored_egress", "hosts_reimaged")


def label(confidence: float) -> str:
    return "high" if confidence >= 0.8 else "medium" if confidence >= 0.5 else "low"


def coverage_summary(ev: dict) -> dict:
    """The coverage a verdict rests on: time, bytes, content, DNS, sensors."""
    sensors = ev["telemetry"]
    pay = ev["payload"]
    tech = {t["id"]: t for t in ev["techniques"]}
    return {
        "window_time_share": max((s["window_share"] for s in sensors), default=0.0),
        "sensors": [s["sensor"] for s in sensors],
        "missed_share": max((s["missed_share"] for s in sensors), default=0.0),
        "payload_sensors": sum(1 for s in sensors if s["payload"]),
        "sampling_unknown": any(s["sampled"] is None for s in sensors),
        "outbound_bytes": pay["outbound_bytes"],
        "cleartext_share": pay["cleartext_share"], "encrypted_share": pay["encrypted_share"],
        "not_inspected_share": pay["not_inspected_share"],
        "dns_queries": tech["dns_tunnel"]["coverage"].get("dns_queries", 0) if "dns_tunnel" in tech else 0,
        "hosts": len(ev["scope"]["systems"]),
        "checks_run": sum(1 for t in tech.values() if t["result"] in ("finding", "no_finding")),
        # a check that failed with an error was not run: it cannot support "nothing left" either
        "checks_not_checkable": sorted(t["id"] for t in tech.values() if t["result"] in ("not_checkable", "error")),
        "gaps": [f"{s['sensor']}: {g['start']} – {g['end']} ({g['minutes']} min)"
                 for s in sensors for g in s["largest_gaps"]],
    }


def _weaknesses(ev: dict, cov: dict) -> list[dict]:
    """Each weakness of the telemetry with its facts (``decide`` fills in the points it costs)."""
    w = []
    add = lambda key, **facts: w.append({"reason": key, "points": 0.0, **facts})  # noqa: E731
    uncovered = 1.0 - cov["window_time_share"]
    if uncovered > 0.0001:
        gaps = sorted((g for s in ev["telemetry"] for g in s["largest_gaps"]), key=lambda g: -g["minutes"])[:10]
        largest = f"{gaps[0]['start']} – {gaps[0]['end']}" if gaps else "-"
        add("time_gap", share=round(uncovered, 4), largest=largest, gaps=gaps)
    if cov["missed_share"] > 0:
        add("capture_loss", share=cov["missed_share"])
    if not cov["payload_sensors"]:
        add("flow_only")
    if cov["sampling_unknown"]:
        add("sampling_unknown")
    uninspected = round(1.0 - cov["cleartext_share"], 4) if cov["outbound_bytes"] else 0.0
    if uninspected > 0:
        add("encrypted", share=uninspected)
    if "dns_tunnel" in cov["checks_not_checkable"]:
        add("no_dns")
    if "threat_intel" in cov["checks_not_checkable"]:
        add("no_threat_intel")
    failed = sorted(t["id"] for t in ev["techniques"] if t["result"] == "error")
    if failed:
        add("checks_failed", detections=failed)
    if ev["window"]["seconds"] < SHORT_SPAN_SECONDS:
        add("short_span", seconds=ev["window"]["seconds"])
    if ev["hosts"] and not any(h["baseline"] for h in ev["hosts"]):
        add("no_baseline")
    if any(_RANK[f["severity"]] < 2 for f in ev["findings"]):
        add("low_findings")
    other = [f for f in ev["findings"] if _RANK[f["severity"]] >= 2
             and f["detection"] not in EXFIL_DETECTIONS + INDICATOR_DETECTIONS]
    if other:
        add("attack_activity", detections=sorted({f["detection"] for f in other}))
    acc = ev["accounting"]
    share = acc["shares"]["unexplained"]
    if share > 0:
        add("unexplained", share=share, bytes=acc["categories"]["unexplained"])
    return w


def confidence_factors(ev: dict, cov: dict) -> dict:
    """The measured shares a NO_EXFIL_EVIDENCE confidence is the product of (see ``WEIGHTS``)."""
    acc = ev["accounting"]
    checks = [t for t in ev["techniques"]
              if t["id"] in EXFIL_DETECTIONS + INDICATOR_DETECTIONS and t["result"] != "disabled"]
    runnable = sum(t["result"] in ("finding", "no_finding") for t in checks) / len(checks) if checks else 0.0
    total = sum(h["bytes_out"] for h in ev["hosts"])
    without = sum(h["bytes_out"] for h in ev["hosts"] if not h["baseline"]) / total if total else 0.0
    w = WEIGHTS
    return {k: round(v, 4) for k, v in {
        "time_covered": cov["window_time_share"],
        "capture_kept": 1 - cov["missed_share"],
        "content_inspected": 1 - w["content_inspected"] * (1 - cov["cleartext_share"]) if cov["outbound_bytes"] else 1.0,
        "checks_runnable": runnable,
        "explained": 1 - w["explained"] * min(1.0, acc["categories"]["unexplained"] / UNEXPLAINED_MAX_BYTES),
        "baseline": 1 - w["baseline"] * without,
        "span": 1 - w["span"] * max(0.0, 1 - ev["window"]["seconds"] / SHORT_SPAN_SECONDS),
        "sampling": 1 - w["sampling"] if cov["sampling_unknown"] else 1.0,
    }.items()}


def _product(factors: dict) -> float:
    p = NO_EXFIL_START
    for v in factors.values():
        p *= max(0.0, v)
    return p


def unexplained_small(acc: dict) -> bool:
    """Is the unexplained outflow small enough for NO_EXFIL_EVIDENCE (module constants)?"""
    b, share = acc["categories"]["unexplained"], acc["shares"]["unexplained"]
    return b <= UNEXPLAINED_NEGLIGIBLE_BYTES or (b <= UNEXPLAINED_MAX_BYTES and share <= UNEXPLAINED_MAX_SHARE)


def _covers(f: dict, host: str, dest: str, name: str | None) -> bool:
    if host not in f["internal_hosts"]:
        return False
    n = (name or "").lower()
    return dest in f["external_hosts"] or any(n == x.lower() or n.endswith("." + x.lower())
                                              for x in f["external_names"] if n)


def corroborate(ev: dict) -> list[dict]:
    """Host x destination pairs whose findings corroborate an outflow (see the module doc)."""
    out = []
    start = ev["window"]["start"]
    for p in ev["accounting"]["flagged"] + ev["accounting"]["top_unexplained"]:
        mine = [f for f in ev["findings"] if _covers(f, p["host"], p["destination"], p["name"])]
        host_fs = [f for f in ev["findings"] if p["host"] in f["internal_hosts"]]
        signals = []
        if any(f["detection"] == "upload_heavy" for f in mine):
            signals.append("upload_heavy")
        if p.get("other_hosts") == 0 and (p.get("destination_first_seen") or "") >= start:
            signals.append("first_seen_single_host")
        if p.get("largest_flow", 0) >= CONFIRM_SINGLE_FLOW_BYTES:
            signals.append("large_single_transfer")
        if any(f["detection"] == "off_hours" for f in host_fs):
            signals.append("off_hours")
        if any(f["detection"] == "bulk_outbound" for f in host_fs):
            signals.append("above_baseline")
        if {"upload_heavy", "first_seen_single_host"} <= set(signals) and len(signals) >= 3:
            out.append({"host": p["host"], "destination": p["destination"], "name": p["name"],
                        "bytes_out": p["bytes"], "largest_flow": p.get("largest_flow", 0), "signals": signals,
                        "findings": sorted({f["id"] for f in mine}), "severity": "high"})
    return out


def missing(ev: dict, cov: dict) -> list[dict]:
    """What keeps the telemetry from supporting a statement, each with the facts its fix names."""
    tel = ev["accounting"]["telemetry"]
    out = []
    if tel["flows"] == 0:
        out.append({"reason": "no_flows"})
    elif tel["internal_addresses"] == 0:
        out.append({"reason": "internal_unmatched", "networks": ", ".join(ev["scope"]["internal_networks"]),
                    "busiest": ", ".join(f"{a['address']} ({a['flows']})" for a in tel["busiest_addresses"])})
    elif tel.get("external_flows", 0) > EXTERNAL_FLOWS_MAX_SHARE * tel["flows"]:
        out.append({"reason": "mostly_external", "share": round(tel["external_flows"] / tel["flows"], 4),
                    "busiest": ", ".join(f"{a['address']} ({a['flows']})" for a in tel["busiest_addresses"])})
    elif tel["boundary_flows"] == 0:
        out.append({"reason": "no_outbound"})
    if tel["flows"] and cov["window_time_share"] < MIN_WINDOW_SHARE:
        out.append({"reason": "uncovered", "share": cov["window_time_share"], "minimum": MIN_WINDOW_SHARE})
    if tel["flows"]:
        checks = {t["id"]: t for t in ev["techniques"]}
        for c in CHANNEL_CHECKS:
            t = checks.get(c)
            if t and t["result"] not in ("finding", "no_finding"):
                need = "enable" if t["result"] == "disabled" else "dns" if t["data_source"] == "dns" else "flows"
                out.append({"reason": "channel_unchecked", "check": c, "why": t["reason"] or t["result"],
                            "need": need})
    return out


def decide(ev: dict) -> dict:
    """The verdict, its confidence (0-1 and a label), its coverage, what is missing and what would lower it."""
    cov = coverage_summary(ev)
    weak = _weaknesses(ev, cov)
    factors = confidence_factors(ev, cov)
    model = _product(factors)
    for x in weak:  # what each weakness costs: the confidence with its factor complete, minus it
        f = FACTOR_OF.get(x["reason"])
        if f and factors[f] > 0:
            x["points"] = round(model / factors[f] - model, 4)
    acc = ev["accounting"]
    fs = ev["findings"]
    hard = [f for f in fs if f["detection"] in EXFIL_DETECTIONS and _RANK[f["severity"]] >= 3 and f["bytes_out"] > 0]
    soft = [f for f in fs if _RANK[f["severity"]] >= 2 and f["detection"] in EXFIL_DETECTIONS + INDICATOR_DETECTIONS]
    corroborated = corroborate(ev)
    lacking = missing(ev, cov)
    basis: list[dict] = []
    if hard:
        verdict = "EXFIL_CONFIRMED"
        conf = 0.9 if any(f["severity"] == "critical" for f in hard) else 0.8
        basis = _findings_basis(hard)
        lowers = [{"reason": "destination_authorised"}, {"reason": "estimate_includes_overhead"}]
    elif corroborated:
        verdict = "EXFIL_CONFIRMED"
        conf = 0.8
        ids = {i for c in corroborated for i in c["findings"]}
        basis = _findings_basis([f for f in fs if f["id"] in ids])
        lowers = [{"reason": "destination_authorised"}, {"reason": "estimate_includes_overhead"}]
    elif soft:
        verdict = "EXFIL_INDICATED"
        conf = 0.4 + 0.3 * max(f["score"] for f in soft) / 100
        basis = _findings_basis(soft)
        lowers = [{"reason": "benign_explanation"}, {"reason": "destination_authorised"}]
    elif not unexplained_small(acc):
        verdict = "EXFIL_INDICATED"
        conf = 0.4 + 0.3 * acc["shares"]["unexplained"]
        basis = [{"kind": "unexplained", "host": p["host"], "destination": p["destination"], "name": p["name"],
                  "channel": p.get("channel"), "bytes_out": p["bytes"], "flows": p["flows"],
                  "first_seen": p.get("destination_first_seen") or p["first_seen"]} for p in acc["top_unexplained"]]
        lowers = [{"reason": "benign_explanation"}, {"reason": "destination_authorised"}]
    elif lacking:
        verdict = "NOT_ASSESSABLE"
        conf = 0.0
        lowers = [dict(m) for m in lacking]  # what keeps it from a statement
    else:
        verdict = "NO_EXFIL_EVIDENCE"
        conf = model
        lowers = weak + [{"reason": r} for r in ALWAYS]
    conf = 0.0 if verdict == "NOT_ASSESSABLE" else round(max(FLOOR, min(0.99, conf)), 2)
    return {
        "verdict": verdict, "confidence": conf, "confidence_label": label(conf), "coverage": cov,
        "basis": basis, "corroborated": corroborated, "missing": lacking,
        "weaknesses": weak, "confidence_factors": factors,
        "would_lower": lowers,
        "reevaluate_on": [{"reason": r} for r in ALWAYS],
    }


def _findings_basis(fs: list[dict]) -> list[dict]:
    return [{"kind": "finding", "id": f["id"], "detection": f["detection"], "severity": f["severity"],
             "bytes_out": f["bytes_out"]} for f in fs]
