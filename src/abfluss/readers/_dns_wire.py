"""A small byte-level DNS message parser: every name, whatever bytes its labels hold.

General-purpose decoders (dpkt, dnspython) refuse names with bytes outside printable ASCII,
and that is exactly what tunnels send: iodine's base128 and raw encodings put bytes 0x80-0xff
into every label. Refusing them hides the tunnel. This parser reads names label by label
(with compression pointers that must point backwards, so a loop is impossible) and writes
them in Zeek's escaped form: printable ASCII as is, every other byte as ``\\xNN`` (lower-case
hex). A backslash and a dot inside a label are escaped too (``\\x5c``, ``\\x2e``), so the text
is unambiguous and the label bytes can be counted exactly from it (``label_bytes``).

Only the header and the first question decide whether a message is DNS at all: a message
whose answer section is cut still gives its question and the answers before the cut.
``TcpStreams`` reassembles DNS over TCP (RFC 1035 4.2.2: a 2-byte length before each message).
"""

from __future__ import annotations

import heapq

import _abfluss_dns as _c

from ..dns_names import label_bytes, unescape  # noqa: F401  part of this module's interface

QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 12: "PTR", 13: "HINFO", 15: "MX",
          16: "TXT", 17: "RP", 24: "SIG", 25: "KEY", 28: "AAAA", 29: "LOC", 33: "SRV", 35: "NAPTR",
          37: "CERT", 39: "DNAME", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
          50: "NSEC3", 52: "TLSA", 64: "SVCB", 65: "HTTPS", 99: "SPF", 249: "TKEY", 250: "TSIG",
          251: "IXFR", 252: "AXFR", 255: "*", 256: "URI", 257: "CAA"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}

#: A name longer than this (in label bytes and length octets) is not DNS (RFC 1035: 255), and
#: compression pointers followed per name at most (each must point backwards anyway): in the C parser.
MAX_NAME, MAX_JUMPS = 1024, 128
#: Bytes held per TCP direction waiting for the rest of a message (a DNS message is < 64 KiB).
MAX_TCP_BUFFER = 1 << 17


#: The parser itself is C (``_dns_wire.c``, built at install time as the module ``_abfluss_dns``):
#: one Python parse per message cost more CPU than NFStream's whole metering of a DNS-heavy
#: capture. It has exactly the semantics described above (tests/test_dns_wire_c.py checks it against
#: the former Python implementation); every read is bounds-checked against the message's end.
_c.set_names(QTYPES, RCODES)
WireError = _c.WireError  # a ValueError: the bytes are not a DNS message; the text is the reason
#: ``read_name(buf, off)``: the name at ``off`` as escaped text (no trailing dot; the root is ""),
#: and the offset after it in the message (after the first pointer where the name is compressed).
read_name = _c.read_name
#: ``parse_at(buf, start, end)``: the message ``buf[start:end]`` (``buf`` any buffer: bytes, a
#: memory map) as the tuple (id, qr, opcode, rcode, key, qtype, query, answers, answer_types, ttls).
parse_at = _c.parse
#: ``l4(buf, start, end)``: the Ethernet frame ``buf[start:end]`` as (proto, src, dst, sport, dport,
#: payload, tcp seq, tcp flags) when it is TCP or UDP on port 53 (a first or only fragment), else None.
l4 = _c.l4
#: ``message(pending, rows, us, frame, payload)`` and ``scan(...)``: ``_dns_packets._Decoder``'s
#: pairing of messages into rows, for one message and for every packet of a memory-mapped capture.
message, scan = _c.message, _c.scan
#: ``columns(rows, width)``: rows (lists) as one list per field.
columns = _c.columns


def qtype_name(n: int) -> str:
    """The type's mnemonic; unknown and private-use numbers as ``TYPE<n>`` (RFC 3597)."""
    return QTYPES.get(n) or f"TYPE{n}"


def rcode_name(n: int) -> str:
    return RCODES.get(n) or f"RCODE{n}"


class Message:
    """The parts of one DNS message abfluss stores. ``key`` identifies the question as it was on
    the wire (lower-cased ASCII; bytes, or the lower-cased text where the question is compressed),
    for pairing a response with its query."""

    __slots__ = ("id", "qr", "opcode", "rcode", "key", "qtype", "query", "answers", "answer_types", "ttls")

    def __init__(self, id_, qr, opcode, rcode, key, qtype, query, answers, answer_types, ttls):
        self.id, self.qr, self.opcode, self.rcode = id_, qr, opcode, rcode
        self.key, self.qtype, self.query, self.answers, self.ttls = key, qtype, query, answers, ttls
        self.answer_types = answer_types  # per answer its record type: only A/AAAA are addresses


def parse(buf: bytes) -> Message:
    """Header, first question and answers of a DNS message; ``WireError`` if it is not one.
    Only the header and the first question decide: answers after a cut are left out."""
    return Message(*parse_at(buf, 0, len(buf)))


class _Stream:
    """One direction of a DNS-over-TCP connection. Segments that arrived ahead of the next
    expected byte wait in ``held``; ``heap`` orders their starts relative to ``base`` (the next
    byte when the first of them arrived), so the next one is found without a scan. A stream of
    tiny segments out of order (131,072 of one byte fit in ``MAX_TCP_BUFFER``) cost a scan of all
    held segments per segment before: seconds for one 12 KB message (found by fuzzing), hours for
    a full buffer."""

    __slots__ = ("nxt", "buf", "held", "heap", "base", "held_bytes")

    def __init__(self, nxt: int):
        self.nxt, self.buf, self.held, self.heap, self.base, self.held_bytes = nxt, bytearray(), {}, [], nxt, 0

    def hold(self, seq: int, payload: bytes) -> None:
        behind = (self.nxt - seq) & 0xFFFFFFFF
        if behind and behind < 1 << 31:  # a retransmission overlapping what we have: keep the new tail
            seq, payload = self.nxt, payload[behind:]
        if not payload or seq in self.held:
            return
        if not self.held:
            self.base = self.nxt
        self.held[seq] = payload
        self.held_bytes += len(payload)
        heapq.heappush(self.heap, (seq - self.base) & 0xFFFFFFFF)

    def advance(self) -> None:
        """Append what now follows on from the next expected byte."""
        while self.heap:
            at = (self.nxt - self.base) & 0xFFFFFFFF
            first = self.heap[0]
            if first > at:
                break  # a gap
            heapq.heappop(self.heap)
            seg = self.held.pop((self.base + first) & 0xFFFFFFFF)
            self.held_bytes -= len(seg)
            seg = seg[at - first:]  # an overlap: only its tail is new
            if seg:
                self.buf += seg
                self.nxt = (self.nxt + len(seg)) & 0xFFFFFFFF


class TcpStreams:
    """DNS over TCP, per direction of a connection: segments in sequence order, split into
    messages by their 2-byte length prefix. Retransmitted bytes are dropped; a gap that is never
    filled ends the stream's framing (reported once by the caller as a skip)."""

    def __init__(self):
        self._streams: dict[tuple, _Stream] = {}

    def add(self, key: tuple, seq: int, flags: int, payload: bytes) -> tuple[list[bytes], str | None]:
        """Messages completed by this segment, and a reason when bytes had to be given up."""
        st = self._streams.get(key)
        if flags & 0x02:  # SYN: the data starts one after its sequence number
            self._streams[key] = _Stream((seq + 1) & 0xFFFFFFFF)
            return [], None
        if st is None:
            if not payload:
                return [], None
            st = self._streams[key] = _Stream(seq)  # joined mid-stream: hope it is a boundary
        if payload:
            st.hold(seq, payload)
            st.advance()
        lost = None
        if st.held_bytes + len(st.buf) > MAX_TCP_BUFFER:
            lost = f"TCP DNS stream {_show(key)}: {len(st.buf)} bytes without a complete message"
            self._streams.pop(key)
            return [], lost
        out = []
        buf, used = st.buf, 0
        while len(buf) - used >= 2:
            length = int.from_bytes(buf[used:used + 2], "big")
            if len(buf) - used < 2 + length:
                break
            out.append(bytes(buf[used + 2:used + 2 + length]))
            used += 2 + length
        if used:
            del buf[:used]
        if flags & 0x05 and (buf or st.held):  # FIN or RST with bytes left over
            lost = f"TCP DNS stream {_show(key)} ended inside a message ({len(buf)} bytes)"
            self._streams.pop(key)
        elif flags & 0x05:
            self._streams.pop(key)
        return out, lost

    def leftovers(self) -> list[str]:
        """Streams that ended (with the capture) inside a message."""
        return [f"TCP DNS stream {_show(k)} ended inside a message ({len(st.buf)} bytes)"
                for k, st in self._streams.items() if st.buf or st.held]


def _show(key: tuple) -> str:
    src, sport, dst, dport = key
    return f"{src}:{sport} -> {dst}:{dport}"
