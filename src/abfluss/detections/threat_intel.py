"""Threat intelligence: flows, DNS look-ups and TLS handshakes of internal hosts that touch a listed indicator.

RITA scores a threat-intel hit 0.8 and adds 0.15 from 25 MB exchanged; Zeek's Intel
framework and Slips match addresses and names seen anywhere. Here an indicator (address,
IPv4 network or domain with all its subdomains) is matched against the flows' external
address, server name (SNI / HTTP Host) and best DNS name, and against the DNS queries and
answers of internal clients, and the finding says how much data went to it and came back.
TLS fingerprint indicators (abuse.ch SSLBL style) are matched against the handshakes: a JA3 hash
against the client's JA3 and the server's JA3S (both MD5, one kind of value), a JA4 against the
client's JA4, a certificate SHA-1 against the certificates the server sent (Zeek's files.log
hashes them). Such a hit names malware by its TLS library, not by an address it may change
daily; the connection's bytes count like an address hit's.

Matching is set-based on both engines: the distinct addresses and names of the window are
joined with small indicator tables (``ibis.memtable``). A network matches through an exact
join on (prefix length, network start) computed from the dotted address with integer
arithmetic; a domain through an exact join on the name's last *k* labels, for each label
count *k* the indicators have. No per-record Python, no backend-specific SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import ibis
import pyarrow as pa
from ibis import _

from .. import intel
from ..errors import AbflussError
from ..findings import Finding
from . import Meta, Telemetry
from ..units import count
from ._stats import channel, human_bytes, largest_flows, main_channel, ramp, rows

META = Meta(
    id="threat_intel",
    title="Traffic to or look-up of a listed threat indicator",
    attack=("T1071", "T1041", "T1568"),
    description="An internal host connected to, exchanged data with, or looked up an address, "
                "network or domain on a configured indicator list (plain list, CSV, STIX 2.1, "
                "or inline), with the bytes sent to and received from it.",
    runbook="1. Check the indicator's source and age: a stale or shared-hosting entry explains "
            "some hits. 2. If data went out, treat it as a possible C2 or exfiltration channel: "
            "look at the evidence flows and the host's other findings. 3. Find the process on "
            "the host (ss -tnp / netstat -b, EDR), block the indicator at the egress, and isolate "
            "the host if the traffic is not explained.",
    inputs=("dns", "files", "flows", "tls"),
)


@dataclass(frozen=True)
class Settings:
    files: tuple[str, ...] = field(default=(), metadata={
        "help": "Indicator files: plain lists (one address, IPv4 CIDR or domain per line, # comments), "
                "CSV (column named indicator/ioc/value/ip/domain) or STIX 2.1 bundles; paths relative "
                "to the configuration file."})
    addresses: tuple[str, ...] = field(default=(), metadata={
        "help": "Inline indicator addresses and IPv4 networks (CIDR)."})
    domains: tuple[str, ...] = field(default=(), metadata={
        "help": "Inline indicator domains; each also matches all of its subdomains."})
    match_points: float = field(default=45.0, metadata={
        "help": "Points for any match, a look-up or a connection without data out (medium)."})
    sent_points: float = field(default=25.0, metadata={
        "help": "Points added when bytes went out to the indicator: high, like RITA's 0.8 for a hit."})
    volume_points: float = field(default=15.0, metadata={
        "help": "Points added at volume_high bytes exchanged (RITA adds 0.15 from 25 MB)."})
    volume_low: float = field(default=1e6, metadata={
        "help": "Bytes exchanged (out + in) from which volume points start to count."})
    volume_high: float = field(default=25e6, metadata={
        "help": "Bytes exchanged (out + in) that give the full volume points (RITA: 25 MB)."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})


def prepare(s: Settings) -> intel.IndicatorSet:
    """Load the indicator files and inline lists (the only I/O; run before detect)."""
    return intel.load(s.files, s.addresses, s.domains)


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    ind = tel.extra.get(META.id)
    if ind is None:
        raise AbflussError("threat_intel: indicators not loaded (call prepare(settings) first)")
    if not len(ind):
        return []
    f = tel.flows.filter(_.internal_host.notnull())
    f = f.mutate(channel=channel(f.service, f.proto, f.resp_p), n1=_norm(f.external_name),
                 n2=_norm(f.server_name))
    d = tel.dns.filter(_.client_internal)
    d = d.mutate(q=_norm(d.query))
    # Unnest first, normalise after: Spark refuses a generator nested in an expression.
    answers = d.select(*_DNS_ID, a=d.answers.unnest()).mutate(a=_norm(_.a))
    hits = _hits(f, d, answers, ind)
    flows_hit = _flow_matches(f, hits) if hits is not None else None
    dns_hit = _dns_matches(d, answers, hits) if hits is not None else None
    tls_hit = _tls_matches(tel, ind)
    if tls_hit is not None:  # the handshake's connection counts like a flow to a listed address
        by_tls = _flow_cols(f.join(tls_hit.select("uid", "indicator").distinct(), "uid"), f.n1, _.indicator)
        flows_hit = by_tls if flows_hit is None else ibis.union(flows_hit, by_tls, distinct=True)
    if flows_hit is None and dns_hit is None and tls_hit is None:
        return []
    per_flow = [] if flows_hit is None else rows(
        flows_hit.group_by(["internal_host", "indicator", "external_host", "name", "channel"])
        .aggregate(flows=_.count(), bytes_out=_.bytes_out.sum(), bytes_in=_.bytes_in.sum(),
                   start=_.ts.min(), end=_.ts_end.max(), tenant=_.tenant.max())
        .order_by(["internal_host", "indicator", "external_host", "name", "channel"]))
    per_dns = [] if dns_hit is None else rows(
        dns_hit.group_by(["internal_host", "indicator", "query"])
        .aggregate(queries=_.count(), start=_.ts.min(), end=_.ts.max())
        .order_by(["internal_host", "indicator", "query"]))
    per_tls = [] if tls_hit is None else rows(
        tls_hit.group_by(["internal_host", "indicator", "field", "server"])
        .aggregate(handshakes=_.count(), start=_.ts.min(), end=_.ts.max(), name=_.server_name.max())
        .order_by(["internal_host", "indicator", "field", "server"]))
    found = _merge(per_flow, per_dns, per_tls)
    ev = largest_flows(flows_hit, [{"internal_host": h, "indicator": i} for h, i in found],
                       ["internal_host", "indicator"], s.max_evidence) if per_flow else {}
    return [_finding(host, indicator, m, ind, ev.get((host, indicator), []), s)
            for (host, indicator), m in sorted(found.items())]


#: What tells DNS transactions apart when a query and an answer both match (uid may be missing).
_DNS_ID = ("orig_h", "orig_p", "ts", "uid", "trans_id", "query", "qtype")


def _norm(col):
    """A name as matched: lower case, no trailing dot."""
    return col.lower().re_replace(r"\.$", "")


def _ipv4_int(col):
    """The dotted IPv4 address as an integer, null for anything else (portable: regex and cast)."""
    pat = r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$"
    a, b, c, d = (col.re_extract(pat, i).try_cast("int64") for i in range(1, 5))
    return a * 16777216 + b * 65536 + c * 256 + d


def _hits(f, d, answers, ind: intel.IndicatorSet):
    """(value, indicator) for every address or name of the window that an indicator covers
    (None when there are no address or domain indicators)."""
    addrs = _distinct([f.select(value=f.external_host), answers.select(value=answers.a)])
    names = _distinct([f.select(value=f.n1), f.select(value=f.n2), d.select(value=d.q),
                       answers.select(value=answers.a)])
    parts = []
    nets = ind.ipv4_networks()
    if nets:
        table = _table(indicator=[n[0] for n in nets], plen=[n[1] for n in nets], net=[n[2] for n in nets])
        a = addrs.mutate(ip=_ipv4_int(addrs.value)).filter(_.ip.notnull())
        cand = _union([a.select("value", plen=ibis.literal(p, "int64"), net=a.ip - a.ip % (2 ** (32 - p)))
                       for p in sorted({n[1] for n in nets})])
        parts.append(cand.join(table, ["plen", "net"]).select("value", "indicator"))
    v6 = ind.ipv6_addresses()
    if v6:
        table = _table(indicator=v6)
        parts.append(addrs.join(table, addrs.value.lower() == table.indicator).select("value", "indicator"))
    doms = ind.domains()
    if doms:
        table = _table(indicator=doms)
        cand = _union([names.select("value", suffix=names.value.re_extract(_last_labels(k), 1))
                       for k in sorted({x.count(".") + 1 for x in doms})])
        parts.append(cand.join(table, cand.suffix == table.indicator).select("value", "indicator"))
    return _union(parts).distinct() if parts else None


#: TLS columns a fingerprint indicator of each kind is compared with (JA3 and JA3S are both MD5).
_TLS_FIELDS = {"ja3": ("ja3", "ja3s"), "ja4": ("ja4",)}


def _tls_matches(tel: Telemetry, ind: intel.IndicatorSet):
    """Handshakes whose client or server fingerprint, or whose server certificate, is listed:
    uid, internal_host, server, server_name, ts, indicator and the ``field`` that matched."""
    fps = ind.fingerprints()
    t = tel.tls
    if not fps or t is None:
        return None
    # The internal side: the client, unless only the server is ours (an exposed server's visitor).
    flip = ~t.orig_internal.fill_null(False) & t.resp_internal.fill_null(False)
    t = t.mutate(server=ibis.ifelse(flip, t.orig_h, t.resp_h), internal_host=ibis.ifelse(flip, t.resp_h, t.orig_h))
    parts = []
    for kind, cols in _TLS_FIELDS.items():
        values = [v for v, k in fps if k == kind]
        if not values:
            continue
        table = _table(indicator=values)
        for col in cols:
            if col in t.columns:
                m = t.join(table, t[col].lower() == table.indicator)
                parts.append(m.select("uid", "internal_host", "server", "server_name", "ts", "indicator",
                                      field=ibis.literal(col)))
    sha1 = [v for v, k in fps if k == "sha1"]
    files = getattr(tel, "files", None)  # Zeek files.log: certificate hashes by file id
    if sha1 and files is not None and "cert_fuids" in t.columns and {"fuid", "sha1"} <= set(files.columns):
        table = _table(indicator=sha1)
        certs = files.join(table, files.sha1.lower() == table.indicator).select("fuid", "indicator").distinct()
        chain = t.select("uid", "internal_host", "server", "server_name", "ts", fuid=t.cert_fuids.unnest())
        m = chain.join(certs, "fuid")
        parts.append(m.select("uid", "internal_host", "server", "server_name", "ts", "indicator",
                              field=ibis.literal("certificate sha1")))
    if not parts:
        return None
    return _union(parts).distinct()


def _table(**columns):
    """A small indicator table that travels with the query to whichever engine runs it."""
    return ibis.memtable(pa.table({k: pa.array(v, pa.int64() if k != "indicator" else pa.string())
                                   for k, v in columns.items()}))


def _last_labels(k: int) -> str:
    """Regex capturing the last ``k`` labels of a name (no match when it has fewer)."""
    return rf"((?:[^.]+\.){{{k - 1}}}[^.]+)$"


_FLOW_COLS = ["internal_host", "external_host", "ts", "ts_end", "bytes_out", "bytes_in", "uid",
              "community_id", "channel", "tenant", "orig_h", "orig_p", "resp_h", "resp_p", "proto"]


def _flow_cols(joined, name, indicator):
    return joined.select(*_FLOW_COLS, name=name, indicator=indicator)


def _flow_matches(f, hits):
    """Matched flows with their indicator; a flow matched twice (address and name) counts once."""
    parts = [_flow_cols(f.join(hits, key == hits.value), f.n1, hits.indicator)
             for key in (f.external_host, f.n1, f.n2)]
    return ibis.union(*parts, distinct=True)


def _dns_matches(d, answers, hits):
    """Matched DNS transactions (by query or by an answer), each once per indicator."""
    by_query = d.join(hits, d.q == hits.value).select(*_DNS_ID, indicator=hits.indicator)
    by_answer = answers.join(hits, answers.a == hits.value).select(*_DNS_ID, indicator=hits.indicator)
    both = ibis.union(by_query, by_answer, distinct=True)
    return both.select(internal_host=both.orig_h, indicator=both.indicator, ts=both.ts,
                       query=_norm(both.query))


def _distinct(parts):
    return _union(parts).filter(_.value.notnull() & (_.value != "")).distinct()


def _union(parts):
    return parts[0] if len(parts) == 1 else ibis.union(*parts)


def _merge(per_flow: list[dict], per_dns: list[dict], per_tls: list[dict] = ()) -> dict:
    """Per (internal host, indicator): the flow, DNS and TLS groups that matched it."""
    out: dict = {}
    for kind, groups in (("flows", per_flow), ("dns", per_dns), ("tls", per_tls)):
        for r in groups:
            out.setdefault((r["internal_host"], r["indicator"]), {"flows": [], "dns": [], "tls": []})[kind].append(r)
    return out


def _finding(host: str, indicator: str, m: dict, ind: intel.IndicatorSet, ev: list[dict], s: Settings) -> Finding:
    fl, dn, tl = m["flows"], m["dns"], m["tls"]
    n_flows = sum(r["flows"] for r in fl)
    out_b = sum(r["bytes_out"] or 0 for r in fl)
    in_b = sum(r["bytes_in"] or 0 for r in fl)
    queries = sum(r["queries"] for r in dn)
    handshakes = sum(r["handshakes"] for r in tl)
    times = [r["start"] for r in fl + dn + tl] + [r["end"] for r in fl + dn + tl if r["end"] is not None]
    parts = {"match": s.match_points}
    if out_b > 0:
        parts["data_sent"] = s.sent_points
    parts["volume"] = s.volume_points * ramp(out_b + in_b, s.volume_low, s.volume_high)
    source = _short(ind.source_of(indicator))
    reason = ind.reason_of(indicator)
    names = sorted({r["name"] for r in fl + tl if r["name"]} | {r["query"] for r in dn if r["query"]})
    servers = sorted({r["external_host"] for r in fl} | {r["server"] for r in tl if r["server"]})
    metrics = {"indicator": indicator, "source": source, "flows": n_flows, "dns_queries": queries,
               "bytes_out": out_b, "bytes_in": in_b}
    if tl:
        metrics.update(tls_handshakes=handshakes, matched=sorted({r["field"] for r in tl}))
    if reason:
        metrics["reason"] = reason
    return Finding(
        detection=META.id, key=(host, indicator), score_parts=parts,
        explanation=_sentence(host, indicator, source, n_flows, out_b, in_b, queries, tl, reason, servers),
        internal_hosts=[host], external_hosts=servers if tl else [r["external_host"] for r in fl],
        external_names=names[:10],
        channel=main_channel(fl)[0] if fl else ("tls" if tl else "dns"), start=min(times), end=max(times),
        bytes_out=out_b,
        evidence={"flows": n_flows, "dns_queries": queries, "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics=metrics,
        thresholds={"volume_low": s.volume_low, "volume_high": s.volume_high},
        tenant=max((r["tenant"] for r in fl if r["tenant"]), default=None),
        attack=_techniques(n_flows + handshakes, out_b, queries),
    )


def _techniques(n_flows: int, out_b: int, queries: int) -> list[str]:
    """ATT&CK ids that fit what matched: C2 traffic, data out over it, name resolution."""
    return [t for t, ok in (("T1071", n_flows), ("T1041", out_b > 0), ("T1568", queries)) if ok]


#: How a fingerprint match reads: which side presented it.
_FIELD_WORDS = {"ja3": "client fingerprint JA3", "ja3s": "server fingerprint JA3S", "ja4": "client fingerprint JA4",
                "certificate sha1": "server certificate SHA-1"}


def _short(source: str) -> str:
    """file:line without the directory (findings must not depend on where the list lies)."""
    return Path(source).name if "/" in source else source


def _sentence(host, indicator, source, n_flows, out_b, in_b, queries, tls=(), reason="", servers=()) -> str:
    what = []
    if n_flows:
        what.append(f"{count(n_flows, 'connection')} with {human_bytes(out_b)} out and {human_bytes(in_b)} in")
    if queries:
        what.append(f"{count(queries, 'lookup')}")
    listed = f"({source}{', ' + reason if reason else ''})"
    if tls:
        fields = " and ".join(_FIELD_WORDS.get(f, f) for f in sorted({r["field"] for r in tls}))
        shakes = count(sum(r["handshakes"] for r in tls), "handshake")
        peers = ", ".join(servers[:3]) + (f" and {len(servers) - 3} more" if len(servers) > 3 else "")
        head = f"{host} used listed TLS {fields} {indicator} {listed} in {shakes} with {peers}"
        return head + (f": {', and '.join(what)}." if what else ".")
    return f"{host} reached listed indicator {indicator} {listed}: {', and '.join(what)}."
