"""One dpkt pass over a capture: every DNS message on port 53, the capture's end, and truncation.

Queries and responses are paired as Zeek's dns.log pairs them (client, server, ports,
transaction id); a query without a response is still a row, with no rcode. Messages are read
by ``_dns_wire`` whatever bytes their names hold (escaped as Zeek does); DNS over TCP is
reassembled. A message on port 53 that is not DNS is a counted skip with the reason: its bytes
still count in the flow, which NFStream meters independently.
"""

from __future__ import annotations

import mmap
import os
import socket
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

import dpkt
import pyarrow as pa

from ..schema import TS, conform
from . import _dns_wire as wire
from ._split import part_of
from .base import ReadReport, ip_layer, pcapng_reader

DNS_PORT = 53
_l4 = wire.l4
QTYPES, RCODES = wire.QTYPES, wire.RCODES

_FIELDS = ("ts", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "trans_id", "query", "qtype",
           "rcode", "answers", "answer_types", "ttls", "query_bytes", "answer_bytes")


#: Latest packet time decoded (9999-12-31, as the flow reader's ``MAX_MS``): a later one is a
#: crafted timestamp, skipped with its position.
MAX_SECONDS = 253402300799


@dataclass
class Scan:
    packets: int
    last_ts: int | None  # microseconds
    dns: pa.Table | None
    arp: pa.Table | None = None  # ARP frames: NFStream meters IP only


ARP_OPS = {1: "request", 2: "reply"}
#: Ethertypes at offset 12 after which an ARP frame may follow: ARP itself, or a VLAN tag.
_ARP_OR_VLAN = ((8, 6), (0x81, 0), (0x88, 0xA8))


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _arp(ts: float, buf) -> dict | None:
    """An Ethernet ARP frame (IPv4 over Ethernet) as an ``arp`` row; None for anything else.
    Sliced from the raw bytes: ARP is fixed-size."""
    off, ethertype = 14, bytes(buf[12:14])
    while ethertype in (b"\x81\x00", b"\x88\xa8"):  # VLAN tags
        ethertype, off = bytes(buf[off + 2:off + 4]), off + 4
    if ethertype != b"\x08\x06" or len(buf) < off + 28 or bytes(buf[off + 4:off + 6]) != b"\x06\x04":
        return None
    op = int.from_bytes(buf[off + 6:off + 8], "big")
    spa, tpa = socket.inet_ntoa(buf[off + 14:off + 18]), socket.inet_ntoa(buf[off + 24:off + 28])
    return {"ts": int(ts * 1_000_000), "op": ARP_OPS.get(op, str(op)), "orig_h": spa,
            "orig_mac": _mac(buf[off + 8:off + 14]), "resp_h": tpa, "resp_mac": _mac(buf[off + 18:off + 24]),
            "eth_dst": _mac(buf[0:6]), "eth_src": _mac(buf[6:12]), "gratuitous": spa == tpa}


def _reader(f):
    head = f.read(4)
    f.seek(0)
    if head == b"\x0a\x0d\x0d\x0a":
        return pcapng_reader(f)
    return dpkt.pcap.Reader(f)


def _addr(ip) -> str:
    if isinstance(ip, dpkt.ip6.IP6):
        return socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst)
    return socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst)


def _fast_l4(datalink: int, buf: bytes):
    """(proto, src, dst, sport, dport, payload, tcp seq, tcp flags) sliced from raw Ethernet bytes
    (``_dns_wire.l4``, in C) when the packet may be DNS; None when it cannot be; ``False`` when
    only a full decode can tell (other link types)."""
    if datalink != dpkt.pcap.DLT_EN10MB:
        return False
    return _l4(buf, 0, len(buf))


def _short(f, record_start: int, size: int) -> bool:
    """True when the record that starts at ``record_start`` claims more bytes than the file has."""
    if f.tell() < size:
        return False
    here = f.tell()
    f.seek(0)
    magic = f.read(4)
    f.seek(record_start + 8)
    raw = f.read(4)
    f.seek(here)
    if len(raw) < 4:
        return True
    caplen = int.from_bytes(raw, "little" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else "big")
    return record_start + 16 + caplen > size


def scan(path: Path, report: ReadReport, part: int = 0, parts: int = 1) -> Scan:
    """With ``parts`` > 1, only the DNS messages of worker ``part``'s host pairs (``_split``)
    are decoded; worker 0 also collects ARP and reports the capture's own problems (truncation),
    so the parts' results together equal one pass over everything."""
    decoder = _Decoder(report)
    if parts > 1:
        decoder.mine = lambda l4: part_of(l4[1], l4[2], parts) == part
        if part:
            report = ReadReport(report.path)  # the capture's problems are worker 0's to report
    decoder.arp = []  # ARP rows, collected in the same pass
    packets, last_ts = 0, None
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        try:
            reader = _reader(f)
        except (ValueError, dpkt.dpkt.Error) as e:
            report.skip("byte 0", f"not a readable capture: {e}")
            return Scan(0, None, None)
        datalink = reader.datalink()
        classic = isinstance(reader, dpkt.pcap.Reader)
        if classic and datalink == dpkt.pcap.DLT_EN10MB and size > 24:
            packets, last_ts = _scan_classic(f, size, report, decoder, part, parts)
            return _result(decoder, packets, last_ts)
        record_start = f.tell()
        try:
            for ts, buf in reader:
                # Only the record that reaches the end of the file can be cut short: a classic pcap
                # record is a 16-byte header and its bytes, so no tell() per packet is needed.
                # (pcapng readers raise on a cut block instead: handled below.)
                record_end = record_start + 16 + len(buf) if classic else f.tell()
                if classic and record_end >= size and _short(f, record_start, size):
                    report.skip(f"packet {packets + 1} (byte {record_start} of {size})",
                                "capture is truncated in this packet; the packets before it are read")
                    break
                packets += 1
                if not 0 <= ts <= MAX_SECONDS:
                    # a crafted pcapng timestamp (found by fuzzing): Arrow's int64 microseconds overflow
                    report.skip(f"packet {packets} (byte {record_start} of {size})",
                                f"packet time out of range ({ts:.0f} s); packet not decoded")
                    record_start = record_end
                    continue
                record_start = record_end
                last_ts = int(ts * 1_000_000)
                l4 = _fast_l4(datalink, buf)
                if l4 is None and not part and datalink == dpkt.pcap.DLT_EN10MB and len(buf) >= 42 \
                        and (buf[12], buf[13]) in _ARP_OR_VLAN:
                    row = _arp(ts, buf)
                    if row:
                        decoder.arp.append(row)
                if l4 is False:
                    l4 = _slow_l4(datalink, buf)
                if l4:
                    decoder.packet(ts, packets, l4)
        except dpkt.dpkt.NeedData:
            report.skip(f"packet {packets + 1} (byte {record_start} of {size})",
                        "capture is truncated in this packet; the packets before it are read")
        except (dpkt.dpkt.UnpackError, ValueError) as e:
            report.skip(f"packet {packets + 1} (byte {record_start} of {size})",
                        f"unreadable packet record ({e or type(e).__name__}); the packets before it are read")
    return _result(decoder, packets, last_ts)


def _scan_classic(f, size: int, report: ReadReport, decoder, part: int = 0, parts: int = 1) -> tuple[int, int | None]:
    """The loop of ``scan`` for classic Ethernet pcap, in C (``_dns_wire.scan``): records walked
    and frames sliced in place from a memory map, UDP messages parsed and paired there; TCP
    segments, skips and ARP frames come back here. Same counts, positions and messages as the
    general loop (a DNS-heavy capture has a million packets to pass over)."""
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        records, ts, cut, arps = wire.scan(decoder.pending, decoder.rows, mm, decoder.tcp_packet, decoder.not_dns,
                                           decoder.mine, not part)
        for _number, start, end, t in arps:
            row = _arp(t, mm[start:end])
            if row:
                decoder.arp.append(row)
        if cut is not None:
            report.skip(f"packet {records + 1} (byte {cut} of {size})",
                        "capture is truncated in this packet; the packets before it are read")
    return records, (int(ts * 1_000_000) if ts is not None else None)


def _result(decoder, packets: int, last_ts) -> Scan:
    arp = None
    if decoder.arp:
        cols = {k: [r[k] for r in decoder.arp] for k in decoder.arp[0]}
        cols["ts"] = pa.array(cols["ts"], pa.int64()).cast(TS)
        arp = conform("arp", cols)
    rows = decoder.finish()
    if not rows:
        return Scan(packets, last_ts, None, arp)
    rows.sort(key=itemgetter(0))  # by time; stable: rows of the same time stay in the order they were made
    cols = dict(zip(_FIELDS, wire.columns(rows, len(_FIELDS))))  # in C: 2.5x faster than a comprehension
    cols["ts"] = pa.array(cols["ts"], pa.int64()).cast(TS)
    return Scan(packets, last_ts, conform("dns", cols), arp)


def _slow_l4(datalink: int, buf: bytes):
    """The same as ``_fast_l4`` through dpkt's decoders, for loopback, SLL and raw-IP captures."""
    try:
        ip = ip_layer(datalink, buf)
        l4 = ip.data
        if not isinstance(l4, (dpkt.udp.UDP, dpkt.tcp.TCP)) or DNS_PORT not in (l4.sport, l4.dport):
            return None
        payload = bytes(l4.data)
        if isinstance(l4, dpkt.tcp.TCP):
            return ("tcp", *_addr(ip), l4.sport, l4.dport, payload, l4.seq, l4.flags)
        return ("udp", *_addr(ip), l4.sport, l4.dport, payload, 0, 0)
    except Exception:  # noqa: BLE001 - not decodable: the flow is still metered by NFStream
        return None


class _Decoder:
    """Messages to rows: queries wait for their response; TCP is reassembled first. The pairing
    itself is ``_dns_wire.message`` (C): a query waits in ``pending`` under (client, port, server,
    port, id, question as on the wire, lower-cased: resolvers may change case, 0x20); the same
    query again pushes the waiting one out as a row of its own (a retransmission); a response
    completes its query's row or makes a row alone. Rows are lists in ``_FIELDS`` order."""

    def __init__(self, report: ReadReport):
        self.report = report
        self.pending: dict[tuple, list] = {}
        self.rows: list[list] = []
        self.tcp = wire.TcpStreams()
        self.mine = None  # a filter of the packets this worker decodes (``scan``'s parts)

    def packet(self, ts: float, number: int, l4: tuple, mine: bool = False) -> None:
        """``mine``: the packet is known to be this worker's (the index chose it already)."""
        if not mine and self.mine is not None and not self.mine(l4):
            return
        if l4[0] == "udp":
            if l4[5]:
                self.message(ts, number, l4, l4[5])
            return
        self.tcp_packet(ts, number, l4)

    def tcp_packet(self, ts: float, number: int, l4: tuple) -> None:
        proto, src, dst, sport, dport, payload, seq, flags = l4
        msgs, lost = self.tcp.add((src, sport, dst, dport), seq, flags, payload)
        if lost:
            self.report.skip(f"packet {number}", lost)
        for m in msgs:
            self.message(ts, number, l4, m)

    def message(self, ts: float, number: int, l4: tuple, payload: bytes) -> None:
        reason = wire.message(self.pending, self.rows, int(ts * 1_000_000), l4, payload)
        if reason is not None:
            self.not_dns(number, l4, reason)

    def not_dns(self, number: int, l4: tuple, reason: str) -> None:
        proto, src, dst, sport, dport = l4[:5]
        self.report.skip(f"packet {number}", f"{proto} {src}:{sport} -> {dst}:{dport}: not a DNS "
                                             f"message ({reason}); its bytes count in the flow")

    def finish(self) -> list[list]:
        for reason in self.tcp.leftovers():
            self.report.skip("end of capture", reason)
        self.rows.extend(self.pending.values())
        return self.rows
