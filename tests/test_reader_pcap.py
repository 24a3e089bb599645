"""Golden tests of the pcap reader (NFStream flows + dpkt DNS) on real captures."""

from __future__ import annotations

import gzip
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from abfluss.errors import InputError
from abfluss.readers import detect, pcap
from abfluss.readers.base import ReadReport
from conftest import ROOT, data


def read_all(path):
    report = ReadReport(str(path))
    tables: dict[str, list] = {}
    for name, t in pcap.read(path, report):
        tables.setdefault(name, []).append(t)
    return {k: pa.concat_tables(v) for k, v in tables.items()}, report


def test_https_beacon_capture():
    tabs, report = read_all(data("slips/test-cc/test-cc-capture-1.pcap"))
    flows = tabs["flows"].sort_by("ts")
    assert dict(report.records) == {"flows": 298, "tls": 298}
    assert report.skipped == 0
    assert pc.sum(flows["orig_bytes"]).as_py() == 251577
    assert pc.sum(flows["resp_bytes"]).as_py() == 1166023
    assert pc.unique(flows["server_name"]).to_pylist() == ["testing.com"]
    assert sorted(pc.value_counts(flows["resp_h"]).to_pylist(), key=lambda v: -v["counts"]) == [
        {"values": "141.193.213.21", "counts": 296}, {"values": "141.193.213.20", "counts": 2}]
    first = flows.slice(0, 1).to_pylist()[0]
    assert (first["orig_h"], first["orig_p"], first["resp_h"], first["resp_p"]) == (
        "147.32.80.37", 39210, "141.193.213.21", 443)
    assert (first["orig_bytes"], first["resp_bytes"], first["orig_pkts"], first["resp_pkts"]) == (841, 3903, 14, 11)
    assert first["service"] == "tls" and first["conn_state"] == "SF" and first["open"] is False
    assert first["community_id"] == "1:b7ZGH1GLUHP4xztx9uBJW5FBrJ0="
    assert pc.unique(tabs["tls"]["ja4"]).to_pylist() == ["t13d3113h2_e8f1e7e78f70_ce5650b735ce"]


def test_dns_tunnel_capture_every_query_decoded():
    tabs, report = read_all(data("dns-tunnel/netrack-dns2tcp/dns2tcp-2018-03-23.pcap"))
    dns = tabs["dns"].sort_by("ts")
    assert dns.num_rows == 4555
    assert pc.count_distinct(dns["query"]).as_py() == 4555
    assert pc.value_counts(dns["qtype"]).to_pylist() == [{"values": "TXT", "counts": 4555}]
    first = dns.slice(0, 1).to_pylist()[0]
    assert first["query"] == "q+Z8AnwaBA.hidemyself.org"  # as sent, like Zeek: base64 keeps data in case
    assert (first["orig_h"], first["resp_h"], first["trans_id"]) == ("172.17.0.3", "172.17.0.2", 56290)
    assert (first["rcode"], first["answers"], first["query_bytes"], first["answer_bytes"]) == (
        "NOERROR", ["Aq+YAAHwaEA "], 43, 68)
    assert tabs["flows"].num_rows == 1
    assert tabs["flows"]["server_name"].to_pylist() == [None]  # a DNS query name is not the server's name


def test_http_upload_on_loopback():
    tabs, _ = read_all(data("zeek-traces/http-post-large.pcap"))
    flows = tabs["flows"].sort_by("ts").to_pylist()
    assert [(f["resp_p"], f["orig_bytes"], f["resp_bytes"], f["service"]) for f in flows] == [
        (80, 61907, 60478, "http"), (5000, 61917, 60478, "http")]
    assert tabs["http"]["host"].to_pylist() == ["127.0.0.1", "127.0.0.1"]


def test_open_connections_at_capture_end_are_interim():
    tabs, _ = read_all(data("zeek-traces/wikipedia.pcap"))
    flows = tabs["flows"]
    assert flows.num_rows == 34
    assert pc.sum(flows["open"]).as_py() == 10
    assert all(p == "tcp" for p in flows.filter(flows["open"])["proto"].to_pylist())
    assert tabs["dns"].num_rows == 14


def test_pcapng():
    tabs, report = read_all(data("zeek-traces/cooper-grill-dvwa.pcapng"))
    assert dict(report.records) == {"flows": 4, "http": 3, "arp": 16}  # ARP: the light pass beside NFStream
    arp = tabs["arp"].to_pylist()
    assert {a["op"] for a in arp} == {"request"} and all(a["orig_mac"].count(":") == 5 for a in arp)


def test_gzip_capture_equals_plain(tmp_path):
    src = data("zeek-traces/wikipedia.pcap")
    gz = tmp_path / "w.pcap.gz"
    with open(src, "rb") as f, gzip.open(gz, "wb") as g:
        shutil.copyfileobj(f, g)
    assert detect(gz)[0] == "pcap"
    plain, _ = read_all(src)
    packed, _ = read_all(gz)
    for name in plain:
        uid = ["uid"] if "uid" in plain[name].column_names else []  # ARP frames have none
        assert packed[name].sort_by("ts").drop_columns(uid).equals(plain[name].sort_by("ts").drop_columns(uid))


def test_truncated_capture_keeps_the_good_part(tmp_path):
    src = data("slips/test-cc/test-cc-capture-1.pcap")
    cut = tmp_path / "half.pcap"
    raw = src.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    tabs, report = read_all(cut)
    assert report.skipped == 1
    assert report.messages[0].startswith(f"{cut}: packet 3960 (byte 1034756 of 1036423)")
    assert "truncated" in report.messages[0]
    # tcpdump -r on the same cut file reads 3959 packets, then fails on the 3960th
    assert 100 < tabs["flows"].num_rows < 298


def test_text_file_is_not_a_capture(tmp_path):
    junk = tmp_path / "notes.pcap"
    junk.write_text("this is not a capture\n" * 10)
    with pytest.raises(InputError, match="notes.pcap: byte 0: not a recognised format"):
        detect(junk)


def test_truncated_pcapng_keeps_the_good_part(tmp_path):
    raw = data("zeek-traces/cooper-grill-dvwa.pcapng").read_bytes()
    cut = tmp_path / "half.pcapng"
    cut.write_bytes(raw[: len(raw) // 2])
    tabs, report = read_all(cut)
    assert report.skipped == 1 and report.messages[0].startswith(f"{cut}: packet 43 (byte 10492 of 11656)")  # tcpdump reads 42 packets
    assert "truncated" in report.messages[0]
    assert dict(report.records) == {"flows": 3, "http": 2, "arp": 16}


def _read_jobs(path, jobs):
    report = ReadReport(str(path))
    tables: dict[str, list] = {}
    for name, t in pcap.read(path, report, inspect_key=b"k" * 32, jobs=jobs, job_bytes=0):
        tables.setdefault(name, []).append(t)
    return {k: pa.concat_tables(v) for k, v in tables.items()}, report


def _sorted(t: pa.Table) -> pa.Table:
    keys = [c for c in t.column_names if not pa.types.is_list(t.schema.field(c).type)]
    return t.sort_by([(c, "ascending") for c in keys])


@pytest.mark.parametrize("rel,jobs", [
    ("examples/lab-dlp-exports.pcap", 2),  # identifiers found by inspection (dlp rows)
    ("examples/tunnels/iodine-default-direct.pcap", 2),  # skipped DNS messages and their messages
    ("examples/tunnels/dns2tcp-default-resolver.pcap", 3),  # DNS through a resolver, many flows
    ("zeek-traces/irc-dcc-send.pcapng", 2),  # pcapng
    ("slips/test-cc/test-cc-capture-1.pcap", 2),  # thousands of flows, TLS, HTTP
])
def test_parallel_ingest_equals_one_process(rel, jobs):
    """Issue 15: a capture split over several processes gives the same rows as one process:
    flows (uids included), DNS, ARP, TLS, HTTP, payload inspection; same skips and messages."""
    path = ROOT / rel if rel.startswith("examples/") else data(rel)
    one, r1 = _read_jobs(path, 1)
    many, rn = _read_jobs(path, jobs)
    assert set(one) == set(many)
    for name in one:
        assert _sorted(many[name]).equals(_sorted(one[name])), name
    assert (rn.records, rn.skipped, rn.messages) == (r1.records, r1.skipped, r1.messages)


def test_jobs_count_processes_and_each_part_of_a_capture_keeps_two_busy():
    """Issue 15: one part of a capture already runs a meter and an inspection worker (and a DNS
    worker) beside the calling process; on 2 cores a second part only added its own pass over
    every packet (0.84x the speed of one part on an idle machine). ``--jobs N`` therefore splits
    a capture into N // 2 parts, at least one, and at most one per 16 MB."""
    from abfluss.readers._split import capture_parts

    assert [capture_parts(n) for n in (1, 2, 3, 4, 8)] == [1, 1, 1, 2, 4]
    assert [pcap.parallel_jobs(1 << 30, capture_parts(n)) for n in (1, 2, 4)] == [1, 1, 2]
    assert pcap.parallel_jobs(20 << 20, capture_parts(8)) == 1


def test_parts_split_the_work():
    """Each part decodes only its host pairs: the parts' DNS rows partition one pass's rows."""
    from abfluss.readers import _dns_packets

    path = data("slips/test7-malicious.pcap")  # DNS between several host pairs
    whole = _dns_packets.scan(path, ReadReport(str(path))).dns
    parts = [_dns_packets.scan(path, ReadReport(str(path)), k, 2).dns for k in range(2)]
    assert all(p is not None and 0 < p.num_rows < whole.num_rows for p in parts)
    assert _sorted(pa.concat_tables(parts)).equals(_sorted(whole))
