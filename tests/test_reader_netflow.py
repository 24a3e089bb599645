"""NetFlow v5/v9/IPFIX reader: pmacct's decoded records, akvorado's asserted values, template state."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import dpkt
import pyarrow as pa
import pytest

from abfluss.errors import InputError
from abfluss.readers import netflow
from abfluss.readers.base import ReadReport, read_head
from abfluss.schema import reader_schema

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PMACCT = DATA / "netflow-pmacct"
AKV = DATA / "netflow-akvorado"
# pmacct prints protocol names from /etc/protocols; the flows table uses these
PMACCT_PROTO = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "ipv6-icmp": "icmp6", "vrrp": "112"}


def test_data_present():
    assert PMACCT.is_dir() and AKV.is_dir(), f"test data missing under {DATA}"


def decode(*paths: Path) -> tuple[list[dict], ReadReport]:
    report = ReadReport(path=str(paths[0]))
    tables = list(netflow.read_many(list(paths), report) if len(paths) > 1 else netflow.read(paths[0], report))
    for name, table in tables:
        assert name == "flows" and table.schema == reader_schema("flows")
    rows = pa.concat_tables([t for _, t in tables]).to_pylist() if tables else []
    assert report.records["flows"] == len(rows)
    return rows, report


def ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def key(r: dict) -> tuple:
    return (r["orig_h"], r["resp_h"], r["orig_p"], r["resp_p"], r["proto"], r["orig_pkts"], r["orig_ip_bytes"])


# --- pmacct: traffic-00.pcap against nfacctd's output-flow-00.json --------------------------------

@pytest.mark.parametrize("case", ["100-IPFIXv10-CISCO", "101-NFv9-CISCO-cust_primitives",
                                  "104-IPFIXv10-IPv6-CISCO-sampling_option"])
def test_pmacct_golden(case):
    case_dir = PMACCT / case
    assert case_dir.is_dir(), f"missing {case_dir}"
    expected = [json.loads(line) for line in (case_dir / "output-flow-00.json").read_text().splitlines() if line]
    rows, report = decode(case_dir / "traffic-00.pcap")
    assert report.skipped == 0 and report.messages == []
    want = Counter((e["ip_src"], e["ip_dst"], e["port_src"], e["port_dst"], PMACCT_PROTO[e["ip_proto"]],
                    e["packets"], e["bytes"]) for e in expected)
    got = Counter(key(r) for r in rows)
    assert want - got == Counter(), "records of pmacct not found"
    assert got == want  # and nothing more: one row per record
    assert all(r["resp_ip_bytes"] is None and r["resp_pkts"] is None and r["open"] is False for r in rows)
    assert len({r["uid"] for r in rows}) == len(rows)


def test_pmacct_nfv9_timestamps_within_a_second():
    """pmacct prints whole seconds (unix_secs - whole seconds of uptime difference); we keep the ms."""
    case_dir = PMACCT / "101-NFv9-CISCO-cust_primitives"
    expected = [json.loads(line) for line in (case_dir / "output-flow-00.json").read_text().splitlines() if line]
    rows, _ = decode(case_dir / "traffic-00.pcap")
    ours = sorted((key(r), r["ts"].timestamp(), r["ts_end"].timestamp()) for r in rows)
    theirs = sorted(((e["ip_src"], e["ip_dst"], e["port_src"], e["port_dst"], PMACCT_PROTO[e["ip_proto"]],
                      e["packets"], e["bytes"]), float(e["timestamp_start"]), float(e["timestamp_end"]))
                    for e in expected)
    assert len(ours) == len(theirs) == 51
    for (k1, start, end), (k2, p_start, p_end) in zip(ours, theirs):
        assert k1 == k2
        assert 0 <= p_start - start < 1 and 0 <= p_end - end < 1


def test_pmacct_ipfix_sampling_option_renormalises():
    """Options template 257 (selectorId 1, samplingSize 1, samplingPopulation 256) -> x256, as nfacctd."""
    rows, _ = decode(PMACCT / "104-IPFIXv10-IPv6-CISCO-sampling_option" / "traffic-00.pcap")
    icmp = [r for r in rows if r["proto"] == "icmp6"]
    assert [(icmp[0]["orig_h"], icmp[0]["resp_h"], icmp[0]["orig_pkts"], icmp[0]["orig_ip_bytes"])] == [
        ("fe80::fa53:29ff:fe3a:3152", "fe80::ea5c:aff:fe3b:fc00", 256, 18432)]
    assert all(r["orig_pkts"] % 256 == 0 for r in rows)


def test_pmacct_ipfix_absolute_times():
    rows, _ = decode(PMACCT / "100-IPFIXv10-CISCO" / "traffic-00.pcap")
    first = [r for r in rows if r["orig_h"] == "10.231.65.56"]
    assert len(first) == 1  # flowStart/EndMilliseconds 1677577561088 / 1677577572352
    assert first[0]["ts"] == ts(1677577561.088) and first[0]["ts_end"] == ts(1677577572.352)
    assert first[0]["duration"] == pytest.approx(11.264)


# --- akvorado test captures: values asserted in outlet/flow/decoder/netflow/root_test.go -----------

def test_akvorado_nfv5():
    rows, report = decode(AKV / "nfv5.pcap")
    assert len(rows) == 29 and report.skipped == 0
    r = rows[0]
    assert (r["orig_h"], r["resp_h"], r["orig_p"], r["resp_p"], r["proto"]) == (
        "161.202.212.212", "202.152.70.24", 30104, 11963, "tcp")
    assert (r["orig_ip_bytes"], r["orig_pkts"]) == (133, 1)
    # header unix_secs 1680626679, sysUptime 2874339000 ms, first switched 2874324000 ms: 15 s earlier
    assert r["ts"] == ts(1680626679 - 15) and r["uid"] == "10.19.144.41:3:1961402419:0"


AKV_DATA = [  # TestDecode: template.pcap then data.pcap
    ("198.38.121.178", "91.170.143.87", 443, 19624, 1500, 1, 944948659),
    ("198.38.121.219", "88.122.57.97", 443, 2444, 1500, 1, 944948659),
    ("173.194.190.106", "37.165.129.20", 443, 53697, 1400, 1, 944948660),
    ("74.125.100.234", "88.120.219.117", 443, 52300, 1448, 1, 944948661),
]


def test_akvorado_templates_in_another_file():
    rows, report = decode(AKV / "template.pcap", AKV / "data.pcap")
    assert report.skipped == 0
    got = [(r["orig_h"], r["resp_h"], r["orig_p"], r["resp_p"], r["orig_ip_bytes"], r["orig_pkts"]) for r in rows]
    assert got == [a[:6] for a in AKV_DATA]
    assert {r["proto"] for r in rows} == {"tcp"}
    # TestDecodeTimestampFromFirstSwitched: packet time 1647285928 s, sysUptime 944951609 ms
    assert [r["ts"] for r in rows] == [ts(1647285928 - (944951609 - a[6]) / 1000) for a in AKV_DATA]


def test_akvorado_data_without_template_is_skipped_with_packet_number():
    rows, report = decode(AKV / "data.pcap")
    assert rows == [] and report.skipped == 1
    assert report.messages == [f"{AKV / 'data.pcap'}: packet 1: data set for template 260 not seen yet "
                               "(exporter 192.0.2.100, domain 0); set skipped"]


def test_akvorado_options_sampling_rate():
    """Options data announce sampler 1 at 1:30000 (akvorado: SamplingRate 30000); counters renormalised."""
    rows, report = decode(*(AKV / f for f in ("options-template.pcap", "options-data.pcap",
                                              "template.pcap", "data.pcap")))
    assert report.skipped == 0
    assert [(r["orig_h"], r["orig_ip_bytes"], r["orig_pkts"]) for r in rows] == [
        (a[0], a[4] * 30000, 30000) for a in AKV_DATA]


def test_akvorado_data_and_templates_in_one_packet():
    """Data set 257 comes before template 257 in the packet; options (System scope) announce 1:100."""
    rows, report = decode(AKV / "data+templates.pcap")
    assert len(rows) == 21 and report.skipped == 0
    r = rows[0]  # netflow package's own decode: IN_BYTES 436, IN_PKTS 1, SAMPLING_INTERVAL 100
    assert (r["orig_h"], r["resp_h"], r["orig_p"], r["resp_p"], r["proto"], r["orig_ip_bytes"], r["orig_pkts"]) == (
        "120.120.180.202", "120.120.147.170", 443, 53744, "tcp", 43600, 100)
    assert all(r["orig_pkts"] % 100 == 0 for r in rows)
    assert {r["uid"].rsplit(":", 1)[0] for r in rows} == {"102.102.144.1:17170432:6729271"}


def test_akvorado_icmp():
    rows, _ = decode(AKV / "icmp-template.pcap", AKV / "icmp-data.pcap")
    assert [(r["orig_h"], r["resp_h"], r["proto"], r["orig_ip_bytes"], r["orig_pkts"], r["resp_p"]) for r in rows] == [
        ("2001:db8::", "2001:db8::1", "icmp6", 104, 1, 32768),
        ("2001:db8::1", "2001:db8::", "icmp6", 104, 1, 33024),
        ("203.0.113.4", "203.0.113.5", "icmp", 84, 1, 2048),
        ("203.0.113.5", "203.0.113.4", "icmp", 84, 1, 0),
    ]
    # v9 template with 152/153 flowStart/EndMilliseconds (the netflow package loses 153's id)
    assert rows[0]["ts"] == rows[0]["ts_end"] == ts(1685867993.216)


def test_akvorado_ipfix_biflows_fill_resp():
    rows, _ = decode(AKV / "ipfixprobe-templates.pcap", AKV / "ipfixprobe-data.pcap")
    got = sorted((r["orig_h"], r["resp_h"], r["orig_p"], r["resp_p"], r["proto"], r["orig_pkts"],
                  r["orig_ip_bytes"], r["resp_pkts"], r["resp_ip_bytes"]) for r in rows)
    assert got == sorted([  # TestDecodeRFC5103: direct and reverse halves of each biflow
        ("10.10.1.4", "10.10.1.1", 56166, 53, "udp", 1, 62, 1, 128),
        ("10.10.1.20", "10.10.1.255", 138, 138, "udp", 1, 229, 0, 0),
        ("10.10.1.4", "74.53.140.153", 1470, 25, "tcp", 28, 21673, 25, 1546),
        ("192.168.1.1", "10.10.1.4", 0, 0, "icmp", 4, 2304, 0, 0),
    ])


def test_akvorado_nat_events_have_no_counters():
    rows, _ = decode(AKV / "nat.pcap")
    r = rows[0]
    assert (r["orig_h"], r["orig_p"], r["resp_h"], r["resp_p"], r["proto"]) == (
        "172.16.100.198", 35303, "10.89.87.1", 53, "udp")
    assert r["orig_ip_bytes"] is None and r["orig_pkts"] is None and r["ts_end"] is None
    assert r["ts"] == ts(1749049740.450)  # observationTimeMilliseconds


# --- sniffing -------------------------------------------------------------------------------------

def test_sniff_pcap():
    for p in [*AKV.glob("*.pcap"), *PMACCT.glob("*/traffic-00.pcap")]:
        assert netflow.sniff_pcap(p), p
        assert netflow.sniff(read_head(p), p), p
    for p in [DATA / "slips" / "test12-icmp-portscan.pcap", DATA / "zeek-traces" / "5-pings.pcap",
              DATA / "dns-tunnel" / "netrack-dns2tcp" / "dns2tcp-2018-03-23.pcap",
              DATA / "zeek-traces" / "irc-dcc-send.pcapng"]:
        assert p.exists(), p
        assert not netflow.sniff_pcap(p), p
    eve = DATA / "slips" / "test6-malicious.suricata.json"
    assert not netflow.sniff_pcap(eve) and not netflow.sniff(read_head(eve), eve)


def test_netflow_version_header_checks():
    with open(AKV / "nfv5.pcap", "rb") as f:
        _ts, frame = next(iter(dpkt.pcap.Reader(f)))
    payload = bytes(dpkt.ethernet.Ethernet(frame).data.data.data)
    assert netflow.netflow_version(payload) == 5
    assert netflow.netflow_version(payload[:-48]) is None  # count says 29 records
    assert netflow.netflow_version(payload[:20]) is None
    assert netflow.netflow_version(b"\x00\x09" + b"\x00" * 30) is None  # no valid flowsets
    assert netflow.netflow_version(b"\x00\x0a\x00\x30" + b"\x00" * 12) is None  # IPFIX length > datagram


# --- bad input ------------------------------------------------------------------------------------

def test_not_a_capture_raises(tmp_path):
    bad = tmp_path / "x.pcap"
    bad.write_text("hello\n")
    with pytest.raises(InputError):
        decode(bad)


def test_capture_without_netflow_raises():
    with pytest.raises(InputError, match="no NetFlow"):
        decode(DATA / "slips" / "test12-icmp-portscan.pcap")


def test_truncated_capture_keeps_complete_packets(tmp_path):
    src = PMACCT / "101-NFv9-CISCO-cust_primitives" / "traffic-00.pcap"
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(src.read_bytes()[:5000])  # mid-packet
    rows, report = decode(cut)
    full, _ = decode(src)
    assert 0 < len(rows) < len(full)
    assert [r["uid"] for r in rows] == [r["uid"] for r in full[:len(rows)]]
    assert len(rows) == 23  # packets 1-20 whole; packet 21 cut inside its data set
    assert report.skipped == 1
    assert report.messages == [f"{cut}: packet 21: set 313 at byte 20 overruns the packet (truncated or corrupt)"]


def test_gzipped_capture(tmp_path):
    src = AKV / "nfv5.pcap"
    gz = tmp_path / "nfv5.pcap.gz"
    with open(src, "rb") as f, gzip.open(gz, "wb") as out:
        shutil.copyfileobj(f, out)
    assert netflow.sniff_pcap(gz)
    assert decode(gz)[0] == decode(src)[0]


# --- synthetic export stream: per-exporter templates, chunking ----------------------------------------

def _udp_frame(src: str, payload: bytes, sport: int = 2055) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=9995, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=b"\x0a\x00\x00\x01", p=17, data=udp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def _v9(source_id: int, seq: int, *flowsets: bytes) -> bytes:
    return struct.pack("!HHIIII", 9, len(flowsets), 1000, 1700000000, seq, source_id) + b"".join(flowsets)


def _template(tid: int, fields: list[tuple[int, int]]) -> bytes:
    body = struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)
    return struct.pack("!HH", 0, 4 + len(body)) + body


def _data(tid: int, records: list[bytes]) -> bytes:
    body = b"".join(records)
    body += b"\0" * (-len(body) % 4)
    return struct.pack("!HH", tid, 4 + len(body)) + body


def test_templates_are_per_exporter_and_source_id(tmp_path):
    a = [(8, 4), (12, 4), (1, 4), (2, 4), (4, 1)]  # src, dst, bytes, packets, proto
    b = [(4, 1), (2, 4), (1, 4), (12, 4), (8, 4)]  # same id 256, other layout
    rec_a = bytes([10, 0, 0, 1, 192, 0, 2, 1]) + struct.pack("!IIB", 5000, 5, 6)
    rec_b = struct.pack("!BII", 17, 7, 700) + bytes([192, 0, 2, 2, 10, 0, 0, 2])
    packets = [
        _udp_frame("10.9.9.1", _v9(0, 1, _template(256, a))),
        _udp_frame("10.9.9.2", _v9(0, 1, _template(256, b))),
        _udp_frame("10.9.9.1", _v9(0, 2, _data(256, [rec_a, rec_a]))),
        _udp_frame("10.9.9.2", _v9(0, 2, _data(256, [rec_b]))),
        _udp_frame("10.9.9.1", _v9(7, 3, _data(256, [rec_a]))),  # other source id: no template
        _udp_frame("10.9.9.3", _v9(0, 1, _data(256, [rec_b]))),  # unknown exporter
    ]
    path = tmp_path / "export.pcap"
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f)
        for i, frame in enumerate(packets):
            writer.writepkt(frame, ts=1700000000 + i)
    assert netflow.sniff_pcap(path)
    rows, report = decode(path)
    assert [(r["orig_h"], r["resp_h"], r["proto"], r["orig_ip_bytes"], r["orig_pkts"], r["uid"]) for r in rows] == [
        ("10.0.0.1", "192.0.2.1", "tcp", 5000, 5, "10.9.9.1:0:2:0"),
        ("10.0.0.1", "192.0.2.1", "tcp", 5000, 5, "10.9.9.1:0:2:1"),
        ("10.0.0.2", "192.0.2.2", "udp", 700, 7, "10.9.9.2:0:2:0"),
    ]
    assert rows[0]["ts"] == ts(1700000000) and rows[0]["ts_end"] is None  # no time fields: export time
    assert report.skipped == 2
    assert [m.split(": ", 1)[1] for m in report.messages] == [
        "packet 5: data set for template 256 not seen yet (exporter 10.9.9.1, domain 7); set skipped",
        "packet 6: data set for template 256 not seen yet (exporter 10.9.9.3, domain 0); set skipped",
    ]


def test_batches_are_bounded(monkeypatch):
    monkeypatch.setattr(netflow, "CHUNK", 10)
    report = ReadReport(path="x")
    sizes = [t.num_rows for _, t in netflow.read(AKV / "nfv5.pcap", report)]
    assert sizes == [10, 10, 9] and report.records["flows"] == 29


def test_raw_ip_linktype_and_pcapng(tmp_path):
    src = AKV / "nfv5.pcap"
    with open(src, "rb") as f:
        packets = list(dpkt.pcap.Reader(f))
    raw, ng = tmp_path / "raw.pcap", tmp_path / "nfv5.pcapng"
    with open(raw, "wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=101)  # LINKTYPE_RAW: IP without link header
        for t, frame in packets:
            writer.writepkt(bytes(dpkt.ethernet.Ethernet(frame).data), ts=t)
    with open(ng, "wb") as f:
        writer = dpkt.pcapng.Writer(f)
        for t, frame in packets:
            writer.writepkt(frame, ts=t)
    expected = decode(src)[0]
    for path in (raw, ng):
        assert netflow.sniff_pcap(path)
        assert decode(path)[0] == expected
