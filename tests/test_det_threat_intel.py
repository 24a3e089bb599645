"""threat_intel: literal matches and non-matches, indicator files on real captures, benign controls."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

import abfluss
from abfluss import analysis
from abfluss.detections.threat_intel import Settings, detect
from abfluss.errors import AbflussError
from conftest import EXAMPLES, ROOT
from detkit import analyze_capture, assert_golden, dns, flow, run, telemetry, workspace_for

ONLY = ("threat_intel",)
INTEL = ROOT / "tests" / "data" / "intel"
FILES = [str(INTEL / n) for n in ("c2-domains.txt", "c2-addresses.csv", "c2-bundle.json")]
FILES_CFG = "[detections.threat_intel]\nfiles = [" + ", ".join(f'"{p}"' for p in FILES) + "]\n"
CC = "slips/test-cc/test-cc-capture-1.pcap"
CC_NET = '[networks]\ninternal = ["147.32.80.0/24"]\n'


def positive_tables() -> dict:
    """A host uploads 40 KB to a subdomain of a listed domain and talks to a listed network."""
    return {
        "settings": Settings(addresses=("203.0.113.0/24",), domains=("evil.test",)),
        "flows": [flow(0, orig_bytes=40_000, resp_bytes=2_000, server_name="cdn.evil.test", resp_h="198.51.100.7"),
                  flow(30, orig_bytes=300, resp_bytes=100, resp_h="203.0.113.9", orig_p=50001),
                  flow(60, server_name="notevil.test", resp_h="198.51.100.8", orig_p=50002)],
        "dns": [dns(-1, query="cdn.evil.test", answers=["198.51.100.7"])],
    }


def test_positive_domain_and_network():
    fs = {f.key: f for f in run("threat_intel", **positive_tables())}
    assert set(fs) == {("10.0.0.5", "evil.test"), ("10.0.0.5", "203.0.113.0/24")}
    dom = fs[("10.0.0.5", "evil.test")]
    # server_name and external_name both match: the flow counts once.
    assert dom.metrics == {"indicator": "evil.test", "source": "threat_intel.domains[1]", "flows": 1,
                           "dns_queries": 1, "bytes_out": 40_000, "bytes_in": 2_000}
    assert dom.external_names == ["cdn.evil.test"] and dom.external_hosts == ["198.51.100.7"]
    assert dom.severity == "high" and dom.score_parts == {"match": 45.0, "data_sent": 25.0, "volume": 0.0}
    assert dom.attack == ["T1071", "T1041", "T1568"]
    assert dom.explanation == ("10.0.0.5 reached listed indicator evil.test (threat_intel.domains[1]): "
                               "1 connection with 40 KB out and 2 KB in, and 1 DNS look-up.")
    net = fs[("10.0.0.5", "203.0.113.0/24")]
    assert (net.external_hosts, net.bytes_out, net.metrics["dns_queries"]) == (["203.0.113.9"], 300, 0)


def test_lookalikes_do_not_match():
    names = ["notevil.test", "evil.test.corp.example", "evil.testing", "evil-test"]
    flows = [flow(i, server_name=n, resp_h="198.51.100.9", orig_p=50000 + i) for i, n in enumerate(names)]
    asks = [dns(i, query=n, answers=["198.51.100.9"]) for i, n in enumerate(names)]
    flows.append(flow(9, resp_h="203.0.114.1", orig_p=50009))  # just outside 203.0.113.0/24
    assert run("threat_intel", settings=positive_tables()["settings"], flows=flows, dns=asks) == []


def test_dns_only_matches_are_medium_and_answers_count():
    s = Settings(addresses=("192.0.2.66",), domains=("c2.test",))
    asks = [dns(0, query="x1.c2.test", answers=[]), dns(1, query="x2.c2.test.", answers=[]),
            dns(2, query="innocent.test", answers=["alias.innocent.test", "192.0.2.66"])]
    fs = {f.key: f for f in run("threat_intel", settings=s, dns=asks)}
    assert {k: (f.metrics["dns_queries"], f.external_names, f.channel, f.severity, f.bytes_out)
            for k, f in fs.items()} == {
        ("10.0.0.5", "c2.test"): (2, ["x1.c2.test", "x2.c2.test"], "dns", "medium", 0),
        ("10.0.0.5", "192.0.2.66"): (1, ["innocent.test"], "dns", "medium", 0)}
    assert {tuple(f.attack) for f in fs.values()} == {("T1568",)}  # a look-up only: dynamic resolution


def test_volume_inbound_and_ipv6():
    s = Settings(addresses=("198.51.100.66", "2001:DB8::66"))
    flows = [flow(0, resp_h="198.51.100.66", orig_bytes=20_000_000, resp_bytes=10_000_000),
             flow(5, orig_h="2001:db8::66", resp_h="fd00::5", resp_p=22, orig_bytes=900, resp_bytes=0,
                  service="ssh", orig_p=40000)]  # a listed host connecting in, nothing sent back
    fs = {f.key: f for f in run("threat_intel", settings=s, flows=flows)}
    big = fs[("10.0.0.5", "198.51.100.66")]
    assert (big.score, big.severity) == (85.0, "critical")  # RITA: 0.8 + 0.15 from 25 MB
    probe = fs[("fd00::5", "2001:db8::66")]
    assert (probe.score, probe.severity, probe.channel) == (45.0, "medium", "ssh")


def test_detect_needs_prepared_indicators():
    with telemetry(flows=[flow(0)]) as tel, pytest.raises(AbflussError, match="prepare"):
        detect(tel, Settings(domains=("evil.test",)))


# -- real captures ---------------------------------------------------------------------------

def test_golden_test_cc_with_list_csv_and_stix(tmp_path_factory):
    fs = analyze_capture(CC, tmp_path_factory.mktemp("ti-cc"), CC_NET + FILES_CFG, only=ONLY)
    got = {f.key[1]: (f.metrics["source"], f.metrics["flows"], f.bytes_out, f.metrics["bytes_in"], f.severity)
           for f in fs}
    assert got == {
        "testing.com": ("c2-domains.txt:3", 298, 251577, 1166023, "high"),  # the SNI of every flow
        "141.193.213.20": ("c2-addresses.csv:2", 2, 1682, 7808, "high"),  # exact address, CSV
        "141.193.213.0/24": ("c2-bundle.json:12", 298, 251577, 1166023, "high"),  # STIX ISSUBSET
    }
    assert all(f.internal_hosts == ["147.32.80.37"] and f.channel == "https" for f in fs)
    assert_golden("threat_intel-test-cc", fs)


def test_abuse_ch_and_threatfox_csv_on_test_cc(tmp_path_factory):
    files = [str(INTEL / "abusech-style.csv"), str(INTEL / "threatfox-style.csv")]
    cfg = CC_NET + "[detections.threat_intel]\nfiles = [" + ", ".join(f'"{p}"' for p in files) + "]\n"
    fs = analyze_capture(CC, tmp_path_factory.mktemp("ti-cc2"), cfg, only=ONLY)
    assert {(f.key[1], f.metrics["source"], f.metrics["flows"]) for f in fs} == {
        ("141.193.213.21", "abusech-style.csv:5", 296),  # header taken from the comment line
        ("testing.com", "threatfox-style.csv:3", 298)}


def test_golden_wikipedia_dns_names_answers_and_networks(tmp_path_factory):
    cfg = ('[networks]\ninternal = ["141.142.220.0/24"]\n'
           '[detections.threat_intel]\ndomains = ["wikimedia.org"]\naddresses = ["208.80.152.0/22"]\n')
    fs = analyze_capture("zeek-traces/wikipedia.pcap", tmp_path_factory.mktemp("ti-wiki"), cfg, only=ONLY)
    got = {f.key[1]: (f.metrics["flows"], f.metrics["dns_queries"], f.bytes_out, f.metrics["bytes_in"]) for f in fs}
    # wikimedia.org: 8 HTTP flows (upload x6, bits, meta) and the 10 look-ups of upload./meta.;
    # the resolver's search-domain retries (upload.wikimedia.org.ncsa.uiuc.edu) are not below it.
    # 208.80.152.0/22 adds www.wikipedia.org's flow, and 5 A answers inside the network.
    assert got == {"wikimedia.org": (8, 10, 7948, 5046), "208.80.152.0/22": (9, 5, 8411, 5396)}
    wm = next(f for f in fs if f.key[1] == "wikimedia.org")
    assert wm.external_names == ["bits.wikimedia.org", "meta.wikimedia.org", "upload.wikimedia.org"]
    assert_golden("threat_intel-wikipedia", fs)


def test_golden_demo_upload_destination(tmp_path_factory):
    # The whole capture as the window (truth: capture start/end), so that the last DNS look-up,
    # microseconds after the last flow started, is inside it.
    root = workspace_for((str(EXAMPLES / "demo.pcap"),), tmp_path_factory.mktemp("ti-demo"), FILES_CFG)
    ws = abfluss.open_workspace(root, write=True)
    try:
        start, end = (datetime.fromtimestamp(t, timezone.utc) for t in (1795960654.0, 1795960684.0))
        fs = analysis.analyze(ws, start, end, only=ONLY, store=False).findings
    finally:
        ws.close()
    assert {(f.key, f.metrics["flows"], f.metrics["dns_queries"], f.bytes_out, f.channel) for f in fs} == {
        (("10.10.0.11", "files-drop.test"), 1, 2, 1000158, "http"),
        (("10.10.0.12", "files-drop.test"), 1, 2, 2003787, "https")}
    assert_golden("threat_intel-demo", fs)


BENIGN = ("zeek-traces/wikipedia.pcap", "zeek-traces/bro.org.pcap", "zeek-traces/206_example_b.pcap",
          "zeek-traces/m57-long-49583-80.pcap", "zeek-traces/tls-1.2-stream-keylog.pcap")


def test_benign_controls_match_none_of_the_indicators(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ti-benign")
    for rel in BENIGN:
        assert analyze_capture(rel, tmp, FILES_CFG, only=ONLY) == [], rel
        assert analyze_capture(rel, tmp, only=ONLY) == [], rel  # default settings: no indicators


def test_bad_indicator_file_stops_the_analysis_with_file_and_line(tmp_path_factory):
    bad = INTEL / "bad-url.txt"
    cfg = CC_NET + f'[detections.threat_intel]\nfiles = ["{bad}"]\n'
    with pytest.raises(AbflussError) as e:
        analyze_capture(CC, tmp_path_factory.mktemp("ti-bad"), cfg, only=ONLY)
    assert str(e.value) == (f"{bad}:3: 'http://testing.com/beacon' is neither an IP address, "
                            "an IPv4 network, a domain name nor a TLS fingerprint")


# -- TLS fingerprints (abuse.ch SSLBL style) ---------------------------------------------------

def tls(ts=0, **kw) -> dict:
    """A TLS handshake row as a reader stores it (10.0.0.5 to 203.0.113.9:443)."""
    from detkit import T0
    from datetime import timedelta
    r = dict(ts=T0 + timedelta(seconds=ts), uid=f"T{ts}", orig_h="10.0.0.5", orig_p=50000 + ts,
             resp_h="203.0.113.9", resp_p=443, server_name="cdn.example.test", sensor="test", input_id="literal")
    r.update(kw)
    return r


def test_ja3_of_the_client_and_ja3s_of_the_server_match_one_listed_md5():
    s = Settings(files=(str(INTEL / "sslbl-ja3.csv"),))
    handshakes = [tls(0, ja3="6734F37431670B3AB4292B8F60F29984", uid="U1"),  # the client's library
                  tls(5, ja3s="49ed2ef3f1321e5f044f1e71b0e6fdd5", resp_h="198.51.100.3", uid="U2"),  # the server's
                  tls(9, ja3="8916410db85077a5460817142dcbc8de", uid="U3")]  # not listed
    flows = [flow(0, uid="U1", orig_bytes=7_000, resp_bytes=900),
             flow(5, uid="U2", resp_h="198.51.100.3", orig_bytes=0, resp_bytes=300, orig_p=50005)]
    fs = {f.key: f for f in run("threat_intel", settings=s, tls=handshakes, flows=flows)}
    assert set(fs) == {("10.0.0.5", "6734f37431670b3ab4292b8f60f29984"), ("10.0.0.5", "49ed2ef3f1321e5f044f1e71b0e6fdd5")}
    trick = fs[("10.0.0.5", "6734f37431670b3ab4292b8f60f29984")]
    assert trick.explanation == ("10.0.0.5 used listed TLS client fingerprint JA3 6734f37431670b3ab4292b8f60f29984 "
                                 "(sslbl-ja3.csv:8, Trickbot) in 1 TLS handshake with 203.0.113.9: "
                                 "1 connection with 7 KB out and 900 bytes in.")
    assert trick.metrics["matched"] == ["ja3"] and trick.metrics["reason"] == "Trickbot"
    assert (trick.severity, trick.bytes_out, trick.channel, trick.attack) == ("high", 7000, "https", ["T1071", "T1041"])
    server = fs[("10.0.0.5", "49ed2ef3f1321e5f044f1e71b0e6fdd5")]
    assert server.metrics["matched"] == ["ja3s"] and server.external_hosts == ["198.51.100.3"]
    assert (server.severity, server.bytes_out) == ("medium", 0)  # nothing sent: a match only


def test_ja4_matches_and_a_handshake_without_its_flow_still_counts():
    s = Settings(files=(str(INTEL / "tls-bundle.json"),))
    (f,) = run("threat_intel", settings=s, tls=[tls(0, ja4="t13d3112h2_e8f1e7e78f70_b26ce05bbdd6")])
    assert f.metrics["matched"] == ["ja4"] and f.metrics["flows"] == 0 and f.metrics["tls_handshakes"] == 1
    assert f.channel == "tls" and f.severity == "medium" and "Test loader TLS client" in f.explanation
    # another JA4 of the same client library family is not the listed one
    assert run("threat_intel", settings=s, tls=[tls(0, ja4="t13d3112h2_e8f1e7e78f70_b26ce05bbdd7")]) == []


def test_golden_slips_trickbot_and_tor_fingerprints(tmp_path_factory):
    cfg = f'[detections.threat_intel]\nfiles = ["{INTEL / "sslbl-ja3.csv"}"]\n'
    tmp = tmp_path_factory.mktemp("ti-ja3")
    fs = analyze_capture("slips/test15-malicious-zeek", tmp, cfg, only=ONLY)
    got = {f.key: (f.metrics["matched"], f.metrics["reason"], f.external_hosts) for f in fs}
    # Slips: "Detected Malicious JA3: 6734f37431670b3ab4292b8f60f29984 from source address 10.0.2.15"
    # and "Malicious JA3s: (possible C&C server): 49ed2ef3f1321e5f044f1e71b0e6fdd5 to server 23.4.249.223"
    assert got == {("10.0.2.15", "6734f37431670b3ab4292b8f60f29984"): (["ja3"], "Trickbot", ["22.33.22.33"]),
                   ("10.0.2.15", "49ed2ef3f1321e5f044f1e71b0e6fdd5"): (["ja3s"], "TrickBot (server JA3S)",
                                                                       ["23.4.249.223"])}
    assert {f.severity for f in fs} == {"medium"}  # a match without data seen (the conn.log has 2 flows)
    assert_golden("threat_intel-slips-test15", fs)
    # test9: the Tor fingerprint, here as the server's JA3S
    fs = analyze_capture("slips/test9-mixed-zeek", tmp, cfg, only=ONLY)
    assert {(f.key[1], tuple(f.metrics["matched"]), f.metrics["reason"]) for f in fs} == {
        ("6734f37431670b3ab4292b8f60f29984", ("ja3",), "Trickbot"),
        ("e7d705a3286e19ea42f587b344ee6865", ("ja3s",), "Tor")}


def test_lab_client_ja4_from_a_capture(tmp_path_factory):
    # nDPI's client fingerprint in a pcap is JA4: the lab's curl on ws2 (beacon and browsing).
    cfg = f'[detections.threat_intel]\nfiles = ["{INTEL / "tls-bundle.json"}"]\n'
    fs = analyze_capture(str(EXAMPLES / "lab-beacon.pcap"), tmp_path_factory.mktemp("ti-ja4"), cfg, only=ONLY)
    (f,) = fs
    assert f.key == ("10.10.0.12", "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6") and f.metrics["matched"] == ["ja4"]
    assert f.metrics["tls_handshakes"] > 50 and f.bytes_out > 0
