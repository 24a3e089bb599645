"""Upload-heavy destinations: an internal host sends one destination far more than it gets back.

Browsing mostly downloads: requests are small, pages and files are large. An upload hides
among that traffic by volume but not by direction, so the ratio of bytes out to bytes in per
destination singles it out (Vectra's "Smash and Grab", the upload/download asymmetry that
RITA, Slips and ntopng do not score; see ANCHORS.md). Destinations are grouped by name (TLS
SNI, HTTP Host, else the DNS name) where there is one, because CDNs serve many names from
one address and a per-address ratio would drown the upload in the other names' downloads;
flows without any name are grouped by address. Only connections the internal host opened
count: an exposed server answering external clients is upload-heavy by design.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ..units import count
from ._outbound import by_channel
from ._stats import channel, human_bytes, largest_flows, main_channel, ramp, rows

META = Meta(
    id="upload_heavy",
    title="Destination receiving far more than it sends back",
    attack=("T1048", "T1567", "T1567.002", "T1041"),
    description="Per internal host and destination (name where known, else address), the bytes "
                "sent out exceed the bytes received by a large factor, above a volume floor: an "
                "upload (web form, cloud storage, C2 exfiltration) among download-heavy browsing.",
    runbook="1. Identify the destination (name, owner, category): a sanctioned backup, sync or "
            "mail service explains uploads and belongs on the allowlist. 2. Otherwise look at the "
            "evidence flows: time, channel, user agent, and what the host was doing then. 3. Find "
            "the process that sent the data (EDR, proxy logs) and, if unexplained, isolate the host "
            "and estimate what was sent from the bytes out.",
    inputs=("flows",),
)


@dataclass(frozen=True)
class Settings:
    min_bytes_out: float = field(default=1e6, metadata={
        "help": "Bytes sent to one destination before its ratio counts (1 MB): smaller uploads are "
                "form posts and API calls."})
    min_ratio: float = field(default=10.0, metadata={
        "help": "Bytes out per byte in from which a destination is upload-heavy (browsing is well below 1)."})
    high_ratio: float = field(default=1000.0, metadata={
        "help": "Ratio that gives the full ratio points (a bulk upload answered by a short status)."})
    bytes_high: float = field(default=1e10, metadata={
        "help": "Bytes out that give the full volume points (10 GB)."})
    base_points: float = field(default=10.0, metadata={"help": "Points for any upload-heavy destination."})
    ratio_points: float = field(default=30.0, metadata={
        "help": "Points at high_ratio, on a log scale from min_ratio."})
    volume_points: float = field(default=60.0, metadata={
        "help": "Points at bytes_high bytes out, on a log scale from min_bytes_out."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    f = tel.flows.filter(_.direction == "outbound")
    f = f.mutate(channel=channel(f.service, f.proto, f.resp_p),
                 dest=_.external_name.lower().coalesce(_.external_host))
    keys = ["internal_host", "dest"]
    # Per channel and address first: each finding lists its addresses and names the channel
    # that carried most of the bytes, without a query per finding. The grouping is the one
    # rare_destination and long_connection start from too: computed once per run.
    parts = by_channel(tel).select(*keys, "channel", "external_host", "flows", "bytes_out", "bytes_in",
                                   "start", "end", "tenant", "name")
    pairs = (parts.group_by(keys)
             .aggregate(bytes_out=_.bytes_out.sum(), bytes_in=_.bytes_in.sum())
             .mutate(ratio=_.bytes_out / ibis.greatest(_.bytes_in, 1))
             .filter((_.bytes_out >= s.min_bytes_out) & (_.ratio >= s.min_ratio)))
    groups: dict[tuple, list[dict]] = {}
    for r in rows(parts.semi_join(pairs, keys).order_by(keys + ["channel", "external_host"])):
        groups.setdefault((r["internal_host"], r["dest"]), []).append(r)
    wanted = [{"internal_host": h, "dest": d} for h, d in groups]
    ev = largest_flows(f, wanted, keys, s.max_evidence) if wanted else {}
    return [_finding(host, dest, g, ev.get((host, dest), []), s) for (host, dest), g in sorted(groups.items())]


def _finding(host: str, dest: str, g: list[dict], ev: list[dict], s: Settings) -> Finding:
    out_b = sum(r["bytes_out"] for r in g)
    in_b = sum(r["bytes_in"] for r in g)
    n = sum(r["flows"] for r in g)
    ratio = out_b / max(in_b, 1)
    chan, many = main_channel(g)
    parts = {
        "upload_heavy": s.base_points,
        "ratio": s.ratio_points * ramp(ratio, s.min_ratio, s.high_ratio),
        "volume": s.volume_points * ramp(out_b, s.min_bytes_out, s.bytes_high),
    }
    addresses = sorted({r["external_host"] for r in g})
    return Finding(
        detection=META.id, key=(host, dest), score_parts=parts,
        explanation=(f"{host} sent {human_bytes(out_b)} to {dest} and received {human_bytes(in_b)} "
                     f"({ratio:,.0f}:1) in {count(n, 'connection')}, {'mostly ' if many else ''}over {chan}."),
        internal_hosts=[host], external_hosts=addresses,
        external_names=[dest] if any(r["name"] for r in g) else [], channel=chan,
        start=min(r["start"] for r in g), end=max(r["end"] for r in g), bytes_out=out_b,
        evidence={"flows": n, "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics={"bytes_out": out_b, "bytes_in": in_b, "ratio": round(ratio, 1), "flows": n,
                 "addresses": len(addresses)},
        thresholds={"min_bytes_out": s.min_bytes_out, "min_ratio": s.min_ratio},
        tenant=max((r["tenant"] for r in g if r["tenant"]), default=None),
    )

