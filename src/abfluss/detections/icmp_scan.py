"""ICMP scans: one source sending ICMP requests to many hosts (echo sweeps, address scans).

A ping sweep (``nmap -sn``, ``fping -g``, Slips' "ICMP sweep") sends one or two echo requests
to every address of a range and learns which hosts are up from the replies; the timestamp
(13) and address-mask (17) requests serve the same purpose where echo is filtered. Per source
the detection counts the distinct hosts its ICMP *requests* went to:

- where the sensor keeps the ICMP type in ``orig_p`` (Zeek, Suricata, Argus) only request
  types count (``request_types``); NFStream reports 0 for every ICMP flow, and an unknown
  type counts as a request (ICMP errors and neighbour discovery then still land in the
  ``local`` class or go to few hosts);
- destinations of class ``local`` (multicast, broadcast, link-local) never count: neighbour
  discovery and mDNS reach many groups without scanning anything.

Score: breadth over the threshold, speed (hosts per minute), the share left unanswered (a
sweep of a half-empty range), the address/timestamp types, and an internal source.
A monitoring host that pings 30 servers all day is slow: it stays low severity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ._stats import attach_targets, ramp, rows, timed

META = Meta(
    id="icmp_scan",
    title="ICMP sweep or address scan",
    attack=("T1018", "T1595.001"),
    description="One source sending ICMP echo, timestamp or address-mask requests to many hosts: "
                "a ping sweep that maps which internal hosts are up, the reconnaissance step before "
                "port scans, lateral movement and the exfiltration that follows.",
    runbook="1. Identify the source: a monitoring system, inventory or vulnerability scanner "
            "(confirm with its owner and allowlist it) or not. "
            "2. For an unexplained internal source, look for the tool on the host (nmap, fping, "
            "PowerShell Test-Connection loops, malware discovery modules) and for its other "
            "findings (port scans, lateral fan-out) that follow a sweep. "
            "3. An external source sweeping you: check the perimeter filter lets echo in at all.",
    channel="icmp",
    inputs=("flows",),
)

#: ICMP types that ask for an answer: echo (8), timestamp (13), information (15), address mask
#: (17); ICMPv6 echo request (128).
REQUEST_TYPES = (8, 13, 15, 17, 128)
#: Request types used for address discovery where echo is filtered.
ADDRESS_TYPES = (13, 15, 17)


@dataclass(frozen=True)
class Settings:
    protocols: tuple = field(default=("icmp", "icmp6"), metadata={"help": "Flow protocols looked at."})
    request_types: tuple = field(default=REQUEST_TYPES, metadata={
        "help": "ICMP types counted where the sensor puts the type in orig_p (Zeek, Suricata, Argus); "
                "NFStream reports 0 for every ICMP flow, which counts as a request."})
    min_hosts: int = field(default=10, metadata={
        "help": "Distinct hosts one source sent ICMP requests to that make a sweep (Slips reports "
                "ICMP sweeps from 5 hosts; an admin pinging a few servers stays below)."})
    high_hosts: int = field(default=256, metadata={
        "help": "Hosts that give the full breadth part of the score (a /24)."})
    slow_rate: float = field(default=1.0, metadata={
        "help": "Hosts per minute at or below which speed adds nothing (monitoring pings servers in turn)."})
    fast_rate: float = field(default=60.0, metadata={
        "help": "Hosts per minute that give the full speed part of the score (a tool, not a person)."})
    address_type_points: float = field(default=10.0, metadata={
        "help": "Points when timestamp, information or address-mask requests were among them."})
    internal_source_points: float = field(default=20.0, metadata={
        "help": "Points added when the source is internal: one of our hosts is mapping the network."})
    max_listed: int = field(default=20, metadata={"help": "Hosts listed in a finding's hosts."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    f = tel.flows
    f = f.filter(f.proto.isin(list(s.protocols)) & (f.direction != "external")
                 & (f.dest_class.fill_null("") != "local"))
    typ = f.orig_p.fill_null(0)
    # NFStream writes 0 for every ICMP flow: the type is unknown, not an echo reply.
    f = f.filter(typ.isin(list(s.request_types)) | (typ == 0) & (f.resp_p.fill_null(0) == 0))
    f = f.mutate(answered=f.resp_pkts.fill_null(0) > 0, address_type=typ.isin(list(ADDRESS_TYPES)))
    agg = (f.group_by(["orig_h", "proto"])
           .aggregate(n=f.resp_h.nunique(),
                      answered=ibis.ifelse(f.answered, f.resp_h, ibis.null().cast("string")).nunique(),
                      address_type=f.address_type.any(), flows=_.count(), start=f.ts.min(),
                      end=f.ts_end.max(), tenant=f.tenant.max(), src_internal=f.orig_internal.any(),
                      bytes_out=f.bytes_out.fill_null(0).sum())
           .filter(_.n >= s.min_hosts))
    cands = rows(agg.order_by(["orig_h", "proto"]))
    if not cands:
        return []
    attach_targets(cands, f, ["orig_h", "proto"], s.max_evidence, s.max_listed)
    return [_finding(timed(c), s) for c in cands]


def _score(c: dict, s: Settings) -> dict[str, float]:
    share = 1 - c["answered"] / c["n"]
    # No points for merely reaching min_hosts: a monitoring host pinging its servers does that.
    parts = {"breadth": 30 * ramp(c["n"], s.min_hosts, s.high_hosts),
             "speed": 20 * ramp(c["rate"], s.slow_rate, s.fast_rate),
             "unanswered": 10 * share}
    if c["address_type"]:
        parts["address_types"] = s.address_type_points
    if c["src_internal"]:
        parts["internal_source"] = s.internal_source_points
    return parts


def _finding(c: dict, s: Settings) -> Finding:
    if c["src_internal"]:
        internal, external = [c["orig_h"]], [h for h, inside in c["listed"] if not inside]
    else:  # an external source: the finding belongs to the internal hosts it swept
        internal, external = [h for h, _inside in c["listed"]], [c["orig_h"]]
    span = f"{c['sec']:.0f} s" if c["sec"] < 120 else f"{c['sec'] / 60:.0f} min"
    kinds = "echo, timestamp or address-mask" if c["address_type"] else "echo"
    return Finding(
        detection=META.id,
        key=(c["orig_h"], "icmp_sweep", c["proto"]),
        score_parts=_score(c, s),
        explanation=(f"{c['orig_h']} sent ICMP {kinds} requests to {c['n']} hosts in {span} "
                     f"({c['rate']:.0f} per minute); {c['answered']} answered: a ping sweep."),
        internal_hosts=internal, external_hosts=external,
        channel=c["proto"], start=c["start"], end=c["end"], bytes_out=c["bytes_out"],
        evidence={"flows": c["flows"], "top_flows": [e["uid"] for e in c["ev"] if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in c["ev"] if e["community_id"]})},
        metrics={"count": c["n"], "answered": c["answered"], "flows": c["flows"],
                 "seconds": round(c["sec"], 1), "per_minute": round(c["rate"], 1),
                 "hosts": [h for h, _inside in c["listed"]]},
        thresholds={k: getattr(s, k) for k in ("min_hosts", "high_hosts", "slow_rate", "fast_rate")},
        attack=["T1018", "T1595.001"],
        tenant=c["tenant"],
    )
