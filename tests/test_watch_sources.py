"""``abfluss watch`` sources not covered by test_watch.py: the NetFlow v9 UDP collector
(replayed from a real export capture, across restarts) and sensor-health findings for a sensor
that falls silent after delivering and for rising capture loss."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import dpkt
import pytest

from conftest import DATA, data, run_cli
from test_watch import HEADER, append, start_watch, stored_flows, wait_for

# a real NetFlow v9 export; missing, the tests that use it fail (``data`` asserts), never skip
CAPTURE = DATA / "netflow-pmacct/101-NFv9-CISCO-cust_primitives/traffic-00.pcap"
EXPORTER = "138.187.57.55"  # the exporter's address in the capture; replayed, it is 127.0.0.1


def udp_payloads(path: Path) -> list[bytes]:
    out = []
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP):
                out.append(bytes(ip.data.data))
    return out


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_bound(port: int) -> bool:
    want = f":{port:04X}"
    with open("/proc/net/udp") as f:
        return any(line.split()[1].endswith(want) for line in f.readlines()[1:])


def send(port: int, payloads: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in payloads:
            s.sendto(p, ("127.0.0.1", port))  # loopback only
            time.sleep(0.002)


def stop(w) -> str:
    w.send_signal(signal.SIGTERM)
    _out, err = w.communicate(timeout=60)
    assert w.returncode == 0, err
    assert "Traceback" not in err, err
    return err


def without_exporter(rows: list[tuple], exporter: str) -> list[tuple]:
    """Flows rows without sensor, the exporter's address dropped from the uid, in a stable order."""
    out = []
    for r in rows:
        r = list(r)
        uid = r[-3]
        assert uid.startswith(exporter + ":"), uid
        r[-3] = uid[len(exporter) + 1:]
        out.append(tuple(r[:-2] + r[-1:]))  # drop sensor (day stays)
    return sorted(out, key=repr)


def flows(ws: Path) -> list[tuple]:
    import abfluss

    with abfluss.open_workspace(ws) as w:
        # uid, sensor and day last, by name (without_exporter takes them by position)
        return w.con.execute("SELECT * EXCLUDE (uid, sensor, input_id, day), uid, sensor, day "
                             "FROM flows_raw").fetchall()


def test_netflow_collector_equals_one_shot_ingest_across_restarts(tmp_path):
    ws, alerts = tmp_path / "ws", tmp_path / "alerts.ndjson"
    payloads = udp_payloads(data(str(CAPTURE.relative_to(DATA))))
    assert len(payloads) == 40  # the template in the first datagram only, data in all others
    port = free_udp_port()
    args = ["--netflow-port", str(port), "--every", "2", "--ndjson", str(alerts), "--silent-after", "3600"]

    # first run: the template and half the data, then SIGTERM
    w = start_watch(ws, *args)
    try:
        wait_for(lambda: udp_bound(port), 60, "the collector's socket")
        send(port, payloads[:20])
        stop(w)
    finally:
        if w.poll() is None:
            w.kill()
    first = len(flows(ws))
    assert first > 0

    # restarted: the rest of the data, decoded with the template learnt before the restart
    w = start_watch(ws, *args)
    try:
        wait_for(lambda: udp_bound(port), 60, "the collector's socket after a restart")
        send(port, payloads[20:])
        wait_for(lambda: len(flows(ws)) > first, 30, "flows after the restart")
        stop(w)
    finally:
        if w.poll() is None:
            w.kill()

    run_cli("ingest", str(CAPTURE), workspace=tmp_path / "once", check=True)
    once = without_exporter(flows(tmp_path / "once"), EXPORTER)
    assert len(once) == 51
    watched = without_exporter(flows(ws), "127.0.0.1")
    assert watched == once

    import abfluss

    with abfluss.open_workspace(ws) as wsp:
        skipped = wsp.con.execute("SELECT sum(skipped) FROM inputs").fetchone()[0]
    assert skipped == 0

    # restarted once more with nothing sent: nothing is stored twice
    w = start_watch(ws, *args)
    try:
        wait_for(lambda: udp_bound(port), 60, "the collector's socket, third run")
        time.sleep(2.5)
        stop(w)
    finally:
        if w.poll() is None:
            w.kill()
    assert without_exporter(flows(ws), "127.0.0.1") == once


def conn(start: int, n: int, missed: int = 0) -> str:
    """conn.log lines of ``n`` connections of 10 000 + 2 000 IP bytes, ``missed`` bytes each missed."""
    out = []
    for i in range(start, start + n):
        out.append(f"{1700000000 + i * 0.5:.6f}\tC{i:09d}\t10.0.0.{i % 50 + 1}\t{40000 + i}\t"
                   f"198.51.100.{i % 7 + 1}\t443\ttcp\tssl\t1.5\t9000\t1500\tSF\t-\t-\t{missed}\tShADadFf\t"
                   f"10\t10000\t8\t2000\t-\n")
    return "".join(out)


def health(alerts: Path) -> list[dict]:
    if not alerts.exists():
        return []
    docs = [json.loads(x) for x in alerts.read_text().splitlines() if x.strip()]
    return [d for d in docs if d["rule"]["id"] == "sensor_health"]


def test_sensor_health_capture_loss_then_silence(tmp_path):
    logs, ws, alerts = tmp_path / "logs", tmp_path / "ws", tmp_path / "alerts.ndjson"
    logs.mkdir()
    log = logs / "conn.log"
    log.write_text(HEADER.format(opened="2023-11-14-22-13-20") + conn(0, 100))
    w = start_watch(ws, "--zeek-dir", str(logs), "--every", "1", "--silent-after", "6",
                    "--ndjson", str(alerts))
    try:
        wait_for(lambda: (ws / "catalog.duckdb").exists() and len(stored_flows(ws)) >= 100, 60, "first flows")
        t0 = time.monotonic()
        for k in range(3):  # loss rises: 0 %, then about 2 %, 8 %, 14 % of the bytes so far
            append(log, conn(100 + 50 * k, 50, missed=1000 * (k + 1) * 3))
            time.sleep(1.2)
        last = time.monotonic()
        wait_for(lambda: any("capture loss" in json.dumps(d) for d in health(alerts)), 20, "a capture-loss finding")
        if time.monotonic() - last < 5:  # still within silent-after of the last record (on a loaded
            # machine the finding can take longer, and then the sensor really has been quiet)
            assert not any("fell silent" in json.dumps(d) for d in health(alerts))  # it was delivering
        # no more records: within silent-after plus a detection interval or two it is reported silent
        wait_for(lambda: any("fell silent" in json.dumps(d) for d in health(alerts)), 20, "a silence finding")
        silent_after = time.monotonic() - t0
        stop(w)
    finally:
        if w.poll() is None:
            w.kill()
    found = health(alerts)
    silent = [d for d in found if "fell silent" in json.dumps(d)]
    loss = [d for d in found if "capture loss" in json.dumps(d)]
    assert "no records since it started" not in json.dumps(silent)
    assert len({d["event"]["id"] for d in silent}) == 1  # one silence, one finding
    assert len({d["event"]["id"] for d in loss}) == 1
    assert silent_after < 30, silent_after


def test_netflow_lost_datagrams_are_capture_loss_and_templates_survive(tmp_path, monkeypatch):
    import abfluss
    from abfluss.watch import netflow, state

    payloads = udp_payloads(data(str(CAPTURE.relative_to(DATA))))
    with abfluss.open_workspace(tmp_path / "ws", write=True) as ws:
        state.ensure(ws)
        src = netflow.NetflowSource(ws, 1, "nf")  # not started: datagrams handed in directly
        for p in payloads[:11]:
            src._take(p, "127.0.0.1")
        res = src.poll()
        assert res.total > 0 and res.bytes > 0 and res.missed == 0
        monkeypatch.setattr(netflow, "MAX_QUEUE", 0)  # a full queue: the next datagrams are lost
        for p in payloads[11:16]:
            src._take(p, "127.0.0.1")
        res = src.poll()
        assert src.lost_datagrams == 5 and res.total == 0
        assert res.missed == pytest.approx(5 * src._bytes_per_datagram, abs=1) and res.missed > 0
        assert src.poll().missed == 0  # counted once
        monkeypatch.setattr(netflow, "MAX_QUEUE", 200_000)
        # a new collector (a restart) decodes data with the template the first one learnt
        again = netflow.NetflowSource(ws, 1, "nf")
        again._take(payloads[16], "127.0.0.1")
        res = again.poll()
        assert res.total > 0 and res.skipped == 0
