"""DNS tunnels: data encoded in the query names an internal client sends below one domain.

Per internal client and registered domain (public-suffix aware, see ``_domains``) the
detection measures what the anchors each look at alone: unique subdomains (RITA's bands
100/500/800/1000), long first labels (nDPI: > 48 characters), TXT answers of high entropy
(Slips: >= 5 bits), and the information carried per day (Paxson et al. 2013 bound it at
4 kB/day). It scores them together, so a count alone (a mail server's DNSBL lookups, a CDN's
hashed host names) stays low and only names that also look like payload - long labels,
high character entropy, TXT/NULL/CNAME records - reach medium and above.

Names are read as the sensor stored them, in Zeek's escaped form (``\\xNN`` for a byte that is
not printable ASCII: iodine's base128 and raw encodings), with their case (base64 keeps
information in it). The label bytes are counted exactly: an escape is one byte.

The byte estimate is the information the names carry: the subdomain label bytes of the unique
names (dots and the registered domain left out; repeated names carry nothing new) times their
character entropy in bits per character / 8 (Paxson's bound). An encoding of random or
compressed data uses its alphabet evenly, so this undoes it: base32 carries 5 bits per
character, base64 6, base128 7. The raw label bytes stay in the metrics (``label_bytes``).

Two more signals, each with a key of its own:

- DNS seen as flows (``_dns_flows``, key ``("dns_flows", client, server)``): bytes over port 53
  per internal client and server, the server not being a resolver, large queries, bytes that
  are not DNS messages. It finds a tunnel whose names cannot be decoded (iodine's raw UDP mode)
  and tunnels in NetFlow-only telemetry; a pair a name finding covers is left to it.
- DNS over HTTPS or TLS to well-known public resolvers, which hides a host's lookups from
  every DNS detection (key ``("doh", host)``).
- A DNS tunnel inside DoH to any server, from the shape of its encrypted sessions (``_doh_tunnel``,
  key ``("doh_tunnel", host, server)``): DNS-sized, paired, busy requests that send as much as
  they get back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

import ibis
from ibis import _

from ..findings import Finding
from ..dns_names import unescape
from ..resolvers import LEARN_MIN_CLIENTS, LEARN_MIN_DOMAINS
from . import Meta, Telemetry
from . import _dns_flows as flow_check
from . import _doh_resolvers, _doh_tunnel
from ._domains import Rules, label_count, load_rules, registered, restrict
from ._domains import key as suffix_key
from ._stats import clip01, human_bytes, keys_table, linear, ramp, rows, shannon_entropy

META = Meta(
    id="dns_tunnel",
    title="Data tunnelled through DNS query names",
    attack=("T1071.004", "T1048.003", "T1572", "T1041"),
    description="An internal client sends many unique, long, high-entropy names below one "
                "registered domain (often with TXT/NULL/CNAME records): data encoded in DNS "
                "queries, which pass every firewall through the resolver. Independent of decoding, "
                "it judges DNS as flows: port-53 traffic to a server that is not a resolver, large "
                "queries, bytes that are no DNS messages (iodine's raw mode, NetFlow-only sensors). "
                "Also flags DNS over HTTPS/TLS to public resolvers, which hides lookups from this "
                "detection, and HTTPS sessions to any server shaped like a DNS tunnel inside DoH "
                "(DNS-sized, paired, busy requests that send as much as they get back).",
    runbook="1. Look at the example names and the domain: a security product's reputation lookups "
            "(anti-virus, DNSBL) explain long names; put the domain on the central allowlist. "
            "2. Otherwise find the process making the queries on the client (Sysmon event 22, "
            "resolver logs) and block the domain at the resolver. 3. Treat the byte estimate as "
            "what left (the tunnel's own overhead included) and check which data the host held. For a DoH "
            "finding: check whether the browser or an unknown process talks to the resolver and "
            "enforce the internal resolver by policy. For a DoH tunnel finding: look the server up (a DoH "
            "service in use, a voice relay, a push service explain the shape: allowlist them), find the "
            "process holding the connection (a DoH stub and the tool asking it) and block the server.",
    channel="dns",
    inputs=("dns", "flows"),
)

#: Public resolvers that answer DNS over HTTPS (443) or TLS (853): addresses and host names.
DOH_RESOLVERS = (
    "1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001", "cloudflare-dns.com",
    "8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844", "dns.google",
    "9.9.9.9", "149.112.112.112", "2620:fe::fe", "2620:fe::9", "dns.quad9.net",
    "208.67.222.222", "208.67.220.220", "doh.opendns.com",
    "94.140.14.14", "94.140.15.15", "dns.adguard-dns.com", "dns.nextdns.io",
    "185.228.168.168", "doh.cleanbrowsing.org", "doh.mullvad.net", "dns.digitale-gesellschaft.ch",
)


@dataclass(frozen=True)
class Settings:
    min_unique_subdomains: int = field(default=100, metadata={
        "help": "Unique query names below one registered domain from which a client-domain pair is "
                "examined (RITA's lowest band)."})
    high_unique_subdomains: int = field(default=1000, metadata={
        "help": "Unique names that give the full subdomain points (RITA's top band)."})
    paxson_bytes_per_day: float = field(default=4096.0, metadata={
        "help": "Name bytes per day from which a pair is examined even with few names, and where the "
                "volume points start (Paxson et al. 2013: 4 kB/day)."})
    high_bytes_per_day: float = field(default=1e6, metadata={
        "help": "Entropy-weighted name bytes per day that give the full volume points."})
    entropy_low: float = field(default=4.0, metadata={
        "help": "Character entropy (bits/char, pooled over the unique subdomains) up to which names "
                "do not look encoded: hex reaches 4, words and host names 3.5-4.2."})
    entropy_high: float = field(default=5.0, metadata={
        "help": "Entropy that counts as fully encoded (base32 reaches 5, base64 6)."})
    short_label_bytes: float = field(default=16.0, metadata={
        "help": "Mean label bytes per unique name up to which names do not look like payload."})
    long_label_bytes: float = field(default=100.0, metadata={
        "help": "Mean label bytes per unique name that count as fully payload-like."})
    long_first_label: int = field(default=48, metadata={
        "help": "First-label length counted as long (nDPI's suspicious DNS traffic: > 48)."})
    tunnel_qtypes: tuple = field(default=("TXT", "NULL", "CNAME", "MX", "SRV", "KEY", "*"), metadata={
        "help": "Record types tunnels use to get data back; their share of the queries scores. "
                "Unknown and private-use types (TYPE<n>, iodine's PRIVATE) always count."})
    qtype_share_high: float = field(default=0.5, metadata={
        "help": "Share of tunnel record types that gives the full record-type points."})
    txt_entropy: float = field(default=5.0, metadata={
        "help": "Entropy (bits/char) from which one TXT answer counts as encoded data (Slips: 5)."})
    txt_high_count: int = field(default=10, metadata={
        "help": "Encoded TXT answers that give the full TXT-answer points."})
    rate_low: float = field(default=10.0, metadata={
        "help": "Queries per minute to the domain up to which the rate adds nothing."})
    rate_high: float = field(default=600.0, metadata={
        "help": "Queries per minute that give the full rate points."})
    subdomain_points: float = field(default=25.0, metadata={"help": "Points at high_unique_subdomains."})
    volume_points: float = field(default=25.0, metadata={"help": "Points at high_bytes_per_day."})
    encoded_points: float = field(default=25.0, metadata={
        "help": "Points for names that are both long and of high entropy (the product of both ramps)."})
    qtype_points: float = field(default=15.0, metadata={"help": "Points at qtype_share_high."})
    txt_points: float = field(default=10.0, metadata={"help": "Points at txt_high_count encoded TXT answers."})
    nxdomain_points: float = field(default=10.0, metadata={
        "help": "Points for encoded names answered NXDOMAIN (exfiltration without replies), "
                "times the NXDOMAIN share and how encoded the names look."})
    rate_points: float = field(default=5.0, metadata={"help": "Points at rate_high."})
    private_suffixes: bool = field(default=True, metadata={
        "help": "Use the Public Suffix List's private section too (blogspot.com, duckdns.org ...), so "
                "each customer's subdomain is a registered domain of its own."})
    entropy_sample: int = field(default=500, metadata={
        "help": "Unique names (and TXT answers) per pair whose characters are measured."})
    example_names: int = field(default=3, metadata={"help": "Example query names per finding."})
    example_chars: int = field(default=16, metadata={
        "help": "Characters of an example's subdomain shown (the rest may be exfiltrated data)."})
    doh_resolvers: tuple = field(default=DOH_RESOLVERS, metadata={
        "help": "Public DNS-over-HTTPS/TLS resolvers: addresses, and host names matched with their "
                "subdomains against the flow's server name."})
    doh_ports: tuple = field(default=(443, 853), metadata={
        "help": "Resolver ports counted (DoH 443, DNS over TLS 853)."})
    doh_services: tuple = field(default=("doh_dot",), metadata={
        "help": "Sensor application names meaning encrypted DNS (nDPI: DoH_DoT), to any address."})
    doh_min_bytes_out: float = field(default=1000.0, metadata={
        "help": "Bytes a host must send to resolvers for a DoH finding (a failed handshake is none)."})
    doh_base_points: float = field(default=15.0, metadata={
        "help": "Points for any use of a public encrypted resolver (lookups invisible here)."})
    doh_bytes_low: float = field(default=1e5, metadata={
        "help": "Bytes sent to resolvers where the DoH volume points start (browsers send less)."})
    doh_bytes_high: float = field(default=1e7, metadata={
        "help": "Bytes sent to resolvers that give the full DoH volume points."})
    doh_volume_points: float = field(default=40.0, metadata={"help": "Points at doh_bytes_high."})
    doh_ratio_points: float = field(default=20.0, metadata={
        "help": "Points when the host sends 4x what it receives (DNS answers are larger than queries)."})
    doh_tunnel_min_packets: int = field(default=100, metadata={
        "help": "Packets an internal host sends to one server on doh_ports from which its sessions are "
                "judged for the shape of a DNS tunnel inside DoH (a page load's connection sends tens)."})
    doh_tunnel_min_bytes: float = field(default=20000.0, metadata={
        "help": "Bytes sent to the server from which the DoH tunnel shape is judged; where its volume "
                "points start (up to doh_bytes_high)."})
    doh_tunnel_min_request_bytes: float = field(default=60.0, metadata={
        "help": "Mean payload bytes per packet the client sends, at least (a DoH request holds a DNS "
                "message in TLS and HTTP/2 framing; keep-alives and keystrokes are smaller)."})
    doh_tunnel_max_request_bytes: float = field(default=400.0, metadata={
        "help": "Mean payload bytes per packet the client sends, at most (a query name is 255 bytes at "
                "most; an upload fills whole segments)."})
    doh_tunnel_min_response_bytes: float = field(default=60.0, metadata={
        "help": "Mean payload bytes per packet the server sends, at least (every query gets a DNS answer; "
                "a stream the server only acknowledges gets bare ACKs)."})
    doh_tunnel_max_response_bytes: float = field(default=1000.0, metadata={
        "help": "Mean payload bytes per packet the server sends, at most (DNS answers; a download fills "
                "whole segments)."})
    doh_tunnel_max_packet_ratio: float = field(default=2.0, metadata={
        "help": "Packets out per packet in (or in per out) at which the exchange no longer counts as "
                "paired queries and answers; full pairing points at 1."})
    doh_tunnel_rate_low: float = field(default=1.0, metadata={
        "help": "Packets per second of connection time the client sends up to which the session is not "
                "busy (a browser's lookups, a chat's keep-alives)."})
    doh_tunnel_rate_high: float = field(default=20.0, metadata={
        "help": "Packets per second that count as fully busy (a tunnel polling while it moves data), on "
                "a log scale from doh_tunnel_rate_low."})
    doh_tunnel_share_low: float = field(default=0.25, metadata={
        "help": "Bytes out / bytes in up to which the client only looks names up (answers are larger "
                "than queries)."})
    doh_tunnel_share_high: float = field(default=1.0, metadata={
        "help": "Bytes out / bytes in that count fully as data sent in the queries."})
    doh_tunnel_min_shape: float = field(default=0.25, metadata={
        "help": "Product of the paired, busy and upload factors (0-1) a host-server pair needs for a "
                "DoH tunnel finding."})
    doh_tunnel_shape_points: float = field(default=50.0, metadata={
        "help": "Points for a fully tunnel-shaped session (times the product of the three factors)."})
    doh_tunnel_volume_points: float = field(default=25.0, metadata={
        "help": "Points at doh_bytes_high bytes sent, on a log scale from doh_tunnel_min_bytes."})
    doh_tunnel_name_points: float = field(default=15.0, metadata={
        "help": "Points when the server's name (SNI or resolved) matches doh_tunnel_name_pattern."})
    doh_tunnel_name_pattern: str = field(default=r"(^|[.-])(doh|dot|dns)[0-9]*([.-]|$)", metadata={
        "help": "Regular expression for a DNS-like server name (a label or part of one that is doh, "
                "dot or dns: doh.example, dns.google, cloudflare-dns.com)."})
    doh_tunnel_packet_overhead: float = field(default=58.0, metadata={
        "help": "Bytes per client packet that carry no tunnel data: a DoH request is two packets "
                "(HTTP/2 HEADERS and DATA) with two TLS records (2 x 22), two frame headers (2 x 9), "
                "an HPACK block (~8) and the DNS header, question tail, EDNS record and tunnel zone "
                "(~46): 116 bytes a request."})
    doh_tunnel_name_bits: float = field(default=7.0, metadata={
        "help": "Bits of data per name byte the estimate assumes: base128 (iodine's densest name "
                "encoding, which DoH passes unchanged); the encoding itself is invisible."})
    flow_min_bytes: float = field(default=20000.0, metadata={
        "help": "Bytes a client sends over port 53 to one server from which the flow-level check judges "
                "volume and undecoded bytes (to a server that is not a resolver: any bytes)."})
    flow_bytes_high: float = field(default=1e7, metadata={
        "help": "Bytes over port 53 that give the full flow volume points."})
    query_bytes_low: float = field(default=100.0, metadata={
        "help": "Mean bytes per packet a client sends over port 53 up to which queries look ordinary "
                "(30-70 bytes payload, IP bytes for NetFlow a little more)."})
    query_bytes_high: float = field(default=220.0, metadata={
        "help": "Mean bytes per packet that give the full large-query points (names filled to 255)."})
    packets_per_flow_low: float = field(default=10.0, metadata={
        "help": "Mean packets a client sends per port-53 flow up to which it looks like ordinary look-ups "
                "(a new source port per query: 1-2)."})
    packets_per_flow_high: float = field(default=200.0, metadata={
        "help": "Mean packets per flow that give the full socket-reuse points (a tunnel keeps one socket)."})
    reuse_points: float = field(default=15.0, metadata={
        "help": "Points at packets_per_flow_high, on a log scale from packets_per_flow_low."})
    flow_min_score: float = field(default=20.0, metadata={
        "help": "Score a client-resolver pair needs for a flow-level finding (DNS to a server that is not "
                "a resolver is always reported)."})
    learn_min_clients: int = field(default=LEARN_MIN_CLIENTS, metadata={
        "help": "Without [networks] resolvers: an external server asked by this many internal clients "
                "is a resolver (internal servers always are)."})
    learn_min_domains: int = field(default=LEARN_MIN_DOMAINS, metadata={
        "help": "Without [networks] resolvers: a server asked about names under this many domains (last "
                "two labels) is a resolver when it is some internal client's main DNS server (a tunnel "
                "server answers one zone). Both learn_ settings also decide whose DNS answers name "
                "destinations (abfluss.resolvers)."})
    non_resolver_points: float = field(default=15.0, metadata={
        "help": "Points when a client's DNS goes to a server that is not a resolver."})
    large_query_points: float = field(default=30.0, metadata={"help": "Points at query_bytes_high."})
    undecoded_points: float = field(default=25.0, metadata={
        "help": "Points when all of a pair's port-53 bytes are not DNS messages (times the share)."})
    flow_volume_points: float = field(default=25.0, metadata={
        "help": "Points at flow_bytes_high, on a log scale from flow_min_bytes; only with another part."})
    max_evidence: int = field(default=10, metadata={"help": "Flows and DNS uids listed as evidence."})


def prepare(s: Settings) -> Rules:
    """The public-suffix rules (read from the bundled list once, outside ``detect``); a name
    pattern that is no regular expression is a configuration error, reported before any run."""
    _doh_tunnel.name_pattern(s)
    return load_rules(s.private_suffixes)


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    rules = tel.extra.get(META.id) or prepare(s)
    configured = tuple(tel.extra.get("resolvers") or ())
    known, how = flow_check.resolvers(tel, configured, s)
    names = _tunnels(tel, s, rules, known, how)
    covered = {(f.internal_hosts[0], srv) for f in names for srv in f.evidence["dns_servers"]}
    return (names + flow_check.check(tel, s, configured, covered, (known, how)) + _doh_resolvers.check(tel, s)
            + _doh_tunnel.check(tel, s))


# -- DNS tunnels ---------------------------------------------------------------------------

def _days(tel: Telemetry) -> float:
    """The window in days, at least one: the per-day bound never shrinks below a day's budget."""
    if tel.start is None or tel.end is None:
        return 1.0
    return max(1.0, (tel.end - tel.start) / timedelta(days=1))


def _subdomain_queries(tel: Telemetry, rules: Rules):
    """Queries of internal clients below a registered domain, with per-name measures."""
    d = tel.dns
    q = d.filter(d.client_internal.fill_null(False) & d.query.notnull())
    q = q.mutate(raw=q.query.re_replace(r"\.+$", ""))
    q = q.mutate(name=q.raw.lower())
    names = q.select("name").distinct()
    # The few distinct last-two-label keys pick the rules that can apply (see _domains).
    keys = [r["k"] for r in rows(names.select(k=suffix_key(names.name)).distinct())]
    dom = registered(names, restrict(rules, keys))
    dom = dom.filter(dom.domain.notnull() & (dom.name != dom.domain))
    # Label bytes: the subdomain without the separating dots (the encoding's payload alphabet);
    # an escaped byte (\\xNN, four characters) is one byte.
    sub_len = dom.name.re_replace(r"\\x[0-9a-f]{2}", "_").length() - dom.domain.length() - 1
    dom = dom.mutate(label_bytes=sub_len - (dom.labels - label_count(dom.domain) - 1),
                     first_label=dom.name.re_replace(r"\\x[0-9a-f]{2}", "_").find("."))
    return q.join(dom, "name")


def _pairs(q, s: Settings, days: float):
    """Per client and domain: counts, shares and bytes; only pairs past the examination gates."""
    key = ["orig_h", "domain"]
    per_query = q.group_by(key).aggregate(
        queries=_.count(), txt=(_.qtype == "TXT").cast("int64").sum(),
        null=(_.qtype == "NULL").cast("int64").sum(), cname=(_.qtype == "CNAME").cast("int64").sum(),
        tunnel_types=(_.qtype.isin(list(s.tunnel_qtypes)) | _.qtype.startswith("TYPE")).fill_null(False)
        .cast("int64").sum(),
        nxdomain=(_.rcode == "NXDOMAIN").cast("int64").sum(), answer_bytes=_.answer_bytes.sum(),
        start=_.ts.min(), end=_.ts.max(), servers=_.resp_h.nunique())
    names = q.select(*key, "raw", "label_bytes", "first_label").distinct()
    per_name = names.group_by(key).aggregate(
        unique=_.count(), label_bytes=_.label_bytes.sum(), max_first_label=_.first_label.max(),
        long_first=(_.first_label > s.long_first_label).cast("int64").sum())
    pairs = per_query.join(per_name, key)
    return pairs.filter((pairs.unique >= s.min_unique_subdomains)
                        | (pairs.label_bytes >= s.paxson_bytes_per_day * days))


def _samples(q, cands: list[dict], s: Settings) -> dict:
    """Per candidate pair: pooled label entropy, encoded TXT answers, examples, servers, uids.

    One query (a union of the four kinds of rows, each capped per pair) keeps the round trips
    few, which is what a Spark job costs most."""
    k = q.filter(q.orig_h.isin(sorted({c["orig_h"] for c in cands}))
                 & q.domain.isin(sorted({c["domain"] for c in cands})))
    no_flag = ibis.null("boolean")
    kinds = [
        k.select("orig_h", "domain", kind=ibis.literal("name"), value=k.raw, flag=no_flag),
        k.filter((k.qtype == "TXT") & k.answers.notnull()).select(
            "orig_h", "domain", kind=ibis.literal("txt"), value=k.answers.unnest(), flag=no_flag),
        k.select("orig_h", "domain", kind=ibis.literal("server"), value=k.resp_h,
                 flag=k.server_internal),
        k.filter(k.uid.notnull()).select("orig_h", "domain", kind=ibis.literal("uid"), value=k.uid,
                                         flag=no_flag),
    ]
    u = ibis.union(*kinds, distinct=True)
    u = u.mutate(rn=ibis.row_number().over(group_by=["kind", "orig_h", "domain"], order_by=["value"]))
    u = u.filter(_.rn < ibis.ifelse(_.kind == "uid", s.max_evidence, s.entropy_sample))
    out = {(c["orig_h"], c["domain"]): {"subs": [], "txt": [], "servers": {}, "uids": []}
           for c in cands}
    for r in rows(u.order_by(["orig_h", "domain", "kind", "value"])):
        o = out.get((r["orig_h"], r["domain"]))
        if o is None or r["value"] is None:
            continue  # a pair of a candidate client and a candidate domain that is not a candidate
        if r["kind"] == "name":
            o["subs"].append(r["value"][: -len(r["domain"]) - 1])
        elif r["kind"] == "txt":
            o["txt"].append(r["value"])
        elif r["kind"] == "server":
            o["servers"][r["value"]] = bool(r["flag"])
        else:
            o["uids"].append(r["value"])
    for o in out.values():
        # measured on the bytes, not on their escapes (\xfd is one symbol of base128)
        o["entropy"] = shannon_entropy(unescape("".join(o["subs"]).replace(".", "")))
        o["txt_encoded"] = sum(shannon_entropy(a) >= s.txt_entropy for a in o["txt"])
    return out


def _score(r: dict, m: dict, s: Settings) -> dict[str, float]:
    encoded = (linear(m["label_entropy"], s.entropy_low, s.entropy_high)
               * ramp(m["mean_label_bytes"], s.short_label_bytes, s.long_label_bytes))
    parts = {
        "unique_subdomains": s.subdomain_points * ramp(r["unique"], s.min_unique_subdomains,
                                                       s.high_unique_subdomains),
        "volume": s.volume_points * ramp(m["information_bytes_per_day"], s.paxson_bytes_per_day,
                                         s.high_bytes_per_day),
        "encoded_names": s.encoded_points * encoded,
        "record_types": s.qtype_points * clip01(m["tunnel_type_share"] / s.qtype_share_high),
        "txt_answers": s.txt_points * clip01(m["encoded_txt_answers"] / s.txt_high_count),
        "nxdomain": s.nxdomain_points * m["nxdomain_share"] * encoded,
        "rate": s.rate_points * ramp(m["queries_per_minute"], s.rate_low, s.rate_high),
        "non_resolver": s.non_resolver_points if m.get("non_resolver_servers") else 0.0,
    }
    return {k: v for k, v in parts.items() if v > 0.05}


def _metrics(r: dict, smp: dict, days: float) -> dict:
    span = max((r["end"] - r["start"]).total_seconds(), 0.0)
    n = r["queries"]
    return {
        "queries": n, "unique_subdomains": r["unique"], "label_bytes": r["label_bytes"],
        "information_bytes": round(r["label_bytes"] * smp["entropy"] / 8),
        "mean_label_bytes": round(r["label_bytes"] / r["unique"], 1),
        "label_entropy": round(smp["entropy"], 2),
        "information_bytes_per_day": round(r["label_bytes"] * smp["entropy"] / 8 / days),
        "max_first_label": r["max_first_label"], "long_first_labels": r["long_first"],
        "txt_share": round(r["txt"] / n, 3), "null_share": round(r["null"] / n, 3),
        "cname_share": round(r["cname"] / n, 3), "tunnel_type_share": round(r["tunnel_types"] / n, 3),
        "nxdomain_share": round(r["nxdomain"] / n, 3), "encoded_txt_answers": smp["txt_encoded"],
        "queries_per_minute": round(n / max(span, 60.0) * 60, 1), "span_seconds": round(span, 3),
        "answer_bytes": int(r["answer_bytes"] or 0), "servers": r["servers"],
    }


def _count(n: int) -> str:
    return f"{n:,}".replace(",", " ")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _example(sub: str, domain: str, chars: int) -> str:
    """The first ``chars`` characters of the subdomain; an escape (\\xNN) counts as one, never cut."""
    units = re.findall(r"\\x[0-9a-f]{2}|.", sub, re.S)
    return ("".join(units[:chars]) + ("…" if len(units) > chars else "")) + "." + domain


def _tenants(tel: Telemetry, hosts: list[str]) -> dict:
    """Tenant of each client from its flows (as originator: DNS to an internal resolver is internal)."""
    f = tel.flows.filter(tel.flows.orig_h.isin(hosts))
    return {r["orig_h"]: r["tenant"] for r in rows(f.group_by("orig_h").aggregate(tenant=_.tenant.max()))}


def _tunnels(tel: Telemetry, s: Settings, rules: Rules, known: set, how: str) -> list[Finding]:
    days = _days(tel)
    q = _subdomain_queries(tel, rules)
    cands = rows(_pairs(q, s, days).order_by(["orig_h", "domain"]))
    if not cands:
        return []
    samples = _samples(q, cands, s)
    tenants = _tenants(tel, sorted({c["orig_h"] for c in cands}))
    flows = _dns_flows(tel, samples, s.max_evidence)
    return [_finding(tel, r, samples[(r["orig_h"], r["domain"])], s, days, tenants, flows, known, how)
            for r in cands]


def _dns_flows(tel: Telemetry, samples: dict, limit: int) -> dict:
    """Per (client, DNS server): its largest port-53 flows, for all findings in one query."""
    pairs = sorted({(c, srv) for (c, _), smp in samples.items() for srv in smp["servers"]})
    if not pairs:
        return {}
    f = tel.flows.filter(tel.flows.resp_p == 53)
    f = f.semi_join(keys_table([{"orig_h": c, "resp_h": srv} for c, srv in pairs], ["orig_h", "resp_h"], f),
                    ["orig_h", "resp_h"])
    w = ibis.window(group_by=[f.orig_h, f.resp_h], order_by=[ibis.desc(f.orig_bytes), f.ts, f.uid])
    f = f.mutate(_rn=ibis.row_number().over(w))
    out: dict = {}
    for r in rows(f.filter(f._rn < limit).order_by(["orig_h", "resp_h", "_rn"])
                  .select("orig_h", "resp_h", "uid", "community_id", "orig_bytes", "ts")):
        out.setdefault((r["orig_h"], r["resp_h"]), []).append(r)
    return out


def _finding(tel, r: dict, smp: dict, s: Settings, days: float, tenants: dict, flows: dict,
             known: set, how: str) -> Finding:
    client, domain = r["orig_h"], r["domain"]
    m = _metrics(r, smp, days)
    servers = sorted(smp["servers"])
    # a resolver asking authoritative servers is its job; a client asking anyone else is not
    outside = [] if client in known else [h for h in servers if h not in known]
    m["non_resolver_servers"] = len(outside)
    m["resolvers"] = how
    parts = _score(r, m, s)
    ev = sorted((e for srv in servers for e in flows.get((client, srv), [])),
                key=lambda e: (-(e["orig_bytes"] or 0), e["ts"], e["uid"] or ""))[: s.max_evidence]
    types = ", ".join(f"{t} {m[t.lower() + '_share']:.0%}" for t in ("TXT", "NULL", "CNAME")
                      if m[t.lower() + "_share"])
    return Finding(
        detection=META.id, key=(client, domain), score_parts=parts,
        explanation=(f"{client} sent about {human_bytes(m['information_bytes'])} of data encoded in "
                     f"{_count(r['unique'])} unique names below {domain} in {_count(r['queries'])} "
                     f"DNS queries over "
                     f"{_duration(m['span_seconds'])} ({human_bytes(r['label_bytes'])} of labels, "
                     f"{m['mean_label_bytes']:.0f} bytes per name, "
                     f"{m['label_entropy']:.1f} bits per character"
                     f"{', ' + types if types else ''})"
                     + (f"; {', '.join(outside)} {'is' if len(outside) == 1 else 'are'} not one of the "
                        f"{how} resolvers" if outside else "") + "."),
        internal_hosts=[client], external_hosts=[h for h in servers if not smp["servers"][h]],
        external_names=[domain], channel="dns", start=r["start"], end=r["end"],
        bytes_out=m["information_bytes"],
        evidence={"queries": r["queries"], "unique_names": r["unique"], "dns_servers": servers,
                  "example_names": [_example(x, domain, s.example_chars)
                                    for x in smp["subs"][: s.example_names]],
                  "dns_uids": smp["uids"],
                  "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics=m,
        thresholds={"min_unique_subdomains": s.min_unique_subdomains,
                    "high_unique_subdomains": s.high_unique_subdomains,
                    "paxson_bytes_per_day": s.paxson_bytes_per_day, "entropy_low": s.entropy_low,
                    "entropy_high": s.entropy_high, "long_first_label": s.long_first_label,
                    "txt_entropy": s.txt_entropy},
        tenant=tenants.get(client),
    )
