"""ICMP tunnels: echo traffic to an external host whose payloads are not those of ping.

Ping sends small payloads of one fixed size (56 bytes on Linux and macOS, 32 on Windows)
about once a second, and the reply mirrors the request byte for byte. Tunnels (ptunnel,
icmptunnel, hans, icmpsh) fill the echo payload with data: large and varying sizes, requests
and replies of different sizes, many packets per second, and volume. Per internal host and
external host the detection measures each of these from the flow records alone:

- mean payload per packet in each direction (bytes / packets);
- request/reply mismatch: how far the two means differ (0 for ping, even with lost replies);
- varying sizes: a flow whose payload bytes are not a multiple of its packets cannot have
  carried one constant size;
- packets per second of flow time, and bytes sent out.

Traffic that looks like ping on every shape measure is never a finding, however long it
runs (a monitoring host pings all day); volume only scores once the shape is not ping.
ntopng's ICMP exfiltration check is closed source; Slips, RITA and Zeek have none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ._stats import clip01, evidence_uids, human_bytes, ramp, rows

META = Meta(
    id="icmp_tunnel",
    title="Data tunnelled through ICMP echo",
    attack=("T1095", "T1048"),
    description="ICMP echo traffic between an internal and an external host whose payload sizes, "
                "request/reply asymmetry, rate or volume are not those of ping: data carried in "
                "echo payloads (ptunnel, icmptunnel, hans, icmpsh).",
    runbook="1. Check whether a monitoring or path-MTU tool explains it (fixed large sizes, one "
            "destination, known host). 2. Otherwise find the process sending ICMP on the host "
            "(raw sockets need admin rights: look for ptunnel, hans, icmpsh, PowerShell with "
            "System.Net.NetworkInformation.Ping). 3. Block outbound echo to the destination at the "
            "firewall and estimate what was sent from the bytes out.",
    channel="icmp",
    inputs=("flows",),
)


@dataclass(frozen=True)
class Settings:
    protocols: tuple = field(default=("icmp", "icmp6"), metadata={
        "help": "Flow protocols looked at."})
    echo_types: tuple = field(default=(0, 8, 128, 129), metadata={
        "help": "ICMP types kept where the sensor puts the type in orig_p (Zeek, Suricata: echo reply "
                "and request, v4 and v6); NFStream reports 0 for every ICMP flow."})
    min_bytes_out: float = field(default=20000.0, metadata={
        "help": "Payload bytes the internal host sends before a pair is examined: a path-MTU test "
                "(ten 1472-byte pings) stays below."})
    normal_payload: float = field(default=64.0, metadata={
        "help": "Largest mean payload per packet ordinary ping sends (56 Linux/macOS, 32 Windows, margin)."})
    large_payload: float = field(default=1400.0, metadata={
        "help": "Mean payload per packet that gives the full size points (an MTU-sized packet)."})
    mismatch_low: float = field(default=0.05, metadata={
        "help": "Relative difference of mean request and reply payload up to which they count as mirrored."})
    mismatch_high: float = field(default=0.5, metadata={
        "help": "Relative difference that gives the full mismatch points."})
    ping_rate: float = field(default=2.0, metadata={
        "help": "Packets sent per second of flow time up to which the rate is that of ping (1/s)."})
    high_rate: float = field(default=50.0, metadata={
        "help": "Packets per second that give the full rate points."})
    bytes_high: float = field(default=1e7, metadata={
        "help": "Bytes out that give the full volume points (10 MB)."})
    size_points: float = field(default=30.0, metadata={"help": "Points at large_payload."})
    mismatch_points: float = field(default=20.0, metadata={"help": "Points at mismatch_high."})
    varying_points: float = field(default=10.0, metadata={
        "help": "Points when any flow of the pair cannot have had one constant payload size."})
    rate_points: float = field(default=10.0, metadata={"help": "Points at high_rate."})
    volume_points: float = field(default=30.0, metadata={
        "help": "Points at bytes_high, on a log scale from min_bytes_out; only once the shape is not ping."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    f = tel.flows.filter(_.proto.isin(list(s.protocols)) & _.direction.isin(["outbound", "inbound"])
                         & (_.orig_p.isin(list(s.echo_types)) | _.orig_p.isnull()))
    out_side = f.orig_h == f.internal_host
    f = f.mutate(pkts_out=out_side.ifelse(f.orig_pkts, f.resp_pkts).fill_null(0),
                 pkts_in=out_side.ifelse(f.resp_pkts, f.orig_pkts).fill_null(0))
    # Two packets of one size give bytes divisible by packets; a remainder proves two sizes.
    varies = ((f.pkts_out >= 2) & (f.bytes_out % f.pkts_out.nullif(0) != 0)).fill_null(False)
    pairs = (f.group_by(["internal_host", "external_host"])
             .aggregate(flows=_.count(), bytes_out=_.bytes_out.sum(), bytes_in=_.bytes_in.sum(),
                        pkts_out=_.pkts_out.sum(), pkts_in=_.pkts_in.sum(),
                        active=_.duration.fill_null(0).sum(), varying=varies.cast("int64").sum(),
                        start=_.ts.min(), end=_.ts_end.max(), tenant=_.tenant.max())
             .filter(_.bytes_out >= s.min_bytes_out))
    out = []
    for r in rows(pairs.order_by(["internal_host", "external_host"])):
        m = _metrics(r)
        parts = _shape(m, s)
        if not parts:
            continue  # ping on every measure: no finding, whatever the volume
        parts["volume"] = s.volume_points * ramp(r["bytes_out"], s.min_bytes_out, s.bytes_high)
        out.append(_finding(f, r, m, parts, s))
    return out


def _metrics(r: dict) -> dict:
    mean_out = r["bytes_out"] / r["pkts_out"] if r["pkts_out"] else 0.0
    mean_in = (r["bytes_in"] or 0) / r["pkts_in"] if r["pkts_in"] else 0.0
    # No replies at all: nothing to compare (a filtered ping looks the same).
    mismatch = abs(mean_out - mean_in) / max(mean_out, mean_in) if mean_out and mean_in else 0.0
    return {"flows": r["flows"], "bytes_out": r["bytes_out"], "bytes_in": r["bytes_in"] or 0,
            "packets_out": r["pkts_out"], "packets_in": r["pkts_in"],
            "mean_payload_out": round(mean_out, 1), "mean_payload_in": round(mean_in, 1),
            "request_reply_mismatch": round(mismatch, 3), "varying_size_flows": r["varying"],
            "packets_per_second": round(r["pkts_out"] / max(r["active"], 1.0), 2),
            "active_seconds": round(r["active"], 3)}


def _shape(m: dict, s: Settings) -> dict[str, float]:
    """The points for what is not ping: size, mismatch, varying sizes, rate."""
    biggest = max(m["mean_payload_out"], m["mean_payload_in"])
    mismatch = m["request_reply_mismatch"]
    parts = {
        "payload_size": s.size_points * ramp(biggest, s.normal_payload, s.large_payload),
        "request_reply_mismatch": s.mismatch_points * clip01(
            (mismatch - s.mismatch_low) / (s.mismatch_high - s.mismatch_low)),
        "varying_sizes": s.varying_points if m["varying_size_flows"] else 0.0,
        "rate": s.rate_points * ramp(m["packets_per_second"], s.ping_rate, s.high_rate),
    }
    return {k: v for k, v in parts.items() if v > 0.05}


def _finding(f, r: dict, m: dict, parts: dict, s: Settings) -> Finding:
    host, peer = r["internal_host"], r["external_host"]
    ev = evidence_uids(f, (f.internal_host == host) & (f.external_host == peer), s.max_evidence)
    return Finding(
        detection=META.id, key=(host, peer), score_parts=parts,
        explanation=(f"{host} exchanged ICMP echo with {peer}: sent {human_bytes(m['bytes_out'])} in "
                     f"{m['packets_out']} packets ({m['mean_payload_out']:.0f} bytes each on average, "
                     f"replies {m['mean_payload_in']:.0f}, {m['packets_per_second']:.1f} per second); "
                     f"ordinary ping sends at most {s.normal_payload:.0f} bytes, mirrored, about once a second."),
        internal_hosts=[host], external_hosts=[peer], channel="icmp", start=r["start"],
        end=r["end"], bytes_out=r["bytes_out"],
        evidence={"flows": r["flows"], "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics=m,
        thresholds={"min_bytes_out": s.min_bytes_out, "normal_payload": s.normal_payload,
                    "mismatch_low": s.mismatch_low, "ping_rate": s.ping_rate},
        tenant=r["tenant"],
    )
