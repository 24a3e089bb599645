"""Payload streams for inspection: packets sliced to L4, TCP put back in order, chunked scanning.

A value the detectors look for may be split over two TCP segments, arrive out of order or be
sent twice; each direction of a connection is therefore rebuilt as one byte stream in sequence
order first (retransmitted and overlapping bytes dropped, missing bytes counted as gaps).
Memory stays bounded: segments waiting for a missing one are capped per direction, and the
stream is scanned in chunks cut where no value can continue, each scanned with a little of its
neighbours' text as context, so a value is found once however the packets cut it.
"""

from __future__ import annotations

import socket
import struct
from collections import Counter

import dpkt

from ..readers.base import ip_layer, pcapng_reader

SEQ_MOD = 1 << 32
HALF = 1 << 31

TCP, UDP = 6, 17
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10

#: Bytes at which a chunk may be cut: none of them can occur inside a value the detectors find
#: (identifiers, IBANs with spaces, e-mail addresses, phone numbers), newline first.
CUT_BYTES = (b"\n", b"\r", b"\t", b'"', b",", b";", b"<", b">", b"&", b"=", b"|", b"\x00")
#: How far back from a chunk's end a cut byte is looked for before searching the whole chunk.
CUT_WINDOW = 4096
#: Writes shorter than this are always text (a header line with one escape byte is not binary).
BINARY_MIN_BYTES = 64
#: Bytes from the start and from the middle of a write that decide whether it is binary.
BINARY_SAMPLE_BYTES = 512
#: Longest line carried forward as a CSV header (the scanner's ``csv_header_max_bytes``).
CSV_HEADER_MAX_BYTES = 4096
#: Bytes of text: printable ASCII, whitespace and every byte >= 0x80 (UTF-8 and Latin-1).
_TEXT = bytes(range(0x20, 0x7F)) + b"\t\r\n\x0c" + bytes(range(0x80, 0x100))


# -- packets -----------------------------------------------------------------------------

PCAP_LE = (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")  # microsecond, nanosecond
PCAP_BE = (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
#: Bytes read from a capture at a time.
READ_BLOCK = 4 << 20


def packets(f):
    """(link type, iterator of (seconds, frame bytes)) of a pcap or pcapng file.

    Classic pcap is read record by record from large blocks (dpkt's reader builds an object per
    packet and took a quarter of the inspection time); pcapng goes through dpkt. A record cut
    short by the end of the file ends the iteration.
    """
    head = f.read(24)
    magic = head[:4]
    if magic not in PCAP_LE + PCAP_BE:
        f.seek(0)
        reader = pcapng_reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        return reader.datalink(), ((float(ts), buf) for ts, buf in reader)
    order = "<" if magic in PCAP_LE else ">"
    linktype = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
    scale = 1e-9 if magic in (PCAP_LE[1], PCAP_BE[1]) else 1e-6
    return linktype, _records(f, struct.Struct(order + "IIII").unpack_from, scale)


def _records(f, unpack, scale: float):
    buf, off = b"", 0
    while True:
        if len(buf) - off >= 16:
            sec, frac, size, _ = unpack(buf, off)
            end = off + 16 + size
            if end <= len(buf):
                yield sec + frac * scale, buf[off + 16:end]
                off = end
                continue
        more = f.read(max(READ_BLOCK, len(buf) - off + 16 + (size if len(buf) - off >= 16 else 0)))
        if not more:
            return
        buf, off = buf[off:] + more, 0


_IPV4 = struct.Struct("!BxH2xHxB2x4s4s")  # version/IHL, total length, fragment, protocol, addresses
_IPV6 = struct.Struct("!4xHB1x16s16s")  # payload length, next header, addresses
_TCP_HEAD = struct.Struct("!HHI4xBB")  # ports, sequence number, data offset, flags
_PORTS = struct.Struct("!HH")
_VLAN = (0x8100, 0x88A8)


def slice_packet(datalink: int, buf: bytes):
    """(proto, src, dst, sport, dport, flags, seq, payload, missing) of a TCP or UDP packet;
    addresses are packed bytes, ``missing`` counts payload bytes cut off by the snap length.
    None for anything else (other protocols, non-first fragments, unreadable frames).
    Ethernet and loopback frames are sliced with ``struct`` (a few µs a packet); other link
    types and IPv6 extension headers go through dpkt."""
    if datalink == dpkt.pcap.DLT_EN10MB:
        if len(buf) < 34:
            return None
        off, version = 14, buf[12] << 8 | buf[13]
        while version in _VLAN and len(buf) >= off + 24:
            version, off = buf[off + 2] << 8 | buf[off + 3], off + 4
        version = 4 if version == 0x0800 else 6 if version == 0x86DD else 0
    elif datalink in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        off = 4
        version = buf[off] >> 4 if len(buf) > 24 else 0
    else:
        return _slow(datalink, buf)
    if version == 4:
        if len(buf) < off + 20:
            return None
        vihl, total, frag, proto, src, dst = _IPV4.unpack_from(buf, off)
        if frag & 0x1FFF:
            return None  # a non-first fragment
        end = off + total if total else len(buf)
        off += (vihl & 0x0F) * 4
    elif version == 6:
        if len(buf) < off + 40:
            return None
        plen, proto, src, dst = _IPV6.unpack_from(buf, off)
        if proto not in (TCP, UDP):
            return _slow(datalink, buf)  # extension headers: let dpkt walk them
        end = off + 40 + plen
        off += 40
    else:
        return None
    return _l4(proto, src, dst, buf, off, end)


def _l4(proto: int, src: bytes, dst: bytes, buf: bytes, off: int, end: int):
    if proto == TCP:
        if len(buf) < off + 20:
            return None
        sport, dport, seq, offset, flags = _TCP_HEAD.unpack_from(buf, off)
        start = off + (offset >> 4) * 4
    elif proto == UDP:
        if len(buf) < off + 8:
            return None
        (sport, dport), start, flags, seq = _PORTS.unpack_from(buf, off), off + 8, 0, 0
    else:
        return None
    payload = buf[start:end]
    missing = end - start - len(payload)
    return proto, src, dst, sport, dport, flags, seq, payload, missing if missing > 0 else 0


def _slow(datalink: int, buf: bytes):
    """The same through dpkt's decoders (Linux cooked, raw IP, IPv6 extension headers)."""
    try:
        ip = ip_layer(datalink, buf)
        if ip is None or isinstance(ip.data, bytes):
            return None
        raw = bytes(ip.data)
        proto = ip.p if isinstance(ip, dpkt.ip.IP) else ip.nxt
        if isinstance(ip.data, dpkt.tcp.TCP):
            proto = TCP
        elif isinstance(ip.data, dpkt.udp.UDP):
            proto = UDP
        return _l4(proto, bytes(ip.src), bytes(ip.dst), raw, 0, len(raw))
    except Exception:  # noqa: BLE001 - an undecodable frame is simply not inspected
        return None


def address(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(packed) == 16 else socket.AF_INET, packed)


# -- TCP reassembly ----------------------------------------------------------------------

class Side:
    """One direction of a TCP connection, delivered in sequence order to ``out``.

    ``out`` has ``data(bytes)`` and ``gap(n)``. Bytes already delivered (retransmissions,
    overlaps) are dropped; segments ahead of a missing one wait, at most ``cap`` bytes, after
    which the stream skips to the earliest waiting segment and reports the hole as a gap.
    """

    __slots__ = ("out", "cap", "next_seq", "pending", "pending_bytes", "delivered", "gaps", "repeated")

    def __init__(self, out, cap: int):
        self.out = out
        self.cap = cap
        self.next_seq: int | None = None
        self.pending: dict[int, tuple[bytes, int]] = {}
        self.pending_bytes = 0
        self.delivered = 0  # distinct payload bytes passed on
        self.gaps = 0  # bytes never seen
        self.repeated = 0  # bytes seen more than once (retransmissions, overlaps)

    def syn(self, seq: int) -> None:
        if self.next_seq is None:
            self.next_seq = (seq + 1) % SEQ_MOD

    def segment(self, seq: int, data: bytes, missing: int = 0) -> None:
        if seq == self.next_seq and not missing and not self.pending:  # the usual case, kept short
            self.delivered += len(data)
            self.next_seq = (seq + len(data)) % SEQ_MOD
            self.out.data(data)
            return
        if self.next_seq is None:
            self.next_seq = seq  # capture started mid-connection
        ahead = ((seq - self.next_seq + HALF) % SEQ_MOD) - HALF
        if ahead > 0:
            self._hold(seq, data, missing)
        else:
            self._apply(-ahead, data, missing)
            if self.pending:
                self._drain()

    def count(self, seq: int, size: int) -> None:
        """Count a segment of an encrypted stream: nothing is held or delivered, only bytes
        beyond the furthest seen so far are added (a hole is not counted as bytes)."""
        if self.next_seq is None:
            self.next_seq = seq
        end = (seq + size) % SEQ_MOD
        ahead = ((end - self.next_seq + HALF) % SEQ_MOD) - HALF
        if ahead > 0:
            self.delivered += min(ahead, size)
            self.repeated += size - min(ahead, size)
            self.next_seq = end
        else:
            self.repeated += size

    def _apply(self, overlap: int, data: bytes, missing: int) -> None:
        """Deliver a segment that starts ``overlap`` bytes before the next expected one."""
        size = len(data) + missing
        if overlap >= size:
            self.repeated += size
            return
        self.repeated += overlap
        if overlap:
            if overlap < len(data):
                data = data[overlap:]
            else:
                missing -= overlap - len(data)
                data = b""
        # State first, then the consumer: it may turn the flow encrypted and flush this side.
        self.next_seq = (self.next_seq + len(data) + missing) % SEQ_MOD
        self.delivered += len(data)
        self.gaps += missing
        if data:
            self.out.data(data)
        if missing:
            self.out.gap(missing)

    def _hold(self, seq: int, data: bytes, missing: int) -> None:
        old = self.pending.get(seq)
        if old is not None:
            if len(old[0]) + old[1] >= len(data) + missing:
                self.repeated += len(data) + missing
                return
            self.pending_bytes -= len(old[0])
            self.repeated += len(old[0]) + old[1]
        self.pending[seq] = (data, missing)
        self.pending_bytes += len(data)
        if self.pending_bytes > self.cap:
            self._skip()

    def _drain(self) -> None:
        while self.pending:
            item = self.pending.pop(self.next_seq, None)
            overlap = 0
            if item is None:  # a waiting segment that overlaps the delivered bytes (re-segmented)
                for seq in self.pending:
                    ahead = ((seq - self.next_seq + HALF) % SEQ_MOD) - HALF
                    if ahead <= 0:
                        item, overlap = self.pending.pop(seq), -ahead
                        break
                else:
                    return
            self.pending_bytes -= len(item[0])
            self._apply(overlap, *item)

    def _skip(self) -> None:
        """Give up on the missing bytes before the earliest waiting segment: count them as a gap."""
        seq = min(self.pending, key=lambda s: (s - self.next_seq) % SEQ_MOD)
        hole = (seq - self.next_seq) % SEQ_MOD
        self.gaps += hole
        self.next_seq = seq
        self.out.gap(hole)
        self._drain()

    def finish(self) -> None:
        """Flush every waiting segment, in order, with the holes between them as gaps."""
        while self.pending:
            self._skip()


# -- chunked scanning --------------------------------------------------------------------

class Sink:
    """Decoded text on its way to the detectors, scanned in chunks of about ``chunk`` bytes.

    A chunk ends just after a byte that cannot be part of a value (``CUT_BYTES``), so no value
    straddles two chunks. Each chunk is scanned together with context from its neighbours: the
    ``context`` bytes before it (from a line start) and after it, for the anchors around a value,
    and the header line of the CSV table it continues, so a column named "KVNR" still anchors its
    values many chunks later. The hits inside the context alone are subtracted again, so each
    value is counted exactly once. A write that looks binary (more than ``binary_share`` control
    bytes: an image, an archive, ciphertext) is not scanned and ends the text before it.
    ``scan(bytes) -> hits`` runs the detectors (no value they find is blank: a unit's last chunk
    of whitespace alone is counted as scanned without calling it); ``tally(hits)`` receives a
    chunk's hits.
    """

    __slots__ = ("scan", "tally", "chunk", "context", "binary_share", "buf", "before", "header",
                 "fresh", "scanned", "binary")

    def __init__(self, scan, tally, chunk: int, context: int, binary_share: float):
        self.scan, self.tally = scan, tally
        self.chunk, self.context, self.binary_share = chunk, context, binary_share
        self.buf = bytearray()
        self.before = self.header = b""
        self.fresh = True  # the next chunk starts a unit: its first line may be a CSV header
        self.scanned = 0  # bytes the detectors saw
        self.binary = 0  # bytes not scanned because they were not text

    def write(self, data: bytes) -> None:
        if len(data) >= BINARY_MIN_BYTES and self._binary(data):
            self.binary += len(data)
            self.boundary()
            return
        self.buf += data
        if len(self.buf) >= self.chunk:
            self._flush()

    def line(self, data: bytes) -> None:
        """``write(data)`` then ``write(b"\\n")`` in one call: a datagram and the line end that
        keeps the next one apart (a DNS tunnel is many thousands of them)."""
        if len(data) >= BINARY_MIN_BYTES and self._binary(data):
            self.binary += len(data)
            self.boundary()
        else:
            self.buf += data
            if len(self.buf) >= self.chunk:
                self._flush()
        self.buf += b"\n"
        if len(self.buf) >= self.chunk:
            self._flush()

    def _binary(self, data: bytes) -> bool:
        """More control bytes than ``binary_share`` in a sample of the write (start and middle):
        a file's type shows at its start, and a whole-write test was a tenth of the time."""
        n = len(data)
        sample = data if n <= 2 * BINARY_SAMPLE_BYTES else \
            data[:BINARY_SAMPLE_BYTES] + data[n // 2:n // 2 + BINARY_SAMPLE_BYTES]
        return len(sample.translate(None, _TEXT)) > self.binary_share * len(sample)

    def boundary(self) -> None:
        """End of a unit (a gap in the stream, binary data, the end): nothing joins across it."""
        if self.buf:  # the last chunk: all that is left, nothing after it
            part = bytes(self.buf)
            self.buf.clear()
            if self.before or not part.isspace():
                self._scan(part, b"")
            else:  # only line ends (between binary datagrams): no value is blank, none can be here
                self.scanned += len(part)
        self.before = self.header = b""
        self.fresh = True

    def _flush(self) -> None:
        """A full chunk: scanned up to its last cut byte, with the bytes after it as context.
        (The last chunk of a unit is scanned by ``boundary``, which drops the context after it.)"""
        buf = self.buf
        cut = _cut(buf)
        part = bytes(buf[:cut])
        ahead = bytes(buf[cut:cut + self.context])
        del buf[:cut]
        self._scan(part, ahead)
        if part:
            self._remember(part)

    def _scan(self, part: bytes, ahead: bytes) -> None:
        if not part:
            return
        self.scanned += len(part)
        before = self.before
        hits = self.scan(before + part + ahead)
        if hits and (before or ahead):
            hits = _minus(hits, (self.scan(before) if before else []) + (self.scan(ahead) if ahead else []))
        if hits:
            self.tally(hits)

    def _remember(self, part: bytes) -> None:
        """Context for the next chunk: the current table's header line and this chunk's tail."""
        para = max(part.rfind(b"\n\n"), part.rfind(b"\n\r\n"))
        start = (part.index(b"\n", para + 1) + 1) if para >= 0 else (0 if self.fresh else None)
        self.fresh = False
        if start is not None:  # a new paragraph (or unit) began in this chunk: its first line
            end = part.find(b"\n", start)
            line = part[start:end if end >= 0 else len(part)]
            self.header = line if len(line) <= CSV_HEADER_MAX_BYTES else b""
            self.fresh = start == len(part)  # the blank line ended the chunk: the next one starts it
        tail = part[-self.context:]
        nl = tail.find(b"\n")
        if 0 <= nl < len(tail) - 1 and len(tail) == self.context:
            tail = tail[nl + 1:]  # from a line start, so the columns of the table count right
        self.before = (self.header + b"\n" + tail) if self.header else tail


def _cut(buf: bytearray) -> int:
    """Where to end a chunk: just after the last cut byte (looked for near the end first)."""
    tail = max(0, len(buf) - CUT_WINDOW)
    for start in (tail, 0) if tail else (0,):
        pos = max(buf.rfind(b, start) for b in CUT_BYTES)
        if pos >= 0:
            return pos + 1
    return len(buf)  # no safe place in a whole chunk: binary, or one endless token


def _minus(hits: list, context_hits: list) -> list:
    """``hits`` without one occurrence of each value found in the context bytes alone."""
    if not context_hits:
        return hits
    drop = Counter((h.category, h.hmac) for h in context_hits)
    out = []
    for h in hits:
        k = (h.category, h.hmac)
        if drop[k]:
            drop[k] -= 1
        else:
            out.append(h)
    return out
