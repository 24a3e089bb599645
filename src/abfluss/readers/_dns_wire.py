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

import re
import socket
import struct

QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 12: "PTR", 13: "HINFO", 15: "MX",
          16: "TXT", 17: "RP", 24: "SIG", 25: "KEY", 28: "AAAA", 29: "LOC", 33: "SRV", 35: "NAPTR",
          37: "CERT", 39: "DNAME", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
          50: "NSEC3", 52: "TLSA", 64: "SVCB", 65: "HTTPS", 99: "SPF", 249: "TKEY", 250: "TSIG",
          251: "IXFR", 252: "AXFR", 255: "*", 256: "URI", 257: "CAA"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}

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


class TcpStreams:
    """DNS over TCP, per direction of a connection: segments in sequence order, split into
    messages by their 2-byte length prefix. Retransmitted bytes are dropped; a gap that is never
    filled ends the stream's framing (reported once by the caller as a skip)."""

    def __init__(self):
        self._streams: dict[tuple, list] = {}

    def add(self, key: tuple, seq: int, flags: int, payload: bytes) -> tuple[list[bytes], str | None]:
        """Messages completed by this segment, and a reason when bytes had to be given up."""
        st = self._streams.get(key)
        if flags & 0x02:  # SYN: the data starts one after its sequence number
            self._streams[key] = [(seq + 1) & 0xFFFFFFFF, b"", {}]
            return [], None
        if st is None:
            if not payload:
                return [], None
            st = self._streams[key] = [seq, b"", {}]  # joined mid-stream: hope it is a boundary
        if payload:
            st[2].setdefault(seq, payload)
        lost = None
        while st[2]:
            nxt = st[0]
            seg = st[2].pop(nxt, None)
            if seg is None:
                older = [s for s in st[2] if (nxt - s) & 0xFFFFFFFF < 1 << 31]
                if not older:
                    break
                s = older[0]  # a retransmission overlapping what we have: keep the new tail
                seg = st[2].pop(s)[(nxt - s) & 0xFFFFFFFF:]
                if not seg:
                    continue
            st[1] += seg
            st[0] = (nxt + len(seg)) & 0xFFFFFFFF
        if sum(len(v) for v in st[2].values()) + len(st[1]) > MAX_TCP_BUFFER:
            lost = f"TCP DNS stream {_show(key)}: {len(st[1])} bytes without a complete message"
            self._streams.pop(key)
            return [], lost
        out = []
        buf = st[1]
        while len(buf) >= 2:
            length = int.from_bytes(buf[:2], "big")
            if len(buf) < 2 + length:
                break
            out.append(buf[2:2 + length])
            buf = buf[2 + length:]
        st[1] = buf
        if flags & 0x05 and (buf or st[2]):  # FIN or RST with bytes left over
            lost = f"TCP DNS stream {_show(key)} ended inside a message ({len(buf)} bytes)"
            self._streams.pop(key)
        elif flags & 0x05:
            self._streams.pop(key)
        return out, lost

    def leftovers(self) -> list[str]:
        """Streams that ended (with the capture) inside a message."""
        return [f"TCP DNS stream {_show(k)} ended inside a message ({len(st[1])} bytes)"
                for k, st in self._streams.items() if st[1] or st[2]]


def _show(key: tuple) -> str:
    src, sport, dst, dport = key
    return f"{src}:{sport} -> {dst}:{dport}"
