"""Alerts are delivered at least once per sink, within a total deadline per send (issue 13 items 4, 5).

Before: a finding was marked notified before any sink accepted it, so a failed send was never
retried; the first failing sink stopped the others; the 5 s timeout applied per socket read, so
a webhook dripping a byte every 2 s held ``analyze`` for ever and ``watch`` ignored SIGTERM. The
receivers here are real servers on loopback.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import abfluss
from abfluss.errors import AbflussError
from abfluss.outputs import sinks as sinks_mod
from abfluss.outputs.sinks import Sink

from hostile import conn, zeek_json

WATCH = [os.path.join(os.path.dirname(sys.executable), "abfluss")]


class Hook:
    """A webhook on loopback that answers with the status codes given, then 204."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.got: list[dict] = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = outer.statuses.pop(0) if outer.statuses else 204
                if status < 300:
                    outer.got.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_port}/hook"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class Drip:
    """A webhook that reads the request and then answers one byte every ``every`` seconds, never
    finishing its header: every single read succeeds, the answer never completes."""

    def __init__(self, every: float = 0.5):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.every, self.requests, self.stop = every, 0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(c,), daemon=True).start()

    def _drip(self, c):
        with c:
            c.recv(65536)
            self.requests += 1
            for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                if self.stop.is_set():
                    return
                try:
                    c.sendall(bytes([b]))
                except OSError:
                    return
                time.sleep(self.every)

    def close(self):
        self.stop.set()
        self.sock.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def upload_ws(tmp_path):
    """A workspace with one upload-heavy destination (one finding of upload_heavy)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    zeek_json(logs / "conn.log", "conn", [conn(0, "CUP", "10.0.0.5", "203.0.113.66", out=5_000_000, back=8_000)])
    ws = tmp_path / "ws"
    with abfluss.open_workspace(ws, write=True) as w:
        abfluss.ingest_paths(w, [logs])
    return ws


def _analyze(ws, *sinks):
    from typer.testing import CliRunner

    from abfluss.cli import app

    args = ["--workspace", str(ws), "analyze", "--only", "upload_heavy", "--format", "json"]
    for s in sinks:
        args += ["--sink", s]
    res = CliRunner().invoke(app, args)
    return res.exit_code, json.loads(res.stdout[: res.stdout.rindex("}") + 1]), res.stderr


def test_failed_sink_keeps_its_findings_and_does_not_starve_the_next(upload_ws, tmp_path):
    down = f"tcp://127.0.0.1:{_closed_port()}"
    nd = tmp_path / "alerts.ndjson"
    code, doc, err = _analyze(upload_ws, down, f"ndjson:{nd}")
    assert code == 1 and f"abfluss: sink {down}:" in err and "1 finding kept for the next run" in err
    assert doc["sent"] == {down: 0, f"ndjson:{nd}": 1} and doc["queued"] == {down: 1, f"ndjson:{nd}": 0}
    (fid,) = doc["new"]
    assert [json.loads(x)["event"]["id"] for x in nd.read_text().splitlines()] == [fid]
    with abfluss.open_workspace(upload_ws) as w:  # kept for the sink that missed it, and only for it
        assert w.con.execute("SELECT sink, finding_id, attempts FROM outbox").fetchall() == [(down, fid, 1)]


def test_webhook_error_is_retried_on_the_next_run(upload_ws):
    hook = Hook(statuses=[500])
    try:
        code, doc, err = _analyze(upload_ws, hook.url)
        assert code == 1 and "HTTP 500" in err and hook.got == []
        code, doc, _ = _analyze(upload_ws, hook.url)  # nothing new: the queued finding goes out
        assert (code, doc["new"], doc["sent"], doc["queued"]) == (0, [], {hook.url: 1}, {hook.url: 0})
        assert [g["event"]["id"] for g in hook.got] == [doc["findings"][0]["id"]]
        code, doc, _ = _analyze(upload_ws, hook.url)
        assert doc["sent"] == {hook.url: 0} and len(hook.got) == 1  # at least once, not again
    finally:
        hook.close()


def test_send_has_a_total_deadline(monkeypatch):
    from test_outputs import _finding

    monkeypatch.setattr(sinks_mod, "DEADLINE", 1.5)
    drip = Drip(every=0.3)  # each read gets a byte well within any per-read timeout
    try:
        t0 = time.monotonic()
        with pytest.raises(AbflussError, match="deadline passed"):
            Sink(drip.url).send([_finding()])
        assert time.monotonic() - t0 < 3
    finally:
        drip.close()


def test_watch_stops_within_5_s_of_sigterm_while_a_sink_drips(tmp_path):
    eve, ws = tmp_path / "eve.json", tmp_path / "ws"
    eve.write_text("".join(json.dumps({
        "timestamp": f"2024-02-08T15:00:{i:02d}.000000+0000", "flow_id": 1000 + i, "event_type": "flow",
        "src_ip": "10.1.1.5", "src_port": 50000 + i, "dest_ip": "203.0.113.9", "dest_port": 443, "proto": "TCP",
        "app_proto": "tls", "flow": {"pkts_toserver": 900, "pkts_toclient": 30, "bytes_toserver": 3_000_000,
                                     "bytes_toclient": 2000, "start": "2024-02-08T15:00:00.000000+0000",
                                     "end": "2024-02-08T15:00:30.000000+0000", "state": "closed",
                                     "reason": "timeout"}}) + "\n" for i in range(5)))
    drip = Drip(every=2.0)
    w = subprocess.Popen(WATCH + ["--workspace", str(ws), "watch", "--eve", str(eve), "--every", "1",
                                  "--silent-after", "3600", "--sink", drip.url],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while drip.requests == 0 and time.monotonic() < deadline and w.poll() is None:
            time.sleep(0.2)
        assert drip.requests, "the watcher never sent to the webhook"
        t0 = time.monotonic()
        w.send_signal(signal.SIGTERM)
        _out, err = w.communicate(timeout=30)
        took = time.monotonic() - t0
        assert w.returncode == 0 and "Traceback" not in err, err
        assert took < 5, f"watch took {took:.1f} s to stop"
    finally:
        if w.poll() is None:
            w.kill()
        drip.close()
    with abfluss.open_workspace(ws) as w:  # the cut-short send stays queued for the next start
        rows = w.con.execute("SELECT sink, attempts, last_error FROM outbox ORDER BY attempts DESC").fetchall()
    assert {r[0] for r in rows} == {drip.url} and rows[0][1:] == (1, f"sink {drip.url}: cancelled (stopping)")
