"""Protocol mismatches: what the sensor saw in the payload against what the port promises.

Firewalls let port 443, 53 and 80 out; tunnels and C2 channels use that (a shell over
cleartext on 443, SSH or a VPN on 443, DNS-port traffic that is not DNS), and implants speak
TLS or SSH on ports nobody expects. nDPI (pcap), Zeek and Suricata identify the protocol from
the payload; the flow's ``service`` holds what they saw, empty ("") when they looked and
identified nothing (a guess from the port is never a service), null when the sensor does not
look at payload (NetFlow: never judged here). Per internal host, destination and port the
detection names each mismatch of the outbound connections:

``not_tls``          something other than TLS/QUIC on a TLS-only port (443)
``not_dns``          something other than DNS on port 53
``not_http``         something other than HTTP on port 80
``tls_odd_port``     TLS on a port not in ``tls_ports`` (TCP)
``ssh_odd_port``     SSH on a port not in ``ssh_ports``
``unknown_held_open`` an unidentified protocol with data both ways, held open for
                     ``unknown_min_seconds`` or more in total (any port)

"Unidentified" counts only for TCP connections whose handshake was seen (Zeek's history,
where the sensor records it) and that carried at least ``min_payload_bytes`` each way: a
connection cut off after the client's first bytes or picked up mid-stream proves nothing (Zeek
cannot name TLS it joined in the middle, so such flows are not judged). Slips
reports non-HTTP on 80 and non-SSL on 443 the same way; RITA has no such check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ._stats import evidence_uids, human_bytes, ramp, rows

META = Meta(
    id="protocol_mismatch",
    title="Protocol does not match its port (tunnel or non-standard port)",
    attack=("T1571", "T1572"),
    description="Outbound connections whose protocol, as nDPI, Zeek or Suricata identified it from "
                "the payload, is not the one the port stands for: not TLS on 443, not DNS on 53, "
                "not HTTP on 80, TLS or SSH on unusual ports, or an unidentified protocol held "
                "open: tunnels and C2 channels hidden behind ports a firewall lets out.",
    runbook="1. Look at the evidence flows: which protocol was seen, on which port, how long and how "
            "much went out. 2. Find the process on the host holding the connection (ss -tnp, "
            "Sysmon event 3); SSH, VPN or a raw socket on 443 from a workstation is rarely "
            "sanctioned. 3. If unexplained, block the destination and isolate the host; if it is a "
            "sanctioned service on an odd port, allowlist the destination.",
    channel="tunnel",
    inputs=("flows",),
)

#: Identified protocols that are TLS (nDPI names, Zeek's ssl, Suricata's tls; nDPI app names
#: such as tls.google count by their master protocol before the dot).
TLS_NAMES = ("tls", "ssl", "quic", "dtls", "doh_dot")
DNS_NAMES = ("dns",)
HTTP_NAMES = ("http", "http2", "http_proxy", "http_connect", "http_download", "ocsp")
SSH_NAMES = ("ssh",)


@dataclass(frozen=True)
class Settings:
    tls_only_ports: tuple = field(default=(443,), metadata={
        "help": "Ports on which anything but TLS or QUIC is a mismatch (not_tls)."})
    dns_ports: tuple = field(default=(53,), metadata={
        "help": "Ports on which anything but DNS is a mismatch (not_dns)."})
    http_ports: tuple = field(default=(80,), metadata={
        "help": "Ports on which anything but HTTP is a mismatch (not_http)."})
    tls_ports: tuple = field(default=(443, 8443, 4443, 9443, 10443, 465, 563, 587, 636, 853, 989, 990, 992,
                                      993, 994, 995, 2083, 2087, 3269, 3389, 5061, 5223, 5228, 5671, 6443,
                                      6697, 8883), metadata={
        "help": "Ports where TLS is expected; TLS over TCP on any other port is tls_odd_port."})
    ssh_ports: tuple = field(default=(22,), metadata={
        "help": "Ports where SSH is expected; SSH on any other port is ssh_odd_port."})
    min_payload_bytes: int = field(default=1, metadata={
        "help": "Payload bytes each direction must carry before an unidentified protocol counts "
                "(estimated from IP bytes where the sensor gives no payload): data both ways, so "
                "the sensor had a dialogue to identify; 5 bytes out and 3 back on port 80 are not HTTP."})
    unknown_min_seconds: float = field(default=600.0, metadata={
        "help": "Summed duration from which unidentified TCP traffic to one destination and port is "
                "unknown_held_open (the issue's example: a line protocol held open 10 minutes)."})
    unknown_high_seconds: float = field(default=14400.0, metadata={
        "help": "Summed duration that gives the full duration points."})
    mismatch_points: float = field(default=45.0, metadata={
        "help": "Points for an identified protocol on a port that stands for another (not_tls, "
                "not_dns, not_http with a protocol named)."})
    unidentified_points: float = field(default=35.0, metadata={
        "help": "Points for unidentified traffic on a port that stands for a protocol the sensors "
                "always recognise (443, 53, 80)."})
    odd_port_points: float = field(default=30.0, metadata={
        "help": "Points for TLS or SSH on an unusual port."})
    held_open_points: float = field(default=25.0, metadata={
        "help": "Points for unknown_held_open."})
    duration_points: float = field(default=15.0, metadata={
        "help": "Points at unknown_high_seconds of summed duration (log scale from 60 s)."})
    volume_points: float = field(default=15.0, metadata={
        "help": "Points at bytes_high bytes out (log scale from 10 KB)."})
    bytes_high: float = field(default=100e6, metadata={
        "help": "Bytes out that give the full volume points."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})


def _family(names: tuple[str, ...], only: bool = False) -> str:
    """A regex over ``service`` (comma-separated, app names after a dot): one part is in
    ``names``; with ``only`` every part is."""
    part = f"(?:{'|'.join(names)})(?:\\.[^,]*)?"
    return f"^{part}(?:,{part})*$" if only else f"(?:^|,){part}(?:,|$)"


def _payload(bytes_, ip_bytes, pkts):
    """Payload bytes where the sensor measures them, else IP bytes less 52 per packet (IPv4+TCP
    with timestamps), never below 0."""
    est = ip_bytes.cast("float64") - pkts.cast("float64").fill_null(0) * 52  # float: no overflow
    return bytes_.cast("float64").coalesce(ibis.greatest(est, 0)).fill_null(0)


def _classified(tel: Telemetry, s: Settings):
    f = tel.flows.filter((tel.flows.direction == "outbound") & tel.flows.service.notnull()
                         & tel.flows.proto.isin(["tcp", "udp"]) & tel.flows.resp_p.notnull())
    svc = f.service.lower()
    port, tcp = f.resp_p, f.proto == "tcp"
    unknown = ((svc == "") & tcp
               & (_payload(f.orig_bytes, f.orig_ip_bytes, f.orig_pkts) >= s.min_payload_bytes)
               & (_payload(f.resp_bytes, f.resp_ip_bytes, f.resp_pkts) >= s.min_payload_bytes)
               # a connection picked up mid-stream cannot be identified: its handshake must be seen
               & (f.history.isnull() | (f.history.contains("S") & f.history.contains("h"))))
    named = svc != ""

    def wrong(ports, names):
        if not ports:
            return ibis.literal(False)
        on = port.isin(list(ports))
        return on & ((named & ~svc.re_search(_family(names))) | unknown)

    tls_only = svc.re_search(_family(TLS_NAMES, only=True))
    # an odd port is one that stands for nothing: SSH on 443 is not_tls, said once
    promised = list(s.tls_only_ports) + list(s.dns_ports) + list(s.http_ports)
    odd = ~port.isin(promised or [-1])
    return f.mutate(
        svc=svc, unknown=unknown,
        not_tls=wrong(s.tls_only_ports, TLS_NAMES), not_dns=wrong(s.dns_ports, DNS_NAMES),
        not_http=wrong(s.http_ports, HTTP_NAMES),
        tls_odd_port=named & tcp & tls_only & odd & ~port.isin(list(s.tls_ports) or [-1]),
        ssh_odd_port=named & svc.re_search(_family(SSH_NAMES)) & odd & ~port.isin(list(s.ssh_ports) or [-1]),
        secs=f.duration.fill_null(0))


REASONS = ("not_tls", "not_dns", "not_http", "tls_odd_port", "ssh_odd_port")
KEYS = ["internal_host", "external_host", "proto", "resp_p"]


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    f = _classified(tel, s)
    agg = {r: f[r].cast("int64").sum() for r in REASONS}
    groups = (f.group_by(KEYS).aggregate(
        **agg, unknown_flows=f.unknown.cast("int64").sum(),
        unknown_seconds=(f.secs * f.unknown.cast("float64")).sum(), flows=_.count(),
        seconds=f.secs.sum(), bytes_out=f.bytes_out.sum(), bytes_in=f.bytes_in.sum(),
        start=f.ts.min(), end=f.ts_end.max(), name=f.external_name.max(), tenant=f.tenant.max(),
        services=f.svc.collect(distinct=True))
        .filter(ibis.or_(*[_[r] > 0 for r in REASONS], _.unknown_seconds >= s.unknown_min_seconds)))
    out = []
    for r in rows(groups.order_by(KEYS)):
        out.append(_finding(f, r, s))
    return out


def _finding(f, r: dict, s: Settings) -> Finding:
    reasons = [x for x in REASONS if r[x]]
    held = r["unknown_seconds"] >= s.unknown_min_seconds
    if held:
        reasons.append("unknown_held_open")
    services = sorted({x for x in r["services"] or [] if x})
    seen = services + (["unidentified"] if r["unknown_flows"] else [])
    points = {}
    for x in reasons:
        if x in ("not_tls", "not_dns", "not_http"):
            # all flows of the group share the port: those not unidentified had a wrong protocol named
            points[x] = s.mismatch_points if r[x] > r["unknown_flows"] else s.unidentified_points
        else:
            points[x] = s.odd_port_points if x.endswith("odd_port") else s.held_open_points
    # One connection can be not_tls and held open at once: the strongest reason counts fully,
    # further ones a third, so the score says "several signs" without counting one twice.
    ranked = sorted(points, key=lambda x: (-points[x], x))
    parts = {x: points[x] if i == 0 else points[x] / 3 for i, x in enumerate(ranked)}
    if r["unknown_flows"]:
        parts["duration"] = s.duration_points * ramp(r["unknown_seconds"], 60.0, s.unknown_high_seconds)
    parts["volume"] = s.volume_points * ramp(r["bytes_out"], 1e4, s.bytes_high)
    host, peer, port = r["internal_host"], r["external_host"], r["resp_p"]
    dest = r["name"] or peer
    ev = evidence_uids(f, (f.internal_host == host) & (f.external_host == peer) & (f.resp_p == port)
                       & (f.proto == r["proto"]), s.max_evidence, order="duration")
    return Finding(
        detection=META.id, key=(host, peer, f"{r['proto']}/{port}"), score_parts=parts,
        explanation=(f"{host} spoke {', '.join(seen) or 'an unidentified protocol'} to {dest} on "
                     f"{r['proto']}/{port} ({'; '.join(_WORDS[x] for x in reasons)}) in {r['flows']} connection(s), "
                     f"{r['seconds'] / 60:.1f} min in total, and sent {human_bytes(r['bytes_out'])}."),
        internal_hosts=[host], external_hosts=[peer], external_names=[r["name"]] if r["name"] else [],
        channel=f"{r['proto']}/{port}", start=r["start"], end=r["end"], bytes_out=r["bytes_out"],
        evidence={"flows": r["flows"], "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics={"reasons": reasons, "services": seen, "port": port, "flows": r["flows"],
                 "unidentified_flows": r["unknown_flows"], "seconds": round(r["seconds"], 1),
                 "unidentified_seconds": round(r["unknown_seconds"], 1), "bytes_out": r["bytes_out"],
                 "bytes_in": r["bytes_in"], **{x: r[x] for x in REASONS if r[x]}},
        thresholds={"min_payload_bytes": s.min_payload_bytes, "unknown_min_seconds": s.unknown_min_seconds},
        tenant=r["tenant"],
    )


_WORDS = {"not_tls": "not TLS on a TLS port", "not_dns": "not DNS on the DNS port",
          "not_http": "not HTTP on the HTTP port", "tls_odd_port": "TLS on an unusual port",
          "ssh_odd_port": "SSH on an unusual port", "unknown_held_open": "unidentified, held open"}

