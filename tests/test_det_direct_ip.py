"""direct_ip: connections to addresses no DNS answer named, only where the host's DNS is
visible; named, SNI-identified, infrastructure and uncovered connections stay silent; real
captures with DNS give nothing on their benign browsing."""

from __future__ import annotations

from abfluss.detections.direct_ip import Settings
from conftest import EXAMPLES
from detkit import analyze_capture, dns, flow, run

C2 = "198.51.100.66"


def looked_up(n=8, step=300, host="10.0.0.5") -> list[dict]:
    """The host's ordinary DNS: ``n`` look-ups, one every ``step`` seconds, answered."""
    return [dns(i * step, orig_h=host, query=f"www{i}.example.test", answers=[f"203.0.113.{i + 1}"], orig_p=53000 + i)
            for i in range(n)]


def positive_tables() -> dict:
    """Among resolved browsing, 12 connections to a hard-coded address, 60 KB out."""
    browsing = [flow(700 + i * 60, resp_h=f"203.0.113.{i % 8 + 1}", orig_p=50000 + i) for i in range(20)]
    c2 = [flow(900 + i * 120, resp_h=C2, resp_p=8443, service="", orig_bytes=5_000, resp_bytes=800,
               orig_p=51000 + i) for i in range(12)]
    return {"flows": browsing + c2, "dns": looked_up()}


def test_hard_coded_address_among_resolved_traffic():
    (f,) = run("direct_ip", **positive_tables())
    assert f.key == ("10.0.0.5", C2) and f.external_hosts == [C2] and f.bytes_out == 60_000
    assert f.metrics["flows"] == 12 and f.metrics["host_dns_queries"] == 8 and f.severity == "low"
    assert f.explanation == (f"10.0.0.5 opened 12 connections to {C2} (https) that no DNS answer named, "
                             "sending 60 KB and receiving 10 KB, while its other traffic was resolved "
                             "(8 DNS look-ups in the window).")
    assert len(f.evidence["top_flows"]) == 10 and f.attack == ["T1071", "T1571", "T1095"]


def test_named_identified_and_infrastructure_connections_are_nothing():
    t = positive_tables()
    # another client's answer names it (a shared resolver cache answers for all)
    named = t["dns"] + [dns(650, orig_h="10.0.0.6", query="cdn.example.test", answers=["cname.test", C2])]
    assert run("direct_ip", flows=t["flows"], dns=named) == []
    # the connection names its server itself (TLS SNI or HTTP Host)
    sni = [dict(r, server_name="api.example.test", external_name="api.example.test") if r["resp_h"] == C2 else r
           for r in t["flows"]]
    assert run("direct_ip", flows=sni, dns=t["dns"]) == []
    # NTP and STUN work by address; an unanswered probe is a scan's business
    infra = [flow(900, resp_h=C2, resp_p=123, proto="udp", service="ntp"),
             flow(960, resp_h=C2, resp_p=3478, proto="udp", service=""),
             flow(1000, resp_h=C2, resp_p=443, resp_bytes=0, orig_p=52000)]
    assert run("direct_ip", flows=infra, dns=t["dns"]) == []


def test_silent_without_dns_coverage():
    t = positive_tables()
    assert run("direct_ip", flows=t["flows"]) == []  # no DNS at all (a NetFlow-only sensor)
    assert run("direct_ip", flows=t["flows"], dns=looked_up(n=3)) == []  # too few questions to count
    other = looked_up(host="10.0.0.9")  # DNS of another host only
    assert run("direct_ip", flows=t["flows"], dns=other) == []
    # before the warm-up after the host's first question (its answer may be cached from earlier)
    assert run("direct_ip", settings=Settings(warmup_seconds=3600), **t) == []
    # long after its last question
    late = [dict(r) for r in t["flows"]]
    assert run("direct_ip", settings=Settings(tail_seconds=60), flows=late, dns=looked_up(n=5, step=10)) == []


def test_benign_captures_with_dns_give_nothing(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("benign")
    rels = ("rita/open_conns", "zeek-traces/wikipedia.pcap", str(EXAMPLES / "demo.pcap"),
            str(EXAMPLES / "lab-beacon.pcap"), "slips/test9-mixed-zeek")
    assert analyze_capture(rels, tmp, only=("direct_ip",)) == []


def test_many_unnamed_addresses_of_one_host_fold_into_one_finding():
    """25 unnamed addresses (peer-to-peer, DoH) make one finding for the host, the addresses with
    most data listed; the hard-coded address of another host keeps its own finding."""
    p2p = [flow(700 + i * 10, resp_h=f"198.51.100.{i + 100}", resp_p=6881, service="", orig_bytes=1000 * (i + 1),
                orig_p=52000 + i) for i in range(25)]
    t = positive_tables()
    other = [dict(r, orig_h="10.0.0.7", internal_host="10.0.0.7") for r in p2p]
    fs = run("direct_ip", flows=t["flows"] + other, dns=t["dns"] + looked_up(host="10.0.0.7"))
    assert [f.key for f in fs] == [("10.0.0.5", C2), ("10.0.0.7", "*")]
    f = fs[1]
    assert f.metrics["addresses"] == 25 and f.metrics["flows"] == 25 and f.bytes_out == 325_000
    top = [f"198.51.100.{i + 100}" for i in range(24, 14, -1)]  # the 10 with most bytes out, most first
    assert [t["address"] for t in f.metrics["top_addresses"]] == top and f.external_hosts == sorted(top)
    assert f.explanation.startswith("10.0.0.7 opened 25 connections to 25 destinations that no DNS answer named "
                                    "(most data to 198.51.100.124, 198.51.100.123, 198.51.100.122)")
    assert run("direct_ip", Settings(max_addresses=30), flows=other, dns=looked_up(host="10.0.0.7"))[0].key[1] != "*"
