"""Rare destinations: data sent to a destination new to the site or used by very few hosts.

RITA adds +0.15 for a destination contacted by at most 2 % of internal hosts and for one
first seen within 7 days, but only as modifiers of other scores; Darktrace and Vectra alert
on "data sent to rare domain". Here rarity is a detection of its own, gated by the data the
destination received. Prevalence is an absolute count of internal hosts (window and
look-back together), never a share of all hosts, so a host joining the network changes no
other host's findings. "New" needs look-back data: with an empty history nothing can be
called first seen, and only prevalence counts. Destinations are names (SNI, HTTP Host, DNS)
where known, else addresses; only connections the internal host opened count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ..units import count
from ._outbound import by_channel as shared_by_channel
from ._stats import channel, human_bytes, largest_flows, main_channel, ramp, rows

META = Meta(
    id="rare_destination",
    title="Data sent to a new or rarely used destination",
    attack=("T1041", "T1567", "T1071"),
    description="An internal host sent a meaningful amount of data to a destination that no host "
                "contacted before the analysis window, or that very few internal hosts contact.",
    runbook="1. Look the destination up (owner, registration age, category); a new SaaS tool or "
            "vendor portal explains it and belongs on the allowlist. 2. Check what else the host "
            "did around the first contact (downloads, new processes, other findings). 3. If "
            "unexplained, find the process that sent the data and isolate the host.",
    inputs=("flows", "history"),
)


@dataclass(frozen=True)
class Settings:
    max_hosts: int = field(default=2, metadata={
        "help": "Internal hosts (absolute count, window and look-back) up to which a destination is "
                "rare; RITA's 2 % of a 100-host site."})
    min_bytes_out: float = field(default=1e6, metadata={
        "help": "Bytes a host must send to the destination in the window (1 MB): rarity alone is "
                "not exfiltration."})
    bytes_high: float = field(default=1e9, metadata={
        "help": "Bytes out that give the full volume points (1 GB)."})
    base_points: float = field(default=20.0, metadata={
        "help": "Points for a rare or new destination that received min_bytes_out."})
    first_seen_points: float = field(default=15.0, metadata={
        "help": "Points when look-back data exists and no host contacted the destination in it (RITA: +0.15)."})
    rare_points: float = field(default=15.0, metadata={
        "help": "Points when this host is the only one; fewer as the count approaches max_hosts (RITA: +0.15)."})
    volume_points: float = field(default=40.0, metadata={
        "help": "Points at bytes_high bytes out, on a log scale from min_bytes_out."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})


def _outbound(t):
    t = t.filter(_.direction == "outbound")
    return t.mutate(dest=_.external_name.lower().coalesce(_.external_host))


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    f = _outbound(tel.flows)
    f = f.mutate(channel=channel(f.service, f.proto, f.resp_p))
    h = _outbound(tel.history)
    has_history = rows(h.aggregate(n=_.count()))[0]["n"] > 0
    keys = ["internal_host", "dest"]
    # The window's side comes from the pre-aggregate upload_heavy and long_connection share
    # (computed once per run), not from every outbound flow again.
    by_channel = shared_by_channel(tel).select(*keys, "channel", "external_host", "flows", "bytes_out",
                                               "bytes_in", "start", "end", "tenant", "name")
    contacts = by_channel.select(*keys).union(h.select(*keys), distinct=True)
    prevalence = contacts.group_by("dest").aggregate(hosts=_.count())
    seen = h.select(seen_dest=h.dest).distinct()
    pairs = by_channel.group_by(keys).aggregate(bytes_out=_.bytes_out.sum())
    pairs = pairs.filter(pairs.bytes_out >= s.min_bytes_out)
    pairs = pairs.join(prevalence, "dest").left_join(seen, pairs.dest == seen.seen_dest)
    pairs = pairs.select(*keys, "hosts", new=seen.seen_dest.isnull())
    if not has_history:  # without look-back data nothing is provably new
        pairs = pairs.mutate(new=False)
    pairs = pairs.filter((_.hosts <= s.max_hosts) | _.new)
    groups: dict[tuple, list[dict]] = {}
    for r in rows(by_channel.join(pairs, keys).order_by(keys + ["channel", "external_host"])):
        groups.setdefault((r["internal_host"], r["dest"]), []).append(r)
    wanted = [{"internal_host": h, "dest": d} for h, d in groups]
    ev = largest_flows(f, wanted, keys, s.max_evidence) if wanted else {}
    return [_finding(host, dest, g, ev.get((host, dest), []), s, has_history)
            for (host, dest), g in sorted(groups.items())]


def _finding(host: str, dest: str, g: list[dict], ev: list[dict], s: Settings, has_history: bool) -> Finding:
    out_b = sum(r["bytes_out"] for r in g)
    in_b = sum(r["bytes_in"] for r in g)
    n = sum(r["flows"] for r in g)
    hosts, new = g[0]["hosts"], g[0]["new"]
    chan, many = main_channel(g)
    parts = {"rare_destination": s.base_points}
    if new:
        parts["first_seen"] = s.first_seen_points
    if hosts <= s.max_hosts:
        parts["prevalence"] = s.rare_points * (s.max_hosts - hosts + 1) / s.max_hosts
    parts["volume"] = s.volume_points * ramp(out_b, s.min_bytes_out, s.bytes_high)
    why = ["never contacted before this window"] if new else []
    if hosts <= s.max_hosts:
        why.append("contacted by no other internal host" if hosts == 1 else f"contacted by {hosts} internal hosts")
    return Finding(
        detection=META.id, key=(host, dest), score_parts=parts,
        explanation=(f"{host} sent {human_bytes(out_b)} to {dest} in {count(n, 'connection')}, "
                     f"{'mostly ' if many else ''}over {chan}; the destination was "
                     f"{' and '.join(why)}."),
        internal_hosts=[host], external_hosts=[r["external_host"] for r in g],
        external_names=[dest] if any(r["name"] for r in g) else [], channel=chan,
        start=min(r["start"] for r in g), end=max(r["end"] for r in g), bytes_out=out_b,
        evidence={"flows": n, "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics={"bytes_out": out_b, "bytes_in": in_b, "flows": n, "internal_hosts": hosts,
                 "first_seen": new if has_history else None},
        thresholds={"max_hosts": s.max_hosts, "min_bytes_out": s.min_bytes_out},
        tenant=max((r["tenant"] for r in g if r["tenant"]), default=None),
    )
