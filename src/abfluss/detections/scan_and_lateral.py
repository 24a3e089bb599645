"""Scans and lateral movement: port scans and fan-out over admin protocols, per source.

Four kinds, keyed by (source, kind, target):

``horizontal_scan``  one source, one port, failed probes to many hosts (target ``tcp/445``);
``vertical_scan``    one source, one host, failed probes to many ports (target: the host);
``block_scan``       many hosts and many ports: a source with more horizontal and vertical
                     findings than ``max_targets`` gets this one instead, as does a source whose
                     failed probes are spread too thinly for either (target ``*``);
``lateral_fanout``   an internal host reaching many internal hosts over SMB, RDP, SSH or WinRM,
                     answered or not (target: the protocol).

A *probe* is a connection that exchanged no data (see ``_probes``). Password guessing, on
every protocol, is the ``brute_force`` detection's. Zeek's scan policy
counts failed attempts too (25 hosts / 15 ports in 5 min); here the rate adds to the score
instead. ``internal_hosts``: the source if internal, else the internal targets it probed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ._probes import common, probe_flows, span_text
from ._stats import PORT_CHANNELS, attach_targets, ramp, rows, timed

META = Meta(
    id="scan_and_lateral",
    title="Port scan or lateral fan-out",
    attack=("T1046", "T1021", "T1021.001", "T1021.002", "T1021.004", "T1021.006", "T1570"),
    description="A source probing many hosts on one port or many ports on one host with connections "
                "that fail or carry no data, or an internal host reaching many internal hosts over SMB, "
                "RDP, SSH or WinRM: the reconnaissance and spreading that precede an attack on internal "
                "systems and the exfiltration that follows it.",
    runbook="1. Identify the source: an internal one is either a sanctioned tool (vulnerability scanner, "
            "inventory, backup or management server: confirm with its owner) or compromised; an "
            "external one is probing you. "
            "2. Check whether any probed target answered and then exchanged data (the evidence flows, "
            "then the target's other findings): a success after many failures is a breach. "
            "3. For an internal source that is not explained, isolate the host and collect its process "
            "list; look for remote service creation (PsExec) or new admin shares on the targets.",
    inputs=("flows",),
)

#: ATT&CK technique ids per lateral protocol (SMB also carries tool transfer, T1570).
FAMILY_ATTACK = {"smb": ["T1021", "T1021.002", "T1570"], "rdp": ["T1021", "T1021.001"],
                 "ssh": ["T1021", "T1021.004"], "winrm": ["T1021", "T1021.006"]}
#: Per kind, the settings giving the threshold and the full-breadth count of its main measure.
LIMITS = {"horizontal_scan": ("horizontal_min_hosts", "horizontal_high_hosts"),
          "vertical_scan": ("vertical_min_ports", "vertical_high_ports"),
          "block_scan": ("block_min_targets", "block_high_targets"),
          "lateral_fanout": ("lateral_min_hosts", "lateral_high_hosts")}
SCANS = ("horizontal_scan", "vertical_scan", "block_scan")
KIND_ATTACK = {"horizontal_scan": ["T1046"], "vertical_scan": ["T1046"], "block_scan": ["T1046"]}


@dataclass(frozen=True)
class Settings:
    scan_protocols: tuple = field(default=("tcp",), metadata={
        "help": "Transport protocols whose failed flows count as probes. UDP is off by default: "
                "traceroute, STUN and DNS retries leave unanswered UDP to many ports and hosts."})
    probe_max_packets: int = field(default=4, metadata={
        "help": "Where a sensor gives no payload bytes (Suricata, NetFlow), a flow of at most this many "
                "header-sized packets (both ways) is a probe: SYN, SYN-ACK, ACK, RST of a connect scan."})
    probe_header_bytes: int = field(default=80, metadata={
        "help": "Largest IP bytes per packet that still means no payload (IPv6 + TCP with options)."})
    horizontal_min_hosts: int = field(default=10, metadata={
        "help": "Hosts with failed probes on one port from one source that make a horizontal scan "
                "(Zeek's scan policy: 25 within 5 min)."})
    horizontal_high_hosts: int = field(default=250, metadata={
        "help": "Hosts that give the full breadth part of a horizontal scan's score (a /24)."})
    scan_min_failed_share: float = field(default=0.2, metadata={
        "help": "Share of the hosts (ports, host:port pairs) a source contacted on a port (host, at all) "
                "that must have failed for a horizontal (vertical, block) scan: a workstation reaching 600 "
                "web servers with 30 failures is browsing. The breadth part of the score is scaled by it."})
    vertical_min_ports: int = field(default=15, metadata={
        "help": "Ports with failed probes on one host from one source that make a vertical scan (Zeek: 15)."})
    vertical_high_ports: int = field(default=1000, metadata={
        "help": "Ports that give the full breadth part of a vertical scan's score (nmap's top 1000)."})
    block_min_targets: int = field(default=50, metadata={
        "help": "Distinct host:port pairs with failed probes from one source that make a block scan "
                "when no horizontal or vertical threshold is reached."})
    block_high_targets: int = field(default=10000, metadata={
        "help": "Host:port pairs that give the full breadth part of a block scan's score."})
    max_targets: int = field(default=10, metadata={
        "help": "More horizontal and vertical findings than this for one source fold into one block "
                "scan."})
    slow_rate: float = field(default=1.0, metadata={
        "help": "Targets per minute (hosts, ports, attempts) at or below which speed adds nothing."})
    fast_rate: float = field(default=60.0, metadata={
        "help": "Targets per minute that give the full speed part of the score (tools, not people)."})
    lateral_ports: tuple = field(default=(22, 139, 445, 3389, 5985, 5986), metadata={
        "help": "Admin ports (SSH, SMB, RDP, WinRM) watched for one internal host reaching many others."})
    lateral_min_hosts: int = field(default=10, metadata={
        "help": "Internal hosts reached over one admin protocol by one internal host that make a "
                "lateral fan-out (an admin reaching 3 servers is normal; a workstation reaching 40 is not)."})
    lateral_high_hosts: int = field(default=100, metadata={
        "help": "Hosts that give the full breadth part of a lateral fan-out's score."})
    internal_source_points: float = field(default=20.0, metadata={
        "help": "Points added when the source is internal: one of our hosts is scanning or spreading."})
    max_listed: int = field(default=20, metadata={
        "help": "Targets (hosts or ports) listed in a finding's hosts and metrics."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    f = _flows(tel, s)
    lateral = _lateral(f, s)
    covered = {(c["src"], p) for c in lateral for p in c["lateral_ports"]}
    scans = [c for c in _horizontal(f, s) if (c["src"], c["resp_p"]) not in covered] + _vertical(f, s)
    cands = [timed(c) for c in _blocks(f, s, scans) + lateral]
    cands.sort(key=lambda c: (c["src"], c["kind"], str(c["target"])))
    return [_finding(c, s) for c in cands]


def _flows(tel: Telemetry, s: Settings):
    return probe_flows(tel.flows, s.scan_protocols, s.probe_max_packets, s.probe_header_bytes)


def _attach(cands: list[dict], scope, by: list[str], s: Settings, ports: bool = False) -> list[dict]:
    return attach_targets(cands, scope, by, s.max_evidence, s.max_listed, ports)


def _spread(t, by: list[str], col: str, minimum: int):
    """Per group of ``by``: distinct ``col`` values reached by probes (``n`` >= ``minimum``) and by
    any flow (``total``). Probes are few: counting them first keeps the distinct count over all
    flows to the groups that qualify (measured: 15 s -> 2 s for 2 M flows)."""
    p = t.filter(t.probe)
    cand = p.group_by(by).aggregate(n=p[col].nunique(), probes=_.count()).filter(_.n >= minimum)
    full = t.semi_join(cand, by)
    return full.group_by(by).aggregate(total=full[col].nunique(), **common(full)).join(cand, by)


def _horizontal(f, s: Settings) -> list[dict]:
    t, by = f.filter(f.proto.isin(list(s.scan_protocols))), ["orig_h", "proto", "resp_p"]
    agg = _spread(t, by, "resp_h", s.horizontal_min_hosts)
    cands = [dict(r, kind="horizontal_scan", src=r["orig_h"], share=r["n"] / r["total"],
                  target=f"{r['proto']}/{r['resp_p']}") for r in rows(agg.order_by(by))
             if r["n"] >= s.scan_min_failed_share * r["total"]]
    return _attach(cands, t.filter(t.probe), by, s)


def _vertical(f, s: Settings) -> list[dict]:
    t, by = f.filter(f.proto.isin(list(s.scan_protocols))), ["orig_h", "resp_h"]
    agg = _spread(t, by, "resp_p", s.vertical_min_ports)
    cands = [dict(r, kind="vertical_scan", src=r["orig_h"], target=r["resp_h"], share=r["n"] / r["total"])
             for r in rows(agg.order_by(by)) if r["n"] >= s.scan_min_failed_share * r["total"]]
    return _attach(cands, t.filter(t.probe), by, s, ports=True)


def _lateral(f, s: Settings) -> list[dict]:
    fams: dict[str, list[int]] = {}
    for p in s.lateral_ports:
        fams.setdefault(PORT_CHANNELS.get(p, f"port {p}"), []).append(p)
    if not fams:  # lateral_ports = [] turns this kind off
        return []
    t, by = f.filter((f.direction == "internal") & f.resp_p.isin(list(s.lateral_ports))), ["orig_h", "family"]
    t = t.mutate(family=ibis.cases(*[(t.resp_p.isin(ps), name) for name, ps in fams.items()]))
    agg = (t.group_by(by)
           .aggregate(n=t.resp_h.nunique(),
                      failed=ibis.ifelse(t.probe, t.resp_h, ibis.null().cast("string")).nunique(),
                      **common(t))
           .filter(_.n >= s.lateral_min_hosts))
    cands = [dict(r, kind="lateral_fanout", src=r["orig_h"], target=r["family"],
                  lateral_ports=fams[r["family"]], share=r["failed"] / r["n"])
             for r in rows(agg.order_by(by))]
    return _attach(cands, t, by, s)


def _blocks(f, s: Settings, scans: list[dict]) -> list[dict]:
    """Fold sources with too many scan findings into one block scan; add thinly spread ones."""
    t = f.filter(f.probe)
    per: dict[str, list[dict]] = {}
    for c in scans:
        per.setdefault(c["src"], []).append(c)
    crowded = [src for src, cs in per.items() if len(cs) > s.max_targets] or [""]
    agg = (t.group_by("orig_h")
           .aggregate(n=_pair(t).nunique(), n_hosts=t.resp_h.nunique(), n_ports=t.resp_p.nunique(),
                      probes=_.count(), **common(t)))
    agg = agg.filter(agg.orig_h.isin(crowded) | ((agg.n >= s.block_min_targets)
                                                 & ~agg.orig_h.isin(list(per) or [""])))
    # All host:port pairs the source contacted, counted only for the sources that qualify.
    a = f.filter(f.proto.isin(list(s.scan_protocols))).semi_join(agg, "orig_h")
    agg = agg.join(a.group_by("orig_h").aggregate(total=_pair(a).nunique()), "orig_h")
    blocks = [dict(r, kind="block_scan", src=r["orig_h"], target="*", share=r["n"] / r["total"],
                   folded=len(per.get(r["orig_h"], []))) for r in rows(agg.order_by("orig_h"))
              if r["orig_h"] in crowded or r["n"] >= s.scan_min_failed_share * r["total"]]
    return [c for c in scans if c["src"] not in crowded] + _attach(blocks, t, ["orig_h"], s)


def _pair(t):
    return t.resp_h + ":" + t.resp_p.cast("string")


def _score(c: dict, s: Settings) -> dict[str, float]:
    """Breadth over the threshold, speed, failures, source."""
    # A scan is a breadth of failures: the more of the contacted targets answered, the less it counts.
    weight = c["share"] if c["kind"] in SCANS else 1.0
    parts = {"breadth": 10 + 30 * weight * ramp(c["n"], *[getattr(s, k) for k in LIMITS[c["kind"]]]),
             "speed": 20 * ramp(c["rate"], s.slow_rate, s.fast_rate)}
    parts["failed"] = 10 * c["share"]
    if c["src_internal"]:
        parts["internal_source"] = s.internal_source_points
    return parts


def _explain(c: dict) -> str:
    src, k, span = c["src"], c["kind"], span_text(c["sec"])
    per = f"{c['rate']:.0f} per minute"
    if k == "horizontal_scan":
        return (f"{src} probed {c['target']} on {c['n']} hosts without getting data back "
                f"({c['total']} contacted on that port) in {span}, {per}.")
    if k == "vertical_scan":
        return (f"{src} probed {c['n']} ports on {c['target']} without getting data back "
                f"({c['total']} ports contacted) in {span}, {per}.")
    if k == "block_scan":
        return (f"{src} probed {c['n']} host:port pairs ({c['n_hosts']} hosts, {c['n_ports']} ports) "
                f"without getting data back in {span}, {per}.")
    return (f"{src} reached {c['n']} internal hosts over {c['target']} in {span} ({per}), "
            f"{c['failed']} of them without getting data back.")


def _channel(c: dict) -> str:
    if c["kind"] in SCANS[1:] + ("lateral_fanout",):
        return c["target"] if c["kind"] == "lateral_fanout" else ""
    return PORT_CHANNELS.get(c["resp_p"], f"{c.get('proto') or 'tcp'}/{c['resp_p']}")


def _metrics(c: dict) -> dict:
    m = {"count": c["n"], "flows": c["flows"], "seconds": round(c["sec"], 1),
         "per_minute": round(c["rate"], 1), "bytes_out": c["bytes_out"],
         "hosts": [h for h, _inside in c["listed"]]}
    names = {"n_hosts": "distinct_hosts", "n_ports": "distinct_ports", "port_list": "ports"}
    for k in ("total", "probes", "failed", "folded", "n_hosts", "n_ports", "port_list"):
        if c.get(k) not in (None, []):
            m[names.get(k, k)] = round(c[k], 3) if isinstance(c[k], float) else c[k]
    return m


def _finding(c: dict, s: Settings) -> Finding:
    if c["src_internal"]:
        internal, external = [c["src"]], [h for h, inside in c["listed"] if not inside]
    else:  # an external source: the finding belongs to the internal hosts it targeted
        internal, external = [h for h, _inside in c["listed"]], [c["src"]]
    compared = [*LIMITS[c["kind"]], "slow_rate", "fast_rate"]
    compared += ["scan_min_failed_share"] if c["kind"] in SCANS else []
    lateral = c["kind"] == "lateral_fanout"
    return Finding(
        detection=META.id,
        key=(c["src"], c["kind"], c["target"]),
        score_parts=_score(c, s),
        explanation=_explain(c),
        internal_hosts=internal, external_hosts=external,
        channel=_channel(c), start=c["start"], end=c["end"], bytes_out=c["bytes_out"],
        evidence={"flows": c["flows"], "top_flows": [e["uid"] for e in c["ev"] if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in c["ev"] if e["community_id"]})},
        metrics=_metrics(c),
        thresholds={name: getattr(s, name) for name in compared},
        attack=FAMILY_ATTACK.get(c["target"], ["T1021"]) if lateral else KIND_ATTACK[c["kind"]],
        tenant=c["tenant"],
    )
