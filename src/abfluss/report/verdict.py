"""The calibrated verdict (DOMAIN.md §4.1): never stronger than the telemetry allows.

Rules, applied to the evidence dict of :func:`abfluss.report.evidence.collect`:

``EXFIL_CONFIRMED``
    at least one finding of an exfiltration-type detection (``EXFIL_DETECTIONS``: bulk
    outbound, upload-heavy, DNS tunnel, ICMP tunnel, cleartext sensitive data) of severity
    high or critical with bytes out > 0. Confidence 0.9 for critical, 0.8 for high.
``EXFIL_INDICATED``
    otherwise, any finding of medium or more: an exfiltration-type one of medium severity, or
    an indicator (``INDICATOR_DETECTIONS``: beaconing, threat intelligence, rare destination, long
    connection, off-hours) of medium or more. Confidence 0.4 + 0.3 x (strongest score / 100).
``NO_EXFIL_EVIDENCE``
    otherwise. The statement is "no outflow was found in the telemetry listed", so its
    confidence starts at ``NO_EXFIL_START`` and every known weakness of that telemetry lowers
    it (``PENALTIES``): window not covered in time (gaps, sensors starting late), capture loss
    (missed bytes), flow records only, NetFlow whose sampling is unknown, the encrypted or
    uninspected share of the outflow, no DNS telemetry, no threat-intelligence list, a short
    observation span or no baseline before the window, low-severity findings, and attack activity
    that is not an outflow (scans, password guessing: medium or more).

Every verdict carries the coverage it rests on and a non-empty ``would_lower`` list: the
reasons that reduce (or would reduce) confidence in it, and ``reevaluate_on``: the events that
call for a follow-up report (Art. 33(4)). Labels: high >= 0.8 > medium >= 0.5 > low.
"""

from __future__ import annotations

EXFIL_DETECTIONS = ("bulk_outbound", "upload_heavy", "dns_tunnel", "icmp_tunnel", "cleartext_sensitive_data")
#: Indicators of a channel out without proof that data used it.
INDICATOR_DETECTIONS = ("beaconing", "threat_intel", "rare_destination", "long_connection", "off_hours",
                        "protocol_mismatch")
VERDICTS = ("EXFIL_CONFIRMED", "EXFIL_INDICATED", "NO_EXFIL_EVIDENCE")
NO_EXFIL_START = 0.95
#: Points subtracted from the NO_EXFIL confidence, by reason (multiplied by a share where noted).
PENALTIES = {
    "time_gap": 1.0,            # x share of the window no sensor covered
    "capture_loss": 1.0,        # x largest missed-bytes share of any sensor
    "flow_only": 0.10,          # no sensor with payload: no content inspection at all
    "sampling_unknown": 0.15,   # NetFlow/IPFIX: sampled flows can miss small transfers
    "encrypted": 0.10,          # x share of the outflow whose content was not inspected
    "no_dns": 0.15,             # DNS tunnelling not checkable
    "no_threat_intel": 0.05,    # no indicator list: known attacker infrastructure not matched
    "short_span": 0.10,         # window shorter than a day
    "no_baseline": 0.10,        # no data before the window: no host's own baseline
    "low_findings": 0.05,       # low/info findings exist
    "attack_activity": 0.10,    # medium+ findings of other kinds (scans, password guessing)
    "checks_failed": 0.10,      # a detection failed with an error: its technique was not checked
}
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
    """Each weakness of the telemetry with the points it costs a NO_EXFIL statement."""
    w = []
    add = lambda key, points, **facts: w.append({"reason": key, "points": round(points, 4), **facts})  # noqa: E731
    uncovered = 1.0 - cov["window_time_share"]
    if uncovered > 0.0001:
        gaps = sorted((g for s in ev["telemetry"] for g in s["largest_gaps"]), key=lambda g: -g["minutes"])[:10]
        largest = f"{gaps[0]['start']} – {gaps[0]['end']}" if gaps else "-"
        add("time_gap", PENALTIES["time_gap"] * uncovered, share=round(uncovered, 4), largest=largest, gaps=gaps)
    if cov["missed_share"] > 0:
        add("capture_loss", PENALTIES["capture_loss"] * cov["missed_share"], share=cov["missed_share"])
    if not cov["payload_sensors"]:
        add("flow_only", PENALTIES["flow_only"])
    if cov["sampling_unknown"]:
        add("sampling_unknown", PENALTIES["sampling_unknown"])
    uninspected = round(1.0 - cov["cleartext_share"], 4) if cov["outbound_bytes"] else 0.0
    if uninspected > 0:
        add("encrypted", PENALTIES["encrypted"] * uninspected, share=uninspected)
    if "dns_tunnel" in cov["checks_not_checkable"]:
        add("no_dns", PENALTIES["no_dns"])
    if "threat_intel" in cov["checks_not_checkable"]:
        add("no_threat_intel", PENALTIES["no_threat_intel"])
    failed = sorted(t["id"] for t in ev["techniques"] if t["result"] == "error")
    if failed:
        add("checks_failed", PENALTIES["checks_failed"], detections=failed)
    if ev["window"]["seconds"] < SHORT_SPAN_SECONDS:
        add("short_span", PENALTIES["short_span"], seconds=ev["window"]["seconds"])
    if ev["hosts"] and not any(h["baseline"] for h in ev["hosts"]):
        add("no_baseline", PENALTIES["no_baseline"])
    if any(_RANK[f["severity"]] < 2 for f in ev["findings"]):
        add("low_findings", PENALTIES["low_findings"])
    other = [f for f in ev["findings"] if _RANK[f["severity"]] >= 2
             and f["detection"] not in EXFIL_DETECTIONS + INDICATOR_DETECTIONS]
    if other:
        add("attack_activity", PENALTIES["attack_activity"], detections=sorted({f["detection"] for f in other}))
    return w


def decide(ev: dict) -> dict:
    """The verdict, its confidence (0-1 and a label), its coverage and what would lower it."""
    cov = coverage_summary(ev)
    weak = _weaknesses(ev, cov)
    fs = ev["findings"]
    hard = [f for f in fs if f["detection"] in EXFIL_DETECTIONS and _RANK[f["severity"]] >= 3 and f["bytes_out"] > 0]
    soft = [f for f in fs if _RANK[f["severity"]] >= 2 and f["detection"] in EXFIL_DETECTIONS + INDICATOR_DETECTIONS]
    if hard:
        verdict = "EXFIL_CONFIRMED"
        conf = 0.9 if any(f["severity"] == "critical" for f in hard) else 0.8
        basis = hard
        lowers = [{"reason": "destination_authorised"}, {"reason": "estimate_includes_overhead"}]
    elif soft:
        verdict = "EXFIL_INDICATED"
        conf = 0.4 + 0.3 * max(f["score"] for f in soft) / 100
        basis = soft
        lowers = [{"reason": "benign_explanation"}, {"reason": "destination_authorised"}]
    else:
        verdict = "NO_EXFIL_EVIDENCE"
        conf = NO_EXFIL_START - sum(x["points"] for x in weak)
        basis = []
        lowers = weak + [{"reason": r} for r in ALWAYS]
    conf = round(max(FLOOR, min(0.99, conf)), 2)
    return {
        "verdict": verdict, "confidence": conf, "confidence_label": label(conf), "coverage": cov,
        "basis": [{"id": f["id"], "detection": f["detection"], "severity": f["severity"],
                   "bytes_out": f["bytes_out"]} for f in basis],
        "weaknesses": weak,
        "would_lower": lowers,
        "reevaluate_on": [{"reason": r} for r in ALWAYS],
    }
