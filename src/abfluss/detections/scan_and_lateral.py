"""Scans and lateral movement: port scans, password guessing and fan-out over admin protocols, per source.

Five kinds, each keyed by (source, kind, target) so that the same behaviour found again updates
its finding:

``horizontal_scan``  one source, one port, failed probes to many hosts (target ``tcp/445``);
``vertical_scan``    one source, one host, failed probes to many ports (target: the host);
``block_scan``       many hosts and many ports: a source with more horizontal and vertical
                     findings than ``max_targets`` gets this one instead, as does a source whose
                     failed probes are spread too thinly for either (target ``*``);
``brute_force``      many short, similar-sized connections to one login service (target
                     ``host:port``; above ``max_targets`` targets they fold into ``*:port``);
``lateral_fanout``   an internal host reaching many internal hosts over SMB, RDP, SSH or WinRM,
                     answered or not (target: the protocol).

A *probe* is a connection that exchanged no data: a failed Zeek state (S0, REJ, RSTOS0, RSTRH,
SH, SHR), no reply packet, or no payload at all (RSTO after a handshake: a connect scan of an
open port). Where a sensor gives no payload bytes (Suricata, NetFlow) a flow of at most
``probe_max_packets`` packets with no more than header-sized packets counts. Zeek's scan policy
counts only failed attempts too (25 hosts / 15 ports in 5 min); Slips counts 5-6 not-established
destinations. Here the thresholds hold for the whole window and the rate adds to the score
instead, so a slow scan is still seen. The source may be internal (its own finding) or external
scanning in; ``internal_hosts`` is the source when it is internal, else the internal targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import ibis
from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ._stats import PORT_CHANNELS, evidence_uids, human_bytes, ramp, robust_baseline, rows

META = Meta(
    id="scan_and_lateral",
    title="Port scan, password guessing or lateral fan-out",
    attack=("T1046", "T1110", "T1021", "T1021.001", "T1021.002", "T1021.004", "T1021.006", "T1570"),
    description="A source probing many hosts on one port or many ports on one host with connections "
                "that fail or carry no data, guessing passwords with many short connections of the same "
                "size to one login service, or an internal host reaching many internal hosts over SMB, "
                "RDP, SSH or WinRM: the reconnaissance and spreading that precede an attack on internal "
                "systems and the exfiltration that follows it.",
    runbook="1. Identify the source: an internal one is either a sanctioned tool (vulnerability scanner, "
            "inventory, backup or management server: confirm with its owner) or compromised; an "
            "external one is probing you. "
            "2. Check whether any probed target answered and then exchanged data (the evidence flows, "
            "then the target's other findings): a success after many failures is a breach. "
            "3. For brute force, read the service's authentication log for the failures and any "
            "success from the source; lock the account and block the source if unexplained. "
            "4. For an internal source that is not explained, isolate the host and collect its process "
            "list; look for remote service creation (PsExec) or new admin shares on the targets.",
)

#: Zeek connection states in which the connection never got established.
FAILED_STATES = ("S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR")
#: ATT&CK technique ids per lateral protocol (SMB also carries tool transfer, T1570).
FAMILY_ATTACK = {"smb": ["T1021", "T1021.002", "T1570"], "rdp": ["T1021", "T1021.001"],
                 "ssh": ["T1021", "T1021.004"], "winrm": ["T1021", "T1021.006"]}
KIND_ATTACK = {"horizontal_scan": ["T1046"], "vertical_scan": ["T1046"], "block_scan": ["T1046"],
               "brute_force": ["T1110", "T1110.001"]}


@dataclass(frozen=True)
class Settings:
    scan_protocols: tuple = field(default=("tcp",), metadata={
        "help": "Transport protocols whose failed flows count as probes. UDP is off by default: "
                "traceroute, STUN and DNS retries leave unanswered UDP to many ports and hosts."})
    probe_max_packets: int = field(default=4, metadata={
        "help": "Where a sensor gives no payload bytes (Suricata, NetFlow), a flow of at most this many "
                "packets in both directions with header-sized packets only is a probe (SYN, SYN-ACK, "
                "ACK, RST of a connect scan)."})
    probe_header_bytes: int = field(default=80, metadata={
        "help": "Largest IP bytes per packet that still means no payload (IPv6 + TCP with options)."})
    horizontal_min_hosts: int = field(default=10, metadata={
        "help": "Hosts with failed probes on one port from one source that make a horizontal scan "
                "(Zeek: 25 in 5 min, Slips: 5-6 not-established destinations)."})
    horizontal_high_hosts: int = field(default=250, metadata={
        "help": "Hosts that give the full breadth part of a horizontal scan's score (a /24)."})
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
                "scan; more brute-force targets on one port fold into one finding for that port."})
    slow_rate: float = field(default=1.0, metadata={
        "help": "Targets per minute (hosts, ports, attempts) at or below which speed adds nothing."})
    fast_rate: float = field(default=60.0, metadata={
        "help": "Targets per minute that give the full speed part of the score (tools, not people)."})
    brute_ports: tuple = field(
        default=(21, 22, 23, 25, 110, 139, 143, 445, 465, 587, 993, 995, 1433, 3306, 3389, 5432, 5900,
                 5985, 5986), metadata={"help": "Ports of login services watched for password guessing."})
    brute_services: tuple = field(
        default=("ssh", "rdp", "ftp", "smtp", "telnet", "smb", "pop3", "imap", "vnc", "mysql", "mssql",
                 "postgres"), metadata={
            "help": "Application names (as the sensor names them; substring match) of login services "
                    "watched on any port, e.g. SSH on 2222."})
    brute_min_attempts: int = field(default=20, metadata={
        "help": "Short connections from one source to one login service that make password guessing "
                "(Zeek counts 30 failed SSH logins; its own test lowers that to 10)."})
    brute_high_attempts: int = field(default=1000, metadata={
        "help": "Attempts that give the full count part of a brute-force score."})
    brute_max_duration: float = field(default=30.0, metadata={
        "help": "Longest connection (s) counted as a login attempt; sessions of people last longer."})
    brute_max_bytes: int = field(default=10000, metadata={
        "help": "Most bytes the client sends in a connection counted as a login attempt."})
    brute_max_spread: float = field(default=0.25, metadata={
        "help": "Largest median absolute deviation of the client bytes, as a share of their median: "
                "failed logins look alike, real sessions do not."})
    lateral_ports: tuple = field(default=(22, 139, 445, 3389, 5985, 5986), metadata={
        "help": "Admin ports (SSH, SMB, RDP, WinRM) watched for an internal host reaching many internal hosts."})
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
    covered = {(c["src"], p) for c in lateral for p in c["ports"]}
    scans = [c for c in _horizontal(f, s) if (c["src"], c["port"]) not in covered] + _vertical(f, s)
    cands = _blocks(f, s, scans) + lateral + _fold_brute(f, _brute(f, s), s)
    cands.sort(key=lambda c: (c["src"], c["kind"], str(c["target"])))
    return [_finding(f, c, s) for c in cands]


# -- per-flow classification -----------------------------------------------------------------

def _flows(tel: Telemetry, s: Settings):
    """Flows with an internal side, with ``probe`` (exchanged no data) and ``attempt`` (login-sized)."""
    f = tel.flows.filter(_.direction != "external")
    pkts = f.orig_pkts.fill_null(0) + f.resp_pkts.fill_null(0)
    known = f.orig_bytes.notnull() | f.resp_bytes.notnull()
    payload = f.orig_bytes.fill_null(0) + f.resp_bytes.fill_null(0)
    ip_bytes = f.orig_ip_bytes.fill_null(0) + f.resp_ip_bytes.fill_null(0)
    # Without payload counters, a handful of header-sized packets is a handshake at most.
    empty = ibis.ifelse(known, payload == 0,
                        (pkts <= s.probe_max_packets) & (ip_bytes <= pkts * s.probe_header_bytes))
    failed = f.conn_state.isin(FAILED_STATES).fill_null(False) | (f.resp_pkts == 0).fill_null(False)
    probe = f.proto.isin(list(s.scan_protocols)) & (failed | ((f.proto == "tcp") & empty))
    svc = f.service.lower().fill_null("")
    login = f.resp_p.isin(list(s.brute_ports)) | ibis.or_(*[svc.contains(n) for n in s.brute_services])
    client = f.orig_bytes.coalesce(f.orig_ip_bytes).fill_null(0)
    attempt = (~probe & login & (f.duration.fill_null(0) <= s.brute_max_duration)
               & (client <= s.brute_max_bytes))
    return f.mutate(probe=probe, attempt=attempt, client_bytes=client)


def _common(t) -> dict:
    return dict(flows=t.count(), start=t.ts.min(), end=t.ts_end.max(),
                bytes_out=t.bytes_out.fill_null(0).sum(), tenant=t.tenant.max(),
                src_internal=t.orig_internal.any())


# -- the kinds, as candidate rows ----------------------------------------------------------------

def _horizontal(f, s: Settings) -> list[dict]:
    t = f.filter(f.proto.isin(list(s.scan_protocols)))
    nothing = ibis.null().cast("string")
    agg = (t.group_by(["orig_h", "proto", "resp_p"])
           .aggregate(count=ibis.ifelse(t.probe, t.resp_h, nothing).nunique(), total=t.resp_h.nunique(),
                      probes=t.probe.cast("int64").sum(), **_common(t))
           .filter(_.count >= s.horizontal_min_hosts))
    return [dict(r, kind="horizontal_scan", src=r["orig_h"], port=r["resp_p"],
                 target=f"{r['proto']}/{r['resp_p']}",
                 pred=(f.orig_h == r["orig_h"]) & (f.proto == r["proto"]) & (f.resp_p == r["resp_p"]) & f.probe)
            for r in rows(agg.order_by(["orig_h", "proto", "resp_p"]))]


def _vertical(f, s: Settings) -> list[dict]:
    t = f.filter(f.proto.isin(list(s.scan_protocols)))
    nothing = ibis.null().cast("int64")
    agg = (t.group_by(["orig_h", "resp_h"])
           .aggregate(count=ibis.ifelse(t.probe, t.resp_p.cast("int64"), nothing).nunique(),
                      total=t.resp_p.nunique(), probes=t.probe.cast("int64").sum(), **_common(t))
           .filter(_.count >= s.vertical_min_ports))
    return [dict(r, kind="vertical_scan", src=r["orig_h"], target=r["resp_h"],
                 pred=(f.orig_h == r["orig_h"]) & (f.resp_h == r["resp_h"]) & f.probe)
            for r in rows(agg.order_by(["orig_h", "resp_h"]))]


def _lateral(f, s: Settings) -> list[dict]:
    fams: dict[str, list[int]] = {}
    for p in s.lateral_ports:
        fams.setdefault(PORT_CHANNELS.get(p, f"port {p}"), []).append(p)
    t = f.filter((f.direction == "internal") & f.resp_p.isin(list(s.lateral_ports)))
    t = t.mutate(family=ibis.cases(*[(t.resp_p.isin(ps), name) for name, ps in fams.items()]))
    nothing = ibis.null().cast("string")
    agg = (t.group_by(["orig_h", "family"])
           .aggregate(count=t.resp_h.nunique(), failed=ibis.ifelse(t.probe, t.resp_h, nothing).nunique(),
                      **_common(t))
           .filter(_.count >= s.lateral_min_hosts))
    return [dict(r, kind="lateral_fanout", src=r["orig_h"], target=r["family"], ports=fams[r["family"]],
                 pred=(f.orig_h == r["orig_h"]) & (f.direction == "internal")
                 & f.resp_p.isin(fams[r["family"]]))
            for r in rows(agg.order_by(["orig_h", "family"]))]


def _brute(f, s: Settings) -> list[dict]:
    by = ["orig_h", "resp_h", "resp_p"]
    t = f.filter(f.attempt)
    agg = t.group_by(by).aggregate(count=_.count(), **_common(t)).filter(_.count >= s.brute_min_attempts)
    cand = t.semi_join(agg, by)
    # Failed logins look alike: a small spread of the client's bytes around their median.
    base = robust_baseline(cand, by, "client_bytes").select(*by, "median", "mad")
    out = []
    for r in rows(agg.join(base, by).order_by(by)):
        spread = (r["mad"] or 0) / r["median"] if r["median"] else 1.0
        if spread <= s.brute_max_spread:
            out.append(dict(r, kind="brute_force", src=r["orig_h"], target=f"{r['resp_h']}:{r['resp_p']}",
                            spread=spread, hosts=[r["resp_h"]],
                            pred=(f.orig_h == r["orig_h"]) & (f.resp_h == r["resp_h"])
                            & (f.resp_p == r["resp_p"]) & f.attempt))
    return out


def _fold_brute(f, cands: list[dict], s: Settings) -> list[dict]:
    """Guessing on more than ``max_targets`` hosts on one port becomes one finding for that port."""
    groups: dict[tuple, list[dict]] = {}
    for c in cands:
        groups.setdefault((c["src"], c["resp_p"]), []).append(c)
    out = []
    for (src, port), cs in groups.items():
        if len(cs) <= s.max_targets:
            out.extend(cs)
            continue
        m = _merge(cs)
        out.append(dict(m, kind="brute_force", src=src, target=f"*:{port}", resp_p=port,
                        count=sum(c["count"] for c in cs), hosts=sorted(c["resp_h"] for c in cs),
                        spread=max(c["spread"] for c in cs), median=cs[0]["median"],
                        pred=(f.orig_h == src) & (f.resp_p == port) & f.attempt))
    return out


def _merge(cs: list[dict]) -> dict:
    return dict(flows=sum(c["flows"] for c in cs), start=min(c["start"] for c in cs),
                end=max(c["end"] or c["start"] for c in cs), bytes_out=sum(c["bytes_out"] for c in cs),
                tenant=cs[0]["tenant"], src_internal=cs[0]["src_internal"])


def _blocks(f, s: Settings, scans: list[dict]) -> list[dict]:
    """Fold sources with too many scan findings into one block scan; add thinly spread ones."""
    t = f.filter(f.probe)
    pair = t.resp_h + ":" + t.resp_p.cast("string")
    agg = (t.group_by("orig_h")
           .aggregate(count=pair.nunique(), hosts=t.resp_h.nunique(), ports=t.resp_p.nunique(),
                      probes=_.count(), **_common(t)))
    per: dict[str, list[dict]] = {}
    for c in scans:
        per.setdefault(c["src"], []).append(c)
    crowded = [src for src, cs in per.items() if len(cs) > s.max_targets]
    keep = [c for c in scans if c["src"] not in crowded]
    wanted = agg.filter(agg.orig_h.isin(crowded) | ((agg.count >= s.block_min_targets)
                                                    & ~agg.orig_h.isin(list(per) or [""])))
    blocks = [dict(r, kind="block_scan", src=r["orig_h"], target="*", folded=len(per.get(r["orig_h"], [])),
                   pred=(f.orig_h == r["orig_h"]) & f.probe)
              for r in rows(wanted.order_by("orig_h"))]
    return keep + blocks


# -- findings ------------------------------------------------------------------------------------

def _limits(kind: str, s: Settings) -> tuple[float, float]:
    return {"horizontal_scan": (s.horizontal_min_hosts, s.horizontal_high_hosts),
            "vertical_scan": (s.vertical_min_ports, s.vertical_high_ports),
            "block_scan": (s.block_min_targets, s.block_high_targets),
            "brute_force": (s.brute_min_attempts, s.brute_high_attempts),
            "lateral_fanout": (s.lateral_min_hosts, s.lateral_high_hosts)}[kind]


def _score(c: dict, s: Settings, rate: float) -> dict[str, float]:
    lo, hi = _limits(c["kind"], s)
    parts = {"breadth": 10 + 30 * ramp(c["count"], lo, hi), "speed": 20 * ramp(rate, s.slow_rate, s.fast_rate)}
    if c["kind"] == "brute_force":
        parts["alike"] = 10 * (1 - min(1.0, c["spread"] / s.brute_max_spread)) if s.brute_max_spread else 0
    else:
        parts["failed"] = 10 * _failed_share(c)
    if c["src_internal"]:
        parts["internal_source"] = s.internal_source_points
    return parts


def _failed_share(c: dict) -> float:
    if c["kind"] == "lateral_fanout":
        return c["failed"] / c["count"]
    if c["kind"] == "block_scan":
        return 1.0  # only failed probes are counted
    return c["count"] / c["total"] if c["total"] else 1.0


def _span_text(sec: float) -> str:
    if sec < 120:
        return f"{sec:.0f} s"
    return f"{sec / 60:.0f} min" if sec < 7200 else f"{sec / 3600:.1f} h"


def _explain(c: dict, span: str, rate: float, listed: list) -> str:
    src, k = c["src"], c["kind"]
    per = f"{rate:.0f} per minute"
    if k == "horizontal_scan":
        return (f"{src} probed {c['target']} on {c['count']} hosts without getting data back "
                f"({c['total']} contacted on that port) in {span}, {per}.")
    if k == "vertical_scan":
        return (f"{src} probed {c['count']} ports on {c['target']} without getting data back "
                f"({c['total']} ports contacted) in {span}, {per}.")
    if k == "block_scan":
        return (f"{src} probed {c['count']} host:port pairs ({c['hosts']} hosts, {c['ports']} ports) "
                f"without getting data back in {span}, {per}.")
    if k == "brute_force":
        where = c["target"] if not c["target"].startswith("*") else f"{len(c['hosts'])} hosts on port {c['resp_p']}"
        return (f"{src} opened {c['count']} short login-sized connections to {where} in {span} ({per}), "
                f"client bytes {c['median']:.0f} with a spread of {100 * c['spread']:.0f}%: password guessing.")
    return (f"{src} reached {c['count']} internal hosts over {c['target']} in {span} ({per}), "
            f"{c['failed']} of them without getting data back.")


def _targets(f, c: dict, s: Settings) -> list:
    """The listed targets: ports of a vertical scan, hosts otherwise."""
    if c["kind"] == "brute_force":
        return c["hosts"][: s.max_listed]
    col = "resp_p" if c["kind"] == "vertical_scan" else "resp_h"
    t = f.filter(c["pred"]).select(col).distinct().order_by(col).limit(s.max_listed)
    return [r[col] for r in rows(t)]


def _finding(f, c: dict, s: Settings) -> Finding:
    end = c["end"] or c["start"]
    sec = max(0.0, (end - c["start"]).total_seconds())
    rate = c["count"] / max(sec / 60, 1.0)  # a burst under a minute counts as one minute
    listed = _targets(f, c, s)
    hosts = [c["target"]] if c["kind"] == "vertical_scan" else [str(h) for h in listed]
    ev = evidence_uids(f, c["pred"], s.max_evidence, order="ts")
    if c["src_internal"]:
        internal, external = [c["src"]], [h for h in hosts if not _is_internal_target(f, c, h)]
    else:
        internal, external = hosts, [c["src"]]
    lo, hi = _limits(c["kind"], s)
    attack = FAMILY_ATTACK.get(c["target"], ["T1021"]) if c["kind"] == "lateral_fanout" else KIND_ATTACK[c["kind"]]
    return Finding(
        detection=META.id,
        key=(c["src"], c["kind"], c["target"]),
        score_parts=_score(c, s, rate),
        explanation=_explain(c, _span_text(sec), rate, listed),
        internal_hosts=internal, external_hosts=external,
        channel=_channel(c), start=c["start"], end=end, bytes_out=c["bytes_out"],
        evidence={"flows": c["flows"], "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics=_metrics(c, sec, rate, listed),
        thresholds={"min": lo, "high": hi, "slow_rate": s.slow_rate, "fast_rate": s.fast_rate},
        attack=attack, tenant=c["tenant"],
    )
