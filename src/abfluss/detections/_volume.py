"""What bulk_outbound and off_hours share: a host's volume in a bucket (an hour, a day, an
off-hours period) judged against its own other buckets, scored and explained the same way."""

from __future__ import annotations

import ibis
from ibis import _

from ._stats import channel, human_bytes, ramp, seen_before


def outbound(t, in_window: bool, *extra: str):
    """Outbound flows with the columns volume detections need; ``in_window`` marks which side
    of the look-back they come from, so window and history can be one table."""
    t = t.filter(_.direction == "outbound")
    return t.select("internal_host", "external_host", "external_name", "ts", "ts_end", "bytes_out",
                    "bytes_in", "dest_class", "tenant", *extra, channel=channel(t.service, t.proto, t.resp_p),
                    in_window=ibis.literal(in_window))


def epoch_of(t):
    """Whole UTC epoch seconds of ``ts``, as both detections bucket them."""
    return t.ts.epoch_seconds().cast("int64")


def buckets(tel, seconds: int):
    """Outbound bytes per internal host, side of the look-back (``in_window``) and bucket ``b`` of
    ``seconds`` of UTC epoch time (``epoch // seconds``): ``bytes`` (summed bytes out), ``start``
    (earliest start), ``end`` (latest end). Computed once per run and size (``Telemetry.shared``):
    bulk_outbound's hours and days and off_hours' periods are unions of such buckets, so each
    reads this instead of grouping every flow of window and look-back again."""
    def build():
        both = outbound(tel.flows, True).union(outbound(tel.history, False))
        both = both.mutate(b=epoch_of(both) // seconds)
        return both.group_by(["internal_host", "in_window", "b"]).aggregate(
            bytes=both.bytes_out.sum(), start=both.ts.min(), end=both.ts_end.max())

    return tel.shared(f"outbound_buckets_{int(seconds)}", build)


def baseline_parts(r: dict, weights: dict, floor: float, high: float, s, unknown_dest: bool) -> dict[str, float]:
    """Score parts: volume above the floor, robust z and ratio to the baseline, unknown destination."""
    parts = {"volume": weights["volume"] * ramp(r["bytes"], floor, high)}
    if r["baselined"]:
        parts["robust_z"] = weights["robust_z"] * (1.0 if r["z"] is None else ramp(r["z"], s.min_z, s.high_z))
        parts["ratio"] = weights["ratio"] * (1.0 if r["ratio"] is None
                                             else ramp(r["ratio"], s.min_ratio, s.high_ratio))
    if unknown_dest:
        parts["unknown_destination"] = s.unknown_destination_points
    return parts


def unknown_tops(history, dests: dict[tuple, list[dict]]) -> set[tuple]:
    """Keys of ``dests`` whose top destination is unknown and new to the host (not in the look-back)."""
    tops = {k: ds[0] for k, ds in dests.items()}
    seen = seen_before(history, {(d["internal_host"], d["external_host"]) for d in tops.values()})
    return {k for k, d in tops.items()
            if d["dest_class"] == "unknown" and (d["internal_host"], d["external_host"]) not in seen}


def round_or_none(x: float | None, digits: int = 1) -> float | int | None:
    if x is None:
        return None
    return round(x) if digits == 0 else round(x, digits)


def spike_metrics(worst: dict, rs: list[dict], top: list[dict], excess: float) -> dict:
    """The numbers of the worst bucket and of all unusual ones, shared by both detections."""
    return {"bytes": worst["bytes"], "median": round_or_none(worst["median"], 0),
            "mad": round_or_none(worst["mad"], 0), "baseline_n": worst["n"],
            "ratio": round_or_none(worst["ratio"]), "robust_z": round_or_none(worst["z"]),
            "bytes_total": sum(r["bytes"] for r in rs), "excess_total": round(excess),
            "top_destinations": {d["name"] or d["external_host"]: d["bytes"] for d in top}}


def destination_phrase(top: list[dict], rs: list[dict], excess: float, unit: str) -> str:
    """'; top destination X (n MB); k such <unit>s, m MB above the median in all'."""
    dest = (f"; top destination {top[0]['name'] or top[0]['external_host']} ({human_bytes(top[0]['bytes'])})"
            if top else "")
    more = f"; {len(rs)} such {unit}s, {human_bytes(excess)} above the median in all" if len(rs) > 1 else ""
    return dest + more
