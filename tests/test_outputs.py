"""Finding formats (ECS, OCSF, CEF) and sinks (NDJSON, syslog over UDP and TCP on loopback)."""

from __future__ import annotations

import json
import re
import socket
import threading

import pytest

from abfluss.errors import AbflussError
from abfluss.findings import Finding
from abfluss.outputs import cef, ecs, ocsf
from abfluss.outputs.sinks import Sink

from conftest import data, run_cli

RITA_CFG = "[detections.long_connection]\nmin_total_seconds = 1800\n"


def _finding(**kw) -> Finding:
    base = dict(detection="bulk_outbound", key=("10.0.0.5", "hour"), score_parts={"volume": 55, "baseline": 20},
                explanation="10.0.0.5 sent 2.1 GB | to x=y\nnext", internal_hosts=["10.0.0.5"],
                external_hosts=["203.0.113.50"], external_names=["upload.files-drop.test"], channel="https",
                bytes_out=2_100_000_000, attack=["T1030", "T1048"])
    base.update(kw)
    from datetime import datetime, timezone
    base.setdefault("start", datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc))
    base.setdefault("end", datetime(2026, 3, 2, 4, 0, tzinfo=timezone.utc))
    return Finding(**base)


def test_cef_escapes_header_and_extension():
    line = cef.to_cef(_finding(detection="a|b"))
    assert line.startswith("CEF:0|abfluss|abfluss|")
    assert "|a\\|b|a\\|b|8|" in line  # severity high -> 8
    assert "msg=10.0.0.5 sent 2.1 GB | to x\\=y\\nnext" in line
    assert "out=2100000000" in line and "dhost=upload.files-drop.test" in line


def test_ecs_fields():
    d = ecs.to_ecs(_finding())
    assert d["event"]["kind"] == "alert" and d["event"]["risk_score"] == 75.0
    assert d["source"] == {"ip": "10.0.0.5", "bytes": 2_100_000_000}
    assert d["destination"] == {"ip": "203.0.113.50", "domain": "upload.files-drop.test"}
    assert d["threat"]["technique"]["id"] == ["T1030", "T1048"]
    assert d["@timestamp"] == "2026-03-02T03:00:00+00:00"


def test_ocsf_classes():
    d = ocsf.to_ocsf(_finding())
    assert (d["class_uid"], d["type_uid"], d["severity_id"]) == (2004, 200401, 4)
    dlp = ocsf.to_ocsf(_finding(detection="cleartext_sensitive_data", metrics={"counts": {"kvnr": 3, "iban": 0}}))
    assert dlp["class_uid"] == 2006 and dlp["type_uid"] == 200601
    assert dlp["data_security"]["pattern_match"] == "kvnr"


def test_sink_specs_are_checked():
    for bad in ("ndjson:", "ftp://x:1", "udp://nohost", "syslog", "https://"):
        with pytest.raises(AbflussError):
            Sink(bad)


def test_ndjson_sink_appends(tmp_path):
    p = tmp_path / "out.ndjson"
    Sink(f"ndjson:{p}").send([_finding()])
    Sink(f"ndjson:{p}", "ocsf").send([_finding()])
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    assert lines[0]["event"]["id"] == lines[1]["finding_info"]["uid"]


class _Listener:
    """A syslog receiver on loopback (UDP datagrams, or TCP with octet-counting frames)."""

    def __init__(self, kind: str):
        self.kind = kind
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.messages: list[bytes] = []
        if kind == "tcp":
            self.sock.listen(1)
        self.sock.settimeout(120)  # analyze on a loaded machine can take longer than 10 s
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        if self.kind == "udp":
            while True:
                try:
                    self.messages.append(self.sock.recv(65535))
                except OSError:
                    return
        try:
            conn, _ = self.sock.accept()
        except OSError:  # closed before anyone connected
            return
        buf = b""
        with conn:
            while chunk := conn.recv(65535):
                buf += chunk
        while buf:
            n, rest = buf.split(b" ", 1)
            self.messages.append(rest[: int(n)])
            buf = rest[int(n):]

    def close(self):
        self.sock.close()
        self.thread.join(5)


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_analyze_sends_new_findings_to_syslog_once(kind, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "abfluss.toml").write_text(RITA_CFG)
    run_cli("ingest", str(data("rita/open_conns/open")), workspace=ws, check=True)
    lst = _Listener(kind)
    try:
        run_cli("analyze", "--only", "long_connection", "--sink", f"{kind}://127.0.0.1:{lst.port}",
                workspace=ws, check=True)
        if kind == "udp":
            import time
            for _ in range(50):
                if lst.messages:
                    break
                time.sleep(0.1)
    finally:
        lst.close()
    assert len(lst.messages) == 1
    msg = lst.messages[0].decode()
    assert re.match(r"<165>1 \S+ \S+ abfluss \d+ long_connection - CEF:0\|abfluss\|abfluss\|", msg), msg
    assert "src=10.55.100.106 dst=65.52.108.188" in msg and "cs1=48c778ed74ac6f2e" in msg
    # analysing again sends nothing: the finding is known and its severity did not rise
    lst2 = _Listener(kind)
    try:
        r = run_cli("analyze", "--only", "long_connection", "--sink", f"{kind}://127.0.0.1:{lst2.port}",
                    workspace=ws, check=True)
        assert "sent 0 findings" in r.stdout
        if kind == "tcp":  # nothing to send: the sink never connects; unblock the listener
            socket.create_connection(("127.0.0.1", lst2.port)).close()
    finally:
        lst2.close()
    assert lst2.messages == []


def test_findings_formats_and_explain_from_cli(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "abfluss.toml").write_text(RITA_CFG)
    run_cli("ingest", str(data("rita/open_conns/open")), workspace=ws, check=True)
    run_cli("analyze", "--only", "long_connection", workspace=ws, check=True)
    js = json.loads(run_cli("findings", "--format", "json", workspace=ws, check=True).stdout)
    assert [f["id"] for f in js] == ["48c778ed74ac6f2e"]
    for k in ("id", "detection", "severity", "score", "internal_hosts", "external_hosts", "external_names",
              "channel", "start", "end", "bytes_out", "explanation"):
        assert k in js[0]
    ecs_lines = run_cli("findings", "--format", "ecs", workspace=ws, check=True).stdout.splitlines()
    assert json.loads(ecs_lines[0])["event"]["id"] == "48c778ed74ac6f2e"
    assert run_cli("findings", "--severity", "high", "--format", "json", workspace=ws, check=True).stdout.strip() == "[]"
    ex = run_cli("explain", "48c7", workspace=ws, check=True).stdout
    assert "min_total_seconds = 1800.0" in ex and "C4I3Ud25s8z0V6Ywc7" in ex and "runbook" in ex
    bad = run_cli("explain", "ffff", workspace=ws)
    assert bad.returncode == 2 and bad.stderr.startswith("abfluss: no finding") and "Traceback" not in bad.stderr


def test_webhook_sink_posts_each_finding_to_a_loopback_server():
    import http.server

    got = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            got.append((self.headers["Content-Type"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        assert Sink(f"http://127.0.0.1:{srv.server_port}/hook").send([_finding(), _finding(key=("x",))]) == 2
    finally:
        srv.shutdown()
    assert [c for c, _ in got] == ["application/json"] * 2
    assert json.loads(got[0][1])["event"]["kind"] == "alert"
    with pytest.raises(AbflussError):  # nobody listening: one clear error
        Sink(f"http://127.0.0.1:{srv.server_port}/hook").send([_finding()])
