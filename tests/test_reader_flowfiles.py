"""nfdump files, Argus binetflow and Squid access.log: read from real files, detected by content;
and files that are clearly no telemetry are ignored, not failed."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

import abfluss
from abfluss import readers
from abfluss.errors import InputError
from abfluss.readers import binetflow, nfdump, squid
from abfluss.readers.base import ReadReport
from abfluss.schema import conform, reader_schema

from conftest import EXAMPLES, data, run_cli

SQUID = EXAMPLES / "squid"


def read_all(path: Path) -> tuple[dict[str, pa.Table], ReadReport]:
    fmt, read = readers.detect(path)
    report = ReadReport(str(path), fmt)
    parts: dict[str, list] = {}
    for name, t in read(path, report):
        assert t.schema == reader_schema(name)
        parts.setdefault(name, []).append(t)
    tables = {k: pa.concat_tables(v) for k, v in parts.items()}
    assert {k: t.num_rows for k, t in tables.items()} == dict(report.records)
    return tables, report


# -- nfdump ---------------------------------------------------------------------------------

def test_nfdump_file_every_record_with_nfdumps_own_totals():
    path = data("slips/test1-malicious.nfdump")
    assert readers.detect(path)[0] == "nfdump"
    tabs, report = read_all(path)
    flows = tabs["flows"]
    # nfdump -I on the file: 4593 flows, 4652 packets, 241025 bytes (4576 TCP, 17 UDP)
    assert (flows.num_rows, report.skipped, report.format) == (4593, 0, "nfdump")
    assert pa.compute.sum(flows["orig_ip_bytes"]).as_py() + pa.compute.sum(flows["resp_ip_bytes"]).as_py() == 241025
    assert pa.compute.sum(flows["orig_pkts"]).as_py() + pa.compute.sum(flows["resp_pkts"]).as_py() == 4652
    # one record per direction: the answers (SYN-ACK, RST from port 902) are the responder's bytes
    assert pa.compute.count(flows["resp_ip_bytes"]).as_py() == 2278
    assert set(flows.filter(pa.compute.is_valid(flows["resp_ip_bytes"]))["resp_p"].to_pylist()) >= {902}
    assert flows["proto"].to_pylist().count("udp") == 17
    first = flows.slice(0, 1).to_pylist()[0]
    assert first["ts"] == datetime(2018, 1, 12, 15, 37, 30, 942000, tzinfo=timezone.utc)  # TZ=UTC, ms kept
    assert (first["orig_h"], first["orig_p"], first["resp_h"], first["resp_p"], first["history"]) == \
        ("147.32.80.119", 52324, "147.32.82.62", 902, "......S.")
    assert first["resp_ip_bytes"] is None and first["uid"] == "test1-malicious.nfdump:1"


def test_nfdump_read_at_once_and_one_by_one_agree(monkeypatch):
    """nfdump's JSON is parsed a part at a time by pyarrow; a part with any record that is not
    plain is read record by record. Both give the same rows (real file; crafted records)."""
    path = data("slips/test1-malicious.nfdump")
    at_once, report = read_all(path)
    monkeypatch.setattr(nfdump, "_bulk", lambda *a: None)
    one_by_one, report2 = read_all(path)
    assert at_once["flows"].equals(one_by_one["flows"]) and report.messages == report2.messages == []
    monkeypatch.undo()

    def rec(**kw):
        base = {"type": "FLOW", "first": "2024-01-01T00:00:01.5", "last": "2024-01-01T00:00:02", "proto": 6,
                "tcp_flags": "...A..S.", "src_port": 443, "dst_port": 50000, "src4_addr": "192.0.2.1",
                "dst4_addr": "10.0.0.1", "in_bytes": 60, "in_packets": 1}
        return {**base, **kw}

    records = [rec(), rec(type="EXPORTER"), rec(last="2024-01-01T00:00:00"), rec(tcp_flags="......S."),
               rec(proto=17, tcp_flags="", src_port=53, dst_port=3000, out_bytes=5, out_packets=1),
               rec(proto=58, src4_addr="", dst4_addr="", src6_addr="2001:db8::1", dst6_addr="2001:db8::2"),
               rec(src_port=70000)]
    text = ("[\n" + ",\n".join("{\n" + ",\n".join(f'\t"{k}" : {json.dumps(v)}' for k, v in r.items()) + "\n}"
                                 for r in records) + "\n]\n").encode()
    table, count = nfdump._bulk(text, 10, "x")
    out = {c: [] for c in nfdump._COLUMNS}
    for n, one in enumerate(nfdump._records(iter(text.splitlines(keepends=True))), 11):
        r = json.loads(one)
        if r["type"] == "FLOW":
            nfdump._row(r, f"x:{n}", out)
    assert count == 7 and table.equals(conform("flows", out))
    assert table.column("uid").to_pylist() == ["x:11", "x:13", "x:14", "x:15", "x:16", "x:17"]
    # what only the record-by-record reading says why about: left to it
    for bad in (rec(in_bytes=-1), rec(first="yesterday"), rec(src4_addr=None), rec(label="{x}")):
        one = ("{\n" + ",\n".join(f'\t"{k}" : {json.dumps(v)}' for k, v in bad.items()) + "\n}\n").encode()
        assert nfdump._bulk(one, 0, "x") is None, bad


def test_nfdump_cut_file_is_one_clear_error(tmp_path):
    """The file is one compressed block: cut anywhere, nfdump reads nothing and says why."""
    raw = data("slips/test1-malicious.nfdump").read_bytes()
    for size in (len(raw) // 2, len(raw) - 1000):
        cut = tmp_path / f"nfcapd.cut{size}"
        cut.write_bytes(raw[:size])
        assert readers.detect(cut)[0] == "nfdump"
        with pytest.raises(InputError, match=rf"nfcapd.cut{size}: record 1: nfdump: \S"):
            read_all(cut)


# -- Argus binetflow ---------------------------------------------------------------------------

#: file: (flows, skipped) — skips are the ARP, LLC and Argus management records (no IP flow)
BINETFLOW = {"test2-malicious.binetflow": (6751, 0), "test3-mixed.binetflow": (89, 0),
             "test4-malicious.binetflow": (392, 2), "test5-mixed.binetflow": (296, 4),
             "test11-portscan.binetflow": (66, 0)}


@pytest.mark.parametrize("name", sorted(BINETFLOW))
def test_binetflow_files(name):
    path = data(f"slips/binetflow/{name}")
    assert readers.detect(path)[0] == "argus-binetflow"
    tabs, report = read_all(path)
    assert (tabs["flows"].num_rows, report.skipped) == BINETFLOW[name]
    assert all("not an IP flow" in m for m in report.messages)


def test_binetflow_values_and_hex_ports(tmp_path):
    rows = read_all(data("slips/binetflow/test3-mixed.binetflow"))[0]["flows"].to_pylist()
    r = rows[2]  # 2018/12/18 14:00:00.595719,0.000181,tcp,2001:718:...,47428, ->,2a00:1450:...,443,SPA_SPA,..,2,376,135,1
    assert r["ts"] == datetime(2018, 12, 18, 14, 0, 0, 595719, tzinfo=timezone.utc)
    assert (r["orig_h"], r["orig_p"], r["resp_h"], r["resp_p"]) == \
        ("2001:718:2:1634:96de:80ff:fe7a:bdf0", 47428, "2a00:1450:400c:c00::bd", 443)
    assert (r["orig_ip_bytes"], r["resp_ip_bytes"], r["orig_pkts"], r["resp_pkts"]) == (135, 241, 1, 1)
    icmp = tmp_path / "icmp.binetflow"
    icmp.write_text("StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label\n"
                    "2019/04/04 16:24:47.5,1.5,icmp,10.8.0.69,0x0008,   ->,8.8.8.8,0x0000,ECO,0,0,2,196,98,\n"
                    "2019/04/04 16:24:48.5,x,tcp,10.8.0.69,1,   ->,8.8.8.8,2,S0,0,0,2,196,98,\n")
    tabs, report = read_all(icmp)
    [r] = tabs["flows"].to_pylist()
    assert (r["proto"], r["orig_p"], r["resp_p"], r["duration"]) == ("icmp", 8, 0, 1.5)
    assert report.messages == [f"{icmp}: line 3: bad Dur 'x'"]


def test_binetflow_unanswered_requests_are_s0():
    # test4: 192.168.2.12's SYNs to 64 hosts on 81/tcp, "REQ", 1 packet of 60 bytes, no SrcPkts column
    rows = read_all(data("slips/binetflow/test4-malicious.binetflow"))[0]["flows"].to_pylist()
    req = [r for r in rows if r["resp_p"] == 81]
    assert len(req) == 128 and {(r["conn_state"], r["orig_pkts"], r["resp_pkts"], r["resp_ip_bytes"]) for r in req} == {
        ("S0", 1, 0, 0)}
    answered = [r for r in rows if r["resp_ip_bytes"]]
    assert answered and all(r["conn_state"] is None and r["resp_pkts"] is None for r in answered)


# -- Squid access.log --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["access.log", "access-common.log", "access-combined.log"])
def test_squid_logs_name_the_real_destination(name):
    """Made by a real Squid 5.7 on loopback (lab/make_squid_sample.py): 3 GETs and a POST to
    www.example-shop.test, 8 CONNECT check-ins, an unresolvable name, a denied request, and the
    line Squid writes for a connection that sent no request (skipped)."""
    tabs, report = read_all(SQUID / name)
    assert report.format == "squid"
    assert dict(report.records) == {"flows": 14, "http": 6}
    assert report.messages == [f"{SQUID / name}: line 1: no request (error:transaction-end-before-headers)"]
    flows = tabs["flows"].to_pylist()
    beacons = [f for f in flows if f["server_name"] == "beacon.c2-example.test"]
    assert len(beacons) == 8 and {(f["resp_p"], f["resp_bytes"], f["service"]) for f in beacons} == {(8443, 109, None)}
    native = name == "access.log"  # only the native format logs the server address Squid used
    assert {f["resp_h"] for f in beacons} == {"127.0.0.3" if native else "beacon.c2-example.test"}
    assert {f["orig_h"] for f in flows} == {"127.0.0.1"} and all(f["orig_bytes"] is None for f in flows)
    http = tabs["http"].to_pylist()
    assert [(h["method"], h["uri"], h["status_code"]) for h in http] == [
        ("GET", "/", 200), ("GET", "/catalogue", 200), ("GET", "/basket", 200), ("POST", "/upload", 201),
        ("GET", "/", None), ("GET", "/", 403)]
    assert {h["user_agent"] for h in http} == {"lab-client/1.0" if "combined" in name else None}


def test_squid_native_times_are_start_and_end():
    first = read_all(SQUID / "access.log")[0]["flows"].to_pylist()[12]  # the 9998 ms unresolvable request
    assert first["duration"] == 9.998 and first["resp_h"] == "no-such-host.example.test"
    assert (first["ts_end"] - first["ts"]).total_seconds() == 9.998


def test_web_server_access_log_is_not_a_proxy_log(tmp_path):
    apache = tmp_path / "access.log"
    apache.write_text('10.0.0.5 - - [06/Dec/2026:19:32:40 +0000] "GET /index.html HTTP/1.1" 200 2272 "-" "curl/8"\n')
    assert not squid.sniff(apache.read_bytes())
    with pytest.raises(InputError, match="not a recognised format"):
        readers.detect(apache)


def test_squid_gzip_and_broken_line(tmp_path):
    lines = (SQUID / "access.log").read_bytes().splitlines(keepends=True)
    lines.insert(5, b"1796585560.412 garbage\n")
    gz = tmp_path / "access.log.1.gz"
    gz.write_bytes(gzip.compress(b"".join(lines)))
    tabs, report = read_all(gz)
    assert tabs["flows"].num_rows == 14 and report.skipped == 2
    assert report.messages[1] == f"{gz}: line 6: not a Squid access.log line"


# -- not telemetry -------------------------------------------------------------------------------

def test_readme_licence_and_expected_output_are_ignored_in_a_directory(tmp_path):
    """netflow-pmacct holds captures beside READMEs, the licence and the expected decoded JSON."""
    ws = abfluss.open_workspace(tmp_path / "ws", write=True)
    res = abfluss.ingest_paths(ws, [data("netflow-pmacct")])
    ws.close()
    assert sorted(r.status for r in res) == ["ignored"] * 7 + ["stored"] * 3
    why = {Path(r.path).name: r.error.split(": ", 1)[1] for r in res if r.status == "ignored"}
    assert why["LICENSE"] == "a licence text, not telemetry"
    assert why["README.md"] == "a Markdown document, not telemetry"
    assert why["output-flow-00.json"].startswith("JSON without the fields of a telemetry format abfluss reads")


def test_suricata_verify_yaml_and_rules_are_ignored(tmp_path):
    for rel in ("suricata-verify/zerologon/test.yaml", "suricata-verify/zerologon/test.rules",
                "wrccdc-zeek/README-source.md", "rita/LICENSE"):
        with pytest.raises(readers.NotTelemetry):
            readers.detect(data(rel))


def test_text_that_only_fails_to_parse_still_fails(tmp_path):
    for text in ("not a capture at all\n", "this is not a capture\n" * 10, "a,b,c\n1,2,3\n"):
        junk = tmp_path / "junk.pcap"
        junk.write_text(text)
        with pytest.raises(InputError, match="not a recognised format"):
            readers.detect(junk)


def test_new_formats_stored_through_the_cli(tmp_path):
    proc = run_cli("ingest", str(data("slips/test1-malicious.nfdump")), str(data("slips/binetflow")),
                   str(SQUID / "access.log"), workspace=tmp_path / "ws", check=True)
    assert "7 stored, 0 already present, 0 failed; 12,207 records read, 7 skipped" in proc.stdout
    inputs = json.loads(run_cli("inputs", "--format", "json", workspace=tmp_path / "ws").stdout)
    assert sorted({i["format"] for i in inputs}) == ["argus-binetflow", "nfdump", "squid"]


def test_nfdump_missing_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="needs the nfdump program"):
        list(nfdump.read(data("slips/test1-malicious.nfdump"), ReadReport("x")))
    assert binetflow.sniff(b"StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,TotBytes,SrcBytes\n")
