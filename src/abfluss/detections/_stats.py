"""Shared statistics and helpers for detections, written once in Ibis so every engine runs them.

Ibis exposes neither MAD nor skewness, and Spark has no MAD: they are composed from medians
here (ARCHITECTURE.md, "Scale-out"). This is the one place for such escape hatches.
"""

from __future__ import annotations

import math
from collections import Counter

import ibis
from ibis import _

from ._memo import built

#: Scale that makes the MAD a consistent estimate of the standard deviation for normal data.
MAD_SCALE = 1.4826

#: Well-known ports, for naming a channel when the sensor named no application.
PORT_CHANNELS = {
    20: "ftp-data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 80: "http",
    110: "pop3", 135: "msrpc", 139: "smb", 143: "imap", 443: "https", 445: "smb", 465: "smtps",
    587: "smtp", 853: "dot", 993: "imaps", 995: "pop3s", 1194: "openvpn", 3389: "rdp",
    5985: "winrm", 5986: "winrm", 8080: "http", 8443: "https",
}


def robust_baseline(t, by: list[str], value: str):
    """Per group of ``by``: ``n``, ``median`` and ``mad`` (median absolute deviation) of ``value``."""
    med = t.group_by(by).aggregate(n=_.count(), median=t[value].median())
    j = t.join(med, by).select(*by, "median", dev=(t[value] - med["median"]).abs())
    mad = j.group_by(by).aggregate(mad=j["dev"].median())
    return med.join(mad, by).select(*by, "n", "median", "mad")


@built
def channel(service, proto, port):
    """A channel name from the sensor's application name, else the protocol and port.

    ``service`` of the sensor wins ("tls" from nDPI is reported as https on 443).
    """
    svc = service.lower()
    known = ibis.cases(*[(port == p, name) for p, name in PORT_CHANNELS.items()], else_=None)
    by_port = known.coalesce(proto.lower() + "/" + port.cast("string"))
    named = ibis.cases(
        (svc.isin(["tls", "ssl"]) & (port == 443), "https"),
        (svc.isin(["tls", "ssl"]), "tls"),
        else_=svc,
    )
    return ibis.ifelse(svc.isnull() | (svc == "") | (svc == "unknown"), by_port, named)


def clip01(x: float) -> float:
    return max(0.0, min(1.0, x))


def ramp(value: float, low: float, high: float) -> float:
    """0 at or below ``low``, 1 at or above ``high``, linear between (log scale if both > 0)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0.0
    if high <= low:
        return 1.0 if value >= high else 0.0
    if low > 0 and value > 0:
        return clip01((math.log(value) - math.log(low)) / (math.log(high) - math.log(low)))
    return clip01((value - low) / (high - low))


def human_bytes(n: float | int | None) -> str:
    """Bytes as a person reads them in a sentence: 312 KB, 1.2 MB (decimal units, like ledgers)."""
    n = float(n or 0)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("bytes", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def rows(expr) -> list[dict]:
    """Execute an Ibis expression on its backend and return plain Python rows."""
    from ._sql import pylist, to_pyarrow  # on DuckDB, SQL compiled once per expression (see _sql)

    return pylist(to_pyarrow(expr))


def evidence_uids(flows, predicate, limit: int = 10, order: str = "bytes_out") -> list[dict]:
    """The top flows matching ``predicate`` (largest ``order`` first) as evidence references."""
    t = flows.filter(predicate).order_by([ibis.desc(order), "ts", "uid"]).limit(limit)
    return rows(t.select("uid", "community_id", "ts", "orig_h", "orig_p", "resp_h", "resp_p",
                         "bytes_out", "bytes_in"))


# -- baselines over a group's other time buckets; local time without engine time-zone support --


def others_baseline(totals, cand, by: list[str], bucket: str, value: str):
    """Per row of ``cand``: ``n``, ``median`` and ``mad`` of ``value`` over its group's *other* buckets.

    ``totals`` has one row per group (``by``) and ``bucket``; ``cand`` the rows to judge, with the
    same key columns. Leaving the judged bucket out keeps a spike from raising its own baseline.
    A candidate whose group has no other bucket gets ``n`` 0 and a null median and MAD.
    """
    c = cand.select(*by, bucket)
    o = totals.select(*[totals[k].name(f"_o_{k}") for k in by], _ob=totals[bucket], _ov=totals[value])
    pairs = c.join(o, [c[k] == o[f"_o_{k}"] for k in by] + [c[bucket] != o["_ob"]])
    base = robust_baseline(pairs.select(*by, bucket, "_ov"), by + [bucket], "_ov")
    j = cand.left_join(base, by + [bucket])
    return j.select(*[j[k] for k in cand.columns], n=j["n"].fill_null(0), median=j["median"], mad=j["mad"])


def utc(t):
    """A datetime as an aware UTC one: Spark hands back naive UTC datetimes, DuckDB aware ones."""
    from datetime import timezone

    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def utc_offsets(tz: str, lo, hi) -> list[tuple[int, int]]:
    """Stretches of constant UTC offset of time zone ``tz`` over [lo, hi] (datetimes).

    Returns ``(first epoch second, offset seconds)`` pairs, oldest first; the first stretch also
    covers everything before ``lo``. Found by stepping hourly through the span and bisecting
    each change to the second, so daylight-saving rules come from the tz database, not code.
    """
    from datetime import datetime
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    lo, hi = utc(lo), utc(hi)

    def off(e: int) -> int:
        return int(datetime.fromtimestamp(e, zone).utcoffset().total_seconds())

    e, end = int(lo.timestamp()), int(hi.timestamp())
    out = [(e, off(e))]
    while e < end:
        nxt = min(e + 3600, end)
        if off(nxt) != out[-1][1]:
            a, b = e, nxt
            while b - a > 1:
                m = (a + b) // 2
                a, b = (m, b) if off(m) == out[-1][1] else (a, m)
            out.append((b, off(b)))
        e = nxt
    return out


def local_seconds(epoch, offsets: list[tuple[int, int]]):
    """UTC epoch seconds (an Ibis integer) as local wall-clock seconds, given ``utc_offsets``.

    Plain integer arithmetic and one CASE, so it runs the same on every engine (Spark and
    DuckDB disagree on time-zone functions; both agree on integers).
    """
    if len(offsets) == 1:
        return epoch + offsets[0][1]
    later = [(epoch >= start, o) for start, o in reversed(offsets[1:])]
    return epoch + ibis.cases(*later, else_=offsets[0][1])


def spike(x: float, n: int, median: float | None, mad: float | None, min_n: int, unbaselined: float,
          min_ratio: float, min_z: float) -> dict:
    """How unusual the value ``x`` is against a group's other ``n`` values (median, MAD).

    With fewer than ``min_n`` others there is no baseline and ``x >= unbaselined`` decides.
    Otherwise ``x`` must exceed the median by ``min_ratio`` times and by ``min_z`` robust
    z-scores. A median or MAD of 0 (silent, or perfectly regular) leaves that measure
    unbounded: it is returned as None and counts as met; the other one still has to hold.
    """
    excess = x - (median or 0)
    if n < max(min_n, 1):
        return {"baselined": False, "ratio": None, "z": None, "excess": excess, "unusual": x >= unbaselined}
    ratio = x / median if median > 0 else None
    z = (x - median) / (MAD_SCALE * mad) if mad > 0 else None
    unusual = x > median and (ratio is None or ratio >= min_ratio) and (z is None or z >= min_z)
    return {"baselined": True, "ratio": ratio, "z": z, "excess": excess, "unusual": unusual}


def seen_before(history, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (internal host, external host) ``pairs`` had outbound flows in ``history``."""
    if not pairs:
        return set()
    h = history.filter((history.direction == "outbound")
                       & history.internal_host.isin(sorted({p[0] for p in pairs}))
                       & history.external_host.isin(sorted({p[1] for p in pairs})))
    found = rows(h.select("internal_host", "external_host").distinct())
    return {(r["internal_host"], r["external_host"]) for r in found} & pairs


def seconds_since(ts, origin_epoch: int):
    """Seconds from the whole epoch second ``origin_epoch`` to the timestamp column ``ts``, to the
    millisecond, as a float64 Ibis column that is the same on every engine.

    DuckDB's epoch keeps the fraction of a second while Spark's drops it; flooring the epoch and
    adding the millisecond field gives one answer on both. Subtracting the origin keeps the
    numbers small, so differences of nearby times lose nothing to float rounding.
    """
    whole = ts.epoch_seconds().floor().cast("int64") - int(origin_epoch)
    return whole.cast("float64") + ts.millisecond().cast("float64") / 1000.0


def shannon_entropy(text: str) -> float:
    """Shannon entropy of the characters of ``text`` in bits per character (0 for empty text).

    Hex tops out at 4, base32 at 5, base64 at 6; words and host names stay near 3.5-4.2.
    """
    if not text:
        return 0.0
    n = len(text)
    # Counter counts in C, keys in order of first occurrence as a dict would: the same sum
    return -sum(k / n * math.log2(k / n) for k in Counter(text).values())


def top_destinations(t, by: list[str], limit: int | None = None):
    """Per group of ``by``: the external hosts with most bytes out (``rank`` 0 = largest).

    Each row has the destination's ``bytes``, ``name``, ``dest_class``, ``tenant`` and the
    ``channel`` that carried most of its bytes (``t`` needs a ``channel`` column). Built from
    windows rather than ``mode()``, which the PySpark backend of Ibis cannot compile, and with
    ties broken by name so the result is the same on every run.
    """
    keys = by + ["external_host"]
    g = t.group_by(keys + ["channel"]).aggregate(cb=t.bytes_out.sum(), name=t.external_name.max(),
                                                 dest_class=t.dest_class.max(), tenant=t.tenant.max())
    dest = ibis.window(group_by=[g[k] for k in keys])
    by_size = ibis.window(group_by=[g[k] for k in keys], order_by=[ibis.desc(g.cb), g.channel])
    g = g.mutate(bytes=g.cb.sum().over(dest), name=g.name.max().over(dest),
                 dest_class=g.dest_class.max().over(dest), tenant=g.tenant.max().over(dest),
                 crank=ibis.row_number().over(by_size))
    d = g.filter(g.crank == 0)
    order = ibis.window(group_by=[d[k] for k in by], order_by=[ibis.desc(d.bytes), d.external_host])
    d = d.mutate(rank=ibis.row_number().over(order))
    if limit is not None:
        d = d.filter(d.rank < limit)
    return d.select(*by, "external_host", "bytes", "name", "dest_class", "channel", "tenant", "rank")


# -- per-group listings in one query (added with scan_and_lateral) ---------------------------


def keys_table(found: list[dict], by: list[str], like):
    """The ``by`` values of rows already fetched, as a small literal table typed like ``like``.

    A semi-join with it scans the flows once instead of recomputing the aggregation that found
    the rows (scan_and_lateral measured 6 s -> 0.6 s on 2 M flows).
    """
    from ._sql import arrow_table, memtable  # neither loads pandas (see _sql)

    schema = like.select(*by).schema().to_pyarrow()
    return memtable(arrow_table({b: [r[b] for r in found] for b in by}, schema))


def first_per_group(t, keys, by: list[str], cols: list[str], order: list[str], limit: int,
                    distinct: bool = False) -> dict[tuple, list[dict]]:
    """Per group of ``by`` that occurs in ``keys``: the first ``limit`` rows of ``cols`` of ``t`` in
    ``order`` (distinct rows if asked), in one query for all groups instead of one per finding.

    Returns ``{tuple of the by values: [row dicts]}``; window functions only, so every engine runs it.
    """
    s = t.semi_join(keys.select(*by), by).select(*dict.fromkeys([*by, *cols, *order]))
    if distinct:
        s = s.distinct()
    within = [k for k in order if k not in by] or list(order)
    w = ibis.window(group_by=[s[k] for k in by], order_by=[s[k] for k in within])
    s = s.mutate(_rn=ibis.row_number().over(w))
    out: dict[tuple, list[dict]] = {}
    for r in rows(s.filter(s._rn < limit).order_by(list(dict.fromkeys([*by, *order])))):
        out.setdefault(tuple(r[k] for k in by), []).append({k: r[k] for k in cols})
    return out


def attach_targets(cands: list[dict], scope, by: list[str], max_evidence: int, max_listed: int,
                   ports: bool = False) -> list[dict]:
    """Add to each candidate of a sweep (one source reaching many hosts or ports, grouped by
    ``by``) its evidence flows (``ev``), the hosts it reached (``listed``: (address, internal)) and,
    if asked, the ports (``port_list``): a few queries for all candidates (icmp_scan, scan_and_lateral)."""
    if not cands:
        return cands
    keys = keys_table(cands, by, scope)
    ev = first_per_group(scope, keys, by, ["uid", "community_id", "ts"], ["ts", "uid"], max_evidence)
    hosts = first_per_group(scope, keys, by, ["resp_h", "resp_internal"], ["resp_h"], max_listed, True)
    pl = first_per_group(scope, keys, by, ["resp_p"], ["resp_p"], max_listed, True) if ports else {}
    for c in cands:
        k = tuple(c[b] for b in by)
        c.update(ev=ev.get(k, []), listed=[(h["resp_h"], bool(h["resp_internal"])) for h in hosts.get(k, [])],
                 port_list=[p["resp_p"] for p in pl.get(k, [])])
    return cands


def timed(c: dict) -> dict:
    """Add a sweep candidate's span (``sec``) and rate (``n`` targets per minute; a burst under a
    minute counts as one)."""
    c["end"] = c["end"] or c["start"]
    c["sec"] = max(0.0, (c["end"] - c["start"]).total_seconds())
    c["rate"] = c["n"] / max(c["sec"] / 60, 1.0)
    return c


def largest_flows(flows, keys: list[dict], by: list[str], limit: int, per: list[str] | None = None
                  ) -> dict[tuple, list[dict]]:
    """Evidence for many findings in one query: the flows of the groups ``by`` named in ``keys``
    (row dicts), and of them per group ``per`` (default ``by``) the ``limit`` with most bytes
    out, then earliest; each as ``uid`` and ``community_id``.
    """
    per = per or by
    t = flows.semi_join(keys_table(keys, by, flows), by)
    w = ibis.window(group_by=[t[p] for p in per], order_by=[ibis.desc(t.bytes_out), t.ts, t.uid])
    t = t.mutate(_rn=ibis.row_number().over(w))
    out: dict[tuple, list[dict]] = {}
    for r in rows(t.filter(t._rn < limit).order_by([*per, "_rn"]).select(*per, "uid", "community_id")):
        out.setdefault(tuple(r[p] for p in per), []).append(r)
    return out


# -- channel of a finding from its grouped rows (added with upload_heavy) -----------------------


def main_channel(groups: list[dict]) -> tuple[str, bool]:
    """The channel that carried most bytes out over rows with ``channel`` and ``bytes_out``
    (ties broken by name), and whether other channels carried some too."""
    per: dict[str, float] = {}
    for r in groups:
        per[r["channel"] or ""] = per.get(r["channel"] or "", 0) + (r["bytes_out"] or 0)
    best = max(sorted(per), key=lambda c: per[c])
    return best, len(per) > 1


def linear(value: float, low: float, high: float) -> float:
    """0 at ``low``, 1 at ``high``, linear between (a step at ``high`` when the two meet)."""
    return clip01((value - low) / (high - low)) if high > low else float(value >= high)
