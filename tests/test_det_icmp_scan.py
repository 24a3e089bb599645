"""icmp_scan: literal sweeps and monitoring pings, the golden Slips ICMP sweep, benign controls."""

import pytest
from detkit import analyze_capture, assert_golden, assert_same_on_spark, flow, run

from abfluss.detections.icmp_scan import Settings
from conftest import EXAMPLES

MEDIUM_OR_MORE = ("medium", "high", "critical")


def ping(ts, dst, answered=True, **kw) -> dict:
    """One echo request (and its reply) as the pcap reader stores it: type/code unknown (0/0)."""
    row = dict(proto="icmp", orig_h="10.0.0.5", orig_p=0, resp_h=dst, resp_p=0, service=None,
               orig_bytes=56, resp_bytes=56 if answered else 0, orig_pkts=1, resp_pkts=1 if answered else 0,
               duration=0.001, conn_state=None)
    row.update(kw)
    return flow(ts, **row)


def positive_tables():
    # A workstation pinging 100 addresses of a /24 in 5 s; a quarter answer.
    return {"flows": [ping(i * 0.05, f"10.0.1.{i + 1}", answered=i % 4 == 0, uid=f"P{i:03d}") for i in range(100)]}


def test_internal_sweep_of_a_range():
    (f,) = run("icmp_scan", **positive_tables())
    assert f.key == ("10.0.0.5", "icmp_sweep", "icmp") and f.attack == ["T1018", "T1595.001"]
    assert f.internal_hosts == ["10.0.0.5"] and f.external_hosts == [] and f.channel == "icmp"
    assert f.metrics["count"] == 100 and f.metrics["answered"] == 25 and len(f.metrics["hosts"]) == 20
    assert f.score_parts["unanswered"] == 7.5 and f.score_parts["internal_source"] == 20
    assert f.severity in ("high", "critical") and f.evidence["top_flows"][:2] == ["P000", "P001"]


def test_inbound_sweep_with_zeek_types_belongs_to_the_targets():
    # Zeek keeps the type in orig_p: echo (8) and address-mask (17) requests from outside.
    flows = [ping(i, f"10.0.2.{i + 1}", orig_h="198.51.100.7", orig_p=8 if i % 2 else 17) for i in range(12)]
    (f,) = run("icmp_scan", flows=flows)
    assert f.key == ("198.51.100.7", "icmp_sweep", "icmp") and f.external_hosts == ["198.51.100.7"]
    assert len(f.internal_hosts) == 12 and "internal_source" not in f.score_parts
    assert f.score_parts["address_types"] == 10 and "address-mask" in f.explanation


def test_monitoring_host_pinging_servers_all_day_is_not_medium():
    # 30 servers pinged once a minute for 8 hours: a sweep's breadth, but 30 hosts over hours.
    flows = [ping(m * 60 + k, f"10.0.3.{k + 1}", orig_p=0) for m in range(0, 480, 20) for k in range(30)]
    (f,) = run("icmp_scan", flows=flows)
    assert f.metrics["count"] == 30 and f.score_parts["speed"] == 0
    assert f.severity not in MEDIUM_OR_MORE


def test_few_hosts_errors_replies_and_multicast_are_no_sweep():
    few = [ping(i, f"10.0.1.{i + 1}") for i in range(9)]  # under min_hosts
    # Zeek type 3 (unreachable) and 0 (unsolicited echo reply) are answers, not requests.
    errors = [ping(i, f"10.0.4.{i + 1}", orig_h="10.0.0.9", orig_p=3, resp_p=3) for i in range(40)]
    replies = [ping(i, f"10.0.5.{i + 1}", orig_h="10.0.0.8", orig_p=0, resp_p=0, proto="icmp6") for i in range(3)]
    mcast = [ping(i, f"ff02::{i + 1:x}", orig_h="fe80::1", proto="icmp6", dest_class="local") for i in range(40)]
    tcp = [flow(i, resp_h=f"10.0.6.{i + 1}", orig_p=40000 + i) for i in range(40)]
    assert run("icmp_scan", flows=few + errors + replies + mcast + tcp) == []
    assert run("icmp_scan", settings=Settings(min_hosts=9), flows=few)[0].metrics["count"] == 9


def test_golden_slips_icmp_sweep(tmp_path_factory):
    # Slips' test12: 192.168.1.109 pings 192.168.1.0/24 (18 hosts, 11 answer) in 2 s.
    fs = analyze_capture("slips/test12-icmp-portscan.pcap", tmp_path_factory.mktemp("icmp"), only=("icmp_scan",))
    (f,) = fs
    assert f.key == ("192.168.1.109", "icmp_sweep", "icmp") and f.severity in MEDIUM_OR_MORE
    assert f.metrics["count"] == 18 and f.metrics["answered"] == 11
    assert_golden("icmp_scan-slips-test12", fs)


def test_golden_slips_icmp_sweep_is_the_same_on_spark(tmp_path_factory, spark_session):
    assert_same_on_spark("slips/test12-icmp-portscan.pcap", tmp_path_factory.mktemp("icmp"), "icmp_scan")


@pytest.mark.parametrize("rel", ["rita/open_conns", str(EXAMPLES / "demo.pcap"), str(EXAMPLES / "lab-beacon.pcap")])
def test_benign_controls_give_no_sweep(rel, tmp_path_factory):
    assert analyze_capture(rel, tmp_path_factory.mktemp("benign"), only=("icmp_scan",)) == []
