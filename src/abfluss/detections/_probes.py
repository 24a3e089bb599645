"""What scans and connection-shaped password guessing share: which flows are probes, the common
aggregates of a candidate, how a span reads (evidence, hosts and rate: ``_stats.attach_targets``,
``_stats.timed``).

A *probe* is a connection that exchanged no data: a failed Zeek state (S0, REJ, RSTOS0, RSTRH,
SH, SHR), no reply packet, or no payload at all (RSTO after a handshake: a connect scan of an
open port). Where a sensor gives no payload bytes (Suricata, NetFlow) a flow of at most
``max_packets`` packets with no more than header-sized packets counts.
"""

from __future__ import annotations

import ibis
from ibis import _


#: Zeek connection states in which the connection never got established.
FAILED_STATES = ("S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR")


def probe_flows(flows, protocols, max_packets: int, header_bytes: int):
    """Flows with an internal side, with ``probe``: the connection exchanged no data."""
    f = flows.filter(_.direction != "external")
    # float64: counters near 2**63 (junk a sensor can write) must not overflow the sums
    num = lambda c: c.cast("float64").fill_null(0)  # noqa: E731
    pkts = num(f.orig_pkts) + num(f.resp_pkts)
    known = f.orig_bytes.notnull() | f.resp_bytes.notnull()
    payload = num(f.orig_bytes) + num(f.resp_bytes)
    ip_bytes = num(f.orig_ip_bytes) + num(f.resp_ip_bytes)
    # Without payload counters, a handful of header-sized packets is a handshake at most.
    empty = ibis.ifelse(known, payload == 0, (pkts <= max_packets) & (ip_bytes <= pkts * header_bytes))
    failed = f.conn_state.isin(FAILED_STATES).fill_null(False) | (f.resp_pkts == 0).fill_null(False)
    probe = f.proto.isin(list(protocols)) & (failed | ((f.proto == "tcp") & empty))
    return f.mutate(probe=probe)


def common(t) -> dict:
    # Probes carry no data: only what the other flows sent out counts (bytes_out 0 for a pure scan).
    return dict(flows=t.count(), start=t.ts.min(), end=t.ts_end.max(),
                bytes_out=ibis.ifelse(t.probe, 0, t.bytes_out.fill_null(0)).sum(), tenant=t.tenant.max(),
                src_internal=t.orig_internal.any())


def span_text(sec: float) -> str:
    return f"{sec:.0f} s" if sec < 120 else f"{sec / 60:.0f} min" if sec < 7200 else f"{sec / 3600:.1f} h"
