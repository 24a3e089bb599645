"""The Python DNS message parser abfluss used before its C version (``_dns_wire.c``), kept verbatim
as the reference the C parser is checked against (tests/test_dns_wire_c.py), with what it replaced
too: the Python slicer of Ethernet frames (``_l4_in_place``, ``_fast_l4``), the pairing of messages
into rows (``_Decoder``) and a plain loop over a capture's packets (``scan``). Not used by abfluss."""

from __future__ import annotations

import re
import socket
import struct

import dpkt

from abfluss.readers._dns_wire import QTYPES, RCODES, TcpStreams

#: Bytes kept as they are in the escaped text: printable ASCII except backslash and dot.
_PLAIN = bytes(b for b in range(0x20, 0x7F) if b not in (0x5C, 0x2E))
_PLAIN_OR_DOT = _PLAIN + b"."
_ESCAPED = [chr(b) if b in _PLAIN else f"\\x{b:02x}" for b in range(256)]
_ESCAPE_RE = re.compile(r"\\x[0-9a-fA-F]{2}")
#: A name longer than this (in label bytes and length octets) is not DNS (RFC 1035: 255).
MAX_NAME = 1024
#: Compression pointers followed per name at most (each must point backwards anyway).
MAX_JUMPS = 128
#: Bytes held per TCP direction waiting for the rest of a message (a DNS message is < 64 KiB).
MAX_TCP_BUFFER = 1 << 17


class WireError(ValueError):
    """The bytes are not a DNS message; the text is the reason, for a counted skip."""


def qtype_name(n: int) -> str:
    """The type's mnemonic; unknown and private-use numbers as ``TYPE<n>`` (RFC 3597)."""
    return QTYPES.get(n) or f"TYPE{n}"


def rcode_name(n: int) -> str:
    return RCODES.get(n) or f"RCODE{n}"


def escape_label(label: bytes) -> str:
    if not label.translate(None, _PLAIN):  # all plain: the common case, one C call
        return label.decode("ascii")
    return "".join([_ESCAPED[b] for b in label])


def label_bytes(text: str) -> int:
    """The bytes an escaped name's labels hold (dots between labels not counted)."""
    return len(_ESCAPE_RE.sub("_", text)) - text.count(".")


def unescape(text: str) -> str:
    """The escaped text with each ``\\xNN`` back as the one character of that code point."""
    if "\\x" not in text:
        return text
    return _ESCAPE_RE.sub(lambda m: chr(int(m.group(0)[2:], 16)), text)


def read_name(buf: bytes, off: int) -> tuple[str, int]:
    """The name at ``off`` as escaped text (no trailing dot; the root is ""), and the offset
    after it in the message (after the first pointer where the name is compressed)."""
    labels: list[bytes] = []
    end = None
    jumps = 0
    n = len(buf)
    while True:
        if off >= n:
            raise WireError("name runs past the end of the message")
        length = buf[off]
        if length and length < 64:  # a label: the common case first
            nxt = off + 1 + length
            if nxt > n:
                raise WireError("label runs past the end of the message")
            labels.append(buf[off + 1:nxt])
            off = nxt
            continue
        if length == 0:
            off += 1
            break
        if length < 0xC0:
            raise WireError(f"unsupported label type 0x{length & 0xC0:02x}")
        if off + 1 >= n:
            raise WireError("compression pointer cut off")
        target = ((length & 0x3F) << 8) | buf[off + 1]
        if target >= off:
            raise WireError("compression pointer does not point backwards")
        jumps += 1
        if jumps > MAX_JUMPS:
            raise WireError("too many compression pointers")
        if end is None:
            end = off + 2
        off = target
    after = end if end is not None else off
    raw = b".".join(labels)
    if len(raw) + 2 > MAX_NAME:
        raise WireError("name longer than any DNS name")
    if not raw.translate(None, _PLAIN_OR_DOT) and raw.count(b".") == len(labels) - 1:
        return raw.decode("ascii"), after  # all plain, no dot inside a label: one C call each
    return ".".join([escape_label(x) for x in labels]), after


def _question_end(buf: bytes, off: int) -> int | None:
    """The offset after an uncompressed name at ``off`` (a question's), None if it is compressed."""
    n = len(buf)
    while off < n:
        length = buf[off]
        if length == 0:
            return off + 1
        if length >= 64:
            return None
        off += 1 + length
    raise WireError("name runs past the end of the message")


class Message:
    """The parts of one DNS message abfluss stores. ``key`` identifies the question as it was on
    the wire (lower-cased ASCII), for pairing; ``query`` is decoded only when asked for."""

    __slots__ = ("id", "qr", "opcode", "rcode", "key", "qtype", "answers", "answer_types", "ttls",
                 "_buf", "_query")

    def __init__(self, id_, qr, opcode, rcode, key, qtype, answers, answer_types, ttls, buf, query):
        self.id, self.qr, self.opcode, self.rcode = id_, qr, opcode, rcode
        self.key, self.qtype, self.answers, self.ttls = key, qtype, answers, ttls
        self.answer_types = answer_types  # per answer its record type: only A/AAAA are addresses
        self._buf, self._query = buf, query

    @property
    def query(self) -> str | None:
        if self._query is None and self._buf is not None:
            self._query = read_name(self._buf, 12)[0]
        return self._query


def parse(buf: bytes) -> Message:
    """Header, first question and answers of a DNS message; ``WireError`` if it is not one."""
    if len(buf) < 12:
        raise WireError(f"{len(buf)} bytes: shorter than a DNS header")
    id_, flags, qd, an = struct.unpack_from(">HHHH", buf)
    qr, opcode, rcode = flags >> 15, (flags >> 11) & 0xF, flags & 0xF
    if opcode > 6:
        raise WireError(f"opcode {opcode} is not assigned")
    key = qtype = query = None
    lazy = None
    off = 12
    if qd:
        end = _question_end(buf, 12)
        if end is None or not qr:  # a query's name is always stored: read (and check) it now
            query, off = read_name(buf, 12)
            key = buf[12:off].lower() if end is not None else query.lower()
        else:  # a response: its question is needed only when no query waits for it
            off, key, lazy = end, buf[12:end].lower(), buf
            if len(key) + 1 > MAX_NAME:
                raise WireError("name longer than any DNS name")
        if off + 4 > len(buf):
            raise WireError("question cut off before its type")
        qtype = qtype_name(int.from_bytes(buf[off:off + 2], "big"))
        off += 4
        for _ in range(qd - 1):  # further questions (never seen in practice): skipped over
            off = _skip_name(buf, off) + 4
    elif len(buf) > 12 and not an:
        raise WireError("no question and no answer, but more bytes")
    answers: list[str] = []
    types: list[str] = []
    ttls: list[float] = []
    if qr and an:
        try:
            _answers(buf, off, an, answers, types, ttls)
        except (WireError, IndexError, struct.error):
            pass  # the question and the answers before the cut are still good
    return Message(id_, qr, opcode, rcode, key, qtype, answers, types, ttls, lazy, query)


def _skip_name(buf: bytes, off: int) -> int:
    """The offset after the name at ``off``, without reading it (an answer's owner is nearly
    always a pointer back to the question)."""
    n = len(buf)
    for _ in range(MAX_NAME):
        if off >= n:
            raise WireError("name runs past the end of the message")
        length = buf[off]
        if length == 0:
            return off + 1
        if length & 0xC0 == 0xC0:
            if off + 1 >= n or ((length & 0x3F) << 8 | buf[off + 1]) >= off:
                raise WireError("compression pointer cut off or not pointing backwards")
            return off + 2
        if length & 0xC0:
            raise WireError(f"unsupported label type 0x{length & 0xC0:02x}")
        off += 1 + length
    raise WireError("name longer than any DNS name")


def _answers(buf: bytes, off: int, count: int, answers: list, types: list, ttls: list) -> None:
    n = len(buf)
    for _ in range(count):
        off = _skip_name(buf, off)
        if off + 10 > n:
            raise WireError("answer cut off")
        rtype, _cls, ttl, rdlen = struct.unpack_from(">HHIH", buf, off)
        off += 10
        if off + rdlen > n:
            raise WireError("answer data cut off")
        answers.append(_rdata(buf, off, rtype, rdlen))
        types.append(qtype_name(rtype))
        ttls.append(float(ttl))
        off += rdlen


def _rdata(buf: bytes, off: int, rtype: int, rdlen: int) -> str:
    try:
        if rtype == 1 and rdlen == 4:
            return socket.inet_ntoa(buf[off:off + 4])
        if rtype == 28 and rdlen == 16:
            return socket.inet_ntop(socket.AF_INET6, buf[off:off + 16])
        if rtype in (2, 5, 12, 39):  # NS, CNAME, PTR, DNAME
            return read_name(buf, off)[0]
        if rtype == 15:  # MX: preference, exchange
            return read_name(buf, off + 2)[0]
        if rtype == 33:  # SRV: priority, weight, port, target
            return read_name(buf, off + 6)[0]
        if rtype in (16, 99):  # TXT: character strings, joined by a space as Zeek does
            parts, end = [], off + rdlen
            while off < end:
                k = buf[off]
                parts.append(escape_label(buf[off + 1:off + 1 + k]).replace("\\x2e", "."))
                off += 1 + k
            return " ".join(parts)
    except WireError:
        pass
    return f"<{qtype_name(rtype)}:{rdlen} bytes>"



# -- Ethernet frames to L4, as _dns_packets sliced them -----------------------------------------

DNS_PORT = 53
DLT_EN10MB = 1


def _fast_l4(datalink: int, buf: bytes):
    """(proto, src, dst, sport, dport, payload, tcp seq, tcp flags) sliced from raw Ethernet bytes
    when the packet may be DNS; None when it cannot be; ``False`` when only a full decode can tell (other link types)."""
    if datalink != DLT_EN10MB:
        return False
    off, ethertype = 14, buf[12:14]
    while ethertype in (b"\x81\x00", b"\x88\xa8"):  # VLAN tags
        ethertype, off = buf[off + 2:off + 4], off + 4
    if ethertype == b"\x08\x00":
        if len(buf) < off + 28 or buf[off + 6] & 0x1F or buf[off + 7]:
            return None  # too short, or a non-first fragment
        proto, src, dst = buf[off + 9], buf[off + 12:off + 16], buf[off + 16:off + 20]
        total = int.from_bytes(buf[off + 2:off + 4], "big")
        end = off + total if total else len(buf)
        off += (buf[off] & 0x0F) * 4
        family = socket.AF_INET
    elif ethertype == b"\x86\xdd":
        if len(buf) < off + 48:
            return None
        proto, src, dst = buf[off + 6], buf[off + 8:off + 24], buf[off + 24:off + 40]
        end = off + 40 + int.from_bytes(buf[off + 4:off + 6], "big")
        off += 40
        family = socket.AF_INET6
    else:
        return None
    if proto not in (6, 17):
        return None
    sport, dport = int.from_bytes(buf[off:off + 2], "big"), int.from_bytes(buf[off + 2:off + 4], "big")
    if DNS_PORT not in (sport, dport):
        return None
    if proto == 17:
        return ("udp", socket.inet_ntop(family, src), socket.inet_ntop(family, dst), sport, dport,
                buf[off + 8:end], 0, 0)
    if len(buf) < off + 14:
        return None
    return ("tcp", socket.inet_ntop(family, src), socket.inet_ntop(family, dst), sport, dport,
            buf[off + (buf[off + 12] >> 4) * 4:end], int.from_bytes(buf[off + 4:off + 8], "big"),
            buf[off + 13])


def _l4_in_place(b, p: int, end: int):
    """``_fast_l4`` on the frame at ``b[p:end]`` without copying it (b is the memory map)."""
    if end - p < 34:
        return None
    eth, off = b[p + 12:p + 14], p + 14
    while eth == b"\x81\x00" or eth == b"\x88\xa8":  # VLAN tags
        eth, off = b[off + 2:off + 4], off + 4
    if eth == b"\x08\x00":
        if end < off + 28:
            return None
        proto = b[off + 9]
        if (proto != 17 and proto != 6) or b[off + 6] & 0x1F or b[off + 7]:
            return None  # not UDP/TCP, or a non-first fragment
        l4 = off + (b[off] & 0x0F) * 4
        if l4 + 4 > end:
            return None
        sport, dport = (b[l4] << 8) | b[l4 + 1], (b[l4 + 2] << 8) | b[l4 + 3]
        if sport != DNS_PORT and dport != DNS_PORT:
            return None
        total = (b[off + 2] << 8) | b[off + 3]
        stop = min(off + total, end) if total else end
        src, dst = socket.inet_ntoa(b[off + 12:off + 16]), socket.inet_ntoa(b[off + 16:off + 20])
    elif eth == b"\x86\xdd":
        if end < off + 48:
            return None
        proto = b[off + 6]
        if proto != 17 and proto != 6:
            return None
        l4 = off + 40
        sport, dport = (b[l4] << 8) | b[l4 + 1], (b[l4 + 2] << 8) | b[l4 + 3]
        if sport != DNS_PORT and dport != DNS_PORT:
            return None
        stop = min(l4 + ((b[off + 4] << 8) | b[off + 5]), end)
        src = socket.inet_ntop(socket.AF_INET6, b[off + 8:off + 24])
        dst = socket.inet_ntop(socket.AF_INET6, b[off + 24:off + 40])
    else:
        return None
    if proto == 17:
        return "udp", src, dst, sport, dport, b[l4 + 8:stop], 0, 0
    if l4 + 14 > end:
        return None
    return ("tcp", src, dst, sport, dport, b[l4 + ((b[l4 + 12] >> 4) * 4):stop],
            int.from_bytes(b[l4 + 4:l4 + 8], "big"), b[l4 + 13])


# -- messages to rows, as _dns_packets paired them -----------------------------------------------

class _Decoder:
    """Messages to rows: queries wait for their response; TCP is reassembled first."""

    def __init__(self, report):
        self.report = report
        self.pending: dict[tuple, dict] = {}
        self.rows: list[dict] = []
        self.tcp = TcpStreams()
        self.mine = None  # a filter of the packets this worker decodes (``scan``'s parts)

    def packet(self, ts: float, number: int, l4: tuple, mine: bool = False) -> None:
        """``mine``: the packet is known to be this worker's (the index chose it already)."""
        if not mine and self.mine is not None and not self.mine(l4):
            return
        proto, src, dst, sport, dport, payload, seq, flags = l4
        if proto == "udp":
            if payload:
                self.message(ts, number, l4, payload)
            return
        msgs, lost = self.tcp.add((src, sport, dst, dport), seq, flags, payload)
        if lost:
            self.report.skip(f"packet {number}", lost)
        for m in msgs:
            self.message(ts, number, l4, m)

    def finish(self) -> list[dict]:
        for reason in self.tcp.leftovers():
            self.report.skip("end of capture", reason)
        self.rows.extend(self.pending.values())
        return self.rows

    def message(self, ts: float, number: int, l4: tuple, payload: bytes) -> None:
        proto, src, dst, sport, dport = l4[:5]
        try:
            msg = parse(payload)
        except WireError as e:
            self.report.skip(f"packet {number}", f"{proto} {src}:{sport} -> {dst}:{dport}: not a DNS "
                                                 f"message ({e}); its bytes count in the flow")
            return
        us = int(ts * 1_000_000)
        low = msg.key  # the question as on the wire, lower-cased: resolvers may change case (0x20)
        if not msg.qr:
            key = (src, sport, dst, dport, msg.id, low)
            old = self.pending.pop(key, None)
            if old is not None:  # the same query again (a retransmission): a row of its own
                self.rows.append(old)
            # the name as sent, like Zeek: case is part of what a tunnel encodes
            self.pending[key] = {"ts": us, "orig_h": src, "orig_p": sport, "resp_h": dst,
                                 "resp_p": dport, "proto": proto, "trans_id": msg.id, "query": msg.query,
                                 "qtype": msg.qtype, "query_bytes": len(payload)}
            return
        key = (dst, dport, src, sport, msg.id, low)
        row = self.pending.pop(key, None) or {
            "ts": us, "orig_h": dst, "orig_p": dport, "resp_h": src, "resp_p": sport, "proto": proto,
            "trans_id": msg.id, "query": msg.query, "qtype": msg.qtype}
        row.update(rcode=rcode_name(msg.rcode), answers=msg.answers, answer_types=msg.answer_types,
                   ttls=msg.ttls, answer_bytes=len(payload))
        self.rows.append(row)


FIELDS = ("ts", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "trans_id", "query", "qtype",
          "rcode", "answers", "answer_types", "ttls", "query_bytes", "answer_bytes")


def scan(path, report, mine=None) -> list[dict]:
    """Every DNS row of a capture of Ethernet frames, in time order, one packet after the other."""
    decoder = _Decoder(report)
    decoder.mine = mine
    with open(path, "rb") as f:
        pcapng = f.read(4) == b"\x0a\x0d\x0d\x0a"
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if pcapng else dpkt.pcap.Reader(f)
        try:
            for number, (ts, buf) in enumerate(reader, 1):
                l4 = _fast_l4(DLT_EN10MB, buf)
                if l4:
                    decoder.packet(ts, number, l4)
        except dpkt.dpkt.NeedData:
            pass
    rows = decoder.finish()
    rows.sort(key=lambda r: r["ts"])
    return [{k: r.get(k) for k in FIELDS} for r in rows]
