"""``abfluss watch``: following Zeek logs across rotation and a kill -9, eve.json appends,
sensor health, and a live interface inside network namespaces this test makes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli
from test_live import _wait_for_tcpdump, netns  # noqa: F401  (the namespaces fixture)

WATCH = [os.path.join(os.path.dirname(sys.executable), "abfluss")]
HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
    "#open\t{opened}\n"
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\t"
    "resp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\t"
    "resp_pkts\tresp_ip_bytes\ttunnel_parents\n"
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\t"
    "count\tstring\tcount\tcount\tcount\tcount\tset[string]\n")


def conn_lines(start: int, n: int) -> str:
    out = []
    for i in range(start, start + n):
        out.append(f"{1700000000 + i * 0.5:.6f}\tC{i:09d}\t10.0.0.{i % 50 + 1}\t{40000 + i % 1000}\t"
                   f"198.51.100.{i % 7 + 1}\t443\ttcp\tssl\t1.5\t{1000 + i}\t{200 + i % 13}\tSF\t-\t-\t0\tShADadFf\t"
                   f"10\t{1400 + i}\t8\t{600 + i % 13}\t-\n")
    return "".join(out)


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def start_watch(ws: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(WATCH + ["--workspace", str(ws), "watch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stored_flows(ws: Path) -> list[tuple]:
    import abfluss

    with abfluss.open_workspace(ws) as w:
        return w.con.execute("SELECT * EXCLUDE (input_id) FROM flows_raw ORDER BY uid, ts").fetchall()


def wait_for(cond, timeout: float, what: str) -> None:
    from abfluss.errors import WorkspaceError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except WorkspaceError:  # the watcher holds the catalog during its cycle: look again (a slow machine)
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_zeek_dir_followed_across_rotation_and_kill9(tmp_path):
    logs, ws = tmp_path / "logs", tmp_path / "ws"
    logs.mkdir()
    conn = logs / "conn.log"
    conn.write_text(HEADER.format(opened="2023-11-14-22-13-20") + conn_lines(0, 300))
    w = start_watch(ws, "--zeek-dir", str(logs), "--every", "2", "--silent-after", "3600")
    try:
        wait_for(lambda: (ws / "catalog.duckdb").exists() and len(stored_flows(ws)) >= 300, 90, "first flows")
        append(conn, conn_lines(300, 200))
        append(conn, conn_lines(500, 1)[:-20])  # a line still being written
        time.sleep(3)
        w.send_signal(signal.SIGKILL)
        w.wait(timeout=30)
    finally:
        if w.poll() is None:
            w.kill()
    # while it is down: the line is finished, the log rotated, a new one started
    append(conn, conn_lines(500, 1)[-20:] + conn_lines(501, 99) + "#close\t2023-11-14-23-00-00\n")
    conn.rename(logs / "conn.2023-11-14-22-13-20.log")
    conn.write_text(HEADER.format(opened="2023-11-14-23-00-00") + conn_lines(600, 50))
    w = start_watch(ws, "--zeek-dir", str(logs), "--every", "2", "--silent-after", "3600")
    try:
        wait_for(lambda: len(stored_flows(ws)) >= 650, 90, "flows after restart")
        append(conn, conn_lines(650, 100))  # and a rotation while it runs
        conn.rename(logs / "conn.2023-11-14-23-00-00.log")
        conn.write_text(HEADER.format(opened="2023-11-14-23-30-00") + conn_lines(750, 40))
        wait_for(lambda: len(stored_flows(ws)) >= 790, 90, "flows after live rotation")
        time.sleep(2)
        w.send_signal(signal.SIGTERM)
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if w.poll() is None:
            w.kill()
    run_cli("ingest", str(logs), workspace=tmp_path / "once", check=True)
    once = stored_flows(tmp_path / "once")
    assert len(once) == 790
    assert stored_flows(ws) == once


def test_eve_appends_and_alert_once(tmp_path):
    eve, ws, alerts = tmp_path / "eve.json", tmp_path / "ws", tmp_path / "alerts.ndjson"

    def flow(i: int, out_bytes: int) -> str:
        return json.dumps({"timestamp": f"2024-02-08T15:{i // 60:02d}:{i % 60:02d}.000000+0000",
                           "flow_id": 1000 + i, "event_type": "flow", "src_ip": "10.1.1.5",
                           "src_port": 50000 + i, "dest_ip": "203.0.113.9", "dest_port": 443, "proto": "TCP",
                           "app_proto": "tls", "flow": {"pkts_toserver": 900, "pkts_toclient": 300,
                                                        "bytes_toserver": out_bytes, "bytes_toclient": 20000,
                                                        "start": "2024-02-08T15:00:00.000000+0000",
                                                        "end": "2024-02-08T15:00:30.000000+0000",
                                                        "state": "closed", "reason": "timeout"}}) + "\n"

    eve.write_text("".join(flow(i, 1000) for i in range(20)))
    w = start_watch(ws, "--eve", str(eve), "--every", "2", "--ndjson", str(alerts), "--silent-after", "3600")
    try:
        wait_for(lambda: (ws / "catalog.duckdb").exists() and len(stored_flows(ws)) == 20, 90, "first events")
        append(eve, "".join(flow(i, 3_000_000) for i in range(20, 25)))  # 15 MB up: upload-heavy
        wait_for(lambda: alerts.exists() and alerts.read_text().strip(), 90, "an alert")
        append(eve, "".join(flow(i, 3_000_000) for i in range(25, 30)))  # the same finding grows
        wait_for(lambda: len(stored_flows(ws)) == 30, 60, "more events")
        time.sleep(5)
        w.send_signal(signal.SIGTERM)
        _out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
    finally:
        if w.poll() is None:
            w.kill()
    docs = [json.loads(x) for x in alerts.read_text().splitlines()]
    sent: dict[str, list[int]] = {}
    for d in docs:  # a finding is sent again only when it grew into a higher severity
        sent.setdefault(d["event"]["id"], []).append(d["event"]["severity"])
    assert sent and all(sev == sorted(set(sev)) for sev in sent.values()), sent
    assert any(d["rule"]["id"] == "upload_heavy" for d in docs)
    assert len(stored_flows(ws)) == 30


def test_silent_sensor_raises_its_own_alert(tmp_path):
    eve, ws, alerts = tmp_path / "eve.json", tmp_path / "ws", tmp_path / "alerts.ndjson"
    eve.write_text("")
    w = start_watch(ws, "--eve", str(eve), "--every", "1", "--silent-after", "3", "--ndjson", str(alerts))
    try:
        wait_for(lambda: alerts.exists() and "sensor_health" in alerts.read_text(), 90, "a sensor_health alert")
        w.send_signal(signal.SIGTERM)
        w.communicate(timeout=60)
    finally:
        if w.poll() is None:
            w.kill()
    lines = [x for x in alerts.read_text().splitlines() if "sensor_health" in x]
    assert "fell silent" in lines[0]


# -- live interface in network namespaces ------------------------------------------------------
SERVERS = """
import socket, threading
def dns():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("203.0.113.7", 53))
    while True:
        q, a = u.recvfrom(2048)
        u.sendto(q[:2] + b"\\x81\\x83" + q[4:6] + b"\\0\\0\\0\\0\\0\\0" + q[12:], a)  # NXDOMAIN
threading.Thread(target=dns, daemon=True).start()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.7", 9000)); s.listen(1); print("ready", flush=True)
while True:
    c, _ = s.accept(); n = 0
    while (b := c.recv(65536)): n += len(b)
    c.sendall(b"ok %d" % n); c.close()
"""
CLIENT = """
import base64, os, socket, sys, time
c = socket.create_connection(("203.0.113.7", 9000)); c.sendall(b"x" * 10_000_000); c.shutdown(socket.SHUT_WR)
print(c.recv(100).decode(), flush=True); c.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(0.2)
for i in range(int(sys.argv[1])):
    label = base64.b32encode(os.urandom(30)).decode().rstrip("=").lower()
    name = b"".join(bytes([len(p)]) + p.encode() for p in (label, "t", "exfil", "test")) + b"\\0"
    u.sendto(os.urandom(2) + b"\\1\\0\\0\\1\\0\\0\\0\\0\\0\\0" + name + b"\\0\\x10\\0\\1", ("203.0.113.7", 53))
    try:
        u.recv(2048)
    except OSError:
        pass
    if i == 99:  # dns_tunnel's evidence is complete (min_unique_subdomains: 100 names)
        print("dns 100", flush=True)
    time.sleep(0.05)
"""


def test_live_interface_alerts_within_15_seconds(netns, tmp_path):
    """Issue 15: with --every 2 (capture files rotate as often) an upload is alerted within 15 s of
    its first packet, and a DNS tunnel within 15 s of the query that completes its evidence (its
    100th distinct name: before that there is nothing to detect). The test prints what it saw."""
    import threading

    a, b, dev = netns
    ws, alerts = tmp_path / "ws", tmp_path / "alerts.ndjson"
    servers = w = None
    try:
        servers = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", SERVERS],
                                   stdout=subprocess.PIPE, text=True)
        assert servers.stdout.readline().strip() == "ready"
        w = subprocess.Popen(["ip", "netns", "exec", a] + WATCH + [
            "--workspace", str(ws), "watch", "--interface", dev, "--every", "2",
            "--ndjson", str(alerts), "--silent-after", "3600", "--no-inspect"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_tcpdump(a)
        t0 = time.monotonic()
        client = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-c", CLIENT, "900"],
                                  stdout=subprocess.PIPE, text=True)
        said: dict[str, float] = {}  # the client's lines ("ok 10000000", "dns 100") and when they came

        def listen():
            for line in client.stdout:
                said.setdefault(line.strip(), time.monotonic())
        threading.Thread(target=listen, daemon=True).start()
        seen: dict[str, float] = {}
        while time.monotonic() - t0 < 90 and len(seen) < 2:
            if alerts.exists():
                for line in alerts.read_text().splitlines():
                    rule = json.loads(line)["rule"]["id"]
                    if rule in ("upload_heavy", "dns_tunnel"):
                        seen.setdefault(rule, time.monotonic())
            time.sleep(0.2)
        client.kill()
        w.send_signal(signal.SIGTERM)
        _out, err = w.communicate(timeout=120)
        upload = seen.get("upload_heavy", float("inf")) - t0
        tunnel = seen.get("dns_tunnel", float("inf")) - said.get("dns 100", float("inf"))
        print(f"alert latency: upload {upload:.1f} s after its first packet, DNS tunnel {tunnel:.1f} s after "
              f"its 100th name ({said.get('dns 100', float('nan')) - t0:.1f} s after the upload began)")
        assert "Traceback" not in err, err
        assert "ok 10000000" in said and "dns 100" in said, (said, err)
        assert upload <= 15, (upload, err)
        assert tunnel <= 15, (tunnel, err)
    finally:
        for p in (servers, w):
            if p is not None and p.poll() is None:
                p.kill()
