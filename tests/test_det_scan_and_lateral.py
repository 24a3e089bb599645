"""scan_and_lateral: literal positives and negatives per kind, golden findings on real scans (password
guessing: test_det_brute_force)."""

from detkit import analyze_capture, assert_golden, flow, run

from abfluss.detections.scan_and_lateral import Settings
from conftest import EXAMPLES

MEDIUM_OR_MORE = ("medium", "high", "critical")


def probe(ts, **kw) -> dict:
    """A refused TCP connection attempt (SYN answered by RST), as Zeek or the pcap reader records it."""
    row = dict(orig_bytes=0, resp_bytes=0, orig_pkts=1, resp_pkts=1, duration=0.0, conn_state="REJ",
               service=None)
    row.update(kw)
    return flow(ts, **row)


def smb_session(ts, dst, **kw) -> dict:
    row = dict(orig_h="10.0.0.5", resp_h=dst, resp_p=445, service="smb", orig_bytes=3000, resp_bytes=6000,
               duration=2.0, conn_state="SF", orig_p=40000 + int(ts))
    row.update(kw)
    return flow(ts, **row)


def keys(findings) -> list[tuple]:
    return [f.key for f in findings]


def positive_tables():
    # A workstation opening SMB sessions to 40 internal hosts in under 4 minutes.
    return {"flows": [smb_session(i * 5, f"10.0.1.{i + 1}") for i in range(40)]}


# -- lateral fan-out ---------------------------------------------------------------------------

def test_workstation_reaching_40_hosts_over_smb():
    (f,) = run("scan_and_lateral", **positive_tables())
    assert f.key == ("10.0.0.5", "lateral_fanout", "smb")
    assert f.internal_hosts == ["10.0.0.5"] and f.external_hosts == []
    assert f.metrics["count"] == 40 and f.metrics["failed"] == 0 and f.metrics["flows"] == 40
    assert f.bytes_out == 0  # internal traffic: nothing left the network
    assert f.attack == ["T1021", "T1021.002", "T1570"] and f.channel == "smb"
    assert f.severity in MEDIUM_OR_MORE and "failed" in f.score_parts
    assert len(f.metrics["hosts"]) == 20 and len(f.evidence["top_flows"]) == 10


def test_admin_connecting_to_three_servers_over_rdp_is_fine():
    flows = [flow(i * 600 + k, orig_h="10.0.0.5", resp_h=f"10.0.1.{k + 1}", resp_p=3389, service="rdp",
                  orig_p=50000 + i * 3 + k, duration=1800, orig_bytes=400_000, resp_bytes=9_000_000)
             for i in range(10) for k in range(3)]
    assert run("scan_and_lateral", flows=flows) == []


def test_smb_sweep_with_refusals_is_one_lateral_finding():
    # Refused SMB to 40 hosts is also a horizontal scan of tcp/445: reported once, as lateral fan-out.
    flows = [probe(i, orig_h="10.0.0.5", resp_h=f"10.0.1.{i + 1}", resp_p=445, orig_p=41000 + i)
             for i in range(40)]
    (f,) = run("scan_and_lateral", flows=flows)
    assert f.key == ("10.0.0.5", "lateral_fanout", "smb")
    assert f.metrics["failed"] == 40 and f.score_parts["failed"] == 10
    assert f.score > run("scan_and_lateral", **positive_tables())[0].score


# -- horizontal, vertical, block scans -----------------------------------------------------------

def test_inbound_horizontal_scan_belongs_to_the_targets():
    flows = [probe(i, orig_h="198.51.100.66", resp_h=f"10.0.2.{i + 1}", resp_p=3389, orig_p=61000,
                   resp_pkts=0, conn_state="S0", uid=f"S{i}") for i in range(30)]
    (f,) = run("scan_and_lateral", flows=flows)
    assert f.key == ("198.51.100.66", "horizontal_scan", "tcp/3389")
    assert f.external_hosts == ["198.51.100.66"] and len(f.internal_hosts) == 20  # max_listed
    assert "internal_source" not in f.score_parts and f.channel == "rdp" and f.bytes_out == 0
    assert f.metrics["count"] == 30 and f.metrics["total"] == 30 and f.attack == ["T1046"]
    assert f.evidence["top_flows"] == [f"S{i}" for i in range(10)]


def test_browsing_with_a_few_failures_is_not_a_scan():
    # 12 unanswered among 212 web servers in an hour: 6% failed, under scan_min_failed_share.
    ok = [flow(i * 15, resp_h=f"203.0.113.{i + 1}", orig_p=30000 + i) for i in range(200)]
    bad = [probe(i * 300 + 7, resp_h=f"198.51.100.{i + 1}", resp_p=443, orig_p=20000 + i, resp_pkts=0,
                 conn_state="S0") for i in range(12)]
    assert run("scan_and_lateral", flows=ok + bad) == []
    (f,) = run("scan_and_lateral", settings=Settings(scan_min_failed_share=0.0), flows=ok + bad)
    assert f.key == ("10.0.0.5", "horizontal_scan", "tcp/443")
    assert f.metrics["count"] == 12 and f.metrics["total"] == 212 and f.severity == "low"
    assert f.score_parts["breadth"] < 10.2  # scaled by the 6% failed


def test_vertical_scan_from_flow_records_without_payload_counters():
    # Suricata: a closed flow (state SF) of SYN + RST-ACK, 2 packets and 120 IP bytes each way.
    flows = [flow(i * 60, orig_h="198.51.100.66", resp_h="10.0.0.9", resp_p=1000 + i, orig_p=50524,
                  orig_pkts=2, resp_pkts=2, orig_ip_bytes=120, resp_ip_bytes=120, conn_state="SF",
                  service=None) for i in range(20)]
    for r in flows:  # eve has no payload counters; enrich falls back to IP bytes
        r.update(orig_bytes=None, resp_bytes=None, bytes_out=120, bytes_in=120)
    (f,) = run("scan_and_lateral", flows=flows)
    assert f.key == ("198.51.100.66", "vertical_scan", "10.0.0.9")
    assert f.internal_hosts == ["10.0.0.9"] and f.metrics["ports"] == list(range(1000, 1020))
    assert f.metrics["count"] == 20 and f.channel == "" and f.bytes_out == 0


def test_unidirectional_netflow_records():
    # NetFlow: one record per direction, IP bytes only. A lone 44-byte SYN is a probe; a record of
    # 12 packets and 5 KB is a connection, even without its reverse record.
    def rec(i, dst, pkts, ip_bytes):
        r = flow(i, orig_h="10.0.0.5", resp_h=dst, resp_p=23, orig_p=33000 + i, service=None,
                 orig_pkts=pkts, orig_ip_bytes=ip_bytes)
        r.update(orig_bytes=None, resp_bytes=None, resp_pkts=None, resp_ip_bytes=None, bytes_out=ip_bytes,
                 bytes_in=None)
        return r
    syns = [rec(i, f"198.51.100.{i + 1}", 1, 44) for i in range(12)]
    talks = [rec(20 + i, f"203.0.113.{i + 1}", 12, 5000) for i in range(12)]
    (f,) = run("scan_and_lateral", flows=syns + talks)
    assert f.key == ("10.0.0.5", "horizontal_scan", "tcp/23") and f.metrics["count"] == 12
    assert f.metrics["total"] == 24 and f.bytes_out == 12 * 5000
    assert run("scan_and_lateral", flows=talks) == []


def test_many_ports_with_data_are_not_a_scan():
    # Passive FTP: data connections to 30 ports of one server, each carrying a file.
    flows = [flow(i * 10, resp_h="203.0.113.21", resp_p=40000 + i, orig_p=50000 + i, service=None,
                  orig_bytes=0, resp_bytes=80_000, conn_state="SF") for i in range(30)]
    assert run("scan_and_lateral", flows=flows) == []


def test_thin_spread_of_probes_is_a_block_scan():
    # 8 hosts x 8 ports: below the horizontal (10 hosts) and vertical (15 ports) thresholds each.
    ports = (80, 81, 443, 8000, 8080, 8443, 9000, 9090)
    flows = [probe(h * 8 + k, orig_h="10.0.0.7", resp_h=f"10.0.3.{h + 1}", resp_p=p, orig_p=45000 + h * 8 + k)
             for h in range(8) for k, p in enumerate(ports)]
    (f,) = run("scan_and_lateral", flows=flows)
    assert f.key == ("10.0.0.7", "block_scan", "*")
    assert (f.metrics["count"], f.metrics["distinct_hosts"], f.metrics["distinct_ports"]) == (64, 8, 8)
    assert f.metrics["folded"] == 0 and f.internal_hosts == ["10.0.0.7"]


def test_too_many_scan_findings_fold_into_one_block_scan():
    flows = [probe(h * 12 + p, orig_h="10.0.0.7", resp_h=f"10.0.3.{h + 1}", resp_p=7000 + p,
                   orig_p=30000 + h * 12 + p) for h in range(12) for p in range(12)]
    (f,) = run("scan_and_lateral", flows=flows)
    assert f.key == ("10.0.0.7", "block_scan", "*")
    assert f.metrics["folded"] == 12 and f.metrics["count"] == 144
    few = run("scan_and_lateral", settings=Settings(max_targets=12), flows=flows)
    assert sorted(k[2] for k in keys(few)) == [f"tcp/{7000 + p}" for p in range(12)]


def test_unanswered_udp_counts_only_when_configured():
    # Traceroute: UDP to 30 ports of one host, never answered by UDP.
    flows = [flow(i, proto="udp", resp_p=33434 + i, orig_p=40000 + i, service=None, orig_bytes=32,
                  resp_bytes=0, orig_pkts=1, resp_pkts=0) for i in range(30)]
    assert run("scan_and_lateral", flows=flows) == []
    (f,) = run("scan_and_lateral", settings=Settings(scan_protocols=("tcp", "udp")), flows=flows)
    assert f.key == ("10.0.0.5", "vertical_scan", "203.0.113.9")


# -- real captures -------------------------------------------------------------------------------

def analyze(rel, tmp_path_factory, cfg=None):
    return analyze_capture(rel, tmp_path_factory.mktemp("scan"), cfg, only=("scan_and_lateral",))


def test_golden_slips_horizontal_portscan(tmp_path_factory):
    # A bot trying its list of web servers: 10 of the 25 hosts it tried on tcp/80 never answered.
    fs = analyze("slips/port-scans/horizontal-portscan.conn.log", tmp_path_factory)
    assert [(f.key, f.metrics["count"], f.metrics["total"], f.severity) for f in fs] == [
        (("10.0.2.112", "horizontal_scan", "tcp/80"), 10, 25, "medium")]
    assert_golden("scan_and_lateral-slips-horizontal", fs)


def test_golden_slips_vertical_portscan(tmp_path_factory):
    # nmap from 192.168.1.9 against scanme.nmap.org: 44 ports refused or reset in about a second.
    fs = analyze("slips/port-scans/vertical-portscan.conn.log", tmp_path_factory)
    assert [(f.key, f.metrics["count"], f.severity) for f in fs] == [
        (("192.168.1.9", "vertical_scan", "45.33.32.156"), 44, "high")]
    assert_golden("scan_and_lateral-slips-vertical", fs)


def test_golden_zeek_nmap_sweep(tmp_path_factory):
    # nmap's host discovery: tcp/80 on 7 hosts (most of the capture is ARP), under the default 10.
    assert analyze("zeek-traces/nmap-vsn.pcap", tmp_path_factory) == []
    cfg = "[detections.scan_and_lateral]\nhorizontal_min_hosts = 5\n"
    fs = analyze("zeek-traces/nmap-vsn.pcap", tmp_path_factory, cfg)
    assert [(f.key, f.metrics["count"]) for f in fs] == [(("192.168.1.71", "horizontal_scan", "tcp/80"), 7)]
    assert_golden("scan_and_lateral-zeek-nmap-vsn", fs)


def test_golden_slips_infected_host_scanning_out(tmp_path_factory):
    # Malware on 192.168.2.16 probing random internet hosts on telnet (23, 2323), 8080 and 9527.
    fs = analyze("slips/test7-malicious.pcap", tmp_path_factory)
    assert [(f.key, f.metrics["count"], f.severity) for f in fs] == [
        (("192.168.2.16", "horizontal_scan", "tcp/23"), 54, "high"),
        (("192.168.2.16", "horizontal_scan", "tcp/8080"), 40, "high"),
        (("192.168.2.16", "horizontal_scan", "tcp/2323"), 27, "high"),
        (("192.168.2.16", "horizontal_scan", "tcp/9527"), 10, "medium")]
    assert all(f.internal_hosts == ["192.168.2.16"] and f.bytes_out == 0 for f in fs)
    assert_golden("scan_and_lateral-slips-test7", fs)


def test_golden_slips_suricata_inbound_scans(tmp_path_factory):
    # A day of internet scanners probing one exposed host; the busiest tried 481 ports.
    fs = analyze("slips/test6-malicious.suricata.json", tmp_path_factory)
    assert [(f.key[0], f.metrics["count"], f.severity) for f in fs] == [
        ("193.46.255.92", 481, "medium"), ("45.143.203.2", 51, "low"), ("45.143.200.102", 46, "low"),
        ("45.143.200.10", 37, "low"), ("185.193.88.29", 20, "low"), ("122.228.19.80", 15, "low")]
    assert {(f.key[1], f.key[2]) for f in fs} == {("vertical_scan", "192.168.1.129")}
    assert_golden("scan_and_lateral-slips-suricata", fs)


def test_benign_captures_give_nothing(tmp_path_factory):
    for rel in ("zeek-traces/wikipedia.pcap", "zeek-traces/bro.org.pcap", str(EXAMPLES / "demo.pcap")):
        assert analyze(rel, tmp_path_factory) == [], rel
