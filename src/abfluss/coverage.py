"""Coverage: what each sensor saw, where it was blind, and what it says it missed.

A gap is a stretch of at least ``GAP_SECONDS`` inside a sensor's span in which no flow was
active and no record started: with no records, "nothing left" cannot be claimed for it.
"""

from __future__ import annotations

from .statecache import StateCache
from .store import Workspace

#: Shortest silence counted as a gap (s). One minute: the resolution of sensor_health.
GAP_SECONDS = 60
#: Gaps listed per sensor (all are counted).
MAX_GAPS_LISTED = 10


#: Results per workspace state (see ``_cached``): computed once, by whoever asks first.
_CACHE = StateCache()


def data_version(ws: Workspace) -> tuple:
    """What the stored records are: files (and their rows) only change when an input is committed.
    (``_cached`` adds the configuration, which decides which addresses are internal.)"""
    return tuple(ws.con.execute("SELECT count(*), coalesce(sum(rows), 0), max(path) FROM files").fetchall()[0])


def _cached(ws: Workspace, key: tuple, compute):
    """``compute()`` once per workspace, arguments and data version: a scan of every record takes
    seconds on millions of flows, and a console asks on every overview. New inputs (an ingest, a
    ``watch`` commit) change the version, so an answer is never stale; a caller asking while
    another computes the same answer (the console's warm-up, a concurrent request) waits for it
    (``statecache``)."""
    k = (str(ws.root), data_version(ws) + (repr(getattr(ws, "config", None)),)) + key
    return _CACHE.get(k, compute)


def coverage(ws: Workspace) -> list[dict]:
    """Per sensor: span, records, gap minutes, largest gaps, missed-bytes share, interim flows."""
    import copy
    return copy.deepcopy(_cached(ws, ("coverage",), lambda: _coverage(ws)))


def _coverage(ws: Workspace) -> list[dict]:
    # A gap can only end at the first record of a GAP_SECONDS bucket (an earlier record in the
    # same bucket ended less than GAP_SECONDS before), so the records are grouped per sensor and
    # bucket (first start, last end, records, bytes) and the running end is taken over those
    # groups: the same gaps as over every record, and span, records and loss from the same one
    # scan, without sorting millions of rows (the console's overview asks for it first).
    rows = ws.con.execute(f"""
        WITH r AS (
            SELECT sensor, ts, coalesce(ts_end, ts) AS e,
                   coalesce(orig_bytes, orig_ip_bytes, 0) + coalesce(resp_bytes, resp_ip_bytes, 0) AS bytes,
                   coalesce(missed_bytes, 0) AS missed FROM flows_raw
            UNION ALL SELECT sensor, ts, ts, 0, 0 FROM dns_raw
            UNION ALL SELECT sensor, ts, ts, 0, 0 FROM http_raw
            UNION ALL SELECT sensor, ts, ts, 0, 0 FROM tls_raw
            UNION ALL SELECT sensor, ts, ts, 0, 0 FROM alerts_raw),
        b AS (SELECT sensor, epoch_us(ts) // {GAP_SECONDS * 1_000_000} AS bucket, min(ts) AS ts, max(e) AS e,
                     count(*) AS n, sum(bytes) AS bytes, sum(missed) AS missed
              FROM r GROUP BY sensor, bucket),
        o AS (SELECT *, max(e) OVER (PARTITION BY sensor ORDER BY bucket
                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end FROM b)
        SELECT sensor, min(ts), max(e), sum(n), sum(bytes), sum(missed),
               coalesce(list({{'seconds': epoch(ts - prev_end), 'start': prev_end, 'end': ts}}
                             ORDER BY epoch(ts - prev_end) DESC, ts)
                        FILTER (WHERE epoch(ts - prev_end) >= {GAP_SECONDS}), [])
        FROM o GROUP BY sensor ORDER BY sensor""").fetchall()
    interim = dict(ws.con.execute(
        "SELECT sensor, count(*) FROM flows WHERE coalesce(open, false) GROUP BY sensor").fetchall())
    out = []
    for sensor, first, last, records, total_bytes, missed, found in rows:
        mine = [(sensor, g["start"], g["end"], g["seconds"]) for g in found]
        span = (last - first).total_seconds() if first and last else 0.0
        out.append({
            "sensor": sensor, "first_seen": first, "last_seen": last, "span_minutes": round(span / 60, 1),
            "records": records, "gap_minutes": int(sum(g[3] for g in mine) // 60), "gaps": len(mine),
            "largest_gaps": [{"start": g[1], "end": g[2], "minutes": round(g[3] / 60, 1)}
                             for g in mine[:MAX_GAPS_LISTED]],
            "bytes": int(total_bytes or 0), "missed_bytes": int(missed or 0),
            "missed_share": (float(missed) / float(total_bytes + missed)) if (total_bytes or missed) else 0.0,
            "interim_flows": int(interim.get(sensor, 0)),
        })
    return out


def payload_coverage(ws: Workspace, start=None, end=None, tenants: frozenset[str] | None = None) -> dict:
    """See ``_payload_coverage``. One scan per data version and window sums every tenant's bytes
    (kept, ``_cached``); the caller's ``tenants`` pick their sums from it, so the console's
    analysts and each tenant's officers share that one scan."""
    return _shares(_cached(ws, ("payload", start, end), lambda: _payload_sums(ws, start, end)), tenants)


def _payload_coverage(ws: Workspace, start=None, end=None, tenants: frozenset[str] | None = None) -> dict:
    """How much of the outflow's content payload inspection could check.

    ``outbound_bytes`` is every payload byte internal hosts sent to external ones (the
    ledger); of it, ``cleartext_bytes`` were read by the detectors, ``encrypted_bytes`` were
    TLS/SSH/QUIC and could not be, and ``not_inspected_bytes`` came from flow records only
    (Zeek, NetFlow, Suricata) or were not reassembled. A clean DLP result speaks only for
    the cleartext share. ``tenants`` (None: all) counts only those tenants' internal hosts.
    """
    return _shares(_payload_sums(ws, start, end), tenants)


def _payload_sums(ws: Workspace, start=None, end=None, stored: bool | None = None) -> dict[str | None, tuple[int, int, int]]:
    """Per tenant of the sending internal host (None: in no tenant's networks): the bytes out in
    [start, end) by the ledger, and of the inspected payload the cleartext and encrypted bytes.

    Over all data the bytes out are summed from the stored hourly ledger when it is current
    (``stored`` None: then; its groups are those of the same boundary flows, so the sums are
    the same: 0.07 instead of 2.7 CPU s over ten million flows), else from the flows."""
    from . import ledger_store
    if stored is None:
        stored = start is None and end is None and ledger_store.current(ws)
    cond, args = ["true"], []
    if start is not None:
        cond.append("ts >= ?")
        args.append(start)
    if end is not None:
        cond.append("ts < ?")
        args.append(end)
    where = " AND ".join(cond)
    sums: dict = {}
    totals = (("SELECT a.tenant, sum(g.bytes_out) FROM ledger_hourly g JOIN address_class a ON a.id = g.internal_id "
               "GROUP BY a.tenant", []) if stored else
              (f"SELECT tenant, coalesce(sum(bytes_out), 0) FROM flows WHERE direction IN ('outbound', 'inbound') "
               f"AND {where} GROUP BY tenant", args))
    for tenant, total in ws.con.execute(*totals).fetchall():
        sums[tenant] = (int(total), 0, 0)
    for tenant, clear, enc in ws.con.execute(f"""
        SELECT CASE i.sender WHEN 'orig' THEN o.tenant ELSE r.tenant END AS tenant,
               coalesce(sum(payload_bytes) FILTER (WHERE NOT coalesce(encrypted, false)), 0),
               coalesce(sum(payload_bytes) FILTER (WHERE encrypted), 0)
        FROM inspected_raw i
        JOIN address_class o ON o.addr = i.orig_h JOIN address_class r ON r.addr = i.resp_h
        WHERE CASE i.sender WHEN 'orig' THEN o.internal AND NOT r.internal
                            ELSE r.internal AND NOT o.internal END AND {where}
        GROUP BY ALL""", args).fetchall():
        sums[tenant] = (sums.get(tenant, (0, 0, 0))[0], int(clear), int(enc))
    return sums


def _shares(sums: dict[str | None, tuple[int, int, int]], tenants: frozenset[str] | None) -> dict:
    """``_payload_coverage``'s figures over the tenants given (None: all, those in no tenant's
    networks included)."""
    mine = [v for t, v in sums.items() if tenants is None or t in tenants]
    total, clear, enc = (sum(v[i] for v in mine) for i in range(3))
    total = max(total, clear + enc)
    share = (lambda n: round(n / total, 4) if total else 0.0)
    return {"outbound_bytes": total, "cleartext_bytes": clear, "encrypted_bytes": enc,
            "not_inspected_bytes": total - clear - enc, "cleartext_share": share(clear),
            "encrypted_share": share(enc), "not_inspected_share": share(total - clear - enc)}
