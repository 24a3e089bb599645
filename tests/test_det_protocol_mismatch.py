"""protocol_mismatch: literal cases, a real capture made in network namespaces, golden Zeek sets."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from detkit import analyze_capture, assert_golden, flow, run

from abfluss.detections.protocol_mismatch import Settings


def positive_tables():
    return {"flows": [flow(0, service="ssh", duration=120, orig_bytes=40_000, history="ShADadFf"),
                      flow(600, service="", duration=30, orig_bytes=900, resp_bytes=700, orig_p=50001)]}


def test_positive_ssh_and_unidentified_on_443():
    (f,) = run("protocol_mismatch", **positive_tables())
    assert f.internal_hosts == ["10.0.0.5"] and f.external_hosts == ["203.0.113.9"] and f.channel == "tcp/443"
    assert f.metrics["reasons"] == ["not_tls"] and f.metrics["services"] == ["ssh", "unidentified"]
    assert f.score_parts["not_tls"] == 45 and f.severity == "medium" and f.bytes_out == 40_900
    assert "spoke ssh, unidentified to 203.0.113.9 on tcp/443 (not TLS on a TLS port)" in f.explanation


def test_each_reason():
    cases = {
        "not_dns": flow(0, resp_p=53, proto="udp", service="", orig_bytes=80, resp_bytes=90) | {"proto": "tcp"},
        "not_http": flow(0, resp_p=80, service="tls"),
        "tls_odd_port": flow(0, resp_p=4444, service="tls.google"),
        "ssh_odd_port": flow(0, resp_p=2222, service="ssh"),
    }
    for reason, row in cases.items():
        (f,) = run("protocol_mismatch", flows=[row])
        assert f.metrics["reasons"] == [reason], reason


def test_unknown_held_open_on_any_port():
    rows = [flow(i * 400, resp_p=7000, service="", duration=350, orig_p=50000 + i) for i in range(2)]
    (f,) = run("protocol_mismatch", flows=rows)
    assert f.metrics["reasons"] == ["unknown_held_open"] and f.metrics["unidentified_seconds"] == 700
    assert run("protocol_mismatch", flows=rows[:1]) == []  # 350 s < 600 s


def test_negatives_what_the_port_promises_or_nothing_to_judge():
    ok = [flow(0, service="tls"), flow(1, service="ssl", orig_p=1), flow(2, service="quic", proto="udp", orig_p=2),
          flow(3, service="tls.youtube", orig_p=3), flow(4, resp_p=53, proto="udp", service="dns", orig_p=4),
          flow(5, resp_p=80, service="http.google", orig_p=5), flow(6, resp_p=993, service="tls", orig_p=6),
          flow(7, resp_p=587, service="smtp,ssl", orig_p=7), flow(8, resp_p=22, service="ssh", orig_p=8),
          flow(9, resp_p=3478, proto="udp", service="dtls", orig_p=9)]
    assert run("protocol_mismatch", flows=ok) == []
    nothing = [flow(0, service=None, duration=9000),  # NetFlow: the sensor does not look at payload
               flow(1, service="", history="DdAa", orig_p=1),  # picked up mid-stream (Zeek OTH)
               flow(2, service="", resp_bytes=0, orig_p=2),  # no answer: nothing to identify
               flow(3, service="", proto="udp", orig_p=3),  # QUIC an old sensor does not know
               flow(4, service="ssh", resp_h="10.0.0.9", orig_p=4)]  # internal
    assert run("protocol_mismatch", flows=nothing) == []


def test_ip_bytes_only_sensor_estimates_payload():
    # Suricata gives IP bytes: a SYN/ACK-only exchange (52 bytes a packet) carries no payload
    empty = flow(0, service="", orig_bytes=0, resp_bytes=0, orig_ip_bytes=156, resp_ip_bytes=104,
                 orig_pkts=3, resp_pkts=2, bytes_out=156, bytes_in=104) | {"orig_bytes": None, "resp_bytes": None}
    assert run("protocol_mismatch", flows=[empty]) == []
    talk = dict(empty, orig_ip_bytes=400, resp_ip_bytes=300, uid="talk")
    assert len(run("protocol_mismatch", flows=[talk])) == 1


# -- a real capture: a cleartext line protocol held open on 443 to an external address --------

SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.77", 443)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); f = c.makefile("rwb")
for line in f:
    f.write(b"OK " + line); f.flush()
"""
CLIENT = """
import socket, time
c = socket.create_connection(("203.0.113.77", 443)); f = c.makefile("rwb")
for i in range(14):
    f.write(b"STATUS host=ws1 seq=%d load=0.%d\\r\\n" % (i, i)); f.flush(); f.readline(); time.sleep(0.5)
c.close(); print("done")
"""


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def line_443_capture(tmp_path):
    """Capture a line protocol held open ~7 s on 203.0.113.77:443 between two namespaces made here."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs as root)")
    assert shutil.which("tcpdump") and shutil.which("ip"), "tcpdump and ip are needed: make sysdeps"
    tag = uuid.uuid4().hex[:6]
    a, b = f"abt-pma-{tag}", f"abt-pmb-{tag}"
    pcap = tmp_path / "line443.pcap"
    procs = []
    try:
        _sh("ip", "netns", "add", a)
        _sh("ip", "netns", "add", b)
        _sh("ip", "link", "add", "pa" + tag, "netns", a, "type", "veth", "peer", "name", "pb" + tag, "netns", b)
        for ns, dev, mine, peer in ((a, "pa" + tag, "10.99.1.1", "203.0.113.77"),
                                    (b, "pb" + tag, "203.0.113.77", "10.99.1.1")):
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "-n", ns, "link", "set", dev, "up")
            _sh("ip", "-n", ns, "addr", "add", mine + "/32", "dev", dev)
            _sh("ip", "-n", ns, "route", "add", peer + "/32", "dev", dev)
        server = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", SERVER],
                                  stdout=subprocess.PIPE, text=True)
        procs.append(server)
        assert server.stdout.readline().strip() == "ready"
        dump = subprocess.Popen(["ip", "netns", "exec", a, "tcpdump", "-i", "pa" + tag, "-U", "-s", "0", "-w",
                                 str(pcap), "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(dump)
        deadline = time.monotonic() + 30
        while "listening on" not in (line := dump.stderr.readline()) and time.monotonic() < deadline:
            assert line, "tcpdump did not start"
        cli = subprocess.run(["ip", "netns", "exec", a, sys.executable, "-c", CLIENT], capture_output=True,
                             text=True, timeout=60)
        assert cli.stdout.strip() == "done", cli.stderr
        time.sleep(0.5)
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=30)
        yield pcap
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for ns in (a, b):
            for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_line_protocol_on_443_in_a_real_capture(line_443_capture, tmp_path):
    import abfluss

    ws = abfluss.open_workspace(tmp_path / "ws", write=True)
    try:
        (res,) = abfluss.ingest_paths(ws, [line_443_capture], sensor="tap")
        assert res.status == "stored"
        abfluss.refresh(ws)
        # nDPI guesses "TLS" from the port; the flow says what was seen: nothing it knows
        assert ws.con.execute("SELECT service, resp_p FROM flows_raw").fetchall() == [("", 443)]
        fs = abfluss.analyze(ws, only=("protocol_mismatch",), store=False).findings
    finally:
        ws.close()
    (f,) = fs
    assert (f.internal_hosts, f.external_hosts, f.channel) == (["10.99.1.1"], ["203.0.113.77"], "tcp/443")
    assert f.metrics["reasons"] == ["not_tls"] and f.metrics["services"] == ["unidentified"]
    assert f.metrics["seconds"] >= 6 and f.severity == "low"
    # held open long enough for the site's threshold, it is also unknown_held_open
    (g,) = run("protocol_mismatch", Settings(unknown_min_seconds=5),
               flows=[flow(f.start, duration=f.metrics["seconds"], resp_h="203.0.113.77", orig_h="10.99.1.1",
                           service="", orig_bytes=f.bytes_out, resp_bytes=f.metrics["bytes_in"])])
    assert g.metrics["reasons"] == ["not_tls", "unknown_held_open"]


# -- golden: public Zeek sets -------------------------------------------------------------------

def test_golden_slips_test9_non_http_on_80(tmp_path_factory):
    # Slips expects "non-HTTP established connection to 194.132.197.198:80" (spotify.com in DNS):
    # 5 bytes out, 3 back, handshake seen; and 113 bytes out to x.ss2.us (54.239.168.175) that were not HTTP.
    fs = analyze_capture("slips/test9-mixed-zeek", tmp_path_factory.mktemp("pm9"), only=("protocol_mismatch",))
    assert sorted((f.external_hosts[0], f.channel, tuple(f.metrics["reasons"])) for f in fs) == [
        ("194.132.197.198", "tcp/80", ("not_http",)), ("54.239.168.175", "tcp/80", ("not_http",))]
    assert_golden("protocol_mismatch-slips-test9", fs)


def test_slips_test10_mid_stream_443_is_not_judged(tmp_path_factory):
    # The "non-SSL" connections on 443 Slips reports here were all picked up mid-stream (Zeek
    # history without the handshake, OTH): Zeek cannot name TLS it joined late. No finding.
    cfg = '[networks]\ninternal = ["147.32.0.0/16", "2001:718:2::/48"]\n'
    fs = analyze_capture("slips/test10-mixed-zeek", tmp_path_factory.mktemp("pm10"), cfg,
                         only=("protocol_mismatch",))
    assert fs == []
