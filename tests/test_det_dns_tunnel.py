"""dns_tunnel: literal tunnels and look-alikes, suffix matching, DoH, dns2tcp golden, benign controls."""

from __future__ import annotations

import base64
import hashlib
import math
from collections import Counter

import dpkt
import ibis
import pytest
from publicsuffixlist import PublicSuffixList

from abfluss.detections import _domains
from abfluss.errors import ConfigError
from abfluss.detections._stats import rows
from abfluss.detections.dns_tunnel import Settings

from conftest import EXAMPLES, data
from detkit import analyze_capture, assert_golden, dns, flow, run, telemetry

DNS2TCP = "dns-tunnel/netrack-dns2tcp/dns2tcp-2018-03-23.pcap"


def _b32(seed: str, n: int) -> str:
    raw = hashlib.sha256(seed.encode()).digest() + hashlib.sha256(seed.encode() + b"+").digest()
    return base64.b32encode(raw).decode().lower().rstrip("=")[:n]


def _b64(seed: str) -> str:
    return base64.b64encode(hashlib.sha512(seed.encode()).digest()).decode()


def tunnel_name(i: int) -> str:
    p = _b32(f"chunk{i}", 100)
    return f"{p[:50]}.{p[50:]}.t.exfil.test"


def label_bytes(names, domain: str) -> int:
    """The estimate computed independently: subdomain characters without dots, unique names."""
    return sum(len(n[: -len(domain) - 1].replace(".", "")) for n in set(names))


def information(names, domain: str) -> int:
    """Label bytes times the pooled character entropy / 8, computed here independently."""
    subs = "".join(n[: -len(domain) - 1].replace(".", "") for n in sorted(set(names)))
    counts = Counter(subs)
    h = -sum(c / len(subs) * math.log2(c / len(subs)) for c in counts.values())
    return round(label_bytes(names, domain) * h / 8)


def tunnel(n=200, client="10.0.0.5", **kw) -> list[dict]:
    kw.setdefault("qtype", "TXT")
    return [dns(i * 2, orig_h=client, query=tunnel_name(i),
                answers=[_b64(f"reply{i}")] if kw["qtype"] == "TXT" else [], **kw) for i in range(n)]


def doh_flows(host="10.0.0.7", n=3, out=1_000_000, back=200_000, **kw) -> list[dict]:
    kw.setdefault("resp_h", "1.1.1.1")
    return [flow(i * 60, orig_h=host, orig_p=41000 + i, resp_p=443, orig_bytes=out, resp_bytes=back, **kw)
            for i in range(n)]


def positive_tables():
    return {"dns": tunnel(), "flows": doh_flows() + [doh_session(orig_h="10.0.0.8")]}


def by_key(fs):
    return {f.key: f for f in fs}


# -- literal tunnels -------------------------------------------------------------------------

def test_txt_tunnel_scores_every_signal():
    fs = by_key(run("dns_tunnel", **positive_tables()))
    f = fs[("10.0.0.5", "exfil.test")]
    names = [tunnel_name(i) for i in range(200)]
    assert f.metrics["label_bytes"] == label_bytes(names, "exfil.test") == 200 * 101
    # the estimate undoes the encoding: base32 of random bytes carries 5 bits per character
    assert f.bytes_out == f.metrics["information_bytes"] == information(names, "exfil.test")
    assert abs(f.bytes_out - 200 * 101 * 5 / 8) <= 0.01 * 200 * 101 * 5 / 8
    assert f.metrics["unique_subdomains"] == 200 and f.metrics["txt_share"] == 1.0
    assert f.metrics["encoded_txt_answers"] == 200  # base64 of 64 random bytes: > 5 bits/char (Slips)
    assert f.metrics["max_first_label"] == 50 and f.metrics["long_first_labels"] == 200  # nDPI: > 48
    assert set(f.score_parts) >= {"unique_subdomains", "volume", "encoded_names", "record_types", "txt_answers"}
    assert f.severity in ("high", "critical") and f.channel == "dns"
    assert f.external_names == ["exfil.test"] and f.external_hosts == []  # resolver 10.0.0.53 is internal
    assert f.evidence["dns_servers"] == ["10.0.0.53"]
    # Examples are cut: the rest of a name may be the exfiltrated data itself.
    assert all(len(x.split("…")[0]) == 16 for x in f.evidence["example_names"])
    assert "13 KB of data encoded in 200 unique names below exfil.test" in f.explanation


def test_exfiltration_answered_nxdomain_scores_without_record_types():
    fs = run("dns_tunnel", dns=tunnel(qtype="A", rcode="NXDOMAIN"))
    (f,) = fs
    assert f.metrics["nxdomain_share"] == 1.0 and "record_types" not in f.score_parts
    assert f.score_parts["nxdomain"] > 9 and f.severity in ("medium", "high")


def test_tunnel_to_direct_external_server_names_the_server():
    (f,) = run("dns_tunnel", dns=tunnel(resp_h="198.51.100.53"))
    assert f.external_hosts == ["198.51.100.53"]


def test_dnsbl_lookups_stay_low():
    # A mail server checks 1 200 senders against a DNS blocklist: many names, but digits.
    asks = [dns(i, orig_h="10.0.0.25", query=f"{i % 250}.{i // 250}.113.203.zen.spamhaus.org",
                rcode="NXDOMAIN" if i % 10 else "NOERROR", answers=[] if i % 10 else ["127.0.0.2"])
            for i in range(1200)]
    (f,) = run("dns_tunnel", dns=asks)
    assert f.key == ("10.0.0.25", "spamhaus.org") and f.metrics["unique_subdomains"] == 1200
    assert "encoded_names" not in f.score_parts and "nxdomain" not in f.score_parts
    assert f.severity in ("info", "low")


def test_antivirus_hash_lookups_stay_low():
    # File-reputation lookups: long hex hashes in the first label, which nDPI alone would flag.
    asks = [dns(i, query=f"{hashlib.sha256(str(i).encode()).hexdigest()}.avqs.mcafee.com", answers=["127.0.0.1"])
            for i in range(300)]
    (f,) = run("dns_tunnel", dns=asks)
    assert f.metrics["long_first_labels"] == 300 and f.metrics["label_entropy"] < 4.2  # hex: 4 at most
    assert f.score_parts.get("encoded_names", 0) < 5 and f.severity in ("info", "low")


def test_cdn_hashed_host_names_stay_low():
    # Video-cache host names: random-looking but short.
    asks = [dns(i, query=f"rr{i % 9}---sn-{_b32(str(i), 8)}.googlevideo.com", answers=["203.0.113.80"])
            for i in range(400)]
    (f,) = run("dns_tunnel", dns=asks)
    assert f.key == ("10.0.0.5", "googlevideo.com") and f.severity == "info"
    assert f.score_parts.get("encoded_names", 0) < 1


def test_private_suffixes_make_each_cdn_customer_a_domain():
    # cloudfront.net is in the list's private section: every distribution is a domain of its own.
    asks = [dns(i, query=f"d{_b32(str(i), 13)}.cloudfront.net") for i in range(400)]
    assert run("dns_tunnel", dns=asks) == []
    (f,) = run("dns_tunnel", settings=Settings(private_suffixes=False), dns=asks)
    assert f.key == ("10.0.0.5", "cloudfront.net") and f.metrics["unique_subdomains"] == 400


def test_ordinary_browsing_is_below_the_gates():
    asks = [dns(i, query=f"{w}.example.com") for i, w in enumerate(("www", "cdn", "img", "api", "static") * 20)]
    assert run("dns_tunnel", dns=asks) == []


def test_external_clients_are_not_ours():
    # Queries from outside to our own authoritative server: not a client of ours tunnelling.
    assert run("dns_tunnel", dns=tunnel(client="203.0.113.50")) == []


def test_registered_domain_groups_subdomains_public_suffix_aware():
    asks = ([dns(i, query=f"{_b32(str(i), 60)}.a.example.co.uk") for i in range(60)]
            + [dns(100 + i, query=f"{_b32(str(i), 60)}.b.example.co.uk") for i in range(60)]
            + [dns(200 + i, query=f"{_b32(str(i), 60)}.x.blogspot.com") for i in range(80)])
    fs = by_key(run("dns_tunnel", dns=asks))
    assert fs[("10.0.0.5", "example.co.uk")].metrics["unique_subdomains"] == 120
    assert ("10.0.0.5", "x.blogspot.com") in fs and ("10.0.0.5", "blogspot.com") not in fs


@pytest.mark.parametrize("private", [True, False])
def test_suffix_matching_agrees_with_the_publicsuffixlist_package(private):
    names = ["a.b.example.co.uk", "x.com", "com", "co.uk", "www.ck", "a.www.ck", "b.c.ck", "ck",
             "x.y.kobe.jp", "city.kobe.jp", "a.city.kobe.jp", "4.3.2.1.in-addr.arpa", "foo.blogspot.com",
             "a.foo.blogspot.com", "x.foo.local", "wpad", "q.z.hidemyself.org", "xn--p1ai", "a.b.xn--p1ai",
             "a.b.c.d.e.f.g.h.amazonaws.com", "x.s3.dualstack.eu-south-1.amazonaws.com",
             "w.x.y.eu-central-1.airflow.amazonaws.com", "x.y.xn--vler-qoa.hedmark.no", "a.b.test"]
    rules = _domains.load_rules(private)
    # a table on a backend: an expression of memtables alone has none (no default backend is set)
    t = ibis.duckdb.connect().create_table("names", ibis.memtable({"name": names}))
    keys = [r["k"] for r in rows(t.select(k=_domains.key(t.name)).distinct())]
    got = {r["name"]: r["domain"] for r in rows(_domains.registered(t, _domains.restrict(rules, keys)))}
    psl = PublicSuffixList(only_icann=not private)
    assert got == {n: psl.privatesuffix(n) for n in names}


# -- DNS over HTTPS / TLS ----------------------------------------------------------------------

def test_doh_to_public_resolver_by_address():
    fs = by_key(run("dns_tunnel", **positive_tables()))
    f = fs[("doh", "10.0.0.7")]
    assert f.external_hosts == ["1.1.1.1"] and f.bytes_out == 3_000_000 and f.channel == "doh"
    assert f.metrics["out_in_ratio"] == 5.0 and f.severity == "high"


def test_doh_by_server_name_and_browser_sized_use_is_info():
    flows = doh_flows(n=2, out=3000, back=9000, resp_h="203.0.113.8", server_name="chrome.cloudflare-dns.com")
    (f,) = run("dns_tunnel", flows=flows)
    assert f.external_names == ["chrome.cloudflare-dns.com"] and f.score == 15.0 and f.severity == "info"


def test_https_to_other_servers_is_not_doh():
    assert run("dns_tunnel", flows=doh_flows(resp_h="203.0.113.9")) == []


# -- a DNS tunnel inside DoH, by the shape of its sessions ---------------------------------------

def doh_session(out=300_000, back=330_000, pkts_out=2000, pkts_in=1950, duration=60.0, **kw) -> dict:
    """One TLS connection carrying a tunnel's DoH requests: DNS-sized, paired, busy, balanced."""
    kw.setdefault("resp_h", "203.0.113.77")
    kw.setdefault("resp_p", 443)
    kw.setdefault("orig_h", "10.0.0.5")
    return flow(0, duration=duration, orig_bytes=out, resp_bytes=back,
                orig_pkts=pkts_out, resp_pkts=pkts_in, **kw)


def doh_tunnels(fs):
    return [f for f in fs if f.key[0] == "doh_tunnel"]


def test_doh_tunnel_session_to_an_unknown_server_is_medium_on_its_shape():
    (f,) = run("dns_tunnel", flows=[doh_session()])
    assert f.key == ("doh_tunnel", "10.0.0.5", "203.0.113.77") and f.channel == "doh"
    assert f.external_hosts == ["203.0.113.77"] and f.evidence["dns_servers"] == ["203.0.113.77"]
    paired = 1 - abs(math.log(2000 / 1950)) / math.log(2)
    upload = (300_000 / 330_000 - 0.25) / 0.75
    assert f.metrics["busy"] == 1.0  # 33 packets/s, above doh_tunnel_rate_high
    assert f.score_parts["tunnel_shape"] == pytest.approx(50 * paired * upload, abs=0.1)
    assert set(f.score_parts) == {"tunnel_shape", "volume"} and f.severity == "medium"
    # the DoH framing (58 bytes a packet) off, base128's 7 bits per byte undone
    assert f.bytes_out == f.metrics["estimated_bytes"] == round((300_000 - 58 * 2000) * 7 / 8)
    named = run("dns_tunnel", flows=[doh_session(server_name="doh.example.net")])
    assert named[0].score_parts["dns_name"] == 15 and named[0].severity == "high"


def test_doh_tunnel_from_one_way_netflow_records():
    # NetFlow: one record per direction, IP bytes only (payload taken as IP bytes less 52 header
    # bytes a packet); the answers come as an inbound record from the server's port 443.
    up = flow(0, orig_h="10.0.0.5", orig_p=40001, resp_h="203.0.113.77", resp_p=443, duration=60.0,
              orig_bytes=None, resp_bytes=None, orig_ip_bytes=300_000 + 52 * 2000, resp_ip_bytes=None,
              orig_pkts=2000, resp_pkts=None)
    down = flow(0, orig_h="203.0.113.77", orig_p=443, resp_h="10.0.0.5", resp_p=40001, duration=60.0,
                orig_bytes=None, resp_bytes=None, orig_ip_bytes=330_000 + 52 * 1950, resp_ip_bytes=None,
                orig_pkts=1950, resp_pkts=None)
    (f,) = run("dns_tunnel", flows=[up, down])
    (g,) = run("dns_tunnel", flows=[doh_session()])
    assert f.key == g.key and f.score_parts == g.score_parts and f.bytes_out == g.bytes_out
    assert {k: f.metrics[k] for k in ("bytes_out", "bytes_in", "packets_out", "packets_in", "flows")} == {
        "bytes_out": 300_000, "bytes_in": 330_000, "packets_out": 2000, "packets_in": 1950, "flows": 1}


LOOK_ALIKES = {  # one internal host each, judged in one run
    "a browser's DoH lookups: answers 4x the queries, seconds apart":
        dict(resp_h="1.1.1.1", out=40_000, back=160_000, pkts_out=400, pkts_in=400, duration=600.0),
    "a chat's keep-alives: paired and small, but slow":
        dict(out=60_000, back=70_000, pkts_out=600, pkts_in=600, duration=3600.0),
    "an upload: full segments out": dict(out=2_000_000, back=20_000, pkts_out=1400, pkts_in=300),
    "a download: full segments back": dict(out=30_000, back=3_000_000, pkts_out=600, pkts_in=2100),
    "keystrokes: packets smaller than any DoH request":
        dict(out=120_000, back=150_000, pkts_out=3000, pkts_in=3000, duration=300.0),
    "a page load: tens of packets": dict(out=30_000, back=35_000, pkts_out=80, pkts_in=80),
    "a stream of small records the server only acknowledges": dict(back=0),
    "the tunnel's shape, but not to a DoH port": dict(resp_p=5222),
}


def test_doh_tunnel_look_alikes_give_nothing():
    sessions = [doh_session(orig_h=f"10.0.1.{i}", **kw) for i, kw in enumerate(LOOK_ALIKES.values())]
    found = {f.internal_hosts[0]: f for f in doh_tunnels(run("dns_tunnel", flows=sessions))}
    assert found == {}, [list(LOOK_ALIKES)[int(h.rsplit(".", 1)[1])] for h in found]


def test_doh_tunnel_through_a_public_resolver_and_the_settings():
    fs = by_key(run("dns_tunnel", flows=[doh_session(resp_h="1.1.1.1")]))
    assert set(fs) == {("doh", "10.0.0.5"), ("doh_tunnel", "10.0.0.5", "1.1.1.1")}
    # the resolver's own finding judges volume alone (low); the shape says what the session is
    assert [fs[k].severity for k in sorted(fs)] == ["low", "medium"]
    assert run("dns_tunnel", settings=Settings(doh_tunnel_min_shape=0.9), flows=[doh_session()]) == []
    with pytest.raises(ConfigError, match="doh_tunnel_name_pattern: not a regular expression"):
        run("dns_tunnel", settings=Settings(doh_tunnel_name_pattern="(doh"), flows=[doh_session()])


# -- real captures ---------------------------------------------------------------------------

def findings(rel: str, tmp, config: str | None = None):
    return analyze_capture(rel, tmp, config, only=("dns_tunnel",))


def dns2tcp_names() -> set[str]:
    """Every query name in the capture, read with dpkt directly (not through abfluss)."""
    names = set()
    with open(data(DNS2TCP), "rb") as fh:
        for _, buf in dpkt.pcap.Reader(fh):
            udp = dpkt.ethernet.Ethernet(buf).data.data
            if isinstance(udp, dpkt.udp.UDP) and 53 in (udp.sport, udp.dport):
                names.add(dpkt.dns.DNS(udp.data).qd[0].name.lower())
    return names


def test_golden_dns2tcp(tmp_path_factory):
    # Client 172.17.0.3 asks 172.17.0.2 (both docker addresses, internal by default): the
    # detection needs only an internal client, whichever resolver it uses.
    fs = findings(DNS2TCP, tmp_path_factory.mktemp("d2t"))
    (f,) = fs
    names = dns2tcp_names()
    assert f.key == ("172.17.0.3", "hidemyself.org") and f.external_names == ["hidemyself.org"]
    assert f.metrics["unique_subdomains"] == len(names) == 4555
    assert f.metrics["label_bytes"] == label_bytes(names, "hidemyself.org") == 527448
    # dns2tcp writes base64 (6 bits per character) into the labels: the estimate undoes it
    assert f.bytes_out == f.metrics["information_bytes"] and 0.74 <= f.bytes_out / 527448 <= 0.75
    assert f.metrics["txt_share"] == 1.0 and f.metrics["max_first_label"] == 63
    assert f.severity == "critical" and f.evidence["top_flows"]
    assert_golden("dns_tunnel-dns2tcp", fs)


@pytest.mark.parametrize("rel,config", [
    ("zeek-traces/wikipedia.pcap", '[networks]\ninternal = ["141.142.0.0/16"]\n'),  # the client is 141.142.220.118
    ("zeek-traces/bro.org.pcap", None),
    (str(EXAMPLES / "demo.pcap"), None),  # the lab's workstations resolving its test domains
])
def test_benign_captures_give_nothing(rel, config, tmp_path_factory):
    # Not even info: so in particular nothing of medium or higher.
    assert findings(rel, tmp_path_factory.mktemp("benign"), config) == []


@pytest.mark.parametrize("rel", [
    "rita/open_conns",  # a lab's benign Zeek logs, long-open TLS connections among them
    "slips/binetflow",  # two days of a phone's apps (Twitter, Facebook, Google, WhatsApp): small, paired sessions
])
def test_app_sessions_are_no_doh_tunnels(rel, tmp_path_factory):
    assert doh_tunnels(findings(rel, tmp_path_factory.mktemp("apps"))) == []


def test_settings_change_the_gates():
    asks = [dns(i, query=f"{w}{i}.example.com") for i, w in enumerate(("www", "cdn") * 30)]
    assert run("dns_tunnel", dns=asks) == []
    (f,) = run("dns_tunnel", settings=Settings(min_unique_subdomains=50), dns=asks)
    assert f.metrics["unique_subdomains"] == 60 and f.severity == "info"


# -- DNS as flows, independent of decoding ------------------------------------------------------

def run_flows(resolvers=(), settings=None, **tables):
    """dns_tunnel over literal tables with ``[networks] resolvers`` as analysis passes them."""
    from abfluss import detections

    mod = detections.module("dns_tunnel")
    s = settings or Settings()
    with telemetry(extra={"resolvers": tuple(resolvers)}, **tables) as tel:
        tel.extra["dns_tunnel"] = mod.prepare(s)
        return [f for f in mod.detect(tel, s) if f.key[0] == "dns_flows"]


def dns_flow(ts=0, client="10.0.0.5", server="10.0.0.53", out=60, pkts=1, back=120, **kw):
    return flow(ts, orig_h=client, orig_p=50000 + int(ts) % 10000, resp_h=server, resp_p=53, proto="udp",
                service="dns", orig_bytes=out, resp_bytes=back, orig_pkts=pkts, resp_pkts=pkts, **kw)


def lookups(client="10.0.0.5", server="10.0.0.53", n=30):
    """Ordinary look-ups of different domains (what makes a server a learned resolver)."""
    return [dns(i, orig_h=client, resp_h=server, query=f"www.site{i}.example", query_bytes=40) for i in range(n)]


def test_configured_resolvers_decide_which_servers_are_resolvers():
    flows = [dns_flow(i) for i in range(20)] + [dns_flow(100, server="198.51.100.7"),
                                               dns_flow(101, server="10.0.0.54")]
    fs = {f.key[2]: f for f in run_flows(resolvers=["10.0.0.53/32"], flows=flows)}
    assert sorted(fs) == ["10.0.0.54", "198.51.100.7"]
    f = fs["198.51.100.7"]
    assert f.score_parts == {"non_resolver": 15.0} and f.severity == "info"
    assert f.metrics["resolvers"] == "configured" and f.metrics["server_is_resolver"] is False
    assert f.external_hosts == ["198.51.100.7"] and fs["10.0.0.54"].external_hosts == []
    assert "198.51.100.7 is not one of the configured resolvers" in f.explanation


def test_learned_resolvers_internal_many_clients_or_many_domains():
    flows = ([dns_flow(i, client=f"10.0.0.{10 + i % 3}", server="203.0.113.1") for i in range(9)]  # 3 clients
             + [dns_flow(20, server="203.0.113.2"), dns_flow(21, server="203.0.113.3")])
    d = lookups(server="203.0.113.2")  # asked about 30 domains: a resolver
    fs = run_flows(flows=flows, dns=d)
    assert [f.key[2] for f in fs] == ["203.0.113.3"] and fs[0].metrics["resolvers"] == "learned"


def test_undecodable_bytes_to_port_53_are_found():
    # iodine's raw UDP mode: after a DNS handshake, datagrams to port 53 that are not DNS at all
    d = [dns(i, resp_h="203.0.113.53", query=f"v{i}aaaa.t.tunnel.example", query_bytes=40) for i in range(4)]
    flows = [dns_flow(0, server="203.0.113.53", out=48_000, pkts=48, duration=30.0)]
    (f,) = run_flows(flows=flows, dns=d + lookups())
    assert f.key == ("dns_flows", "10.0.0.5", "203.0.113.53") and f.bytes_out == 48_000
    assert f.metrics["undecoded_share"] == round(1 - 160 / 48_000, 3) and f.metrics["mean_query_bytes"] == 1000
    assert set(f.score_parts) == {"non_resolver", "large_queries", "socket_reuse", "undecoded", "volume"}
    assert f.severity == "critical" and "of the bytes are not DNS messages" in f.explanation


def test_netflow_only_tunnel_through_the_resolver():
    # No DNS decoded at all (a NetFlow sensor): large queries in volume to the resolver.
    flows = [dns_flow(i * 60, out=60_000, pkts=240, back=90_000) for i in range(5)]
    (f,) = run_flows(flows=flows)
    assert f.metrics["undecoded_share"] is None and f.metrics["mean_query_bytes"] == 250
    assert set(f.score_parts) == {"large_queries", "socket_reuse", "volume"} and f.severity == "medium"
    assert f.metrics["packets_per_flow"] == 240
    assert f.bytes_out == 300_000
    # ordinary look-ups (a new source port each) in a larger volume are no finding
    assert run_flows(flows=[dns_flow(i, out=60, pkts=1) for i in range(2000)]) == []


def test_a_resolver_forwarding_and_a_pair_explained_by_names_are_left_alone():
    forward = [dns_flow(i, client="10.0.0.53", server="203.0.113.53", out=50_000, pkts=200) for i in range(3)]
    assert run_flows(flows=forward + [dns_flow(10)], dns=lookups()) == []
    names = tunnel()
    flows = [dns_flow(0, out=60_000, pkts=200)]
    from abfluss import detections
    mod = detections.module("dns_tunnel")
    with telemetry(flows=flows, dns=names, extra={"resolvers": ()}) as tel:
        fs = mod.detect(tel, Settings())
    assert [f.key for f in fs] == [("10.0.0.5", "exfil.test")]
