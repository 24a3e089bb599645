"""Long connections: total connection time per internal host and destination, open ones included.

RITA sums duration per pair (thresholds 1 h / 4 h / 8 h / 12 h) and reads Zeek's open_conn
log; Slips flags a single flow over 1500 s. Here the interim records of connections that are
still running count too, so a session that has not ended is visible while it runs, and the
bytes sent over it are the finding's estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ..units import count
from ._outbound import by_channel
from ._stats import channel, evidence_uids, human_bytes, ramp, rows

META = Meta(
    id="long_connection",
    title="Long-lived connection to an external destination",
    attack=("T1071", "T1041", "T1572"),
    description="Summed duration of the connections between an internal host and one external "
                "destination (closed and still open) reaches hours: remote shells, tunnels and "
                "C2 channels that stay up.",
    runbook="1. Check whether the destination is a known service (VPN, video call, sync client). "
            "2. Look at bytes out over time: a steady upload on a long session is exfiltration. "
            "3. If unknown, identify the process on the host holding the connection (ss -tnp / "
            "netstat -b) and isolate the host if it is not explained.",
    inputs=("flows",),
)


@dataclass(frozen=True)
class Settings:
    min_total_seconds: float = field(default=3600.0, metadata={
        "help": "Summed duration per host and destination from which a finding is made (RITA: 1 h)."})
    high_total_seconds: float = field(default=43200.0, metadata={
        "help": "Summed duration that gives the full duration part of the score (RITA's top band: 12 h)."})
    open_bonus: float = field(default=10.0, metadata={
        "help": "Points added when the connection is still open at the end of the data."})
    bytes_high: float = field(default=100e6, metadata={
        "help": "Bytes sent out over the connections that give the full volume part of the score."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    f = tel.flows.filter(_.direction == "outbound")
    f = f.mutate(channel=channel(f.service, f.proto, f.resp_p))
    # From the outbound pre-aggregate upload_heavy and rare_destination share (computed once
    # per run): its groups add up to (host, address) exactly; the channel is the one of the
    # group holding the largest flow, as the largest flow's own.
    g = by_channel(tel)
    pairs = (g.group_by(["internal_host", "external_host"])
             .aggregate(total=g.duration.sum(), longest=g.longest.max(), flows=g.flows.sum(),
                        open_flows=g.open_flows.sum(), bytes_out=g.bytes_out.sum(),
                        bytes_in=g.bytes_in.sum(), start=g.start.min(), end=g["end"].max(),
                        name=g.name.max(), channel=g.channel.argmax(g.top_bytes), tenant=g.tenant.max())
             .filter(_.total >= s.min_total_seconds))
    out = []
    for r in rows(pairs.order_by(["internal_host", "external_host"])):
        hours = r["total"] / 3600
        parts = {
            "duration": 60 * ramp(r["total"], s.min_total_seconds, s.high_total_seconds) + 20,
            "volume": 20 * ramp(r["bytes_out"], 1e5, s.bytes_high),
        }
        if r["open_flows"]:
            parts["still_open"] = s.open_bonus
        dest = r["name"] or r["external_host"]
        ev = evidence_uids(f, (f.internal_host == r["internal_host"]) & (f.external_host == r["external_host"]),
                           s.max_evidence, order="duration")
        out.append(Finding(
            detection=META.id,
            key=(r["internal_host"], r["external_host"]),
            score_parts=parts,
            explanation=(f"{r['internal_host']} held {count(r['flows'], 'connection')} to {dest} for {hours:.1f} h "
                         f"in total (longest {r['longest'] / 3600:.1f} h"
                         f"{', still open' if r['open_flows'] else ''}) and sent {human_bytes(r['bytes_out'])}."),
            internal_hosts=[r["internal_host"]], external_hosts=[r["external_host"]],
            external_names=[r["name"]] if r["name"] else [],
            channel=r["channel"] or "", start=r["start"], end=r["end"], bytes_out=r["bytes_out"],
            evidence={"flows": r["flows"], "open_flows": r["open_flows"],
                      "top_flows": [e["uid"] for e in ev],
                      "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
            metrics={"total_seconds": round(r["total"], 1), "longest_seconds": round(r["longest"] or 0, 1),
                     "flows": r["flows"], "open_flows": r["open_flows"], "bytes_out": r["bytes_out"],
                     "bytes_in": r["bytes_in"]},
            thresholds={"min_total_seconds": s.min_total_seconds, "high_total_seconds": s.high_total_seconds},
            tenant=r["tenant"],
        ))
    return out
