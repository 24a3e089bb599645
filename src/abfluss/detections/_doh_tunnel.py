"""A DNS tunnel inside DNS over HTTPS, seen from the shape of its encrypted sessions.

A DNS tunnel tool that asks a DoH stub (iodine -> dnss -> ``https://doh.example/dns-query``)
sends no DNS message the sensor can read: every query travels as an HTTP/2 request inside one
TLS connection to the DoH server, often one that is no public resolver (the attacker runs it).
What the flow records still show is the shape such a session must have, whoever the server is:

- the client's packets are **DNS-sized**: a DoH request carries one DNS message of at most a
  few hundred bytes (names are 255 bytes at most), so the client's mean payload per packet stays
  between ``doh_tunnel_min_request_bytes`` (keep-alives, keystrokes) and
  ``doh_tunnel_max_request_bytes`` (an upload fills whole segments); the server's answers are
  DNS messages too (``doh_tunnel_min_response_bytes``: a stream acknowledged by bare ACKs gets no
  answers; ``doh_tunnel_max_response_bytes``: a download fills segments);
- the exchange is **paired**: every query gets one answer, so the client sends about as many
  packets as it receives (``doh_tunnel_max_packet_ratio``);
- it is **busy**: a tunnel polls its server without pause while it moves data, many requests
  per second of connection (``doh_tunnel_rate_low`` .. ``doh_tunnel_rate_high``), where a
  browser's lookups or a chat's keep-alives come seconds apart;
- the client **sends as much as it receives**: the tunnelled data is in the query names, where
  ordinary lookups get answers several times their size (``doh_tunnel_share_low`` ..
  ``doh_tunnel_share_high``, bytes out / bytes in).

The three factors multiply into the ``tunnel_shape`` part, so one alone (a chat's pairing, an
upload's share) gives nothing. Volume and a DNS-like server name (``doh``/``dns`` in a label
of the SNI or the resolved name: what a DoH URL usually names) add points to a session that has
the shape. Per internal host and server, over its TCP connections to ``doh_ports`` (both
directions' records where a NetFlow exporter sends them apart).

The bytes estimate undoes the DoH framing and the name encoding it cannot see:
(bytes sent - ``doh_tunnel_packet_overhead`` x packets sent) x ``doh_tunnel_name_bits`` / 8.
"""

from __future__ import annotations

import math
import re

import ibis
from ibis import _

from ..errors import ConfigError
from ..findings import Finding
from ..units import count, number
from ._stats import clip01, evidence_uids, human_bytes, keys_table, ramp, rows

#: TCP/IP header bytes per packet (IPv4 20, TCP 20 and the timestamp option 12), taken off IP
#: bytes where a sensor gives no payload bytes (NetFlow, Argus), as protocol_mismatch does.
HEADER_BYTES = 52


def _payload(bytes_, ip_bytes, pkts):
    """Payload bytes, or IP bytes less the headers where the sensor has no payload count."""
    est = ip_bytes.cast("float64") - pkts.cast("float64").fill_null(0) * HEADER_BYTES
    return bytes_.cast("float64").coalesce(ibis.greatest(est, 0)).fill_null(0)


def name_pattern(s) -> re.Pattern:
    try:
        return re.compile(s.doh_tunnel_name_pattern)
    except re.error as e:
        raise ConfigError(f"detections.dns_tunnel.doh_tunnel_name_pattern: not a regular expression: {e}") from None


def check(tel, s) -> list[Finding]:
    ports = [int(p) for p in s.doh_ports]
    keys = ["internal_host", "external_host"]
    f = _sides(tel.flows.filter(_.proto == "tcp").filter(_https(ports)))
    # The shape gates below need only four sums: those first, over every HTTPS flow, and the
    # dozen aggregates (times, names, tenants) only for the few pairs that pass (usually none);
    # in one grouping those were the costliest step of dns_tunnel on the 10-million-flow bench.
    # Payloads are whole numbers (as doubles), so the sums are exact either way.
    gate = f.group_by(keys).aggregate(sent=_.sent.sum(), got=_.got.sum(), pkts_out=_.p_out.sum(),
                                      pkts_in=_.p_in.sum())
    passed = rows(_shaped(gate, s).select(*keys))
    if not passed:
        return []
    shaped = f.semi_join(keys_table(passed, keys, f), keys)
    pairs = shaped.group_by(keys).aggregate(
        flows=_.opened.sum(), sent=_.sent.sum(), got=_.got.sum(), pkts_out=_.p_out.sum(),
        pkts_in=_.p_in.sum(), t_out=_.t_out.sum(), t_in=_.t_in.sum(), start=_.ts.min(),
        end=_.ts_end.max(), name=_.external_name.lower().max(), port=_.port.max(), tenant=_.tenant.max())
    # both halves of a one-way pair span the same time: count it once
    pairs = pairs.mutate(active=ibis.greatest(_.t_out, _.t_in))
    pairs = _shaped(pairs, s)
    found = []
    for r in rows(pairs.order_by(["internal_host", "external_host"])):
        m = _metrics(r, s)
        if m["shape"] >= s.doh_tunnel_min_shape:
            found.append(_finding(f, r, m, s))
    return found


def _https(ports: list[int]):
    """From the internal host's side. A NetFlow exporter sends each direction as a record of its
    own: the answers then come as an inbound record from the server's port."""
    return (((_.direction == "outbound") & _.resp_p.isin(ports))
            | ((_.direction == "inbound") & _.orig_p.isin(ports)))


def _sides(f):
    """Flows with what the internal host sent and got (payload, packets, time)."""
    out = f.direction == "outbound"
    o_pay = _payload(f.orig_bytes, f.orig_ip_bytes, f.orig_pkts)
    r_pay = _payload(f.resp_bytes, f.resp_ip_bytes, f.resp_pkts)
    # a connection's time, at least a second: a burst's rate is not a tunnel's pace
    active = ibis.greatest(f.duration.cast("float64").fill_null(0), 1.0)
    return f.mutate(sent=ibis.ifelse(out, o_pay, r_pay), got=ibis.ifelse(out, r_pay, o_pay),
                    p_out=ibis.ifelse(out, f.orig_pkts, f.resp_pkts).fill_null(0),
                    p_in=ibis.ifelse(out, f.resp_pkts, f.orig_pkts).fill_null(0),
                    t_out=ibis.ifelse(out, active, 0.0), t_in=ibis.ifelse(out, 0.0, active),
                    opened=out.cast("int64"), port=ibis.ifelse(out, f.resp_p, f.orig_p))


def _shaped(pairs, s):
    """Pairs with enough packets and bytes of request and response sizes a DoH tunnel has."""
    return pairs.filter((_.pkts_out >= s.doh_tunnel_min_packets) & (_.pkts_in > 0)
                        & (_.sent >= s.doh_tunnel_min_bytes)
                        & (_.sent >= _.pkts_out * s.doh_tunnel_min_request_bytes)
                        & (_.sent <= _.pkts_out * s.doh_tunnel_max_request_bytes)
                        & (_.got >= _.pkts_in * s.doh_tunnel_min_response_bytes)
                        & (_.got <= _.pkts_in * s.doh_tunnel_max_response_bytes))


def _metrics(r: dict, s) -> dict:
    sent, got = float(r["sent"] or 0), float(r["got"] or 0)
    po, pi = int(r["pkts_out"] or 0), int(r["pkts_in"] or 0)
    rate = po / max(float(r["active"] or 0), 1.0)
    ratio = po / pi if pi else math.inf
    # 1 when every packet out has one back, 0 at doh_tunnel_max_packet_ratio either way
    paired = clip01(1 - abs(math.log(ratio)) / math.log(s.doh_tunnel_max_packet_ratio)) \
        if 0 < ratio < math.inf and s.doh_tunnel_max_packet_ratio > 1 else 0.0
    busy = ramp(rate, s.doh_tunnel_rate_low, s.doh_tunnel_rate_high)
    share = sent / got if got else math.inf
    upload = clip01((share - s.doh_tunnel_share_low) / (s.doh_tunnel_share_high - s.doh_tunnel_share_low)) \
        if s.doh_tunnel_share_high > s.doh_tunnel_share_low else float(share >= s.doh_tunnel_share_high)
    name = r["name"] or ""
    estimate = max(0.0, sent - s.doh_tunnel_packet_overhead * po) * s.doh_tunnel_name_bits / 8
    return {
        "flows": max(int(r["flows"] or 0), 1), "bytes_out": int(sent), "bytes_in": int(got), "packets_out": po,
        "packets_in": pi, "mean_request_bytes": round(sent / po, 1), "mean_response_bytes": round(got / pi, 1),
        "packets_per_second": round(rate, 2), "packet_ratio": round(ratio, 3),
        "out_in_ratio": round(share, 3) if share < math.inf else None,
        "paired": round(paired, 3), "busy": round(busy, 3), "upload": round(upload, 3),
        "shape": round(paired * busy * upload, 3),
        "dns_like_name": bool(name and name_pattern(s).search(name)),
        "estimated_bytes": round(estimate),
        "span_seconds": round(max((r["end"] - r["start"]).total_seconds(), 0.0), 3),
    }


def _finding(f, r: dict, m: dict, s) -> Finding:
    host, server = r["internal_host"], r["external_host"]
    parts = {
        "tunnel_shape": s.doh_tunnel_shape_points * m["shape"],
        "volume": s.doh_tunnel_volume_points * ramp(m["bytes_out"], s.doh_tunnel_min_bytes, s.doh_bytes_high),
        "dns_name": s.doh_tunnel_name_points if m["dns_like_name"] else 0.0,
    }
    ev = evidence_uids(f, (f.internal_host == host) & (f.external_host == server), s.max_evidence)
    shown = f"{server} ({r['name']})" if r["name"] else server
    return Finding(
        detection="dns_tunnel", key=("doh_tunnel", host, server),
        score_parts={k: v for k, v in parts.items() if v > 0.05},
        explanation=(
            f"{host} exchanged {number(m['packets_out'])} packets out and {number(m['packets_in'])} back "
            f"with {shown} in {count(m['flows'], 'connection')} to port {r['port']}: DNS-sized ({m['mean_request_bytes']:.0f} bytes per packet out, "
            f"{m['mean_response_bytes']:.0f} back), paired ({m['packet_ratio']:.2f} out per packet back), "
            f"busy ({m['packets_per_second']:.1f} packets/s) and sending "
            f"{human_bytes(m['bytes_out'])} for {human_bytes(m['bytes_in'])} received: the shape of DNS "
            f"queries tunnelled over HTTPS (shape {m['paired']:.2f} x {m['busy']:.2f} x {m['upload']:.2f})"
            + (f"; the server's name {r['name']} reads like a DNS service" if m["dns_like_name"] else "")
            + f". About {human_bytes(m['estimated_bytes'])} of data in the tunnelled names."),
        internal_hosts=[host], external_hosts=[server], external_names=[r["name"]] if r["name"] else [],
        channel="doh", start=r["start"], end=r["end"], bytes_out=m["estimated_bytes"],
        evidence={"flows": m["flows"], "dns_servers": [server],
                  "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]}),
                  "score": "tunnel_shape = doh_tunnel_shape_points x paired x busy x upload; volume: log "
                           "ramp of bytes out from doh_tunnel_min_bytes to doh_bytes_high; dns_name: "
                           "doh_tunnel_name_pattern in the server's name"},
        metrics=m,
        thresholds={"doh_tunnel_min_packets": s.doh_tunnel_min_packets,
                    "doh_tunnel_min_request_bytes": s.doh_tunnel_min_request_bytes,
                    "doh_tunnel_max_request_bytes": s.doh_tunnel_max_request_bytes,
                    "doh_tunnel_min_response_bytes": s.doh_tunnel_min_response_bytes,
                    "doh_tunnel_max_response_bytes": s.doh_tunnel_max_response_bytes,
                    "doh_tunnel_max_packet_ratio": s.doh_tunnel_max_packet_ratio,
                    "doh_tunnel_rate_low": s.doh_tunnel_rate_low, "doh_tunnel_rate_high": s.doh_tunnel_rate_high,
                    "doh_tunnel_share_low": s.doh_tunnel_share_low,
                    "doh_tunnel_share_high": s.doh_tunnel_share_high,
                    "doh_tunnel_packet_overhead": s.doh_tunnel_packet_overhead,
                    "doh_tunnel_name_bits": s.doh_tunnel_name_bits},
        tenant=r["tenant"],
    )
