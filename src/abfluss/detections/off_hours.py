"""Off-hours outbound volume: a host sending unusually much outside the site's working hours.

Attackers schedule exfiltration for nights and weekends (ATT&CK T1029), when nobody watches
and the volume hides among backups. Each internal host's outbound bytes outside the configured
working hours, in the site's local time with daylight saving, are summed per off-hours period
(from the end of one working day to the same time next day, so a night is never cut at
midnight) and compared with the host's other periods in the look-back and the window; a period
in which the host was active but sent nothing off-hours counts as 0. Above an absolute floor, a
period many times its median and many MADs above it is a finding; a host whose nightly backups
are routine has a high median and stays quiet.

Time zones: Ibis has no time-zone conversion that DuckDB and Spark both run, so the UTC offsets
of the zone over the data's span come from the tz database in Python and are applied as integer
arithmetic (``_stats.local_seconds``): exact across daylight-saving changes, on every engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import ibis

from ..errors import ConfigError
from ..findings import Finding
from . import Meta, Telemetry
from ._stats import (human_bytes, largest_flows, local_seconds, others_baseline, rows, spike,
                     top_destinations, utc, utc_offsets)
from ._volume import (baseline_parts, buckets, destination_phrase, epoch_of, outbound, spike_metrics,
                      unknown_tops)

META = Meta(
    id="off_hours",
    title="Unusual outbound volume outside working hours",
    attack=("T1029", "T1048"),
    description="An internal host sends much more outside the configured working hours (local time, "
                "weekends included) than in its other off-hours periods: scheduled exfiltration at "
                "night or on weekends.",
    runbook="1. Check the host's role: a backup, update or sync job that changed its schedule or size "
            "explains most of these (then raise the floor for it or allowlist the destination). "
            "2. Look at the destination and the evidence flows: a new, unknown destination or a "
            "one-way upload at 02:00 is not a backup. 3. If unexplained, look for scheduled tasks, "
            "cron jobs or new services on the host, preserve the evidence and isolate it.",
    inputs=("flows", "history"),
)

#: Points of each score part at its full value.
WEIGHTS = {"volume": 30.0, "robust_z": 25.0, "ratio": 15.0}
#: Destinations named per finding (largest first).
TOP_DESTINATIONS = 3
#: ISO weekday names for sentences.
DAYS = ("", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Settings:
    work_start_hour: int = field(default=7, metadata={
        "help": "First local hour of the working day (0-23)."})
    work_end_hour: int = field(default=19, metadata={
        "help": "Local hour at which the working day ends (1-24, after work_start_hour); an "
                "off-hours period runs from this hour to the same hour next day."})
    workdays: tuple = field(default=(1, 2, 3, 4, 5), metadata={
        "help": "ISO weekday numbers of working days (1 = Monday ... 7 = Sunday); every hour of the "
                "other days is off-hours. Public holidays are not known."})
    timezone: str = field(default="Europe/Berlin", metadata={
        "help": "IANA time zone of the site's working hours; daylight saving follows the tz database."})
    floor_bytes: float = field(default=100e6, metadata={
        "help": "Off-hours bytes out of a host in one period below which it is never a finding."})
    unbaselined_bytes: float = field(default=250e6, metadata={
        "help": "Off-hours bytes out in one period that make a finding when the host has too few other "
                "active periods to form a baseline (volume alone decides then)."})
    min_baseline_periods: int = field(default=5, metadata={
        "help": "Other periods in which the host was active (look-back plus window) needed before its "
                "off-hours median and MAD are trusted."})
    min_ratio: float = field(default=5.0, metadata={
        "help": "A period's off-hours bytes must be at least this many times the host's median."})
    high_ratio: float = field(default=100.0, metadata={
        "help": "Ratio to the median that gives the full ratio part of the score."})
    min_z: float = field(default=5.0, metadata={
        "help": "Robust z-score ((bytes - median) / (1.4826 MAD)) a period must also reach."})
    high_z: float = field(default=50.0, metadata={
        "help": "Robust z-score that gives the full z part of the score."})
    high_bytes: float = field(default=10e9, metadata={
        "help": "Off-hours bytes out in one period that give the full volume part of the score."})
    unknown_destination_points: float = field(default=10.0, metadata={
        "help": "Points added when the top destination is of class unknown and the host never sent to "
                "it in the look-back."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})

    def __post_init__(self) -> None:
        where = "detections.off_hours"
        if not 0 <= self.work_start_hour < self.work_end_hour <= 24:
            raise ConfigError(f"{where}: need 0 <= work_start_hour < work_end_hour <= 24, got "
                              f"{self.work_start_hour} and {self.work_end_hour}")
        if not all(isinstance(d, int) and 1 <= d <= 7 for d in self.workdays):
            raise ConfigError(f"{where}.workdays: ISO weekday numbers 1 (Monday) to 7 (Sunday), "
                              f"got {list(self.workdays)}")
        try:
            ZoneInfo(self.timezone)
        except (KeyError, ValueError):
            raise ConfigError(f"{where}.timezone: unknown time zone {self.timezone!r} "
                              "(an IANA name such as Europe/Berlin)") from None


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    both = outbound(tel.flows, True, *EVIDENCE).union(outbound(tel.history, False, *EVIDENCE))
    span = rows(both.aggregate(lo=both.ts.min(), hi=both.ts.max()))[0]
    if span["lo"] is None:
        return []
    offsets = utc_offsets(s.timezone, span["lo"], span["hi"])
    t = _local(both, epoch_of(both), offsets, s)
    # Periods are summed from buckets of whole minutes or hours (``_volume.buckets``; hours as
    # bulk_outbound's, shared with it) when the zone's offsets and changes fall on their bounds:
    # then every flow of a bucket has the same local hour, weekday and period.
    size = _bucket_seconds(offsets)
    q = buckets(tel, size)
    judged = _judge(_local(q, q.b * size, offsets, s, "bytes"), s)
    if not judged:
        return []
    dests = _destinations(t, judged)
    unknown = unknown_tops(tel.history, dests)
    per_host: dict[str, list[dict]] = {}
    for r in judged:
        r["parts"] = baseline_parts(r, WEIGHTS, s.floor_bytes, s.high_bytes, s,
                                    (r["internal_host"], r["period"]) in unknown)
        per_host.setdefault(r["internal_host"], []).append(r)
    ev = largest_flows(t.filter(t.in_window & t.off), judged, ["internal_host", "period"], s.max_evidence,
                       per=["internal_host"])
    return [_finding(host, rs, dests, ev, s) for host, rs in sorted(per_host.items())]


#: Flow columns the evidence of a finding names.
EVIDENCE = ("uid", "community_id", "orig_h", "orig_p", "resp_h", "resp_p")


def _bucket_seconds(offsets: list[tuple[int, int]]) -> int:
    """The longest of an hour, a quarter hour and a minute that every UTC offset and every change
    of offset is a whole number of (a second where none is)."""
    for size in (3600, 900, 60):
        if all(o % size == 0 for _, o in offsets) and all(e % size == 0 for e, _ in offsets[1:]):
            return size
    return 1


def _local(t, epoch, offsets: list[tuple[int, int]], s: Settings, value: str = "bytes_out"):
    """Add the off-hours flag, the off-hours period and the bytes (``value``) that count for it,
    for rows (flows or buckets) starting at UTC epoch second ``epoch``."""
    local = local_seconds(epoch, offsets)
    day = local // 86400
    hour = (local - day * 86400) // 3600
    weekday = (day + 3) % 7 + 1  # 1970-01-01, day 0, was a Thursday (ISO 4)
    working = weekday.isin(list(s.workdays)) & (hour >= s.work_start_hour) & (hour < s.work_end_hour)
    return t.mutate(off=~working, period=(local - s.work_end_hour * 3600) // 86400,
                    off_bytes=ibis.ifelse(working, 0, t[value]))


def _judge(t, s: Settings) -> list[dict]:
    """Periods with window off-hours traffic above the floor, with their baseline, kept if unusual."""
    totals = t.group_by(["internal_host", "period"]).aggregate(
        bytes=t.off_bytes.sum(), in_window=(t.in_window & t.off).any(),
        start=t.start.min(where=t.off), end=t.end.max(where=t.off))
    cand = totals.filter(totals.in_window & (totals.bytes >= s.floor_bytes)).drop("in_window")
    judged = others_baseline(totals, cand, ["internal_host"], "period", "bytes")
    out = []
    for r in rows(judged.order_by(["internal_host", "period"])):
        r.update(spike(r["bytes"], r["n"], r["median"], r["mad"], s.min_baseline_periods,
                       s.unbaselined_bytes, s.min_ratio, s.min_z))
        if r["unusual"]:
            out.append(r)
    return out


def _destinations(t, judged: list[dict]) -> dict[tuple, list[dict]]:
    """The top destinations of the off-hours bytes of each judged (host, period)."""
    t = t.filter(t.off & t.internal_host.isin(sorted({r["internal_host"] for r in judged}))
                 & t.period.isin(sorted({r["period"] for r in judged})))
    out: dict[tuple, list[dict]] = {}
    for d in rows(top_destinations(t, ["internal_host", "period"], TOP_DESTINATIONS)
                  .order_by(["internal_host", "period", "rank"])):
        out.setdefault((d["internal_host"], d["period"]), []).append(d)
    return out


def _finding(host: str, rs: list[dict], dests: dict, evidence: dict, s: Settings) -> Finding:
    worst = max(rs, key=lambda r: (sum(r["parts"].values()), r["bytes"], -r["period"]))
    top = dests.get((host, worst["period"]), [])
    ev = evidence.get((host,), [])
    excess = round(sum(r["excess"] for r in rs))
    return Finding(
        detection=META.id, key=(host,), score_parts=worst["parts"],
        explanation=_sentence(host, worst, top, rs, excess, s),
        internal_hosts=[host], external_hosts=[d["external_host"] for d in top],
        external_names=[d["name"] for d in top if d["name"]], channel=(top[0]["channel"] if top else "") or "",
        start=min(r["start"] for r in rs), end=max(r["end"] for r in rs), bytes_out=max(excess, 0),
        evidence={"periods": len(rs), "top_flows": [e["uid"] for e in ev],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics={"unusual_periods": len(rs), "period_start": _period_start(worst["period"], s),
                 **spike_metrics(worst, rs, top, excess)},
        thresholds={"floor_bytes": s.floor_bytes, "unbaselined_bytes": s.unbaselined_bytes,
                    "min_baseline_periods": s.min_baseline_periods, "min_ratio": s.min_ratio,
                    "min_z": s.min_z, "work_start_hour": s.work_start_hour, "work_end_hour": s.work_end_hour,
                    "workdays": list(s.workdays), "timezone": s.timezone},
        tenant=top[0]["tenant"] if top else None,
    )


def _sentence(host: str, worst: dict, top: list[dict], rs: list[dict], excess: int, s: Settings) -> str:
    zone = ZoneInfo(s.timezone)
    a, b = (utc(worst[k]).astimezone(zone) for k in ("start", "end"))
    first = f"{DAYS[a.isoweekday()]} {a:%Y-%m-%d %H:%M}"
    if f"{a:%Y%m%d%H%M}" == f"{b:%Y%m%d%H%M}":
        when = f"at {first} {s.timezone}"
    elif a.date() == b.date():
        when = f"between {first} and {b:%H:%M} {s.timezone}"
    else:
        when = f"between {first} and {DAYS[b.isoweekday()]} {b:%Y-%m-%d %H:%M} {s.timezone}"
    n = worst["n"]
    if not worst["baselined"]:
        versus = f"with no baseline yet ({n} other active periods, {s.min_baseline_periods} needed)"
    elif worst["ratio"] is None:
        versus = f"while it sent nothing outside working hours in its {n} other active periods"
    else:
        versus = (f"{worst['ratio']:.0f}× its median off-hours volume of {human_bytes(worst['median'])} "
                  f"(MAD {human_bytes(worst['mad'])}, {n} other periods)")
    hours = f"{s.work_start_hour:02d}-{s.work_end_hour:02d} h on {_days(s.workdays)}"
    return (f"{host} sent {human_bytes(worst['bytes'])} outside working hours ({hours}) {when}, "
            f"{versus}{destination_phrase(top, rs, excess, 'period')}.")


def _days(days: tuple) -> str:
    ds = sorted(set(days))
    if ds and ds == list(range(ds[0], ds[-1] + 1)) and len(ds) > 2:
        return f"{DAYS[ds[0]]}-{DAYS[ds[-1]]}"
    return ", ".join(DAYS[d] for d in ds) or "no day"


def _period_start(period: int, s: Settings) -> str:
    """Local wall-clock start of an off-hours period, ISO without offset (it is local time)."""
    wall = datetime.fromtimestamp(period * 86400 + s.work_end_hour * 3600, timezone.utc).replace(tzinfo=None)
    return wall.isoformat(timespec="minutes")
