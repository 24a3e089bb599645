"""Side by side with a peer IDS (issue 16): what Slips' own tests expect on Slips' own data, and
what abfluss finds there, one assertion per expectation.

The 30 expectations: Slips' current integration tests on the data shipped in
``../shared/data/slips`` (``tests/integration_tests/test_zeek_dataset.py``, ``test_pcap_dataset.py``,
``test_binetflow.py``, ``test_portscans.py`` and the Suricata case of ``test_dataset.py``: 24),
the issue's additions (test12's ICMP scan, test-cc's HTTPS beacon and test19's SSH password
guessing from the datasets' descriptions, test9's Tor-client JA3: 4), and two expectations of
Slips' earlier test versions on data no current one covers (test9's certificate CN mismatches,
test10's horizontal port scan). Expectations Slips itself commented out (test11's ICMP
scanning, test14's empty HTTP connections) are not counted.

Each expectation asserts its exact status: a met one asserts abfluss's finding, one not met
asserts that there is none, with the reason, so the table cannot change silently. README's
"Side by side with Slips" table is this table (``TABLE``).

Speed: each dataset is ingested once, into five workspaces (Slips' three Zeek directories share
host 10.0.2.15 and stay apart; test-cc's beacon is judged against its own 11 minutes; everything
else shares one), each analysed once on DuckDB.
Site configuration for all: the CTU network 147.32.0.0/16 is internal besides the private
ranges, and the threat_intel list is ``tests/data/intel/sslbl-ja3.csv`` (abuse.ch SSLBL layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest

import abfluss
from abfluss import analysis
from abfluss.config import DEFAULT_INTERNAL
from conftest import EXAMPLES, ROOT
from detkit import workspace_for

SSLBL = ROOT / "tests" / "data" / "intel" / "sslbl-ja3.csv"
CONFIG = ("[networks]\ninternal = [" + ", ".join(f'"{n}"' for n in (*DEFAULT_INTERNAL, "147.32.0.0/16")) + "]\n"
          f'[detections.threat_intel]\nfiles = ["{SSLBL}"]\n')
GROUPS = {
    "test9": ("slips/test9-mixed-zeek",),
    "test14": ("slips/test14-malicious-zeek",),
    "test15": ("slips/test15-malicious-zeek",),
    # beaconing judges regularity against the window: alone, the window is the capture's 11 minutes
    "test-cc": ("slips/test-cc/test-cc-capture-1.pcap",),
    "rest": ("slips/port-scans/horizontal-portscan.conn.log", "slips/port-scans/vertical-portscan.conn.log",
             "slips/test1-malicious.nfdump",
             "slips/test6-malicious.suricata.json", "slips/test7-malicious.pcap", "slips/test8-malicious.pcap",
             "slips/test12-icmp-portscan.pcap", "slips/test19-ssh-bruteforce", "slips/test10-mixed-zeek",
             "slips/binetflow/test2-malicious.binetflow", "slips/binetflow/test3-mixed.binetflow",
             "slips/binetflow/test4-malicious.binetflow", "slips/binetflow/test5-mixed.binetflow",
             "slips/binetflow/test11-portscan.binetflow"),
}
#: The detections issue 16 added: on the benign controls none may say medium or more.
NEW = ("arp_scan", "mac_ip_change", "icmp_scan", "tls_anomaly", "dns_txt_entropy", "direct_ip", "threat_intel",
       "brute_force", "executable_download", "suspicious_user_agent", "software_change", "tunnel_encapsulation")
BENIGN = ("rita/open_conns", str(EXAMPLES / "demo.pcap"), str(EXAMPLES / "lab-beacon.pcap"))


def find(fs, detections, *key):
    """Findings of one of ``detections`` whose key holds every part of ``key``."""
    dets = (detections,) if isinstance(detections, str) else detections
    return [f for f in fs if f.detection in dets and all(k in f.key for k in key)]


@dataclass(frozen=True)
class Row:
    group: str
    data: str  # the dataset, as README names it
    slips: str  # Slips' expectation, as its test words it
    check: Callable  # findings -> the matching findings
    met: bool
    abfluss: str  # what abfluss finds (or why not)


TABLE = [
    Row("rest", "port-scans/horizontal", "Horizontal port scan to port 80/TCP. From 10.0.2.112",
        lambda fs: find(fs, "scan_and_lateral", "10.0.2.112", "horizontal_scan", "tcp/80"), True,
        "`scan_and_lateral` horizontal scan of tcp/80"),
    Row("rest", "port-scans/vertical", "vertical port scan to IP 45.33.32.156 from 192.168.1.9",
        lambda fs: find(fs, "scan_and_lateral", "192.168.1.9", "vertical_scan", "45.33.32.156"), True,
        "`scan_and_lateral` vertical scan (44 ports)"),
    Row("rest", "test7-malicious.pcap", "A device changing IPs (192.168.2.12, MAC 68:5b:35:b1:55:93, was "
        "169.254.242.182)", lambda fs: [f for f in find(fs, "mac_ip_change", "68:5b:35:b1:55:93")
                                       if f.metrics["newest"] == "192.168.2.12"
                                       and f.metrics["addresses"][0]["addr"] == "169.254.242.182"], True,
        "`mac_ip_change`: the MAC carried 169.254.242.182, then 192.168.2.12 (its DHCP lease; flows keep "
        "the frames' MAC addresses)"),
    Row("rest", "test8-malicious.pcap", "performing an arp scan (192.168.1.247)",
        lambda fs: find(fs, "arp_scan", "192.168.1.247", "arp_scan"), True, "`arp_scan` of 255 addresses in 3 s"),
    Row("rest", "binetflow/test4", "horizontal port scan to port 81/TCP (192.168.2.12)",
        lambda fs: find(fs, "scan_and_lateral", "192.168.2.12", "horizontal_scan", "tcp/81"), True,
        "`scan_and_lateral` horizontal scan of tcp/81 (64 hosts; Argus `REQ` read as Zeek's S0)"),
    Row("rest", "binetflow/test3", "horizontal port scan to port 3389/TCP (46.166.151.160)",
        lambda fs: find(fs, "scan_and_lateral", "46.166.151.160", "horizontal_scan", "tcp/3389"), True,
        "`scan_and_lateral` horizontal scan of tcp/3389 (28 hosts)"),
    Row("rest", "binetflow/test2", "Detected Long Connection (10.8.0.69)",
        lambda fs: find(fs, "long_connection", "10.8.0.69"), True, "`long_connection`, 41 destinations"),
    Row("rest", "binetflow/test5", "Long Connection (10.0.2.15)",
        lambda fs: find(fs, "long_connection", "10.0.2.15"), False,
        "not met: the hour-long flows are NetBIOS to the broadcast 10.0.2.255 and DHCPv6 to ff02::1:2; "
        "broadcast and multicast are never a destination"),
    Row("rest", "test6-malicious.suricata.json", "vertical port scan (Suricata eve)",
        lambda fs: [f for f in find(fs, "scan_and_lateral", "vertical_scan") if "192.168.1.129" in f.key], True,
        "`scan_and_lateral` vertical scans of 192.168.1.129 (6 sources)"),
    Row("test15", "test15-malicious-zeek", "Malicious JA3s: 49ed2ef3f1321e5f044f1e71b0e6fdd5 to server 23.4.249.223, "
        "TrickBot", lambda fs: [f for f in find(fs, "threat_intel", "10.0.2.15", "49ed2ef3f1321e5f044f1e71b0e6fdd5")
                                if f.external_hosts == ["23.4.249.223"]], True,
        "`threat_intel` server JA3S, SSLBL-style list (Slips' test names test9; the handshake is in test15's copy)"),
    Row("test9", "test9-mixed-zeek", "sending ARP packet to a destination address outside of local network",
        lambda fs: [f for f in find(fs, "arp_scan", "192.168.1.15", "forged_sender")
                    if f.metrics["outside"] == ["69.220.152.0"]], True,
        "`arp_scan` forged ARP (sender hardware address not the Ethernet source), for 69.220.152.0 outside "
        "its network (one stray request alone would not count)"),
    Row("test9", "test9-mixed-zeek", "broadcasting unsolicited ARP",
        lambda fs: [f for f in find(fs, "arp_scan", "192.168.1.15", "forged_sender") if f.metrics["unsolicited"]],
        True, "the same `arp_scan` forged-ARP finding: one of its two frames an unsolicited reply to broadcast"),
    Row("test14", "test14-malicious-zeek", "bad SMTP login to 80.75.42.226",
        lambda fs: find(fs, "brute_force", "80.75.42.226:25"), True, "`brute_force` SMTP AUTH refused by 80.75.42.226:25 (the same finding as the next row)"),
    Row("test14", "test14-malicious-zeek", "SMTP login bruteforce to 80.75.42.226. 3 logins in 10 seconds",
        lambda fs: find(fs, "brute_force", "80.75.42.226:25"), True, "`brute_force` SMTP: 4 refusals in 9 s (medium)"),
    Row("test14", "test14-malicious-zeek", "Suspicious user-agent",
        lambda fs: find(fs, "suspicious_user_agent"), True, "`suspicious_user_agent` (scripting or tool client)"),
    Row("test14", "test14-malicious-zeek", "Download of an executable",
        lambda fs: find(fs, "executable_download"), True, "`executable_download` (PE by MIME type)"),
    Row("test14", "test14-malicious-zeek", "GRE tunnel",
        lambda fs: find(fs, "tunnel_encapsulation", "10.0.2.15", "gre"), True,
        "`tunnel_encapsulation` GRE 10.0.2.15 ↔ 115.112.11.30"),
    Row("test14", "test14-malicious-zeek", "Multiple reconnection attempts to 123.22.123.22 from 10.0.2.15",
        lambda fs: [f for f in fs if "123.22.123.22" in f.external_hosts or "123.22.123.22" in f.key], False,
        "not met: the five records are one connection (uid Cw6JBU12nYsbZElIpa) logged five times"),
    Row("test15", "test15-malicious-zeek", "SSH client version changing (192.168.1.247)",
        lambda fs: find(fs, "software_change", "192.168.1.247"), True, "`software_change` OpenSSH 8.1 → 9.1"),
    Row("test15", "test15-malicious-zeek", "Incompatible certificate CN to IP: 52.0.131.132 domain: netflix.com "
        "(claiming to belong to Google)", lambda fs: [f for f in find(fs, "tls_anomaly", "name_mismatch", "52.0.131.132")
                                                     if f.metrics["certificate_of"] == "Google"], True,
        "`tls_anomaly` name mismatch: a certificate of Google's for netflix.com (high)"),
    Row("test15", "test15-malicious-zeek", "Detected Malicious JA3: 6734f37431670b3ab4292b8f60f29984 from "
        "10.0.2.15, Trickbot", lambda fs: find(fs, "threat_intel", "10.0.2.15", "6734f37431670b3ab4292b8f60f29984"),
        True, "`threat_intel` client JA3, SSLBL-style list (reason Trickbot)"),
    Row("rest", "test10-mixed-zeek", "DNS TXT answer with high entropy",
        lambda fs: find(fs, "dns_txt_entropy"), False,
        "not met, deliberately: the only TXT answers are mDNS announcements of printers to 224.0.0.251 "
        "(key=value pairs)"),
    Row("test9", "test9-mixed-zeek (conn.log)", "non-HTTP established connection (194.132.197.198:80)",
        lambda fs: find(fs, "protocol_mismatch", "10.0.2.15", "194.132.197.198", "tcp/80"), True,
        "`protocol_mismatch` not HTTP on tcp/80"),
    Row("rest", "test10-mixed-zeek (conn.log)", "non-SSL established connection (147.32.83.156 to 3.123.248.34:443)",
        lambda fs: find(fs, "protocol_mismatch", "147.32.83.156", "3.123.248.34"), False,
        "not met: Zeek joined both connections in the middle (history ^a, OTH), so no handshake could be seen"),
    Row("rest", "test12-icmp-portscan.pcap", "ICMP scan by 192.168.1.109",
        lambda fs: find(fs, "icmp_scan", "192.168.1.109"), True, "`icmp_scan` sweep of 18 hosts"),
    Row("test-cc", "test-cc", "HTTPS beacon 147.32.80.37 → testing.com",
        lambda fs: find(fs, "beaconing", "147.32.80.37"), True, "`beaconing` every 2.2 s (critical)"),
    Row("rest", "test19-ssh-bruteforce", "SSH password guessing 147.32.80.40 → 147.32.80.37:902",
        lambda fs: find(fs, ("scan_and_lateral", "brute_force"), "147.32.80.40", "147.32.80.37:902"), True,
        "password guessing, 66 attempts"),
    Row("test9", "test9-mixed-zeek", "Tor-client JA3 (e7d705a3286e19ea42f587b344ee6865)",
        lambda fs: find(fs, "threat_intel", "10.0.2.15", "e7d705a3286e19ea42f587b344ee6865"), True,
        "`threat_intel` (as the server's JA3S), SSLBL-style list (reason Tor)"),
    Row("test9", "test9-mixed-zeek", "Incompatible certificate CN (earlier Slips test)",
        lambda fs: find(fs, "tls_anomaly", "name_mismatch"), True,
        "`tls_anomaly`: netflix.com and www.netflix.com served with Microsoft's certificates (x509 names)"),
    Row("rest", "test10-mixed-zeek", "horizontal port scan (earlier Slips test)",
        lambda fs: find(fs, "scan_and_lateral", "horizontal_scan", "tcp/1337"), True,
        "`scan_and_lateral` horizontal scan of tcp/1337 by 192.0.2.10"),
]


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    """Per workspace group: every detection's findings, each dataset ingested and analysed once."""
    tmp = tmp_path_factory.mktemp("peer")
    out = {}
    for name, rels in GROUPS.items():
        ws = abfluss.open_workspace(workspace_for(rels, tmp, CONFIG), write=True)
        try:
            result = analysis.analyze(ws, store=False)
        finally:
            ws.close()
        assert result.errors == {}, result.errors
        out[name] = result.findings
    return out


def test_thirty_expectations():
    assert len(TABLE) == 30 and len({(r.data, r.slips) for r in TABLE}) == 30


@pytest.mark.parametrize("row", TABLE, ids=[f"{i:02d}" for i in range(1, len(TABLE) + 1)])
def test_expectation(row, findings):
    got = row.check(findings[row.group])
    if row.met:
        assert got, f"expected to be met: {row.slips} ({row.abfluss})"
    else:
        assert not got, f"listed as not met but now found: {row.slips}: {[f.key for f in got]}"


#: Expectations met, as README's table says; the rows not met say why.
MET = 26


def test_met_count():
    assert sum(r.met for r in TABLE) == MET


def readme_rows() -> list[str]:
    """The README table's rows, from ``TABLE``."""
    return [f"| `{r.data}` | {r.slips} | {r.abfluss} | {'yes' if r.met else 'no'} |" for r in TABLE]


def test_readme_table_is_this_table():
    text = (ROOT / "README.md").read_text()
    start, end = text.index("<!-- peer-slips: begin -->"), text.index("<!-- peer-slips: end -->")
    rows = [line for line in text[start:end].splitlines() if line.startswith("| `")]
    assert rows == readme_rows(), "README's Slips table differs: print test_peer_slips.readme_rows() into it"
    assert f"**{MET} of {len(TABLE)}**" in text[start - 600:end]


def test_benign_controls_give_no_new_finding_of_medium_or_more(tmp_path_factory):
    ws = abfluss.open_workspace(workspace_for(BENIGN, tmp_path_factory.mktemp("peer-benign"), CONFIG), write=True)
    try:
        only = tuple(d for d in NEW if d in abfluss.detections.MODULES)
        fs = analysis.analyze(ws, only=only, store=False).findings
    finally:
        ws.close()
    assert [(f.detection, f.key) for f in fs if f.severity in ("medium", "high", "critical")] == []
