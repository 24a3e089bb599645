"""IDS alerts as evidence: Suricata eve alerts and Zeek notices, one finding per internal host and signature.

A sensor's IDS already judged these packets; abfluss does not judge them again but puts them
beside its own findings, so an analyst sees in one place that the host which sent 2 GB to a new
destination also matched ``ET TROJAN ...``. Alerts are grouped per internal host (the alert's
internal side; the source when both are internal) and signature (Suricata's rule message, Zeek's
notice type), counted, with first and last time and the peers involved.

The severity is the alert's own: Suricata's 1 (high) to 3 (low) map onto abfluss' high, medium
and low bands, and more alerts or more peers move the score up inside that band, never into the
next. Zeek notices carry no severity and count as ``unknown_severity``; housekeeping notices
(``info_signatures``: certificate validation, capture loss) are info. An exposed server is
probed from the internet all day (reputation and scan rules fire on every unsolicited
connection), so when every alert of a group came on connections the external side opened
(by the alert's flow where the sensor logged it, else by the alert's direction), the group
drops ``inbound_points`` (one band).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ._stats import ramp, rows

META = Meta(
    id="ids_alert",
    title="IDS alerts (Suricata, Zeek notices) for an internal host",
    attack=("T1071", "T1190", "T1046"),
    description="Alerts of the sensors' own intrusion detection (Suricata eve alerts, Zeek "
                "notice.log) involving an internal host, one finding per host and signature with "
                "the alert's severity, counts, peers and first/last time.",
    runbook="1. Read the rule or notice (signature id, category) and check it against the flows of "
            "the host at that time (abfluss explain, the evidence flows). 2. An outbound alert "
            "(trojan, C2, policy) on a host with other findings is a likely compromise: isolate the "
            "host. 3. Inbound alerts on an exposed server: check whether any of the connections "
            "succeeded (responses, logins) and patch or close the service.",
    channel="ids",
    inputs=("alerts", "flows"),
)


@dataclass(frozen=True)
class Settings:
    severity_points: tuple = field(default=(60.0, 40.0, 20.0, 5.0), metadata={
        "help": "Base points for an alert severity of 1, 2, 3 and 4 or more (Suricata: 1 is the "
                "highest): the floors of the high, medium, low and info bands."})
    unknown_severity: int = field(default=3, metadata={
        "help": "Severity (Suricata's scale) of alerts that carry none, such as Zeek notices."})
    count_points: float = field(default=10.0, metadata={
        "help": "Points at count_high alerts of one signature (log scale from one alert)."})
    count_high: int = field(default=100, metadata={
        "help": "Alerts of one host and signature that give the full count points."})
    peer_points: float = field(default=5.0, metadata={
        "help": "Points at peer_high distinct peers of the host in the alerts (log scale from one)."})
    peer_high: int = field(default=20, metadata={
        "help": "Distinct peers that give the full peer points."})
    inbound_points: float = field(default=-20.0, metadata={
        "help": "Points added when every alert came on a connection the external side opened "
                "(an exposed server being probed): one severity band lower."})
    info_signatures: tuple = field(default=(
        "SSL::Invalid_Server_Cert", "SSL::Invalid_Ocsp_Response", "SSL::Certificate_Expired",
        "SSL::Certificate_Expires_Soon", "SSL::Certificate_Not_Valid_Yet", "CaptureLoss::Too_Much_Loss",
        "CaptureLoss::Too_Little_Traffic", "PacketFilter::Dropped_Packets", "Weird::Activity"), metadata={
        "help": "Signatures counted as severity 4 (info) whatever they carry: Zeek's housekeeping "
                "notices (certificate validation, capture loss), true but rarely an attack."})
    ignore_signatures: tuple = field(default=(), metadata={
        "help": "Signatures (exact rule messages or notice types) never turned into findings, e.g. "
                "noisy decoder events."})
    max_evidence: int = field(default=10, metadata={
        "help": "Flow ids (and community ids) listed as evidence per finding."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    a = tel.alerts
    if a is None:
        return []
    a = a.filter(~a.allowlisted.fill_null(False) & (a.orig_internal | a.resp_internal)
                 & a.signature.notnull())
    if s.ignore_signatures:
        a = a.filter(~a.signature.isin(list(s.ignore_signatures)))
    outbound = a.orig_internal.fill_null(False)
    a = a.mutate(host=ibis.ifelse(outbound, a.orig_h, a.resp_h),
                 peer=ibis.ifelse(outbound, a.resp_h, a.orig_h),
                 peer_external=ibis.ifelse(outbound, ~a.resp_internal, ~a.orig_internal),
                 sev=ibis.ifelse(a.signature.isin(list(s.info_signatures) or [""]), 4,
                                 a.severity.fill_null(s.unknown_severity)))
    a = _with_inbound(tel, a)
    keys = ["host", "signature"]
    groups = a.group_by(keys).aggregate(
        alerts=_.count(), severity=_.sev.min(), signature_id=_.signature_id.max(),
        category=_.category.max(), peers=_.peer.nunique(), start=_.ts.min(), end=_.ts.max(),
        inbound=_.inbound.cast("int64").sum(), tenant=_.tenant.max())
    found = rows(groups.order_by(keys))
    if not found:
        return []
    detail = _details(a, found, keys, s)
    return [_finding(r, detail.get((r["host"], r["signature"]), {}), s) for r in found]


def _with_inbound(tel: Telemetry, a):
    """``inbound``: the alert's connection was opened by the external side. From the alert's
    flow (same sensor and flow id) where the sensor logged it, else from the alert's own
    direction (rules match the opening side's packets far more often than the answers)."""
    f = tel.flows.filter(tel.flows.uid.notnull())
    known = f.group_by([f.uid, f.sensor]).aggregate(
        i_in=(f.direction == "inbound").cast("int64").max()).rename(i_uid="uid", i_sensor="sensor")
    j = a.left_join(known, [a.uid == known.i_uid, a.sensor == known.i_sensor])
    by_alert = ~j.orig_internal.fill_null(False) & j.resp_internal.fill_null(False)
    return j.mutate(inbound=ibis.ifelse(j.i_in.notnull(), j.i_in == 1, by_alert)).drop("i_uid", "i_sensor", "i_in")


def _details(a, found: list[dict], keys: list[str], s: Settings) -> dict:
    """Per reported group: its peers (external first) and its flow and community ids."""
    hosts = sorted({r["host"] for r in found})
    sub = a.filter(a.host.isin(hosts))
    per = sub.group_by(keys + ["peer", "peer_external"]).aggregate(n=_.count())
    ids = (sub.filter(sub.uid.notnull() | sub.community_id.notnull())
           .group_by(keys + ["uid", "community_id"]).aggregate(n=_.count(), t=_.ts.min()))
    out: dict = {}
    for r in rows(per):
        d = out.setdefault((r["host"], r["signature"]), {"peers": {}, "external": set(), "uids": [], "cids": set()})
        if r["peer"]:
            d["peers"][r["peer"]] = d["peers"].get(r["peer"], 0) + r["n"]
            if r["peer_external"]:
                d["external"].add(r["peer"])
    for r in sorted(rows(ids), key=lambda r: (-r["n"], str(r["t"]), r["uid"] or "", r["community_id"] or "")):
        d = out.get((r["host"], r["signature"]))
        if d is None:
            continue
        if r["uid"] and len(d["uids"]) < s.max_evidence:
            d["uids"].append(r["uid"])
        if r["community_id"] and len(d["cids"]) < s.max_evidence:
            d["cids"].add(r["community_id"])
    return out


def _finding(r: dict, d: dict, s: Settings) -> Finding:
    sev = int(r["severity"])
    pts = s.severity_points
    base = pts[min(max(sev, 1), len(pts)) - 1]
    parts = {"alert_severity": base,
             "alert_count": s.count_points * ramp(r["alerts"], 1, s.count_high),
             "peers": s.peer_points * ramp(r["peers"], 1, s.peer_high)}
    inbound_only = r["inbound"] == r["alerts"]
    if inbound_only and s.inbound_points:
        parts["inbound_only"] = s.inbound_points
    peers = d.get("peers", {})
    top = sorted(peers, key=lambda p: (-peers[p], p))
    host, sig = r["host"], r["signature"]
    rule = f"{sig!r}" + (f" (rule {r['signature_id']})" if r["signature_id"] is not None else "")
    where = f" with {', '.join(top[:3])}" + (f" and {len(top) - 3} more" if len(top) > 3 else "") if top else ""
    first, last = r["start"], r["end"]
    span = f"between {first:%Y-%m-%d %H:%M} and {last:%Y-%m-%d %H:%M} UTC" if first != last \
        else f"at {first:%Y-%m-%d %H:%M} UTC"
    return Finding(
        detection=META.id, key=(host, sig), score_parts=parts,
        explanation=(f"The IDS raised {r['alerts']} alert(s) {rule} for {host}{where} {span}"
                     f"{'; ' + r['category'] if r['category'] else ''}; alert severity {sev}"
                     f"{' (every alert on connections opened from outside)' if inbound_only else ''}."),
        internal_hosts=[host], external_hosts=sorted(d.get("external", ())),
        channel="ids", start=first, end=last, bytes_out=0,
        evidence={"alerts": r["alerts"], "top_flows": d.get("uids", []),
                  "community_ids": sorted(d.get("cids", ())), "peers": {p: peers[p] for p in top[:s.max_evidence]}},
        metrics={"alerts": r["alerts"], "alert_severity": sev, "signature": sig,
                 "signature_id": r["signature_id"], "category": r["category"], "peers": r["peers"],
                 "inbound_alerts": r["inbound"]},
        thresholds={"count_high": s.count_high, "peer_high": s.peer_high, "unknown_severity": s.unknown_severity},
        tenant=r["tenant"],
    )
