"""Bulk outbound volume: a host sending far more than its usual hour or day, or one very large transfer.

Slips sums the bytes sent per destination in an hour against one fixed threshold (500 MB) and
flags single large uploads; Vectra's "Smash and Grab" and Darktrace's "Uncommon 1 GiB Outbound"
compare with what the host normally does. Here each internal host's outbound bytes per hour and
per (UTC) day are judged against its own other active hours and days in the look-back and the
window (median and MAD, composed from medians so every engine runs it), only above an absolute
floor so a quiet host sending a few megabytes is no incident. Single flows above a size are
reported per destination whatever the baseline. The bytes-out estimate is the excess over the
host's median (hours, days) or the transfers' bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ._stats import (channel, human_bytes, largest_flows, others_baseline, ramp, rows, seen_before, spike,
                     top_destinations)
from ._volume import (baseline_parts, buckets, destination_phrase, epoch_of, outbound, spike_metrics,
                      unknown_tops)

META = Meta(
    id="bulk_outbound",
    title="Bulk outbound transfer",
    attack=("T1030", "T1048", "T1041", "T1567"),
    description="An internal host sends far more than its own usual hour or day to external "
                "destinations (robust z-score and ratio against its median, above an absolute floor), "
                "or sends single very large flows: staging uploads, cloud-storage exfiltration, "
                "data theft before ransomware.",
    runbook="1. Identify the top destination (name, owner, cloud storage or file-drop service?) and "
            "whether the host has a business reason to send this much there (backup, sync, software "
            "build). 2. Look at the flows listed as evidence: one long upload or many parallel ones, "
            "and at what time. 3. If unexplained, find the process on the host (ss -tnp / netstat -b, "
            "EDR), preserve the evidence and isolate the host; then estimate what data it could reach.",
    inputs=("flows", "history"),
)

#: Points of each score part at its full value (the volume, z and ratio parts ramp up to them).
WEIGHTS = {"volume": 40.0, "robust_z": 25.0, "ratio": 15.0, "transfer": 20.0, "transfer_volume": 35.0,
           "one_way": 10.0}
#: Destinations named per finding (largest first).
TOP_DESTINATIONS = 3


@dataclass(frozen=True)
class Settings:
    hour_floor_bytes: float = field(default=50e6, metadata={
        "help": "Bytes out of a host in one hour below which the hour is never a finding, however "
                "unusual for the host (a quiet host sending 5 MB is no incident)."})
    day_floor_bytes: float = field(default=500e6, metadata={
        "help": "The same floor for one UTC day (catches slow leaks that stay under the hourly floor)."})
    unbaselined_hour_bytes: float = field(default=250e6, metadata={
        "help": "Bytes out in one hour that make a finding when the host has too few other active "
                "hours to form a baseline (volume alone decides then)."})
    unbaselined_day_bytes: float = field(default=2e9, metadata={
        "help": "The same for one day when the host has too few other active days."})
    min_baseline_hours: int = field(default=8, metadata={
        "help": "Other active hours of the host (look-back plus window) needed before its median "
                "and MAD are trusted."})
    min_baseline_days: int = field(default=5, metadata={
        "help": "Other active days of the host needed before its daily median and MAD are trusted."})
    min_ratio: float = field(default=5.0, metadata={
        "help": "An hour or day must be at least this many times the host's median to count."})
    high_ratio: float = field(default=100.0, metadata={
        "help": "Ratio to the median that gives the full ratio part of the score."})
    min_z: float = field(default=5.0, metadata={
        "help": "Robust z-score ((bytes - median) / (1.4826 MAD)) an hour or day must also reach."})
    high_z: float = field(default=50.0, metadata={
        "help": "Robust z-score that gives the full z part of the score."})
    hour_high_bytes: float = field(default=5e9, metadata={
        "help": "Bytes out in one hour that give the full volume part of the score."})
    day_high_bytes: float = field(default=20e9, metadata={
        "help": "Bytes out in one day that give the full volume part of the score."})
    single_transfer_bytes: float = field(default=100e6, metadata={
        "help": "Bytes out of one flow that make it a large single transfer (Slips: 100 MB upload); "
                "lower it for small captures or small sites."})
    transfer_high_bytes: float = field(default=2e9, metadata={
        "help": "Bytes of large transfers to one destination that give the full transfer volume part."})
    one_way_share: float = field(default=0.9, metadata={
        "help": "Share of a transfer's bytes that went out (out / (out + in)) from which it counts as "
                "a one-way upload (adds the one_way part)."})
    unknown_destination_points: float = field(default=10.0, metadata={
        "help": "Points added when the (top) destination is of class unknown and the host never sent "
                "to it in the look-back."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})


@dataclass(frozen=True)
class _Kind:
    name: str  # "hour" or "day": also the second part of the finding's key
    seconds: int
    floor: float
    unbaselined: float
    min_n: int
    high: float


def _kinds(s: Settings) -> list[_Kind]:
    return [_Kind("hour", 3600, s.hour_floor_bytes, s.unbaselined_hour_bytes, s.min_baseline_hours,
                  s.hour_high_bytes),
            _Kind("day", 86400, s.day_floor_bytes, s.unbaselined_day_bytes, s.min_baseline_days,
                  s.day_high_bytes)]


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    both = outbound(tel.flows, True).union(outbound(tel.history, False))
    both = both.mutate(epoch=epoch_of(both))
    win = tel.flows.filter(_.direction == "outbound")
    win = win.mutate(epoch=epoch_of(win))
    out: list[Finding] = []
    hour_kind, day_kind = _kinds(s)
    hourly = buckets(tel, 3600)  # shared with off_hours, which usually reads whole hours too
    hours = _judge(hourly, hour_kind, s)
    # A day holding an unusual hour of the same host is that hour's finding already.
    covered = {(r["internal_host"], r["bucket"] * 3600 // 86400) for r in hours}
    days = [r for r in _judge(hourly, day_kind, s) if (r["internal_host"], r["bucket"]) not in covered]
    for kind, judged in ((hour_kind, hours), (day_kind, days)):
        out += _volume_findings(tel, both, win, kind, judged, s)
    out += _transfer_findings(tel, win, s)
    return out


# -- hours and days against the host's own baseline ------------------------------------------


def _judge(hourly, kind: _Kind, s: Settings) -> list[dict]:
    """Buckets with window traffic above the floor, with their baseline, kept if unusual.
    Summed from the hourly buckets (``_volume.buckets``): an hour or day is whole hours."""
    t = hourly.mutate(bucket=hourly.b // (kind.seconds // 3600))
    totals = t.group_by(["internal_host", "bucket"]).aggregate(
        bytes=t.bytes.sum(), in_window=t.in_window.any(), start=t.start.min(), end=t.end.max())
    cand = totals.filter(totals.in_window & (totals.bytes >= kind.floor)).drop("in_window")
    judged = others_baseline(totals, cand, ["internal_host"], "bucket", "bytes")
    out = []
    for r in rows(judged.order_by(["internal_host", "bucket"])):
        r.update(spike(r["bytes"], r["n"], r["median"], r["mad"], kind.min_n, kind.unbaselined,
                       s.min_ratio, s.min_z))
        if r["unusual"]:
            out.append(r)
    return out


def _destinations(both, kind: _Kind, judged: list[dict]) -> dict[tuple, list[dict]]:
    """The top destinations of each judged (host, bucket), largest first."""
    t = both.mutate(bucket=both.epoch // kind.seconds)
    t = t.filter(t.internal_host.isin(sorted({r["internal_host"] for r in judged}))
                 & t.bucket.isin(sorted({r["bucket"] for r in judged})))
    out: dict[tuple, list[dict]] = {}
    for d in rows(top_destinations(t, ["internal_host", "bucket"], TOP_DESTINATIONS)
                  .order_by(["internal_host", "bucket", "rank"])):
        out.setdefault((d["internal_host"], d["bucket"]), []).append(d)
    return out


def _volume_findings(tel, both, win, kind: _Kind, judged: list[dict], s: Settings) -> list[Finding]:
    if not judged:
        return []
    dests = _destinations(both, kind, judged)
    unknown = unknown_tops(tel.history, dests)
    per_host: dict[str, list[dict]] = {}
    for r in judged:
        r["parts"] = baseline_parts(r, WEIGHTS, kind.floor, kind.high, s,
                                    (r["internal_host"], r["bucket"]) in unknown)
        r["score"] = sum(r["parts"].values())
        per_host.setdefault(r["internal_host"], []).append(r)
    ev = largest_flows(win.mutate(bucket=win.epoch // kind.seconds), judged, ["internal_host", "bucket"],
                       s.max_evidence, per=["internal_host"])
    return [_volume_finding(kind, host, rs, dests, ev, s) for host, rs in sorted(per_host.items())]


def _volume_finding(kind: _Kind, host: str, rs: list[dict], dests: dict, evidence: dict, s: Settings) -> Finding:
    worst = max(rs, key=lambda r: (r["score"], r["bytes"], -r["bucket"]))
    top = dests.get((host, worst["bucket"]), [])
    ev = evidence.get((host,), [])
    excess = sum(r["excess"] for r in rs)
    return Finding(
        detection=META.id, key=(host, kind.name), score_parts=worst["parts"],
        explanation=_volume_sentence(host, kind, worst, top, rs, excess),
        internal_hosts=[host], external_hosts=[d["external_host"] for d in top],
        external_names=[d["name"] for d in top if d["name"]],
        channel=(top[0]["channel"] if top else "") or "",
        start=min(r["start"] for r in rs), end=max(r["end"] for r in rs), bytes_out=max(round(excess), 0),
        evidence={f"{kind.name}s": len(rs), "top_flows": [e["uid"] for e in ev],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics={"kind": kind.name, f"unusual_{kind.name}s": len(rs),
                 "bucket_start": _bucket_start(worst["bucket"], kind).isoformat(),
                 **spike_metrics(worst, rs, top, excess)},
        thresholds={"floor_bytes": kind.floor, "unbaselined_bytes": kind.unbaselined,
                    "min_baseline": kind.min_n, "min_ratio": s.min_ratio, "min_z": s.min_z},
        tenant=top[0]["tenant"] if top else None,
    )


def _volume_sentence(host: str, kind: _Kind, worst: dict, top: list[dict], rs: list[dict], excess) -> str:
    t0 = _bucket_start(worst["bucket"], kind)
    when = (f"in the hour from {t0:%H:%M} UTC on {t0:%Y-%m-%d}" if kind.name == "hour"
            else f"on {t0:%Y-%m-%d} (UTC day)")
    n, unit = worst["n"], f"active {kind.name}s"
    if not worst["baselined"]:
        versus = f"with no baseline yet ({n} other {unit}, {kind.min_n} needed)"
    elif worst["ratio"] is None:
        versus = f"against a median {kind.name} of 0 bytes ({n} other {unit})"
    else:
        versus = (f"{worst['ratio']:.0f}× its median {kind.name} of {human_bytes(worst['median'])} "
                  f"(MAD {human_bytes(worst['mad'])}, {n} other {unit})")
    return f"{host} sent {human_bytes(worst['bytes'])} {when}, {versus}{destination_phrase(top, rs, excess, kind.name)}."


def _bucket_start(bucket: int, kind: _Kind) -> datetime:
    return datetime.fromtimestamp(bucket * kind.seconds, timezone.utc)


# -- single large transfers ------------------------------------------------------------------


def _transfer_findings(tel, win, s: Settings) -> list[Finding]:
    big = win.filter(win.bytes_out >= s.single_transfer_bytes)
    big = big.mutate(channel=channel(big.service, big.proto, big.resp_p))
    g = big.group_by(["internal_host", "external_host"]).aggregate(
        flows=_.count(), bytes=big.bytes_out.sum(), largest=big.bytes_out.max(), bytes_in=big.bytes_in.sum(),
        start=big.ts.min(), end=big.ts_end.max())
    found = rows(g.order_by(["internal_host", "external_host"]))
    if not found:
        return []
    about = {(d["internal_host"], d["external_host"]): d for d in rows(top_destinations(big, ["internal_host"]))}
    for r in found:
        d = about[(r["internal_host"], r["external_host"])]
        r.update(name=d["name"], dest_class=d["dest_class"], channel=d["channel"], tenant=d["tenant"])
    seen = seen_before(tel.history, {(r["internal_host"], r["external_host"]) for r in found})
    ev = largest_flows(big, found, ["internal_host", "external_host"], s.max_evidence)
    return [_transfer_finding(r, (r["internal_host"], r["external_host"]) not in seen,
                              ev[(r["internal_host"], r["external_host"])], s) for r in found]


def _transfer_finding(r: dict, new: bool, ev: list[dict], s: Settings) -> Finding:
    host, ext = r["internal_host"], r["external_host"]
    share = r["bytes"] / max(r["bytes"] + (r["bytes_in"] or 0), 1)
    parts = {"transfer": WEIGHTS["transfer"],
             "transfer_volume": WEIGHTS["transfer_volume"] * ramp(r["bytes"], s.single_transfer_bytes,
                                                                  s.transfer_high_bytes)}
    if share >= s.one_way_share:
        parts["one_way"] = WEIGHTS["one_way"]
    if new and r["dest_class"] == "unknown":
        parts["unknown_destination"] = s.unknown_destination_points
    dest = f"{r['name']} ({ext})" if r["name"] else ext
    flows = "1 flow" if r["flows"] == 1 else f"{r['flows']} flows of at least {human_bytes(s.single_transfer_bytes)}"
    return Finding(
        detection=META.id, key=(host, ext), score_parts=parts,
        explanation=(f"{host} sent {human_bytes(r['bytes'])} to {dest} over {r['channel'] or 'an unnamed channel'} "
                     f"in {flows} (largest {human_bytes(r['largest'])}), receiving "
                     f"{human_bytes(r['bytes_in'])}: {share:.0%} of the bytes went out."),
        internal_hosts=[host], external_hosts=[ext], external_names=[r["name"]] if r["name"] else [],
        channel=r["channel"] or "", start=r["start"], end=r["end"], bytes_out=r["bytes"],
        evidence={"flows": r["flows"], "top_flows": [e["uid"] for e in ev],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics={"kind": "transfer", "flows": r["flows"], "bytes_out": r["bytes"], "largest_flow": r["largest"],
                 "bytes_in": r["bytes_in"], "out_share": round(share, 3), "new_destination": new},
        thresholds={"single_transfer_bytes": s.single_transfer_bytes,
                    "transfer_high_bytes": s.transfer_high_bytes, "one_way_share": s.one_way_share},
        tenant=r["tenant"],
    )
