"""DNS seen as flows, independent of decoding: bytes over port 53 per internal client and server.

A tunnel whose messages cannot be decoded (iodine's raw UDP mode sends no DNS names at all;
a home-made encoding; a NetFlow sensor that sees no payload) still moves its bytes over port
53. Per internal client and DNS server (UDP and TCP, server port 53) this part measures what
the flow records alone tell:

- whether the server is one of the resolvers the clients are meant to use: the configured
  ``[networks] resolvers``, or, when none are configured, the servers learned from the window:
  internal servers, servers asked by several internal clients, and servers asked about several
  registered domains (a resolver resolves everything; a tunnel server answers one zone). When
  nothing can be learned (one client asking one outside server), no server is judged for not
  being a resolver;
- the mean payload per packet the client sends: ordinary queries are 30-70 bytes, tunnel
  queries fill the name (150-255) or a whole datagram;
- the packets per flow: a stub resolver takes a new source port for each query (one or two
  packets per flow), a tunnel keeps its socket for hundreds;
- how much of the client's bytes the decoded DNS messages explain, where the sensor decodes
  DNS at all (a pcap does; NetFlow does not);
- the volume sent.

Resolvers' own traffic to other servers (forwarding, recursion) is never judged here. Pairs
already covered by a finding on decoded names are left to that finding.
"""

from __future__ import annotations

import ipaddress

import ibis
from ibis import _

from ..findings import Finding
from ..resolvers import DNS_PORT
from ..resolvers import learned as learned_resolvers
from ._stats import clip01, evidence_uids, human_bytes, ramp, rows


def resolvers(tel, configured: tuple[str, ...], s) -> tuple[set[str], str]:
    """The resolver addresses seen in the window and how they were chosen: "configured", "learned"
    (:func:`abfluss.resolvers.learned`, the rule enrichment uses too) or "unknown"."""
    if configured:
        nets = [ipaddress.ip_network(c, strict=False) for c in configured]
        return {h for h in _servers(tel) if _in(h, nets)}, "configured"
    learned = {r["resp_h"] for r in rows(learned_resolvers(tel.flows, tel.dns, s.learn_min_clients,
                                                           s.learn_min_domains))}
    # Without any resolver to compare with (one client asking one outside server), no server is
    # judged for not being one: the word "learned" is kept only when something was learned.
    return (learned, "learned") if learned else (_servers(tel), "unknown")


def _servers(tel) -> set[str]:
    """Every server of the window's port-53 flows and DNS messages."""
    f = tel.flows.filter((_.resp_p == DNS_PORT) & _.proto.isin(["udp", "tcp"]))
    d = tel.dns.filter(_.resp_h.notnull())
    return {r["resp_h"] for r in rows(ibis.union(f.select("resp_h"), d.select("resp_h")).distinct())}


def _in(addr: str, nets) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in nets)


def check(tel, s, configured: tuple[str, ...], covered: set[tuple[str, str]],
          found: tuple[set[str], str] | None = None) -> list[Finding]:
    """Port-53 flows that DNS does not explain; ``found``: :func:`resolvers`' answer when the
    caller has it already (one query fewer)."""
    known, how = found or resolvers(tel, configured, s)
    f = tel.flows.filter((_.resp_p == DNS_PORT) & _.proto.isin(["udp", "tcp"])
                         & _.orig_internal.fill_null(False))
    # payload where the sensor measures it, IP bytes where it does not (NetFlow), as the ledger
    f = f.mutate(sent=f.orig_bytes.fill_null(f.orig_ip_bytes).fill_null(0))
    pairs = f.group_by(["orig_h", "resp_h"]).aggregate(
        flows=_.count(), bytes_out=_.sent.sum(), bytes_in=_.resp_bytes.fill_null(0).sum(),
        pkts_out=_.orig_pkts.fill_null(0).sum(), start=_.ts.min(), end=_.ts_end.max(),
        tenant=_.tenant.max(), server_internal=_.resp_internal.fill_null(False).max())
    # Bytes the decoded messages explain, from inputs that decode DNS at all (query sizes known).
    d = tel.dns.filter(_.query_bytes.notnull())
    decoding = d.select("input_id").distinct()
    decoded = d.group_by(["orig_h", "resp_h"]).aggregate(decoded=_.query_bytes.sum())
    seen = f.filter(f.input_id.isin(decoding.input_id)).group_by(["orig_h", "resp_h"]).aggregate(
        decodable=_.sent.sum())
    with_decoded = pairs.left_join(decoded, ["orig_h", "resp_h"]).select(pairs, decoded=decoded.decoded)
    pairs = with_decoded.left_join(seen, ["orig_h", "resp_h"]).select(with_decoded, decodable=seen.decodable)
    out = []
    for r in rows(pairs.order_by(["orig_h", "resp_h"])):
        client, server = r["orig_h"], r["resp_h"]
        if client in known or (client, server) in covered or not r["bytes_out"]:
            continue  # a resolver forwarding, a pair the decoded names explain, a scan's probe
        m = _metrics(r, server not in known, how)
        if server in known and m["bytes_out"] < s.flow_min_bytes:
            continue
        parts = _score(m, s)
        if not (parts.keys() - {"volume"}):
            continue  # ordinary DNS to a resolver, however much of it
        if server in known and sum(parts.values()) < s.flow_min_score:
            continue  # a little larger than usual: names of long host names, EDNS
        out.append(_finding(f, r, m, parts, s))
    return out


def _metrics(r: dict, outside: bool, how: str) -> dict:
    sent = int(r["bytes_out"] or 0)
    decodable = r["decodable"]
    undecoded = None
    if decodable:  # only bytes from a sensor that decodes DNS can be "not DNS"
        undecoded = round(clip01(1 - (r["decoded"] or 0) / decodable), 3)
    return {"flows": r["flows"], "bytes_out": sent, "bytes_in": int(r["bytes_in"] or 0),
            "packets_out": int(r["pkts_out"] or 0),
            "mean_query_bytes": round(sent / r["pkts_out"], 1) if r["pkts_out"] else 0.0,
            "packets_per_flow": round((r["pkts_out"] or 0) / r["flows"], 1),
            "decoded_query_bytes": int(r["decoded"] or 0), "undecoded_share": undecoded,
            "server_is_resolver": None if how == "unknown" else not outside, "resolvers": how,
            "span_seconds": round(max((r["end"] - r["start"]).total_seconds(), 0.0), 3)}


def _score(m: dict, s) -> dict[str, float]:
    big = m["mean_query_bytes"]
    parts = {
        "non_resolver": s.non_resolver_points if m["server_is_resolver"] is False else 0.0,
        "large_queries": s.large_query_points * clip01((big - s.query_bytes_low)
                                                       / (s.query_bytes_high - s.query_bytes_low)),
        "socket_reuse": s.reuse_points * ramp(m["packets_per_flow"], s.packets_per_flow_low,
                                              s.packets_per_flow_high),
        "undecoded": s.undecoded_points * (m["undecoded_share"] or 0.0)
        if m["bytes_out"] >= s.flow_min_bytes else 0.0,
        "volume": s.flow_volume_points * ramp(m["bytes_out"], s.flow_min_bytes, s.flow_bytes_high),
    }
    return {k: v for k, v in parts.items() if v > 0.05}


def _finding(f, r: dict, m: dict, parts: dict, s) -> Finding:
    client, server = r["orig_h"], r["resp_h"]
    ev = evidence_uids(f, (f.orig_h == client) & (f.resp_h == server), s.max_evidence, order="sent")
    why = []
    if m["server_is_resolver"] is False:
        why.append(f"{server} is not one of the {m['resolvers']} resolvers")
    if "large_queries" in parts:
        why.append(f"{m['mean_query_bytes']:.0f} bytes per packet (ordinary queries: under "
                   f"{s.query_bytes_low:.0f})")
    if "socket_reuse" in parts:
        why.append(f"{m['packets_per_flow']:.0f} packets per flow (ordinary look-ups: one or two)")
    if "undecoded" in parts:
        why.append(f"{m['undecoded_share']:.0%} of the bytes are not DNS messages")
    return Finding(
        detection="dns_tunnel", key=("dns_flows", client, server), score_parts=parts,
        explanation=(f"{client} sent {human_bytes(m['bytes_out'])} in {m['packets_out']} packets to port 53 "
                     f"of {server} ({m['flows']} flow(s)): " + "; ".join(why) + "."),
        internal_hosts=[client], external_hosts=[] if r["server_internal"] else [server],
        external_names=[], channel="dns", start=r["start"], end=r["end"], bytes_out=m["bytes_out"],
        evidence={"flows": m["flows"], "dns_servers": [server],
                  "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics=m,
        thresholds={"flow_min_bytes": s.flow_min_bytes, "query_bytes_low": s.query_bytes_low,
                    "query_bytes_high": s.query_bytes_high, "learn_min_clients": s.learn_min_clients,
                    "learn_min_domains": s.learn_min_domains},
        tenant=r["tenant"],
    )

