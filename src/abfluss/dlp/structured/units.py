"""One unit (a body, mail part, archive member or file transfer): its layout recognised from its
content and rendered for the detectors, whole (``render``) or arriving in pieces (``Unit``)."""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Iterator

from .. import containers, office
from ..containers import Budget
from .delimited import DelimitedStream, delimited, fixed_width, sniff_delimited, sniff_fixed
from .hl7 import hl7
from .jsondoc import json_text
from .markup import markup
from .records import SNIFF_CHARS, chain
from .sql import sql, sql_hint
from .text import WIDE, decode_text, encode, is_text, utf16_guess

#: Starts of files with no text to read (images, media, programs, PDF): passed on as they are,
#: so the sink counts them as binary.
OPAQUE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"MZ\x90\x00", b"MSCF", b"7z\xbc\xaf", b"Rar!",
                b"(\xb5/\xfd", b"RIFF", b"OggS", b"ID3\x03", b"\x00\x00\x00\x18ftyp", b"\x00\x00\x00\x20ftyp",
                b"\x00\x00\x01\xba", b"wOF2", b"wOFF", b"\x7fELF", b"%PDF-")
#: Starts that make ``decode_text`` read a unit other than as UTF-8 (with its BOM, UTF-32 too).
_BOMS = WIDE + (codecs.BOM_UTF32_BE,)
_B64 = re.compile(rb"[A-Za-z0-9+/=\r\n]+")
_B64_MIN = 64


def render(data: bytes, sink, limits, budget: Budget | None = None, depth: int = 0) -> None:
    """Write one whole unit to ``sink`` as the detectors should read it (see the module doc)."""
    if budget is None:
        budget = Budget(limits.max_decoded_bytes, limits.max_ratio)
    if not data:
        return
    fmt = containers.kind(data)
    if fmt is not None:
        if depth >= limits.max_depth:
            budget.skip("nesting limit")
            sink.write(data)  # counted as binary by the sink
            return
        sink.boundary()
        doc = office.document(data, budget) if fmt == "zip" else None
        if doc is not None:  # xlsx, ods, docx, odt: their content parts as records
            try:
                for piece in doc:
                    sink.write(encode(piece))
            except Exception:  # noqa: BLE001 - a damaged document: what was read before counts
                budget.skip("office: damaged")
        else:
            for _name, member in containers.members(fmt, data, budget):
                sink.boundary()
                render(member, sink, limits, budget, depth + 1)
        sink.boundary()
        return
    if data.startswith(OPAQUE_MAGIC):
        sink.write(data)
        return
    if len(data) >= _B64_MIN and depth < limits.max_depth and _B64.fullmatch(data):
        decoded = _base64(data)
        if decoded is not None and (containers.kind(decoded) or is_text(decoded)):
            render(decoded, sink, limits, budget, depth + 1)
            return
    if not data.startswith(_BOMS) and not utf16_guess(data) and _plain(_head(data)):
        sink.write(data)  # plain text (as convert finds from the same head): the bytes as they came
        return
    text = decode_text(data)
    try:
        pieces = convert(text)
        first = next(pieces, None)
        if first is text:
            second = next(pieces, None)
            if second is None and not data.startswith(WIDE) and not utf16_guess(data):
                sink.write(data)  # plain text in an ASCII-compatible encoding: the bytes as they came
                return
            pieces = chain([second] if second is not None else [], pieces)
        if first is not None:
            sink.write(encode(first))
        for piece in pieces:
            sink.write(encode(piece))
    except Exception:  # noqa: BLE001 - a layout that breaks half-way (a CSV field over csv's limit …)
        budget.skip("layout: damaged, read as text")
        sink.boundary()
        sink.write(encode(text))  # values already written count once more at most, none is lost


def _base64(data: bytes) -> bytes | None:
    compact = data.replace(b"\r", b"").replace(b"\n", b"")
    if len(compact) % 4:
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


#: Bytes decoded first for ``_head``: enough for SNIFF_CHARS characters unless many take several
#: bytes (compressed or random bytes decode to about 0.96 characters a byte).
_HEAD_FIRST = SNIFF_CHARS + SNIFF_CHARS // 8


def _head(data: bytes) -> str:
    """``decode_text(data)[:SNIFF_CHARS]`` of a unit in an ASCII-compatible encoding, from a
    prefix of it: a character takes at most 4 bytes, and UTF-8 is decoded left to right.
    A shorter prefix first: only its last 3 characters can differ from a longer one's (an
    incomplete sequence at its end), so when it holds SNIFF_CHARS + 3 of them (text in ASCII,
    and binary bodies, whose invalid bytes are a character each) the longer decode, 4 times
    the bytes, is not needed (a tenth of the inspection pass on binary HTTP bodies)."""
    if len(data) > _HEAD_FIRST:
        head = data[:_HEAD_FIRST].decode("utf-8", "surrogateescape")
        if len(head) >= SNIFF_CHARS + 3:
            return head[:SNIFF_CHARS]
    return data[:4 * SNIFF_CHARS + 4].decode("utf-8", "surrogateescape")[:SNIFF_CHARS]


def _plain(head: str) -> bool:
    """Would ``convert`` pass the text through unchanged? Decided from its head as ``convert``
    decides (JSON and markup need the whole text: not plain here), so a large plain body is
    not decoded whole only to be written as it came."""
    start = head.lstrip()[:1]
    if start in ("{", "[", "<"):
        return False
    if head.startswith(("MSH", "\x0bMSH")) or "\rMSH|" in head[:200] or "\nMSH|" in head[:200]:
        return False
    try:
        return not sql_hint(head) and sniff_delimited(head) is None and sniff_fixed(head) is None
    except Exception:  # noqa: BLE001 - as render's: the whole text then takes render's way
        return False


def convert(text: str) -> Iterator[str]:
    """Text of one unit in record form, by its layout."""
    head = text[:SNIFF_CHARS]
    start = head.lstrip()[:1]
    if start in ("{", "["):
        out = json_text(text)
        if out is not None:
            yield from out
            return
    if start == "<":
        yield from markup(text)
        return
    if head.startswith(("MSH", "\x0bMSH")) or "\rMSH|" in head[:200] or "\nMSH|" in head[:200]:
        yield from hl7(text)
        return
    if sql_hint(head):
        yield from sql(text)
        return
    dialect = sniff_delimited(head)
    if dialect is not None:
        yield from delimited(text, dialect)
        return
    cols = sniff_fixed(head)
    if cols is not None:
        yield from fixed_width(text, cols)
        return
    yield text


class Unit:
    """One unit arriving in pieces (an HTTP body, an FTP file, a raw stream): held whole up to
    ``max_buffered_bytes`` and rendered at its end; a larger one is streamed as delimited text
    when it is that, decompressed on the fly when it is gzip, else passed on as text."""

    def __init__(self, sink, limits, newline: bool = True):
        self.sink, self.limits, self.newline = sink, limits, newline
        self.buf: bytearray | None = bytearray()
        self.stream = None  # DelimitedStream, _GzipStream, or "raw"
        self.decoder = None  # incremental text decoder of a DelimitedStream

    def feed(self, data: bytes) -> None:
        if self.buf is not None:
            self.buf += data
            if len(self.buf) > self.limits.max_buffered_bytes:
                self._go_streaming()
            return
        self._stream(data)

    def _go_streaming(self) -> None:
        data, self.buf = bytes(self.buf), None
        if data.startswith(containers.GZIP):
            self.stream = _GzipStream(Unit(self.sink, self.limits, self.newline), self.limits)
        else:
            head = decode_text(data[:SNIFF_CHARS * 2])
            sniffed = None if head.lstrip()[:1] in ("{", "[", "<") else sniff_delimited(head[:SNIFF_CHARS])
            if sniffed is not None:
                self.stream = DelimitedStream(sniffed)
                enc = "utf-8"
                if data.startswith(codecs.BOM_UTF8):
                    data = data[3:]
                elif data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) or utf16_guess(data):
                    enc = "utf-16" if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else utf16_guess(data)
                self.decoder = codecs.getincrementaldecoder(enc)("surrogateescape" if enc == "utf-8" else "replace")
            else:
                self.stream = "raw"
        self._stream(data)

    def _stream(self, data: bytes) -> None:
        if self.stream == "raw":
            self.sink.write(data)
        elif isinstance(self.stream, _GzipStream):
            self.stream.feed(data)
        else:
            try:
                for piece in self.stream.feed(self.decoder.decode(data)):
                    self.sink.write(encode(piece))
            except Exception:  # noqa: BLE001 - the table broke (csv's field limit …): text from here
                self.stream = "raw"
                self.sink.write(data)

    def close(self) -> None:
        if self.buf is not None:
            data, self.buf = bytes(self.buf), None
            render(data, self.sink, self.limits)
        elif isinstance(self.stream, DelimitedStream):
            try:
                for piece in self.stream.feed(self.decoder.decode(b"", final=True)):
                    self.sink.write(encode(piece))
                for piece in self.stream.close():
                    self.sink.write(encode(piece))
            except Exception:  # noqa: BLE001 - as in _stream
                self.sink.write(encode(self.stream.pending))
        elif isinstance(self.stream, _GzipStream):
            self.stream.close()
        if self.newline:  # a message's end is a line end: the next message follows in the same chunk
            self.sink.write(b"\n")


class _GzipStream:
    """A gzip unit too large to hold: inflated within the size and ratio limits into a Unit."""

    def __init__(self, inner: Unit, limits):
        import zlib

        self.inner, self.d = inner, zlib.decompressobj(47)
        self.seen = self.produced = 0
        self.ratio, self.total = limits.max_ratio, limits.max_decoded_bytes
        self.stopped = False

    def feed(self, data: bytes) -> None:
        import zlib

        if self.stopped:
            return
        self.seen += len(data)
        cap = min(self.total, max(containers.MIN_ALLOWANCE, int(self.seen * self.ratio))) - self.produced
        try:
            out = self.d.decompress(data, max(1, cap))
        except zlib.error:
            self.stopped = True
            return
        self.produced += len(out)
        if self.d.unconsumed_tail or self.produced >= self.total:
            self.stopped = True  # size or ratio limit: the rest is not read
        self.inner.feed(out)

    def close(self) -> None:
        self.inner.close()
