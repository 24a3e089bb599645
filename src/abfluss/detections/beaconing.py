"""Beaconing: an internal host contacting one destination on a steady rhythm, jitter included.

RITA v5 scores every host pair with four equal parts: Bowley skew and MAD/median of the
intervals, the same of the sizes, a 24-bin histogram and a duration coverage. A steady, evenly
spread stream of same-sized connections with random timing (a resolver, a busy API client)
scores high there without any rhythm, lost check-ins break its statistics, and the parts do
not say in checkable words how regular the timing is. Here the timing comes first: the share
of intervals within ±``interval_tolerance`` of the period ("on beat") is robust to the ±10–30 %
jitter of C2 frameworks and drops to about 0.2 for random timing; intervals spanning missed
beats keep the rhythm; and it scales every other part, so coverage (time on beat, not first to
last), spread and constant sizes count only for a pair that has a rhythm. Destinations are
paired by name (TLS SNI, HTTP host, DNS) so a beacon through a CDN or proxy collapses onto its
name, and by address for connections whose name pair is too small to judge (RITA's rule), so
no connection is counted in two pairs and no beacon is reported twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import ibis

from ..findings import Finding
from . import Meta, Telemetry
from ._stats import channel, clip01, human_bytes, largest_flows, rows, seconds_since, utc

META = Meta(
    id="beaconing",
    title="Beaconing: regular check-ins to an external destination",
    attack=("T1071", "T1573", "T1029", "T1041"),
    description="An internal host contacts one external destination (name or address) at a "
                "steady interval with similar sizes, for much of the observed time: the check-in "
                "of implants and C2 agents, robust to the jitter they add; also strobes "
                "(very many connections).",
    runbook="1. Check whether the destination is a known service with a heartbeat (update, "
            "telemetry, push, monitoring, NTP); if so, allowlist it. 2. Look at the interval and "
            "the bytes out per check-in: a growing size or a change of rhythm is tasking or "
            "exfiltration. 3. Find the process on the host that opens the connections (ss -tnp, "
            "Sysmon event 3) and isolate the host if it is not explained.",
    channel="https",
    inputs=("flows",),
)

#: Destinations that never leave the local link (multicast, broadcast): periodic by design
#: (router solicitations, mDNS, SSDP), not beacons. IPv6 multicast is ff00::/8.
_LOCAL_ONLY_V4 = r"^(22[4-9]|23[0-9]|255)\."
#: An interval this many periods long is as close to one period as to two (a missed beat).
_HALF_WAY_TO_A_MISSED_BEAT = 1.5


@dataclass(frozen=True)
class Settings:
    min_connections: int = field(default=6, metadata={
        "help": "Check-ins (connection events after merging) a host and destination need before "
                "their timing is judged; also the connections a name pair needs to be judged by "
                "name (RITA: 4 unique timestamps)."})
    merge_seconds: float = field(default=1.0, metadata={
        "help": "Connections of one pair starting within this many seconds of the previous one "
                "form one check-in (parallel or chained connections; RITA keeps unique seconds)."})
    interval_tolerance: float = field(default=0.3, metadata={
        "help": "An interval is on beat when within this share of the median interval "
                "(0.3 = ±30 %, the jitter C2 frameworks add)."})
    max_missed_beats: int = field(default=3, metadata={
        "help": "An interval of 2 to max_missed_beats + 1 periods spans missed beats (a check-in "
                "lost, not captured or skipped): it keeps the rhythm instead of breaking it."})
    missed_beat_tolerance: float = field(default=0.1, metadata={
        "help": "How close (share of one period) an interval must be to a whole number of periods "
                "to span missed beats; tighter than interval_tolerance so random gaps rarely do."})
    size_tolerance: float = field(default=0.2, metadata={
        "help": "A check-in's bytes out count as regular when within this share of the median."})
    size_slack_bytes: int = field(default=64, metadata={
        "help": "Absolute slack for the size comparison, so tiny check-ins are not judged by a "
                "few bytes."})
    regular_share_low: float = field(default=0.4, metadata={
        "help": "On-beat (or regular-size) share at and below which there is no regularity "
                "(random timing gives about 0.2)."})
    regular_share_full: float = field(default=0.85, metadata={
        "help": "On-beat (or regular-size) share that counts as fully regular."})
    confident_beats: int = field(default=20, metadata={
        "help": "Intervals that fit the rhythm (on beat or spanning missed beats) needed for full "
                "confidence in it; fewer scale every part but interval_regularity down linearly."})
    histogram_bins: int = field(default=24, metadata={
        "help": "Bins the observed span is cut into for the spread (hours of a day-long window)."})
    full_rhythm_seconds: float = field(default=43200.0, metadata={
        "help": "Time on beat (sum of on-beat intervals) that counts as full coverage when the "
                "observed span is longer; shorter spans need the whole span (RITA: 12 "
                "consistent hours)."})
    weight_interval: float = field(default=10.0, metadata={
        "help": "Points for fully regular intervals (interval_regularity)."})
    weight_count: float = field(default=10.0, metadata={
        "help": "Points for enough regular intervals to be sure (connection_count)."})
    weight_size: float = field(default=5.0, metadata={
        "help": "Points for regular sizes (size_regularity)."})
    weight_coverage: float = field(default=50.0, metadata={
        "help": "Points for a rhythm kept over the whole observed span or full_rhythm_seconds "
                "(duration_coverage)."})
    weight_spread: float = field(default=25.0, metadata={
        "help": "Points for check-ins spread evenly over all bins of the span (hourly_spread)."})
    strobe_per_day: float = field(default=86400.0, metadata={
        "help": "Connections per 24 h that make a pair a strobe whatever its timing (RITA: 86 400), "
                "scaled to the observed span."})
    strobe_min_connections: int = field(default=3600, metadata={
        "help": "Fewest connections that can make a strobe, so short spans do not turn a page "
                "load into one."})
    strobe_score: float = field(default=60.0, metadata={
        "help": "Score a strobe gets at least (RITA scores strobes 0.8)."})
    min_score: float = field(default=30.0, metadata={
        "help": "Score from which a finding is made."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})


KEYS = ["internal_host", "dest"]


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    span = _observed_span(tel)
    if span is None:
        return []
    origin, length = span
    return _detect_pairs(tel.flows, s, origin, length)


def _candidate_flows(flows, s: Settings, origin: int):
    """Paired outbound flows with ``sec`` since ``origin``. Pairs with too few connections are
    dropped in ``_events``, by a count the one sort of the connections gives anyway (a grouped
    count and semi join before it scanned and hashed the flows once more)."""
    f = _paired(flows, s)
    return f.mutate(sec=seconds_since(f.ts, origin))


def _detect_pairs(flows, s: Settings, origin: int, length: float) -> list[Finding]:
    cand = _pair_stats(_candidate_flows(flows, s, origin), s, length).filter(
        ((ibis._.n_events >= s.min_connections)
         & (ibis._.on_beat >= s.regular_share_low * (ibis._.n_intervals - ibis._.missed)))
        | (ibis._.n_conns >= _strobe_threshold(s, length)))
    found = rows(cand.order_by(KEYS))
    if not found:
        return []
    found = [r for r in found if sum(_parts(r, s, length)[0].values()) >= s.min_score]
    if not found:
        return []
    # Names are paired and pairs counted per internal host, so the reported hosts' flows alone
    # give the same pairs: peers and evidence read those, not every flow again.
    hosts = sorted({r["internal_host"] for r in found})
    f = _candidate_flows(flows.filter(flows.internal_host.isin(hosts)), s, origin)
    peers = _peers(f, found)
    evidence = largest_flows(f, found, KEYS, s.max_evidence)
    return [_finding(r, peers[(r["internal_host"], r["dest"])],
                     evidence.get((r["internal_host"], r["dest"]), []), s, length) for r in found]


def _observed_span(tel: Telemetry) -> tuple[int, float] | None:
    """(origin epoch second, length in seconds) of the data inside the window.

    Coverage and spread are measured against what the sensors saw, not against a window that
    may reach past the data (a sensor started an hour ago has not seen a day).
    """
    r = rows(tel.flows.aggregate(lo=tel.flows.ts.min(), hi=tel.flows.ts.max()))[0]
    if r["lo"] is None:
        return None
    lo, hi = utc(r["lo"]), utc(r["hi"])
    lo = max(lo, utc(tel.start)) if tel.start else lo
    hi = min(hi, utc(tel.end)) if tel.end else hi
    origin = math.floor(lo.timestamp())
    return origin, max(hi.timestamp() - origin, 1.0)




def _strobe_threshold(s: Settings, length: float) -> float:
    return max(float(s.strobe_min_connections), s.strobe_per_day * length / 86400.0)


def _paired(flows, s: Settings):
    """Outbound flows with their destination: the name when its pair is big enough, else the address."""
    f = flows.filter((flows.direction == "outbound") & flows.external_host.notnull()
                     & ~flows.external_host.lower().startswith("ff")
                     & ~flows.external_host.re_search(_LOCAL_ONLY_V4))
    name = f.external_name.lower().nullif("")
    f = f.mutate(name=name, bytes_out=f.bytes_out.fill_null(0),
                 channel=channel(f.service, f.proto, f.resp_p))
    # Name pairs big enough to be judged by name: a join on their counts (a hash aggregate),
    # not a count window over all outbound flows (the costlier plan on DuckDB).
    named = f.filter(f.name.notnull()).group_by(["internal_host", "name"]).aggregate(_named=ibis._.count())
    named = named.filter(named._named >= s.min_connections).select("internal_host", "name", _big=ibis.literal(True))
    f = f.left_join(named, ["internal_host", "name"]).drop("internal_host_right", "name_right")
    by_name = f._big.notnull()
    return f.mutate(dest=ibis.ifelse(by_name, f.name, f.external_host),
                    grouping=ibis.ifelse(by_name, "name", "address")).drop("_big")


def _events(f, s: Settings):
    """Check-ins: connections of a pair merged while each starts within merge_seconds of the last.

    Two sorts of a pair's rows, not three and a grouping: one window over the connections gives
    each its gap to the previous, its rank, the bytes out before it and the pair's totals (one
    sort serves them all); a connection with a gap over merge_seconds (or the first) starts a
    check-in, and one window over those starts gives each check-in its connections and bytes
    (up to the next start's rank and running bytes) and its interval to the previous check-in.
    """
    w = ibis.window(group_by=KEYS, order_by=["sec"])
    run = ibis.cumulative_window(group_by=KEYS, order_by=["sec"])
    f = f.mutate(gap=f.sec - f.sec.lag().over(w), rn=ibis.row_number().over(w),
                 before=f.bytes_out.sum().over(run) - f.bytes_out,
                 n=f.count().over(w), total=f.bytes_out.sum().over(w))
    # Most pairs have a handful of connections: those are dropped here, after the one sort.
    ev = f.filter((f.n >= s.min_connections) & (f.gap.isnull() | (f.gap > s.merge_seconds)))
    ev = ev.mutate(
        conns=(ev.rn.lead().over(w).coalesce(ev.n) - ev.rn),
        size=(ev.before.lead().over(w).coalesce(ev.total) - ev.before),
        delta=ev.sec - ev.sec.lag().over(w))
    return ev.select(*KEYS, t=ev.sec, size=ev.size, conns=ev.conns, delta=ev.delta)


def _with_period(ev):
    """Check-ins with their pair's counts, median size and period.

    The period is the median of the intervals below half-way to a missed beat: with many
    missed beats the plain median sits at the top of the one-period cluster, or between two.
    """
    rough = ev.group_by(KEYS).aggregate(
        n_events=ev.count(), n_conns=ev.conns.sum(), rough=ev.delta.median(),
        median_size=ev.size.median(), first=ev.t.min(), last=ev.t.max())
    r = ev.join(rough, KEYS)
    # A null outside, not median(where=...): Spark rejects the filtered form Ibis writes for it.
    near = ibis.ifelse(r.delta <= _HALF_WAY_TO_A_MISSED_BEAT * r.rough, r.delta, ibis.null("float64"))
    period = r.group_by(KEYS).aggregate(median_interval=near.median())
    return ev.join(rough.join(period, KEYS).drop("rough"), KEYS)


def _pair_stats(f, s: Settings, length: float):
    """Per pair: counts, period and size, on-beat, missed-beat and regular-size counts, spread."""
    ev = _events(f, s)
    j = _with_period(ev)
    # A zero period (check-ins at one instant, merge_seconds = 0) has no rhythm: null, not x / 0.
    per = j.median_interval.nullif(0)
    dev = (j.delta - per).abs()
    beat = dev <= s.interval_tolerance * per
    periods = (j.delta / per).round()
    missed = (~beat & (periods >= 2) & (periods <= s.max_missed_beats + 1)
              & ((j.delta - periods * per).abs() <= s.missed_beat_tolerance * per))
    size_ok = (j.size - j.median_size).abs() <= ibis.greatest(s.size_tolerance * j.median_size,
                                                               s.size_slack_bytes)
    reg = j.group_by(KEYS).aggregate(
        n_intervals=j.delta.count(), on_beat=beat.cast("int64").sum(), missed=missed.cast("int64").sum(),
        on_beat_seconds=j.delta.sum(where=beat | missed), mad_interval=dev.median(),
        size_regular=size_ok.cast("int64").sum(), n_events=j.n_events.max(), n_conns=j.n_conns.max(),
        median_interval=per.max(), median_size=j.median_size.max(), first=j.first.min(), last=j.last.max())
    return reg.join(_spread(ev, s, length), KEYS)


def _spread(ev, s: Settings, length: float):
    """Normalised entropy of the check-ins over ``histogram_bins`` equal bins of the span (0..1)."""
    width = length / s.histogram_bins
    b = ev.mutate(bin=ibis.least((ev.t / width).floor(), s.histogram_bins - 1))
    counts = b.group_by(KEYS + ["bin"]).aggregate(c=b.count())
    tot = counts.group_by(KEYS).aggregate(total=counts.c.sum(), bins=counts.count())
    p = counts.join(tot, KEYS)
    share = p.c.cast("float64") / p.total
    ent = p.group_by(KEYS).aggregate(entropy=(-share * share.ln()).sum(), active_bins=p.bins.max())
    norm = math.log(s.histogram_bins) if s.histogram_bins > 1 else 1.0
    return ent.mutate(spread=ent.entropy / norm).drop("entropy")


def _peers(f, found: list[dict]) -> dict:
    """Per reported pair: addresses and names seen, channel, tenant, times and bytes out."""
    hosts = sorted({r["internal_host"] for r in found})
    dests = sorted({r["dest"] for r in found})
    g = f.filter(f.internal_host.isin(hosts) & f.dest.isin(dests))
    per = g.group_by(KEYS + ["external_host", "name"]).aggregate(
        conns=g.count(), bytes_out=g.bytes_out.sum(), start=g.ts.min(), end=g.ts_end.max(),
        grouping=g.grouping.max(), tenant=g.tenant.max())
    chan = g.group_by(KEYS + ["channel"]).aggregate(conns=g.count())
    out: dict = {}
    for r in rows(per):
        p = out.setdefault((r["internal_host"], r["dest"]), {
            "addrs": {}, "names": set(), "bytes_out": 0, "times": [], "grouping": "",
            "tenants": set(), "channels": {}})
        p["addrs"][r["external_host"]] = p["addrs"].get(r["external_host"], 0) + r["conns"]
        p["names"] |= {r["name"]} if r["name"] else set()
        p["bytes_out"] += r["bytes_out"]
        p["times"] += [t for t in (r["start"], r["end"]) if t is not None]
        p["grouping"] = max(p["grouping"], r["grouping"])
        p["tenants"] |= {r["tenant"]} if r["tenant"] else set()
    for p in out.values():
        p["start"], p["end"] = min(p["times"]), max(p["times"])
        p["tenant"] = min(p["tenants"]) if p["tenants"] else None
    for r in rows(chan):
        key = (r["internal_host"], r["dest"])
        if key in out and r["channel"]:
            out[key]["channels"][r["channel"]] = r["conns"]
    return out


def _parts(r: dict, s: Settings, length: float) -> tuple[dict, dict]:
    """Score parts and the measures behind them for one pair row."""
    ivals, missed = r["n_intervals"] or 0, r["missed"] or 0
    judged = ivals - missed  # intervals spanning missed beats are neither on nor off beat
    beat = r["on_beat"] / judged if judged else 0.0
    beats = r["on_beat"] + missed  # a missed-beat interval confirms the phase once, whatever its length
    size_share = r["size_regular"] / r["n_events"]
    width = s.regular_share_full - s.regular_share_low
    rhythm = clip01((beat - s.regular_share_low) / width)
    sure = rhythm * min(1.0, beats / s.confident_beats)
    # Time on beat, not first-to-last: bursts that are regular inside but far apart cover nothing.
    coverage = clip01((r["on_beat_seconds"] or 0.0) / min(length, s.full_rhythm_seconds))
    spread = min(clip01(r["spread"]), coverage)  # a spread of bursts is not a spread of a rhythm
    parts = {
        "interval_regularity": s.weight_interval * rhythm,
        "connection_count": s.weight_count * sure,
        "size_regularity": s.weight_size * sure * clip01((size_share - s.regular_share_low) / width),
        "duration_coverage": s.weight_coverage * sure * coverage,
        "hourly_spread": s.weight_spread * sure * spread,
    }
    strobe = r["n_conns"] >= _strobe_threshold(s, length)
    if strobe:
        parts["strobe"] = max(0.0, s.strobe_score - sum(parts.values()))
    m = {"connections": r["n_conns"], "check_ins": r["n_events"], "intervals": ivals,
         "on_beat_intervals": r["on_beat"], "missed_beat_intervals": missed,
         "period_seconds": _round(r["median_interval"]),
         "mad_interval_seconds": _round(r["mad_interval"]), "on_beat_share": round(beat, 3),
         "median_bytes_out": _round(r["median_size"]), "regular_size_share": round(size_share, 3),
         "on_beat_seconds": _round(r["on_beat_seconds"]), "active_seconds": _round(r["last"] - r["first"]),
         "coverage": round(coverage, 3), "spread": round(clip01(r["spread"]), 3),
         "active_bins": r["active_bins"], "observed_seconds": round(length, 1), "strobe": strobe}
    return parts, m


def _finding(r: dict, peer: dict, ev: list[dict], s: Settings, length: float) -> Finding:
    parts, m = _parts(r, s, length)
    host, dest = r["internal_host"], r["dest"]
    m["bytes_out"] = peer["bytes_out"]
    m["grouping"] = peer["grouping"]
    chan = max(sorted(peer["channels"]), key=peer["channels"].get) if peer["channels"] else ""
    return Finding(
        detection=META.id,
        key=(host, dest),
        score_parts=parts,
        explanation=_sentence(host, dest, peer, m, s),
        internal_hosts=[host], external_hosts=sorted(peer["addrs"]), external_names=sorted(peer["names"]),
        channel=chan, start=peer["start"], end=peer["end"], bytes_out=peer["bytes_out"],
        evidence={"connections": m["connections"], "check_ins": m["check_ins"],
                  "addresses": len(peer["addrs"]), "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics=m,
        thresholds={"min_connections": s.min_connections, "interval_tolerance": s.interval_tolerance,
                    "size_tolerance": s.size_tolerance, "regular_share_low": s.regular_share_low,
                    "regular_share_full": s.regular_share_full,
                    "strobe_connections": round(_strobe_threshold(s, length)), "min_score": s.min_score},
        tenant=peer["tenant"],
    )


def _sentence(host: str, dest: str, peer: dict, m: dict, s: Settings) -> str:
    where = dest if len(peer["addrs"]) < 2 else f"{dest} ({len(peer['addrs'])} addresses)"
    head = (f"{host} contacted {where} {m['check_ins']} times ({m['connections']} connections) "
            f"over {_human_seconds(m['active_seconds'] or 0)}")
    total = f"{human_bytes(peer['bytes_out'])} out in all"
    if m["period_seconds"] is None:
        return f"{head}, a strobe of very many connections; {total}."
    tol, stol = round(100 * s.interval_tolerance), round(100 * s.size_tolerance)
    return (f"{head}, about every {_human_seconds(m['period_seconds'])} "
            f"({100 * m['on_beat_share']:.0f} % of {m['intervals'] - m['missed_beat_intervals']} intervals "
            f"within ±{tol} %{_missed(m)}), "
            f"{human_bytes(m['median_bytes_out'])} out per check-in "
            f"({100 * m['regular_size_share']:.0f} % within ±{stol} %); on beat for "
            f"{_human_seconds(m['on_beat_seconds'] or 0)} of {_human_seconds(m['observed_seconds'])} "
            f"observed, in {m['active_bins']} of {s.histogram_bins} bins; {total}"
            f"{' (a strobe)' if m['strobe'] else ''}.")


def _missed(m: dict) -> str:
    n = m["missed_beat_intervals"]
    return f", {n} more spanning missed beats" if n else ""


def _human_seconds(x: float) -> str:
    if x < 120:
        return f"{x:.1f} s"
    if x < 7200:
        return f"{x / 60:.1f} min"
    return f"{x / 3600:.1f} h"


def _round(x):
    return None if x is None else round(float(x), 3)
