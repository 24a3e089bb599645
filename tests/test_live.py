"""Live capture: `abfluss ingest --interface IF --duration S` inside network namespaces this test makes.

Two namespaces joined by one veth pair, never connected to the real network: an internal host
10.99.0.1 and an "external" sink 203.0.113.7. Everything is removed afterwards, also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from conftest import run_cli

SINK = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.7", 9000)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0
while (b := c.recv(65536)): n += len(b)
c.sendall(b"ok %d" % n); c.close()
"""
UPLOAD = """
import socket
c = socket.create_connection(("203.0.113.7", 9000)); c.sendall(b"x" * 300000); c.shutdown(socket.SHUT_WR)
print(c.recv(100).decode()); c.close()
"""


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("live capture in network namespaces needs root (CI runs as root)")
    assert shutil.which("tcpdump") and shutil.which("ip"), "tcpdump and ip are needed: make sysdeps"
    tag = uuid.uuid4().hex[:6]
    a, b = f"abt-a-{tag}", f"abt-b-{tag}"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", "va" + tag, "netns", a, "type", "veth", "peer", "name", "vb" + tag, "netns", b)
        for ns, dev, mine, peer in ((a, "va" + tag, "10.99.0.1", "203.0.113.7"), (b, "vb" + tag, "203.0.113.7", "10.99.0.1")):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "addr", "add", mine + "/32", "dev", dev)
            sh("ip", "-n", ns, "route", "add", peer + "/32", "dev", dev)
        yield a, b, "va" + tag
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _wait_for_tcpdump(ns: str, timeout: float = 60) -> None:
    """Until the CLI's tcpdump runs in ``ns`` (a loaded machine starts the CLI slowly), then a
    moment for it to open the interface."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                if open(f"/proc/{pid}/comm").read().strip() == "tcpdump":
                    time.sleep(1)
                    return
            except OSError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"tcpdump did not start in {ns} within {timeout} s")


def test_live_capture_counts_an_upload(netns, tmp_path):
    a, b, dev = netns
    sink = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout.readline().strip() == "ready"
        exe = os.path.join(os.path.dirname(sys.executable), "abfluss")
        cap = subprocess.Popen(["ip", "netns", "exec", a, exe, "--workspace", str(tmp_path / "ws"), "ingest",
                                "--interface", dev, "--duration", "6", "--sensor", "tap"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_tcpdump(a)
        up = subprocess.run(["ip", "netns", "exec", a, sys.executable, "-c", UPLOAD], capture_output=True, text=True,
                            timeout=30)
        assert up.stdout.strip() == "ok 300000", up.stderr
        out, err = cap.communicate(timeout=60)
        assert cap.returncode == 0, err
        assert "Traceback" not in err
    finally:
        sink.kill()
    rows = json.loads(run_cli("ledger", "--host", "10.99.0.1", "--format", "json", workspace=tmp_path / "ws",
                               check=True).stdout)  # IPv6 link-local chatter is there too
    assert [(r["internal_host"], r["external_host"], r["bytes_out"], r["bytes_in"]) for r in rows] == [
        ("10.99.0.1", "203.0.113.7", 300000, 9)]
    [inp] = json.loads(run_cli("inputs", "--format", "json", workspace=tmp_path / "ws", check=True).stdout)
    assert inp["sensor"] == "tap" and inp["path"].startswith(f"interface:{dev}@")
