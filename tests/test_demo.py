"""The bundled demo capture against the lab's ground truth (examples/demo-truth.json)."""

from __future__ import annotations

import json

import pyarrow.compute as pc

import abfluss
from conftest import EXAMPLES, run_cli


def tls_overhead(n: int) -> int:
    """TLS handshake (the lab measured 0.65-1.8 KB) plus 5-29 bytes per 16 KB record over curl's count."""
    return 2500 + n // 200


def truth():
    return json.loads((EXAMPLES / "demo-truth.json").read_text())


def test_every_tcp_scenario_is_metered_exactly(ws):
    res = abfluss.ingest_file(ws, EXAMPLES / "demo.pcap")
    assert res.status == "stored" and res.skipped == 0
    flows = ws.con.sql("SELECT * FROM flows").to_arrow_table().to_pylist()
    by_tuple = {(f["orig_h"], f["orig_p"], f["resp_h"], f["resp_p"]): f for f in flows}
    checked = 0
    for s in truth()["scenarios"]:
        if s.get("transport") != "tcp":
            continue
        f = by_tuple[(s["client_ip"], s["client_port"], s["server_ip"], s["server_port"])]
        sent, received = s["client_sent"]["total"], s["client_received"]["total"]
        if s["protocol"] == "https":
            assert sent <= f["orig_bytes"] <= sent + tls_overhead(sent), s["id"]
            assert received <= f["resp_bytes"] <= received + tls_overhead(received), s["id"]
        else:
            assert (f["orig_bytes"], f["resp_bytes"]) == (sent, received), s["id"]
        assert f["direction"] == "outbound"
        assert f["external_name"] == s["server_name"], s["id"]
        assert f["open"] is s["open_at_capture_end"], s["id"]
        checked += 1
    assert checked == 11


def test_dns_lookups_and_the_outflow_ledger(ws):
    abfluss.ingest_file(ws, EXAMPLES / "demo.pcap")
    t = truth()
    dns = ws.con.sql("SELECT query, rcode FROM dns_raw").to_arrow_table()
    assert set(pc.unique(dns["query"]).to_pylist()) >= {s["query"] for s in t["scenarios"] if s.get("query")}
    nx = [s["query"] for s in t["scenarios"] if s.get("rcode") == "NXDOMAIN"]
    assert nx and all(("NXDOMAIN" in dns.filter(pc.equal(dns["query"], q))["rcode"].to_pylist()) for q in nx)
    top = abfluss.ledger(ws, abfluss.LedgerQuery(limit=2)).to_pylist()
    upload = next(s for s in t["scenarios"] if s["id"] == "upload-https")
    post = next(s for s in t["scenarios"] if s["id"] == "post-http")
    assert (top[0]["internal_host"], top[0]["external_name"]) == (upload["client_ip"], "upload.files-drop.test")
    assert upload["client_sent"]["total"] <= top[0]["bytes_out"] <= upload["client_sent"]["total"] + tls_overhead(upload["client_sent"]["total"])
    assert (top[1]["internal_host"], top[1]["bytes_out"]) == (post["client_ip"], post["client_sent"]["total"])
    assert abfluss.totals(ws)["open_flows"] == 1


def test_abfluss_demo_command(tmp_path):
    proc = run_cli("demo", "--report-dir", str(tmp_path / "report"), check=True)
    assert "upload.files-drop.test" in proc.stdout
    assert "1 stored, 0 already present, 0 failed" in proc.stdout
    assert "1 flow still open" in proc.stdout
    assert "medium    44  upload_heavy             10.10.0.12 sent 2.0 MB to upload.files-drop.test" in proc.stdout
    assert "EXFIL_INDICATED" in proc.stdout
    rep = json.loads((tmp_path / "report" / "report.json").read_text())
    assert rep["verdict"] == "EXFIL_INDICATED" and (tmp_path / "report" / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in (tmp_path / "report" / "notifications" / "default").iterdir())[:2] == [
        "art33.md", "art34.md"]
