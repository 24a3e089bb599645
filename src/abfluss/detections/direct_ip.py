"""Direct-IP connections: an internal host talking to an external address that no DNS answer named.

Software people use reaches its servers by name: the resolver is asked first and the
connection goes to an address in the answer (or names the server in its TLS SNI or HTTP Host).
Implants often carry their C2 addresses hard-coded and skip DNS altogether, so the traffic
stands out exactly where DNS telemetry is complete. Per internal host and external address,
this detection collects answered TCP/UDP connections the host opened where

- no DNS answer in the window named the address (any client's, any server's: a shared cache
  answers for all) and the flow carries no server name of its own (SNI, Host, or the name the
  resolvers' answers give the address anywhere in the workspace);
- the host's own DNS is visible: it asked at least ``min_host_queries`` questions in the window,
  and the connection started between ``warmup_seconds`` after its first question (an answer
  cached from before the window is not seen) and ``tail_seconds`` after its last one.

Where DNS telemetry does not cover the host and time (a NetFlow-only sensor, a capture without
the resolver's traffic, a host on DNS over HTTPS without plain queries), the detection stays
silent rather than call every connection direct. Infrastructure that works by address is left
out by port (``excluded_ports``: DNS, NTP, DHCP, mDNS, SSDP, STUN). Low on its own; many
connections and much data out raise it to medium.

A host with more unnamed addresses than ``max_addresses`` gets one finding for all of them
(key ``(host, "*")``, the ``max_listed`` with most bytes out listed): hard-coded C2 is a handful
of addresses, hundreds are peer-to-peer software, DNS over HTTPS or look-ups the telemetry
misses, and one finding per address made 184,050 findings (and most of the detection's time)
on the 10-million-flow benchmark.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import ibis
from ibis import _

from ..findings import Finding
from ..units import count
from . import Meta, Telemetry
from ._stats import channel, human_bytes, largest_flows, main_channel, ramp, rows

META = Meta(
    id="direct_ip",
    title="Connections to an external address no DNS answer named",
    attack=("T1071", "T1571", "T1095"),
    description="An internal host whose DNS look-ups are visible opened connections to an external "
                "address that none of the window's DNS answers named and that no server name "
                "(SNI, HTTP Host) identifies: a hard-coded C2 address.",
    runbook="1. Look up the address (owner, reputation, other hosts talking to it). 2. Find the "
            "process on the host that made the connections (EDR, ss -tnp): software with a "
            "hard-coded address is rare outside of peer-to-peer, VoIP and appliances. 3. If it is "
            "not explained, block the address at the egress and check the host's other findings.",
    inputs=("dns", "flows"),
)

PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True)
class Settings:
    min_host_queries: int = field(default=5, metadata={
        "help": "DNS questions the host must have asked in the window for its DNS to count as visible; "
                "below, its connections are not judged."})
    warmup_seconds: float = field(default=600.0, metadata={
        "help": "Seconds after the host's first DNS question before its connections are judged (answers "
                "cached from before the window are not seen)."})
    tail_seconds: float = field(default=3600.0, metadata={
        "help": "Seconds after the host's last DNS question up to which its connections are judged."})
    excluded_ports: tuple = field(default=(53, 853, 123, 67, 68, 137, 138, 5353, 1900, 3478, 19302), metadata={
        "help": "Server ports of infrastructure that works by address (DNS, DoT, NTP, DHCP, NetBIOS, mDNS, "
                "SSDP, STUN): never judged."})
    base_points: float = field(default=25.0, metadata={"help": "Points for any direct-IP connection (low)."})
    repeat_points: float = field(default=15.0, metadata={
        "help": "Points added, on a log scale, from 2 to high_flows connections."})
    high_flows: int = field(default=50, metadata={"help": "Connections that give the full repeat points."})
    volume_points: float = field(default=20.0, metadata={
        "help": "Points added, on a log scale, from volume_low to volume_high bytes out."})
    volume_low: float = field(default=10_000.0, metadata={"help": "Bytes out from which volume points start."})
    volume_high: float = field(default=10_000_000.0, metadata={"help": "Bytes out that give the full volume points."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})
    max_addresses: int = field(default=20, metadata={
        "help": "Unnamed external addresses of one host above which they make one finding for the host "
                "(peer-to-peer, DNS over HTTPS or missing DNS telemetry rather than hard-coded C2)."})
    max_listed: int = field(default=10, metadata={"help": "Addresses listed in a host's folded finding."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    d = tel.dns
    if d is None or tel.flows is None:
        return []
    cover = (d.filter(d.client_internal).group_by(host=d.orig_h)
             .aggregate(queries=_.count(), first_q=_.ts.min(), last_q=_.ts.max()))
    cover = cover.filter(cover.queries >= s.min_host_queries)
    named = d.select(value=d.answers.unnest()).distinct()
    f = tel.flows
    f = f.filter((f.direction == "outbound") & f.proto.isin(PROTOCOLS)
                 & ~f.resp_p.isin([int(p) for p in s.excluded_ports])
                 & (f.bytes_in.fill_null(0) > 0) & f.external_name.isnull())
    f = f.join(cover, f.internal_host == cover.host)
    warm = ibis.interval(seconds=int(s.warmup_seconds))
    tail = ibis.interval(seconds=int(s.tail_seconds))
    f = f.filter((f.ts >= f.first_q + warm) & (f.ts <= f.last_q + tail))
    f = f.anti_join(named, f.external_host == named.value)
    unnamed = f.select("internal_host", "external_host", "resp_p", "ts", "ts_end", "bytes_out", "bytes_in", "tenant",
                 "uid", "community_id", "queries", channel=channel(f.service, f.proto, f.resp_p))
    # The unnamed connections are read four times below (hosts to fold, their top addresses,
    # the pairs, the evidence): computed once, not a join with DNS per query.
    key = hashlib.sha256(repr((s.min_host_queries, s.warmup_seconds, s.tail_seconds,
                               s.excluded_ports)).encode()).hexdigest()[:16]
    f = tel.shared(f"direct_ip_{key}", lambda: unnamed)
    per_host = f.group_by("internal_host").aggregate(addresses=f.external_host.nunique())
    many = per_host.filter(per_host.addresses > s.max_addresses)
    folded = _folded(f.semi_join(many, "internal_host"), s)
    f = f.anti_join(many, "internal_host")
    groups = rows(f.group_by(["internal_host", "external_host", "channel"])
                  .aggregate(flows=_.count(), bytes_out=_.bytes_out.sum(), bytes_in=_.bytes_in.sum(),
                             start=_.ts.min(), end=_.ts_end.max(), tenant=_.tenant.max(),
                             queries=_.queries.max(), ports=_.resp_p.nunique())
                  .order_by(["internal_host", "external_host", "channel"]))
    if not groups:
        return folded
    pairs: dict[tuple, list] = {}
    for g in groups:
        pairs.setdefault((g["internal_host"], g["external_host"]), []).append(g)
    ev = largest_flows(f, [{"internal_host": h, "external_host": x} for h, x in pairs],
                       ["internal_host", "external_host"], s.max_evidence)
    found = [_finding(h, x, gs, ev.get((h, x), []), s) for (h, x), gs in sorted(pairs.items())]
    return sorted(found + folded, key=lambda f: f.key)


def _folded(f, s: Settings) -> list[Finding]:
    """One finding per host with more than ``max_addresses`` unnamed addresses."""
    hosts = rows(f.group_by("internal_host")
                 .aggregate(flows=_.count(), bytes_out=_.bytes_out.sum(), bytes_in=_.bytes_in.sum(),
                            addresses=_.external_host.nunique(), start=_.ts.min(), end=_.ts_end.max(),
                            tenant=_.tenant.max(), queries=_.queries.max())
                 .order_by("internal_host"))
    if not hosts:
        return []
    top = (f.group_by(["internal_host", "external_host"])
           .aggregate(bytes_out=_.bytes_out.sum(), flows=_.count(), channel=_.channel.max()))
    top = top.mutate(less=-top.bytes_out.fill_null(0))  # most data first, then the address
    w = ibis.window(group_by=[top.internal_host], order_by=[top.less, top.external_host])
    top = top.mutate(rank=ibis.row_number().over(w))
    listed: dict[str, list[dict]] = {}
    for r in rows(top.filter(top.rank < s.max_listed).order_by(["internal_host", "rank"])):
        listed.setdefault(r["internal_host"], []).append(r)
    ev = largest_flows(f, [{"internal_host": h["internal_host"]} for h in hosts], ["internal_host"], s.max_evidence)
    return [_host_finding(h, listed.get(h["internal_host"], []), ev.get((h["internal_host"],), []), s) for h in hosts]


def _host_finding(h: dict, top: list[dict], ev: list[dict], s: Settings) -> Finding:
    host, n, out_b = h["internal_host"], h["flows"], h["bytes_out"] or 0
    parts = {"direct": s.base_points, "repeated": s.repeat_points * ramp(n, 2, s.high_flows),
             "volume": s.volume_points * ramp(out_b, s.volume_low, s.volume_high)}
    shown = ", ".join(t["external_host"] for t in top[:3])
    sentence = (f"{host} opened {count(n, 'connection')} to {count(h['addresses'], 'destination')} that no "
                f"DNS answer named (most data to {shown}), sending {human_bytes(out_b)} and receiving "
                f"{human_bytes(h['bytes_in'] or 0)}, while its other traffic was resolved "
                f"({count(h['queries'], 'lookup')} in the window): peer-to-peer software, DNS over HTTPS or "
                "look-ups the telemetry misses, unless one of the addresses is hard-coded C2.")
    return Finding(
        detection=META.id,
        key=(host, "*"),
        score_parts=parts,
        explanation=sentence,
        internal_hosts=[host],
        external_hosts=[t["external_host"] for t in top],
        external_names=[],
        channel=top[0]["channel"] if top else None, start=h["start"], end=h["end"], bytes_out=out_b,
        evidence={"flows": n, "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics={"flows": n, "bytes_out": out_b, "bytes_in": h["bytes_in"] or 0, "host_dns_queries": h["queries"],
                 "addresses": h["addresses"],
                 "top_addresses": [{"address": t["external_host"], "bytes_out": t["bytes_out"] or 0,
                                    "flows": t["flows"]} for t in top]},
        thresholds={"min_host_queries": s.min_host_queries, "warmup_seconds": s.warmup_seconds,
                    "tail_seconds": s.tail_seconds, "max_addresses": s.max_addresses},
        attack=list(META.attack),
        tenant=h["tenant"],
    )


def _finding(host: str, addr: str, gs: list[dict], ev: list[dict], s: Settings) -> Finding:
    n = sum(g["flows"] for g in gs)
    out_b = sum(g["bytes_out"] or 0 for g in gs)
    in_b = sum(g["bytes_in"] or 0 for g in gs)
    chan = main_channel(gs)[0]
    parts = {"direct": s.base_points, "repeated": s.repeat_points * ramp(n, 2, s.high_flows),
             "volume": s.volume_points * ramp(out_b, s.volume_low, s.volume_high)}
    queries = max(g["queries"] for g in gs)
    sentence = (f"{host} opened {count(n, 'connection')} to {addr} ({chan}) that no DNS answer named, "
                f"sending {human_bytes(out_b)} and receiving {human_bytes(in_b)}, while its other "
                f"traffic was resolved ({count(queries, 'lookup')} in the window).")
    return Finding(
        detection=META.id,
        key=(host, addr),
        score_parts=parts,
        explanation=sentence,
        internal_hosts=[host],
        external_hosts=[addr],
        external_names=[],
        channel=chan, start=min(g["start"] for g in gs), end=max(g["end"] for g in gs), bytes_out=out_b,
        evidence={"flows": n, "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics={"flows": n, "bytes_out": out_b, "bytes_in": in_b, "host_dns_queries": queries,
                 "channels": sorted(g["channel"] for g in gs)},
        thresholds={"min_host_queries": s.min_host_queries, "warmup_seconds": s.warmup_seconds,
                    "tail_seconds": s.tail_seconds},
        attack=list(META.attack),
        tenant=max((g["tenant"] for g in gs if g["tenant"]), default=None),
    )
