"""The byte-level DNS parser: names with any bytes, compression, record types, TCP framing."""

from __future__ import annotations

import struct

import dpkt
import pytest

from abfluss.readers import _dns_wire as wire
from abfluss.readers._dns_packets import scan
from abfluss.readers.base import ReadReport


def name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(x)]) + x for x in labels) + b"\0"


def query(labels, qtype=10, tid=7, flags=0x0100) -> bytes:
    return struct.pack(">HHHHHH", tid, flags, 1, 0, 0, 0) + name(*labels) + struct.pack(">HH", qtype, 1)


def answer(q: bytes, rtype: int, rdata: bytes, flags=0x8180) -> bytes:
    head = struct.pack(">HHHHHH", struct.unpack(">H", q[:2])[0], flags, 1, 1, 0, 0)
    return head + q[12:] + b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, 60, len(rdata)) + rdata


BASE128 = bytes(range(0xBC, 0xFE))  # iodine's base128 alphabet beyond letters and digits


def test_any_byte_in_a_label_is_kept_escaped_and_counted_exactly():
    label = b"a" + BASE128[:40] + b"\x00\xff.\\Z"
    msg = wire.parse(query([label, b"t", b"tunlab", b"test"]))
    assert msg.query.startswith("a\\xbc\\xbd") and msg.query.endswith("\\x00\\xff\\x2e\\x5cZ.t.tunlab.test")
    assert msg.qtype == "NULL" and msg.qr == 0 and msg.id == 7
    assert wire.label_bytes(msg.query) == len(label) + 1 + 6 + 4  # labels without the dots
    assert wire.unescape(msg.query)[:len(label)] == label.decode("latin-1")


@pytest.mark.parametrize("qtype,want", [(10, "NULL"), (16, "TXT"), (5, "CNAME"), (15, "MX"), (33, "SRV"),
                                        (1, "A"), (25, "KEY"), (65399, "TYPE65399"), (4242, "TYPE4242")])
def test_record_type_names(qtype, want):
    assert wire.parse(query([b"x", b"test"], qtype)).qtype == want


def test_answers_of_the_types_tunnels_use():
    q = query([b"abc", b"t", b"test"], 16)
    assert wire.parse(answer(q, 16, b"\x05hello\x03a\xffb")).answers == ["hello a\\xffb"]
    cname = b"\x03xyz\xc0\x0c"  # compressed: points back at the question's name
    assert wire.parse(answer(q, 5, cname)).answers == ["xyz.abc.t.test"]
    assert wire.parse(answer(q, 15, b"\x00\x0a" + cname)).answers == ["xyz.abc.t.test"]
    assert wire.parse(answer(q, 33, b"\x00\x01\x00\x02\x00\x35" + cname)).answers == ["xyz.abc.t.test"]
    assert wire.parse(answer(q, 10, b"\x00" * 300)).answers == ["<NULL:300 bytes>"]
    assert wire.parse(answer(q, 1, b"\x0a\x00\x00\x01")).answers == ["10.0.0.1"]
    m = wire.parse(answer(q, 16, b"\x05hello", flags=0x8183))
    assert wire.rcode_name(m.rcode) == "NXDOMAIN" and m.ttls == [60.0]


def test_an_answer_cut_off_keeps_the_question():
    q = query([b"abc", b"test"], 16)
    m = wire.parse(answer(q, 16, b"\x05hello")[:-3])
    assert m.query == "abc.test" and m.answers == []


@pytest.mark.parametrize("buf,reason", [
    (b"\x00" * 5, "shorter than a DNS header"),
    (struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01", "does not point backwards"),
    (struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x3fabc", "past the end"),
    (struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x80abc\x00\x00\x01\x00\x01", "label type"),
    (struct.pack(">HHHHHH", 1, 0x7900, 1, 0, 0, 0) + name(b"a") + b"\x00\x01\x00\x01", "opcode"),
    (struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + name(b"a"), "before its type"),
])
def test_not_dns_is_an_error_with_a_reason(buf, reason):
    with pytest.raises(wire.WireError, match=reason):
        wire.parse(buf)


def test_a_pointer_loop_cannot_happen():
    # two pointers pointing at each other: the second one points forward and is refused
    head = struct.pack(">HHHHHH", 1, 0x8180, 1, 1, 0, 0) + name(b"a") + b"\x00\x01\x00\x01"
    loop = head + b"\xc0\x1d\xc0\x1b" + struct.pack(">HHIH", 1, 1, 0, 4) + b"\x01\x02\x03\x04"
    m = wire.parse(loop)
    assert m.query == "a" and m.answers == []  # the question stays, the looping answer is dropped
    with pytest.raises(wire.WireError):
        wire.read_name(loop, len(head))


def test_tcp_framing_reassembles_split_reordered_and_retransmitted_segments():
    msgs = [query([b"q%d" % i, b"example", b"test"], 16, tid=i) for i in range(3)]
    stream = b"".join(struct.pack(">H", len(m)) + m for m in msgs)
    t = wire.TcpStreams()
    key = ("10.0.0.5", 40000, "10.0.0.53", 53)
    assert t.add(key, 1000, 0x02, b"") == ([], None)  # SYN
    a, b, c = stream[:10], stream[10:50], stream[50:]
    assert t.add(key, 1001 + 10, 0x18, b) == ([], None)  # arrives before the first piece
    got, lost = t.add(key, 1001, 0x18, a)
    assert lost is None and [wire.parse(m).id for m in got] == [0]
    got, lost = t.add(key, 1001 + 5, 0x18, stream[5:60])  # overlaps what was seen: only the tail is new
    got2, lost2 = t.add(key, 1001 + 50, 0x19, c)  # the rest, with FIN
    assert [wire.parse(m).id for m in got + got2] == [1, 2] and lost is None and lost2 is None
    assert t.leftovers() == []


def test_a_tcp_stream_cut_inside_a_message_is_reported():
    t = wire.TcpStreams()
    key = ("10.0.0.5", 40001, "10.0.0.53", 53)
    m = query([b"abc", b"test"])
    t.add(key, 0, 0x02, b"")
    assert t.add(key, 1, 0x18, struct.pack(">H", len(m)) + m[:8]) == ([], None)
    assert "ended inside a message" in t.leftovers()[0]


def _pcap(path, packets):
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f)
        for i, (src, dst, sport, dport, payload) in enumerate(packets):
            udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
            udp.ulen = len(udp)
            ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))),
                            p=17, data=udp)
            ip.len = len(ip)
            w.writepkt(bytes(dpkt.ethernet.Ethernet(src=b"\x00" * 6, dst=b"\x00" * 6, data=ip)), ts=1e9 + i)


def test_reader_keeps_every_message_and_counts_what_is_not_dns(tmp_path):
    q = query([b"\xff\xfe" + BASE128[:20], b"t", b"tunlab", b"test"], 10)
    r = answer(q, 10, b"\x01" * 100)
    raw = b"\x10\xd1\x9e" + bytes(200)  # iodine's raw UDP mode: not a DNS message
    _pcap(tmp_path / "t.pcap", [("10.0.0.5", "203.0.113.53", 40000, 53, q),
                                ("203.0.113.53", "10.0.0.5", 53, 40000, r),
                                ("10.0.0.5", "203.0.113.53", 40000, 53, raw),
                                ("10.0.0.5", "203.0.113.53", 40000, 53, q)])  # a retransmission
    report = ReadReport("t.pcap")
    s = scan(tmp_path / "t.pcap", report)
    rows = s.dns.to_pylist()
    assert [(x["query"][:8], x["qtype"], x["rcode"], x["answer_bytes"]) for x in rows] == [
        ("\\xff\\xfe", "NULL", "NOERROR", len(r)), ("\\xff\\xfe", "NULL", None, None)]
    assert report.skipped == 1
    assert report.messages[0].startswith("t.pcap: packet 3: udp 10.0.0.5:40000 -> 203.0.113.53:53: not a DNS")
