"""Encapsulation tunnels (GRE, IP-in-IP, Teredo, VXLAN, Geneve, AYIYA ...) with an internal end,
per pair of endpoints and tunnel type.

Two kinds of telemetry show them, merged per (internal end, other end, type):

- the ``tunnels`` table: what the sensor decapsulated (Zeek tunnel.log: ``Tunnel::GRE``,
  ``Tunnel::IP``, ``Tunnel::TEREDO`` ...);
- the ``flows`` table: the outer flows themselves, by IP protocol (47 GRE, 4 IP-in-IP, 41 IPv6-in-IPv4)
  or by the service the sensor named (nDPI's ``teredo``, ``gre``, ``vxlan``) — which is what a
  packet capture, NetFlow or Suricata give.

Traffic inside a tunnel escapes filters and inspection that look at the outer addresses only:
a tunnel to the internet from a host that is no VPN gateway is a way out. HTTP CONNECT
tunnels through a proxy (Zeek's ``Tunnel::HTTP``) are proxy use, not encapsulation, and are not
reported; ``types`` lists what is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ._stats import rows

META = Meta(
    id="tunnel_encapsulation",
    title="Encapsulation tunnel (GRE, IP-in-IP, Teredo, VXLAN) with an internal end",
    attack=("T1572", "T1095"),
    description="An internal host sending or receiving encapsulated traffic (GRE, IP-in-IP, 6in4, Teredo, "
                "VXLAN, Geneve): packets inside the tunnel pass firewalls and inspection that check the outer "
                "addresses only. Site-to-site VPN gateways do this by design; any other host doing it, above "
                "all with an external end, is building a way out.",
    runbook="1. Is the internal end a VPN gateway or router configured for this tunnel (network "
            "documentation)? Then allowlist the pair. "
            "2. Otherwise find the process or interface on the host (ip tunnel show, netsh interface "
            "teredo show state); Teredo on a workstation is usually an old Windows default: disable it. "
            "3. Block the protocol at the perimeter (IP protocols 47, 4, 41; UDP 3544, 4789, 6081) "
            "except for the known gateways.",
    channel="tunnel",
    inputs=("flows", "tunnels"),
)

#: Tunnel types by IP protocol number (as the flows table writes it: a name or the number).
PROTO_TYPES = {"gre": "gre", "47": "gre", "4": "ip-in-ip", "ipip": "ip-in-ip", "ipencap": "ip-in-ip",
               "41": "ip-in-ip", "ipv6": "ip-in-ip"}
#: Tunnel types by the service name a sensor gives the outer flow (substring of ``service``).
SERVICE_TYPES = {"teredo": "teredo", "vxlan": "vxlan", "geneve": "geneve", "ayiya": "ayiya", "gre": "gre",
                 "gtp": "gtpv1"}


@dataclass(frozen=True)
class Settings:
    types: tuple = field(default=("gre", "ip-in-ip", "teredo", "vxlan", "geneve", "ayiya", "gtpv1"), metadata={
        "help": "Tunnel types reported (Zeek's names, lower case; ip-in-ip covers 4in4 and 6in4). http "
                "(CONNECT through a proxy) is not encapsulation."})
    base_points: float = field(default=30.0, metadata={
        "help": "Points of any tunnel with an internal end (low: gateways tunnel by design)."})
    external_points: float = field(default=15.0, metadata={
        "help": "Points added when the other end is external: a tunnel out of the network."})
    ports: tuple = field(default=(3544, 4789, 6081, 5072), metadata={
        "help": "UDP ports of encapsulations (Teredo, VXLAN, Geneve, AYIYA) whose flows count when the "
                "sensor named no service."})
    port_types: tuple = field(default=("teredo", "vxlan", "geneve", "ayiya"), metadata={
        "help": "The tunnel type of each of ``ports``, in the same order."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    cands: dict[tuple, dict] = {}
    for r in _from_tunnels(tel, s) + _from_flows(tel, s):
        a, b = (r["orig_h"], r["resp_h"]) if r["orig_internal"] or not r["resp_internal"] else (r["resp_h"], r["orig_h"])
        c = cands.setdefault((a, b, r["tunnel_type"]), dict(
            inside=a, outside=b, tunnel_type=r["tunnel_type"], start=r["start"], end=r["end"], flows=0, records=0,
            bytes_out=0, packets=0, external=False, tenant=r["tenant"], uids=[], sources=set()))
        c["start"], c["end"] = min(c["start"], r["start"]), max(c["end"], r["end"])
        c["flows"] += r.get("flows") or 0
        c["records"] += r.get("records") or 0
        c["bytes_out"] += r.get("bytes_out") or 0
        c["packets"] += r.get("packets") or 0
        c["external"] = c["external"] or not (r["orig_internal"] and r["resp_internal"])
        c["uids"] += [u for u in (r.get("uid"),) if u]
        c["sources"].add(r["source"])
    return [_finding(c, s) for _k, c in sorted(cands.items())]


def _from_tunnels(tel: Telemetry, s: Settings) -> list[dict]:
    t = tel.tunnels
    if t is None:
        return []
    t = t.filter(t.tunnel_type.isin(list(s.types) or [""]) & (t.orig_internal | t.resp_internal)
                 & ~t.allowlisted & t.orig_h.notnull() & t.resp_h.notnull())
    agg = (t.group_by(["orig_h", "resp_h", "tunnel_type"])
           .aggregate(start=t.ts.min(), end=t.ts.max(), records=_.count(), packets=t.packets.fill_null(0).sum(),
                      uid=t.uid.min(), tenant=t.tenant.max(), orig_internal=t.orig_internal.any(),
                      resp_internal=t.resp_internal.any()))
    return [dict(r, source="tunnels") for r in rows(agg.order_by(["orig_h", "resp_h", "tunnel_type"]))]


def _from_flows(tel: Telemetry, s: Settings) -> list[dict]:
    f = tel.flows
    proto = f.proto.lower().fill_null("")
    svc = f.service.lower().fill_null("")
    by_port = list(zip(s.ports, s.port_types))
    kind = ibis.cases(
        *[(proto == p, t) for p, t in PROTO_TYPES.items()],
        *[(svc.contains(n), t) for n, t in SERVICE_TYPES.items()],
        *[((proto == "udp") & ((f.resp_p == p) | (f.orig_p == p)), t) for p, t in by_port],
        else_=ibis.null().cast("string"))
    f = f.mutate(tunnel_type=kind)
    f = f.filter(f.tunnel_type.isin(list(s.types) or [""]) & f.direction.isin(["outbound", "inbound", "internal"]))
    agg = (f.group_by(["orig_h", "resp_h", "tunnel_type"])
           .aggregate(start=f.ts.min(), end=f.ts_end.max(), flows=_.count(), bytes_out=f.bytes_out.fill_null(0).sum(),
                      packets=(f.orig_pkts.fill_null(0) + f.resp_pkts.fill_null(0)).sum(), uid=f.uid.min(),
                      tenant=f.tenant.max(), orig_internal=f.orig_internal.any(), resp_internal=f.resp_internal.any()))
    return [dict(r, source="flows") for r in rows(agg.order_by(["orig_h", "resp_h", "tunnel_type"]))]


def _finding(c: dict, s: Settings) -> Finding:
    parts = {"tunnel": s.base_points}
    if c["external"]:
        parts["external_end"] = s.external_points
    seen = " and ".join(sorted({"flows": "flow records", "tunnels": "the sensor's decapsulation"}[x]
                               for x in c["sources"]))
    return Finding(
        detection=META.id,
        key=(c["inside"], c["tunnel_type"], c["outside"]),
        score_parts=parts,
        explanation=(f"{c['inside']} has a {c['tunnel_type'].upper()} tunnel with {c['outside']}"
                     f"{' (external)' if c['external'] else ''}, seen in {seen}"
                     + (f": {c['flows']} outer flows, {c['packets']} packets." if c["flows"] else ".")),
        internal_hosts=[c["inside"]] + ([] if c["external"] else [c["outside"]]),
        external_hosts=[c["outside"]] if c["external"] else [],
        channel=c["tunnel_type"], start=c["start"], end=c["end"], bytes_out=c["bytes_out"],
        evidence={"flows": c["flows"], "tunnel_records": c["records"], "top_flows": sorted(set(c["uids"])),
                  "community_ids": []},
        metrics={"count": c["flows"] + c["records"], "flows": c["flows"], "tunnel_records": c["records"],
                 "packets": c["packets"], "sources": sorted(c["sources"])},
        thresholds={},
        attack=["T1572"] if c["tunnel_type"] in ("teredo", "vxlan", "geneve", "ayiya", "gtpv1") else ["T1572", "T1095"],
        tenant=c["tenant"],
    )
