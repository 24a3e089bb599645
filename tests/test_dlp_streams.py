"""TCP reassembly, packet slicing and chunked scanning (abfluss.dlp.streams).

Also home of the synthetic-capture builder the other DLP tests use: each test writes the
packets it needs with dpkt, so every byte on the wire is known.
"""

from __future__ import annotations

import socket
from collections import namedtuple
from pathlib import Path

import dpkt
import pytest

from abfluss.dlp import streams
from abfluss.dlp.streams import Side, Sink, slice_packet

# Check-digit-valid values (DOMAIN.md §2.1, §2.4 test vectors and values made with the same
# algorithms): the tests below assert exactly how often each is found.
KVNRS = ("A123456780", "X110411675", "M987654323", "Z000000017")
IBAN = "DE89370400440532013000"


# -- capture builder ---------------------------------------------------------------------

def _ip(addr: str):
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


class Capture:
    """Packets of a synthetic capture, written as an Ethernet pcap by ``write``."""

    def __init__(self):
        self.packets: list[tuple[float, bytes]] = []

    def frame(self, ts: float, src: str, dst: str, l4, proto: int) -> None:
        if ":" in src:
            ip = dpkt.ip6.IP6(src=_ip(src), dst=_ip(dst), nxt=proto, hlim=64, data=l4)
            ip.plen = len(bytes(l4))
            eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP6, data=ip)
        else:
            ip = dpkt.ip.IP(src=_ip(src), dst=_ip(dst), p=proto, ttl=64, data=l4)
            ip.len = 20 + len(bytes(l4))
            eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        self.packets.append((ts, bytes(eth)))

    def tcp(self, ts, src, sport, dst, dport, seq, flags, payload=b"", ack=0) -> None:
        seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq % (1 << 32), ack=ack, flags=flags,
                           win=65535, data=payload)
        self.frame(ts, src, dst, seg, dpkt.ip.IP_PROTO_TCP)

    def udp(self, ts, src, sport, dst, dport, payload: bytes) -> None:
        d = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
        d.ulen = 8 + len(payload)
        self.frame(ts, src, dst, d, dpkt.ip.IP_PROTO_UDP)

    def write(self, path: Path) -> Path:
        with open(path, "wb") as f:
            w = dpkt.pcap.Writer(f, snaplen=65535)
            for ts, buf in self.packets:
                w.writepkt(buf, ts=ts)
        return path


class Conn:
    """One TCP connection on a Capture: handshake, data in segments (in any order), close."""

    def __init__(self, cap: Capture, client=("10.0.0.5", 40000), server=("203.0.113.9", 80), t0=1_700_000_000.0,
                 isn=(1000, 5000)):
        self.cap, self.client, self.server = cap, client, server
        self.t = t0
        self.next = {True: isn[0] + 1, False: isn[1] + 1}
        cap.tcp(self._tick(), *client, *server, isn[0], dpkt.tcp.TH_SYN)
        cap.tcp(self._tick(), *server, *client, isn[1], dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
        cap.tcp(self._tick(), *client, *server, isn[0] + 1, dpkt.tcp.TH_ACK)

    def _tick(self) -> float:
        self.t += 0.001
        return self.t

    def segments(self, data: bytes, from_client: bool = True, size: int = 1460) -> list[tuple[int, bytes]]:
        """(seq, bytes) of ``data`` cut into ``size`` pieces, advancing the sender's sequence."""
        start = self.next[from_client]
        self.next[from_client] += len(data)
        return [(start + i, data[i:i + size]) for i in range(0, len(data), size)]

    def put(self, segs, from_client: bool = True) -> None:
        """Send (seq, bytes) segments exactly as given (order, repeats)."""
        a, b = (self.client, self.server) if from_client else (self.server, self.client)
        for seq, data in segs:
            self.cap.tcp(self._tick(), *a, *b, seq, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, data)

    def send(self, data: bytes, from_client: bool = True, size: int = 1460) -> None:
        self.put(self.segments(data, from_client, size), from_client)

    def close(self) -> None:
        for fc in (True, False):
            a, b = (self.client, self.server) if fc else (self.server, self.client)
            self.cap.tcp(self._tick(), *a, *b, self.next[fc], dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)


# -- reassembly --------------------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.parts: list = []

    def data(self, b: bytes) -> None:
        self.parts.append(b)

    def gap(self, n: int) -> None:
        self.parts.append(n)

    @property
    def text(self) -> bytes:
        return b"".join(p for p in self.parts if isinstance(p, bytes))


def test_in_order_segments_are_joined():
    out = Recorder()
    s = Side(out, cap=1 << 20)
    s.syn(99)
    s.segment(100, b"hello ")
    s.segment(106, b"world")
    assert out.text == b"hello world" and (s.delivered, s.gaps, s.repeated) == (11, 0, 0)


def test_out_of_order_segments_wait_for_the_missing_one():
    out = Recorder()
    s = Side(out, cap=1 << 20)
    s.syn(0)
    s.segment(7, b"89")
    s.segment(4, b"456")
    assert out.parts == []  # nothing before seq 1 has come
    s.segment(1, b"123")
    assert out.parts == [b"123", b"456", b"89"] and s.pending == {}


def test_retransmissions_and_overlaps_are_delivered_once():
    out = Recorder()
    s = Side(out, cap=1 << 20)
    s.syn(0)
    s.segment(1, b"abcdef")
    s.segment(1, b"abcdef")  # plain retransmission
    s.segment(4, b"defghi")  # re-segmented retransmission overlapping by 3
    s.segment(12, b"lm")  # ahead: waits
    s.segment(12, b"lm")  # the same waiting segment again
    s.segment(8, b"hijk")  # fills the hole, overlaps by 2
    assert out.text == b"abcdefghijklm"
    assert (s.delivered, s.gaps, s.repeated) == (13, 0, 6 + 3 + 2 + 2)


def test_sequence_numbers_wrap():
    out = Recorder()
    s = Side(out, cap=1 << 20)
    s.syn((1 << 32) - 3)  # next byte at 2**32 - 2
    s.segment((1 << 32) - 2, b"ab")
    s.segment(0, b"cd")
    assert out.text == b"abcd"


def test_a_hole_becomes_a_gap_when_the_buffer_cap_is_reached():
    out = Recorder()
    s = Side(out, cap=10)
    s.syn(0)
    s.segment(1, b"start")
    s.segment(26, b"0123456789")  # 20 bytes missing before it; fits the cap
    assert out.parts == [b"start"]
    s.segment(36, b"X")  # now 11 bytes wait: give up on the hole
    assert out.parts == [b"start", 20, b"0123456789", b"X"] and s.gaps == 20


def test_finish_flushes_waiting_segments_with_their_gaps():
    out = Recorder()
    s = Side(out, cap=1 << 20)
    s.syn(0)
    s.segment(1, b"ab")
    s.segment(10, b"zz")
    s.finish()
    assert out.parts == [b"ab", 7, b"zz"] and (s.delivered, s.gaps) == (4, 7)


def test_snap_length_cut_counts_the_missing_bytes():
    out = Recorder()
    s = Side(out, cap=1 << 20)
    s.syn(0)
    s.segment(1, b"abc", missing=5)
    s.segment(9, b"next")
    assert out.parts == [b"abc", 5, b"next"] and s.gaps == 5


# -- slicing -----------------------------------------------------------------------------

def test_slice_ipv4_tcp_with_ethernet_padding_and_vlan():
    cap = Capture()
    cap.tcp(1.0, "10.0.0.5", 40000, "203.0.113.9", 80, 7, dpkt.tcp.TH_ACK, b"hi")
    frame = cap.packets[0][1] + b"\x00" * 6  # padded to the Ethernet minimum
    proto, src, dst, sport, dport, flags, seq, payload, missing = slice_packet(dpkt.pcap.DLT_EN10MB, frame)
    assert (proto, streams.address(src), streams.address(dst), sport, dport, seq, payload, missing) == (
        6, "10.0.0.5", "203.0.113.9", 40000, 80, 7, b"hi", 0)
    tagged = frame[:12] + b"\x81\x00\x00\x05" + frame[12:]
    assert slice_packet(dpkt.pcap.DLT_EN10MB, tagged)[7] == b"hi"
    assert slice_packet(dpkt.pcap.DLT_EN10MB, frame[:-8])[7:] == (b"", 2)  # cut by the snap length


def test_slice_ipv6_udp_and_raw_ip():
    cap = Capture()
    cap.udp(1.0, "fd00::5", 5000, "2001:db8::9", 53, b"query")
    p = slice_packet(dpkt.pcap.DLT_EN10MB, cap.packets[0][1])
    assert (p[0], streams.address(p[1]), streams.address(p[2]), p[3], p[4], p[7]) == (
        17, "fd00::5", "2001:db8::9", 5000, 53, b"query")
    raw = cap.packets[0][1][14:]
    assert slice_packet(101, raw)[7] == b"query"  # LINKTYPE_RAW goes through dpkt


def test_slice_ignores_other_protocols_and_fragments():
    cap = Capture()
    cap.frame(1.0, "10.0.0.5", "10.0.0.6", dpkt.icmp.ICMP(type=8, data=b"x" * 8), dpkt.ip.IP_PROTO_ICMP)
    assert slice_packet(dpkt.pcap.DLT_EN10MB, cap.packets[0][1]) is None
    cap.tcp(1.0, "10.0.0.5", 1, "10.0.0.6", 2, 0, dpkt.tcp.TH_ACK, b"x")
    frag = bytearray(cap.packets[1][1])
    frag[14 + 7] = 10  # fragment offset 80 bytes: not the first fragment
    assert slice_packet(dpkt.pcap.DLT_EN10MB, bytes(frag)) is None


# -- chunked scanning --------------------------------------------------------------------

Hit = namedtuple("Hit", "category hmac masked anchored")


def kvnr_scan(data: bytes) -> list:
    """A stand-in detector: letter + 9 digits between non-alphanumerics, anchored after 'KVNR'."""
    import re

    out = []
    for m in re.finditer(rb"(?<![A-Za-z0-9])[A-Z][0-9]{9}(?![A-Za-z0-9])", data):
        anchored = b"KVNR" in data[max(0, m.start() - 64):m.start()]
        out.append(Hit("kvnr", m.group().decode(), "x", anchored))
    return out


def sink(chunk=64, context=16, binary_share=0.1):
    got = []
    s = Sink(kvnr_scan, got.extend, chunk, context, binary_share)
    return s, got


@pytest.mark.parametrize("piece", [1, 3, 7, 13, 64, 1000])
def test_each_value_is_found_once_however_the_text_is_cut(piece):
    text = b"".join(b"%s\nid;%s\nKVNR: %s, other\n" % (b"-" * 70, k.encode(), k.encode()) for k in KVNRS) * 5
    s, got = sink(context=64)  # as wide as the stand-in detector looks for its anchor
    for i in range(0, len(text), piece):
        s.write(text[i:i + piece])
    s.boundary()
    assert sorted(h.hmac for h in got) == sorted(list(KVNRS) * 10)
    assert sorted(got) == sorted(kvnr_scan(text))  # as if the text had been scanned whole
    assert sum(h.anchored for h in got) == 20  # the anchor in front, across chunk cuts too
    assert s.scanned == len(text)


def test_a_value_is_not_joined_across_a_boundary():
    s, got = sink()
    s.write(b"A12345")
    s.boundary()  # e.g. a gap in the stream
    s.write(b"6780 ")
    s.boundary()
    assert got == []


def test_binary_chunks_are_not_scanned():
    s, got = sink(chunk=1 << 16)
    blob = bytes(range(256)) * 8 + b" A123456780 "
    s.write(blob)
    s.boundary()
    assert got == [] and (s.scanned, s.binary) == (0, len(blob))
    s.write(b"tar header\x00\x00 " + b"A123456780 " * 40)  # a few NULs in text: still text
    s.boundary()
    assert len(got) == 40
