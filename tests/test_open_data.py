"""What must come out of the open data: each capture in ../shared/data and every finding that
all detections, run together with default settings plus the stated site configuration, make
of it (benign controls: none at all). The README's table is this table.

The two Zeek upload traces ran client and server both on 127.0.0.1, so no network setting
can make one side external: the test moves the server side to 127.0.0.2 in a temporary
copy (payload untouched, detkit.split_loopback) and declares 127.0.0.1 internal.
"""

from __future__ import annotations

import pytest

from conftest import data
from detkit import analyze_capture, split_loopback

INTERNAL_147 = '[networks]\ninternal = ["147.32.80.0/24"]\n'
LOOPBACK_SMALL_SITE = ('[networks]\ninternal = ["127.0.0.1/32"]\n'
                       "[detections.bulk_outbound]\nsingle_transfer_bytes = 50000\n"
                       "[detections.upload_heavy]\nmin_bytes_out = 50000\n")

#: capture, site configuration, {(detection, severity, internal host, destination or target)}
TABLE = [
    ("slips/test-cc/test-cc-capture-1.pcap", INTERNAL_147,
     {("beaconing", "critical", "147.32.80.37", "testing.com")}),
    ("dns-tunnel/netrack-dns2tcp/dns2tcp-2018-03-23.pcap", None,
     {("dns_tunnel", "critical", "172.17.0.3", "hidemyself.org"),
      ("dns_txt_entropy", "medium", "172.17.0.3", "hidemyself.org")}),  # dns2tcp answers in TXT records
    ("zeek-traces/http-post-large.pcap", LOOPBACK_SMALL_SITE,  # echoed back: bulk, not upload-heavy
     {("bulk_outbound", "low", "127.0.0.1", "127.0.0.1")}),  # the HTTP Host names the server 127.0.0.1
    ("zeek-traces/putty-upload.pcap", LOOPBACK_SMALL_SITE,
     {("bulk_outbound", "medium", "127.0.0.1", "localhost"), ("upload_heavy", "low", "127.0.0.1", "localhost")}),
    ("slips/port-scans/horizontal-portscan.conn.log", None,
     {("scan_and_lateral", "medium", "10.0.2.112", "tcp/80"),
      # 784 bytes out, 3.6 KB back on port 80 that Zeek did not recognise as HTTP (its other 19 it did)
      ("protocol_mismatch", "low", "10.0.2.112", "108.162.206.115")}),
    ("slips/port-scans/vertical-portscan.conn.log", None,
     {("scan_and_lateral", "high", "192.168.1.9", "45.33.32.156")}),
    ("slips/test19-ssh-bruteforce/malicious-ssh-bruteforce.pcap", INTERNAL_147,
     {("brute_force", "high", "147.32.80.40", "147.32.80.37:902")}),
    ("zeek-traces/sshguess.pcap", "[detections.brute_force]\nbrute_min_attempts = 10\n",  # as Zeek's test
     {("brute_force", "medium", "192.168.56.1", "192.168.56.103:22")}),
    ("rita/open_conns/open", "[detections.long_connection]\nmin_total_seconds = 1800\n",
     {("long_connection", "low", "10.55.100.106", "65.52.108.188"),  # one 39-min HTTPS session
      # a workstation that browses also ran PowerShell's web client (Invoke-WebRequest) twice
      ("suspicious_user_agent", "low", "10.55.100.100", "www.alexa.com"),
      # dnscat2-style names (<hex>.dnsc.r-1x.com) asked straight at 165.227.88.15, not a resolver
      ("dns_tunnel", "info", "192.168.88.2", "165.227.88.15")}),
    # this snapshot has no conn.log (DNS, TLS and notices only): Zeek's own certificate
    # notices, info for each of 73 clients of self-signed servers ...
    ("wrccdc-zeek/zeek-tsv", None,
     # and 10.128.0.19 (a red-team machine) running Nmap's SSH scripts: three SSH client versions.
     # (tls_anomaly's certificate findings on this set are left to its own tests.)
     lambda got: {(d, s, t) for d, s, _, t in got if d != "tls_anomaly"} == {
         ("ids_alert", "info", "SSL::Invalid_Server_Cert"), ("software_change", "medium", "ssh-client")}
     and len([g for g in got if g[0] != "tls_anomaly"]) == 74
     and ("software_change", "medium", "10.128.0.19", "ssh-client") in got),
    ("rita/proxy", '[networks]\nproxies = ["10.136.0.16/32"]\n',  # 397 CONNECTs through 10.136.0.16:3128
     {("beaconing", "critical", "10.136.0.18", "www.honestimnotevil.com")}),
    # benign controls
    ("zeek-traces/wikipedia.pcap", '[networks]\ninternal = ["141.142.0.0/16"]\n', set()),
    ("zeek-traces/bro.org.pcap", None, set()),
    # a Windows Update program fetched over HTTP (PE by its magic bytes): routine, low
    ("zeek-traces/206_example_b.pcap", None,
     {("executable_download", "low", "192.168.72.14", "au.download.windowsupdate.com")}),
    ("zeek-traces/m57-long-49583-80.pcap", None, set()),
    ("zeek-traces/tls-1.2-stream-keylog.pcap", None, set()),
]


def _row(f):
    if f.detection in ("scan_and_lateral", "brute_force", "ids_alert"):  # the target; the IDS signature
        target = f.key[1] if f.detection == "ids_alert" else f.key[2]
    else:  # the destination; for what has none (an SSH client changing), the kind
        target = (f.external_names or f.external_hosts or [f.key[1]])[0]
    return (f.detection, f.severity, f.internal_hosts[0], target)


@pytest.mark.parametrize("rel,cfg,want", TABLE, ids=[t[0].split("/")[-1] for t in TABLE])
def test_open_data_yields_exactly_these_findings(rel, cfg, want, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("open")
    if cfg is LOOPBACK_SMALL_SITE:
        copy = tmp / rel.split("/")[-1]
        split_loopback(data(rel), copy)
        rel = str(copy)
    fs = analyze_capture(rel, tmp, cfg)
    if callable(want):
        assert want({_row(f) for f in fs}), sorted({_row(f) for f in fs})
    else:
        assert {_row(f) for f in fs} == want and len(fs) == len(want)


# -- the README's generated table "Public data: what each capture triggers" -------------------

import sys  # noqa: E402

from conftest import DATA, ROOT  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import open_data_table as odt  # noqa: E402

#: Small sets regenerated in the suite (the whole table takes minutes: ``make bench`` rewrites it).
FRESH = ("rita/proxy", "slips/binetflow/test11-portscan.binetflow", "slips/port-scans/vertical-portscan.conn.log")


def test_readme_table_lists_every_public_capture():
    rows = odt.readme_rows()
    shown = [r.split("`")[1].rstrip("/") for r in rows]
    assert shown == [rel for rel, _ in odt.SETS]
    covered = {DATA / rel for rel in shown}
    for p in DATA.rglob("*"):
        if p.is_file() and p.parent != DATA and not p.name.startswith(("LICENSE", "README")):
            assert any(p == c or c in p.parents for c in covered), f"{p} is in no row of the README table"


def test_readme_table_rows_are_what_a_fresh_run_gives():
    sets = [s for s in odt.SETS if s[0] in FRESH]
    assert len(sets) == len(FRESH)
    want = {r.split("`")[1].rstrip("/"): r for r in odt.readme_rows()}
    assert odt.table(sets) == [want[rel] for rel, _ in sets]
