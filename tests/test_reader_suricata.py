"""Suricata eve.json reader: golden counts and rows, DNS merging, bad and truncated input."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from abfluss.errors import InputError
from abfluss.readers import suricata
from abfluss.readers.base import ReadReport, read_head
from abfluss.schema import reader_schema

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EVE = DATA / "slips" / "test6-malicious.suricata.json"


def test_data_present():
    assert EVE.is_file(), f"test data missing: {EVE}"


def read(path: Path, report: ReadReport | None = None) -> tuple[dict[str, pa.Table], ReadReport]:
    report = report or ReadReport(path=str(path))
    parts: dict[str, list[pa.Table]] = {}
    for name, table in suricata.read(path, report):
        assert table.schema == reader_schema(name)
        assert table.num_rows > 0
        parts.setdefault(name, []).append(table)
    tables = {name: pa.concat_tables(ts) for name, ts in parts.items()}
    assert dict(report.records) == {name: t.num_rows for name, t in tables.items()}
    return tables, report


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def counts(tables: dict[str, pa.Table]) -> dict[str, int]:
    return {name: t.num_rows for name, t in tables.items()}


def eve_counts(lines: list[bytes]) -> Counter:
    """Event types of the lines, decoded independently of the reader."""
    return Counter(json.loads(line)["event_type"] for line in lines if line.strip())


def rows_where(table: pa.Table, column: str, value) -> list[dict]:
    return table.filter(pc.equal(table.column(column), value)).to_pylist()


# --- sniff ----------------------------------------------------------------------------------------

def test_sniff():
    assert suricata.sniff(read_head(EVE), EVE)
    assert suricata.sniff(b'\n{"timestamp": "2024-01-01T00:00:00Z", "event_type": "stats"}\n')
    zeek_json = DATA / "wrccdc-zeek" / "zeek-json" / "dns.json.gz"
    zeek_tsv = DATA / "slips" / "test9-mixed-zeek" / "conn.log"
    pcap = DATA / "slips" / "test12-icmp-portscan.pcap"
    for other in (zeek_json, zeek_tsv, pcap):
        assert other.exists(), other
        assert not suricata.sniff(read_head(other), other), other
    assert not suricata.sniff(b'{"timestamp": "2024-01-01T00:00:00Z"}\n')  # no event_type
    assert not suricata.sniff(b"")
    big = b'{"timestamp": "2024-01-01T00:00:00Z", "event_type": "stats", "stats": {"x": "' + b"y" * 70000
    assert suricata.sniff(big[:65536])  # first line longer than the head
    assert not suricata.sniff(b"not json\n" + big)


# --- golden: slips test6 ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def golden():
    return read(EVE)


def test_golden_counts(golden):
    tables, report = golden
    assert report.format == "suricata-eve" and report.skipped == 0 and report.messages == []
    # events: flow 3512, alert 745, dns 680, http 56, tls 1 (+ fileinfo 3, anomaly 3: no rows).
    # The 680 dns events are 340 queries and 340 v2 answers; each answer is merged into its query
    # (same flow_id and DNS id, same name and type), so one row per query: 340.
    assert counts(tables) == {"flows": 3512, "alerts": 745, "dns": 340, "http": 56, "tls": 1}
    dns = tables["dns"]
    assert dns.column("rcode").to_pylist() == ["NOERROR"] * 340  # every query found its answer
    assert sum(len(a) for a in dns.column("answers").to_pylist()) == 944


def test_golden_flow_sums_and_states(golden):
    flows = golden[0]["flows"]
    assert pc.sum(flows.column("orig_ip_bytes")).as_py() == 4381935
    assert pc.sum(flows.column("resp_ip_bytes")).as_py() == 648694
    assert pc.sum(flows.column("orig_pkts")).as_py() == 30191
    assert pc.sum(flows.column("resp_pkts")).as_py() == 8980
    assert flows.column("orig_bytes").null_count == flows.column("resp_bytes").null_count == 3512
    assert Counter(flows.column("proto").to_pylist()) == {"tcp": 2336, "udp": 1176}
    # closed 1980 -> SF; established 537 -> S1 (TCP, 338) or SF (UDP, 199); new 995 -> S0 977, OTH 18
    assert Counter(flows.column("conn_state").to_pylist()) == {"SF": 2179, "S0": 977, "S1": 338, "OTH": 18}
    # app_proto "failed" (Suricata looked and identified nothing) is "", no app_proto at all null
    assert Counter(flows.column("service").to_pylist()) == {None: 2281, "": 1074, "dns": 101, "http": 53, "tls": 2,
                                                            "ntp": 1}
    assert set(flows.column("open").to_pylist()) == {False}
    assert len(set(flows.column("uid").to_pylist())) == 3512


def test_golden_rows(golden):
    tables = golden[0]
    # line 687: flow of the first HTTP event
    assert rows_where(tables["flows"], "uid", "1300129227356448") == [{
        "ts": utc("2021-06-06T17:41:54.276768+02:00"), "ts_end": utc("2021-06-06T17:43:28.321620+02:00"),
        "duration": pytest.approx(94.044852), "proto": "tcp", "orig_h": "182.237.17.202", "orig_p": 59502,
        "resp_h": "192.168.1.129", "resp_p": 80, "orig_bytes": None, "resp_bytes": None,
        "orig_ip_bytes": 3724, "resp_ip_bytes": 888, "orig_pkts": 22, "resp_pkts": 12, "service": "http",
        "server_name": None, "user_agent": None, "conn_state": "S1", "history": None, "missed_bytes": None,
        "open": False, "community_id": None, "uid": "1300129227356448", "orig_mac": None, "resp_mac": None}]
    # line 686
    assert rows_where(tables["http"], "uid", "1300129227356448") == [{
        "ts": utc("2021-06-06T15:57:37.272281+02:00"), "uid": "1300129227356448",
        "orig_h": "182.237.17.202", "orig_p": 59502, "resp_h": "192.168.1.129", "resp_p": 80,
        "method": "GET", "host": "147.32.82.197", "uri": "/",
        "user_agent": "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/52.0.2743.116 Safari/537.36",
        "request_body_len": None, "response_body_len": 0, "status_code": None, "resp_mime_types": None}]
    # lines 18 and 22 (two queries, tx 0 and 1), answered by lines 26 and 30
    dns = rows_where(tables["dns"], "uid", "1419339999887459")
    assert [r["ts"] for r in dns] == [utc("2021-06-06T16:15:30.868451+02:00"), utc("2021-06-06T16:15:30.868458+02:00")]
    for r in dns:
        assert {k: v for k, v in r.items() if k != "ts"} == {
            "uid": "1419339999887459", "orig_h": "192.168.1.129", "orig_p": 39422, "resp_h": "192.168.1.1",
            "resp_p": 53, "proto": "udp", "trans_id": 2, "query": "www.myedimax.com", "qtype": "A",
            "rcode": "NOERROR", "answers": ["ddns.myedimax.com", "ns.myedimax.com", "122.248.252.67"],
            "answer_types": ["CNAME", "CNAME", "A"],
            "ttls": [580.0, 280.0, 580.0], "query_bytes": None, "answer_bytes": None}
    # line 113
    assert tables["tls"].to_pylist() == [{
        "ts": utc("2021-06-06T16:54:00.074627+02:00"), "uid": "262898731971351", "orig_h": "192.168.1.129",
        "orig_p": 60316, "resp_h": "122.248.252.67", "resp_p": 55443, "version": "TLS 1.1",
        "server_name": "www.myedimax.com", "ja3": "b7202231ff2db28363c109cedc6d1642", "ja4": None,
        "subject": "OU=Domain Control Validated, CN=www.myedimax.com",
        "issuer": "C=BE, O=GlobalSign nv-sa, CN=AlphaSSL CA - SHA256 - G2", "established": None,
        # the server's fingerprint, the certificate's SHA-1 (colons dropped) and validity
        "ja3s": "ad90cab724fafab2660fbf61673c91a9", "validation_status": None, "cert_fuids": None,
        "cert_sha1": "2dd19f809986fcac5f2a2afda3f37e967cdd2437",
        "not_before": utc("2020-03-19T09:44:08+00:00"), "not_after": utc("2022-03-20T09:44:08+00:00")}]
    # line 1
    assert tables["alerts"].slice(0, 1).to_pylist() == [{
        "ts": utc("2021-06-06T15:59:46.457984+02:00"), "uid": "1374195536821504", "orig_h": "78.36.196.213",
        "orig_p": 51698, "resp_h": "192.168.1.129", "resp_p": 445, "proto": "tcp",
        "signature": "ET CINS Active Threat Intelligence Poor Reputation IP group 89",
        "signature_id": 2403388, "category": "Misc Attack", "severity": 2, "community_id": None}]
    assert Counter(tables["alerts"].column("severity").to_pylist()) == {2: 741, 1: 2, 3: 2}
    assert pc.sum(tables["http"].column("response_body_len")).as_py() == 610


def test_gzip_gives_the_same(tmp_path, golden):
    gz = tmp_path / "eve.json.gz"
    gz.write_bytes(gzip.compress(EVE.read_bytes()))
    assert suricata.sniff(read_head(gz), gz)
    tables, report = read(gz)
    assert report.skipped == 0
    for name, table in golden[0].items():
        assert tables[name].equals(table), name


def test_batches_are_bounded(monkeypatch):
    monkeypatch.setattr(suricata, "CHUNK", 500)
    report = ReadReport(path=str(EVE))
    sizes: Counter = Counter()
    for name, table in suricata.read(EVE, report):
        assert table.num_rows <= 500
        sizes[name] += table.num_rows
    assert {k: sizes[k] for k in ("flows", "alerts", "http", "tls")} == {
        "flows": 3512, "alerts": 745, "http": 56, "tls": 1}
    # a query and its answer on either side of a chunk boundary give two rows
    assert 340 <= sizes["dns"] <= 680 and report.skipped == 0


# --- bad input ----------------------------------------------------------------------------------------

def test_garbage_lines_are_skipped_and_named(tmp_path):
    lines = EVE.read_bytes().splitlines(keepends=True)
    garbage = {  # new line number -> inserted line
        1: b"garbage {\n",
        12: b"[1, 2, 3]\n",
        103: b'{"event_type": "flow", "timestamp": "not a time", "flow": {}}\n',
        104: b'{"timestamp": "2021-06-06T15:57:37+0200", "src_ip": "1.2.3.4"}\n',
        105: b'{"event_type": "flow", "timestamp": "2021-06-06T15:57:37+0200", "src_ip": "1.2.3.4", '
             b'"dest_ip": "5.6.7.8"}\n',
        106: b"\n",  # blank: ignored, not counted
        107: b'{"event_type": "flow", "timestamp": "2021-06-06T15:57:37+0200", "src_ip": "1.2.3.4", '
             b'"dest_ip": "5.6.7.8", "flow": {"start": "soon"}}\n',
        2000: b"\xff\xfe\x00binary\n",
        2001: b'{"event_type": "dns", "timestamp": "2021-06-06T15:57:37+0200", "dns": {"type": "other"}}\n',
    }
    out, it = [], iter(lines)
    for n in range(1, len(lines) + len(garbage) + 1):
        out.append(garbage[n] if n in garbage else next(it))
    bad = tmp_path / "eve-bad.json"
    bad.write_bytes(b"".join(out))
    tables, report = read(bad)
    assert counts(tables) == {"flows": 3512, "alerts": 745, "dns": 340, "http": 56, "tls": 1}
    assert report.skipped == 8
    prefix = f"{bad}: "
    msgs = [m.removeprefix(prefix) for m in report.messages]
    assert all(m.startswith(prefix) for m in report.messages)
    assert msgs[0].startswith("line 1: invalid JSON: ")
    assert msgs[1:6] == [
        "line 12: not an eve event (needs event_type and timestamp)",
        "line 103: flow event: bad timestamp 'not a time'",
        "line 104: not an eve event (needs event_type and timestamp)",
        "line 105: flow event: flow event without a 'flow' object",
        "line 107: flow event: bad timestamp 'soon'",
    ]
    assert msgs[6].startswith("line 2000: invalid JSON: ")
    assert msgs[7] == "line 2001: dns event: dns event of unknown type 'other'"


def test_truncated_mid_line(tmp_path):
    lines = EVE.read_bytes().splitlines(keepends=True)
    cut = tmp_path / "eve-cut.json"
    cut.write_bytes(b"".join(lines[:2499]) + lines[2499][: len(lines[2499]) // 2])
    tables, report = read(cut)
    events = eve_counts(lines[:2499])
    queries = sum(1 for line in lines[:2499] if b'"type":"query"' in line)
    assert counts(tables) == {"flows": events["flow"], "alerts": events["alert"], "dns": queries,
                              "http": events["http"], "tls": events["tls"]}
    assert report.skipped == 1
    assert report.messages[0].startswith(f"{cut}: line 2500: invalid JSON (line cut off): ")


def test_truncated_gzip(tmp_path):
    data = gzip.compress(EVE.read_bytes())
    cut = tmp_path / "eve-cut.json.gz"
    cut.write_bytes(data[: len(data) // 2])
    tables, report = read(cut)
    assert 0 < tables["flows"].num_rows < 3512
    assert report.skipped >= 1 and any("truncated" in m for m in report.messages)


def test_nothing_readable_raises(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"not json\n{also not}\n")
    with pytest.raises(InputError, match="no readable Suricata eve event"):
        read(bad)
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    with pytest.raises(InputError):
        read(empty)


def test_other_event_types_give_nothing(tmp_path):
    path = tmp_path / "eve.json"
    events = [
        {"timestamp": "2024-05-01T10:00:00.000000+0000", "event_type": "stats", "stats": {"uptime": 10}},
        {"timestamp": "2024-05-01T10:00:01.000000+0000", "event_type": "fileinfo", "fileinfo": {"size": 3}},
        {"timestamp": "2024-05-01T10:00:02.000000+0000", "event_type": "anomaly", "anomaly": {}},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    tables, report = read(path)
    assert tables == {} and report.skipped == 0


# --- DNS styles ---------------------------------------------------------------------------------------

def _dns(ts: str, dns: dict, client_first: bool = True, flow_id: int = 11) -> dict:
    ends = [("10.0.0.5", 40000), ("10.0.0.53", 53)]
    (src, sport), (dst, dport) = ends if client_first else ends[::-1]
    return {"timestamp": f"2024-05-01T10:00:{ts}+0000", "flow_id": flow_id, "event_type": "dns",
            "src_ip": src, "src_port": sport, "dest_ip": dst, "dest_port": dport, "proto": "UDP", "dns": dns}


def test_dns_v1_v3_and_answer_only(tmp_path):
    events = [
        # eve dns v1: one answer event per resource record
        _dns("00.1", {"type": "query", "id": 1, "rrname": "a.example", "rrtype": "A", "tx_id": 0}),
        _dns("00.2", {"type": "answer", "id": 1, "rcode": "NOERROR", "rrname": "a.example", "rrtype": "CNAME",
                      "ttl": 60, "rdata": "b.example"}, client_first=False),
        _dns("00.3", {"type": "answer", "id": 1, "rcode": "NOERROR", "rrname": "b.example", "rrtype": "A",
                      "ttl": 30, "rdata": "192.0.2.7"}, client_first=False),
        # eve dns v3 (Suricata 8): request / response with a queries list
        _dns("01.0", {"version": 3, "type": "request", "id": 7,
                      "queries": [{"rrname": "t.exfil.test", "rrtype": "TXT"}]}, flow_id=12),
        _dns("01.1", {"version": 3, "type": "response", "id": 7, "rcode": "NXDOMAIN",
                      "queries": [{"rrname": "t.exfil.test", "rrtype": "TXT"}]}, client_first=False, flow_id=12),
        # v2 answer, grouped format only, its query not logged: a row of its own, client as orig
        _dns("02.0", {"version": 2, "type": "answer", "id": 9, "rrname": "c.example", "rrtype": "AAAA",
                      "rcode": "NOERROR", "grouped": {"AAAA": ["2001:db8::1"]}}, client_first=False, flow_id=13),
        # a query never answered
        _dns("03.0", {"type": "query", "id": 4, "rrname": "d.example", "rrtype": "MX", "tx_id": 0}, flow_id=14),
    ]
    path = tmp_path / "eve.json"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    tables, report = read(path)
    assert report.skipped == 0
    got = [(r["uid"], r["ts"].strftime("%S.%f"), r["orig_h"], r["resp_p"], r["trans_id"], r["query"], r["qtype"],
            r["rcode"], r["answers"], r["ttls"]) for r in tables["dns"].to_pylist()]
    assert got == [
        ("11", "00.100000", "10.0.0.5", 53, 1, "a.example", "A", "NOERROR", ["b.example", "192.0.2.7"], [60.0, 30.0]),
        ("12", "01.000000", "10.0.0.5", 53, 7, "t.exfil.test", "TXT", "NXDOMAIN", [], []),
        ("13", "02.000000", "10.0.0.5", 53, 9, "c.example", "AAAA", "NOERROR", ["2001:db8::1"], []),
        ("14", "03.000000", "10.0.0.5", 53, 4, "d.example", "MX", None, None, None),
    ]


# --- bulk and line-by-line reading agree ---------------------------------------------------------

def _edge_events() -> list[dict]:
    """DNS in every style, ICMP endpoints, out-of-range ports, a reset, odd certificate times."""
    a = {"src_ip": "10.0.0.53", "src_port": 53, "dest_ip": "10.0.0.5", "dest_port": 40000, "proto": "UDP"}
    q = {"src_ip": "10.0.0.5", "src_port": 40000, "dest_ip": "10.0.0.53", "dest_port": 53, "proto": "UDP"}
    ts = "2024-05-01T10:00:0{}.1+0000"
    return [
        {"timestamp": ts.format(0), "flow_id": 11, "event_type": "dns", **q,
         "dns": {"type": "query", "id": 1, "rrname": "a.example", "rrtype": "A"}},
        {"timestamp": ts.format(0), "flow_id": 11, "event_type": "dns", **a,
         "dns": {"type": "answer", "id": 1, "rcode": "NOERROR", "rrname": "a.example", "rrtype": "CNAME", "ttl": 60,
                 "rdata": "b.example"}},
        {"timestamp": ts.format(0), "flow_id": 11, "event_type": "dns", **a,
         "dns": {"type": "answer", "id": 1, "rrname": "b.example", "rrtype": "A", "ttl": 30, "rdata": "192.0.2.7"}},
        {"timestamp": ts.format(1), "flow_id": 12, "event_type": "dns", **q,
         "dns": {"version": 3, "type": "request", "id": 7, "queries": [{"rrname": "t.exfil.test", "rrtype": "TXT"}]}},
        {"timestamp": ts.format(1), "flow_id": 12, "event_type": "dns", **a,
         "dns": {"version": 3, "type": "response", "id": 7, "rcode": "NXDOMAIN",
                 "queries": [{"rrname": "t.exfil.test", "rrtype": "TXT"}],
                 "answers": [{"rrname": "x", "rrtype": "", "ttl": 5, "rdata": "q"},
                             {"rrname": "y", "rrtype": "A", "rdata": "1.2.3.4"}, {"rrname": "z", "rrtype": "SOA", "ttl": 9}]}},
        {"timestamp": ts.format(2), "flow_id": 13, "event_type": "dns", **a, "proto": "17",
         "dns": {"version": 2, "type": "answer", "id": 9, "rrname": "c.example", "rrtype": "AAAA", "answers": []}},
        {"timestamp": ts.format(3), "flow_id": 15, "event_type": "dns", **q,
         "dns": {"type": "answer", "id": 4, "rrname": "d.example", "rrtype": "MX", "ttl": 7}},
        {"timestamp": ts.format(4), "event_type": "flow", "src_ip": "10.0.0.5", "dest_ip": "10.0.0.6", "proto": "ICMP",
         "icmp_type": 8, "icmp_code": 0, "flow": {"pkts_toserver": 1, "pkts_toclient": 0, "bytes_toserver": 84,
                                                  "start": "2024-05-01T10:00:03.5+0000", "state": "new"}},
        {"timestamp": ts.format(5), "event_type": "tls", "flow_id": 99, **q, "proto": "TCP",
         "tls": {"sni": "x", "fingerprint": "AA:bb:cc", "notbefore": "2016-06-07T00:00:00",
                 "notafter": "9999-12-31T23:00:00", "ja3": {"hash": "h"}}},
        {"timestamp": ts.format(6), "event_type": "flow", "flow_id": 5, **q, "src_port": 70000, "dest_port": -1,
         "proto": "tcp", "app_proto": "failed", "tcp": {"rst": True},
         "flow": {"pkts_toserver": 1, "pkts_toclient": 2, "start": "2024-05-01T10:00:05.5+0000",
                  "end": "2024-05-01T10:00:06.0+0000", "state": "new"}},
        # with eve's ``ethernet: yes``: a flow lists the MACs it saw, a packet event names one
        {"timestamp": ts.format(7), "event_type": "flow", "flow_id": 6, **q, "proto": "udp",
         "ether": {"src_macs": ["02:00:00:00:00:0A", "02:00:00:00:00:0b"], "dest_macs": ["02:00:00:00:00:01"]},
         "flow": {"pkts_toserver": 1, "pkts_toclient": 1, "start": "2024-05-01T10:00:07.0+0000",
                  "end": "2024-05-01T10:00:07.5+0000", "state": "established"}},
        {"timestamp": ts.format(8), "event_type": "flow", "flow_id": 7, **q, "proto": "udp",
         "ether": {"src_mac": "02:00:00:00:00:0c", "dest_mac": ""},
         "flow": {"pkts_toserver": 1, "pkts_toclient": 1, "start": "2024-05-01T10:00:08.0+0000",
                  "end": "2024-05-01T10:00:08.5+0000", "state": "established"}},
    ]


def test_ethernet_addresses_of_flows(tmp_path):
    path = tmp_path / "eve.json"
    path.write_text("".join(json.dumps(e) + "\n" for e in _edge_events()))
    tables, _ = read(path)
    got = {r["uid"]: (r["orig_mac"], r["resp_mac"]) for r in tables["flows"].to_pylist()}
    assert got["6"] == ("02:00:00:00:00:0a", "02:00:00:00:00:01") and got["7"] == ("02:00:00:00:00:0c", None)
    assert got["5"] == (None, None)  # no ``ether`` object: unknown


def _recorded(parse, used: list):
    """``parse`` that also appends each result to ``used`` (blocks are parsed on several threads:
    each call returns its own result, not the last one appended)."""
    def recorded(*a):
        block = parse(*a)
        used.append(block)
        return block
    return recorded


@pytest.mark.parametrize("source", ["golden", "edge"])
def test_bulk_and_line_reading_agree(tmp_path, monkeypatch, source):
    """A block of plain lines is read in bulk (``_eve_fast``); every other block line by line.
    Both give the same rows, counts and messages."""
    from abfluss.readers import _eve_fast

    path = EVE
    if source == "edge":
        path = tmp_path / "eve.json"
        path.write_text("".join(json.dumps(e) + "\n" for e in _edge_events()))
    parse, used = _eve_fast.parse, []
    monkeypatch.setattr(_eve_fast, "parse", _recorded(parse, used))
    bulk, bulk_report = read(path)
    assert used and all(b is not None for b in used)  # every block was read in bulk
    monkeypatch.setattr(_eve_fast, "parse", lambda *a: None)
    lines, line_report = read(path)
    assert bulk.keys() == lines.keys()
    for name in bulk:
        assert bulk[name].equals(lines[name]), name
    assert (bulk_report.skipped, bulk_report.messages) == (line_report.skipped, line_report.messages)


def test_dns_merging_agrees_across_mixed_blocks_and_chunks(tmp_path, monkeypatch):
    """DNS rows point at their events wherever those came from: blocks read in bulk and blocks
    read line by line (a garbage line sends its block there) mixed in one chunk, queries and
    answers on either side of block and chunk ends, the same query asked twice, answers before
    their query. Reading it all line by line gives the same rows, counts and messages."""
    import random

    from abfluss.readers import _eve_fast

    lines = EVE.read_text().splitlines()
    dns = [x for x in lines if json.loads(x)["event_type"] == "dns"]
    edge = [json.dumps(e) for e in _edge_events()]
    rnd = random.Random(7)
    pool = dns * 2 + edge * 10 + rnd.sample(lines, 300)
    rnd.shuffle(pool)
    out = []
    for n, x in enumerate(pool):
        if n % 211 == 5:
            out.append("garbage {")
        out.append(x)
    path = tmp_path / "eve.json"
    path.write_text("\n".join(out) + "\n")
    monkeypatch.setattr(suricata, "BLOCK", 1 << 16)
    monkeypatch.setattr(suricata, "CHUNK", 97)
    parse, used = _eve_fast.parse, []
    monkeypatch.setattr(_eve_fast, "parse", _recorded(parse, used))
    bulk, bulk_report = read(path)
    assert any(b is None for b in used) and any(b is not None and len(b.dns) for b in used)
    monkeypatch.setattr(_eve_fast, "parse", lambda *a: None)
    by_line, line_report = read(path)
    assert bulk.keys() == by_line.keys() and bulk["dns"].num_rows > 700
    for name in bulk:
        assert bulk[name].equals(by_line[name]), name
    assert (bulk_report.skipped, bulk_report.messages) == (line_report.skipped, line_report.messages)
    assert bulk_report.skipped == len(out) - len(pool)


def test_suricata_timestamps_read_by_numpy_as_arrow_and_python_read_them(monkeypatch):
    """Timestamps in Suricata's own form are read from their bytes with NumPy
    (``_eve_fast._suricata_times``): the same instants as the regular expression with Arrow's
    parser and as the line reader; any other form or an impossible value leaves it to those."""
    from abfluss.readers import _eve_fast as fast

    def general(col):
        with monkeypatch.context() as m:
            m.setattr(fast, "_suricata_times", lambda c, mx: None)
            return fast._times(col, fast._TS_RE, suricata.MAX_US)

    events = [json.loads(x) for x in EVE.read_text().splitlines()]
    real = [e["timestamp"] for e in events] + [e["flow"][k] for e in events for k in ("start", "end") if k in e.get("flow", {})]
    col = pa.array(real + [None]).slice(1)  # a null and an offset, as struct fields and slices have them
    got = fast._suricata_times(col, suricata.MAX_US)
    assert got is not None and got.equals(general(col))
    assert got.cast(pa.int64()).to_pylist()[:100] == [suricata._ts(v) for v in real[1:101]]
    good = ["2024-02-29T23:59:59.999999+0000", "1970-01-01T00:00:00.000000+0000", "2021-06-06T00:30:00.000001+0200",
            "1999-12-31T23:00:00.500000-1130", "9999-12-30T12:00:00.000000+0000"]
    bad = ["2023-02-29T00:00:00.000000+0000", "2100-02-29T00:00:00.000000+0000", "2024-04-31T00:00:00.000000+0000",
           "2024-13-01T00:00:00.000000+0000", "2024-01-01T24:00:00.000000+0000", "2024-01-01T00:60:00.000000+0000",
           "2024-01-01T00:00:60.000000+0000", "2024-01-01T00:00:00.000000+2400", "2024-01-01T00:00:00.000000+0060",
           "1969-12-31T23:59:59.999999+0000", "1970-01-01T00:30:00.000000+0100", "2024-01-01 00:00:00.000000+0000",
           "2024-01-01T00:00:00.000000*0000", "2024-01-01T0a:00:00.000000+0000", "2024-01-01T00:00:00.00000+00:00",
           "9999-12-31T12:00:00.000000+0000"]
    for v in good:
        assert fast._suricata_times(pa.array([v]), suricata.MAX_US).cast(pa.int64()).to_pylist() == [suricata._ts(v)], v
    for v in bad:
        assert fast._suricata_times(pa.array([v]), suricata.MAX_US) is None, v
        g = general(pa.array([v]))
        assert g is None or g.cast(pa.int64()).to_pylist() == [suricata._ts(v)], v  # the usual way decides
