"""HTTP/1.x and MIME decoding for payload inspection (used by ``decode``).

HTTP messages of one direction are parsed head by head (requests pipelined or kept alive,
responses paired with their requests' methods), bodies framed by length, chunks or the end of
the connection, content codings (gzip, deflate, br) undone, then decoded by content type:
multipart bodies and mails are split into parts by the standard library's ``email`` package
(base64 and quoted-printable decoded), URL-encoded forms field by field; every other body, and
every part, is a unit for ``structured`` (CSV, JSON, XML, HL7, SQL, archives, office files …,
recognised from the content). Bodies that start like images or programs are framed but not read.
Each request and response is also told to the flow's ``sessions.Session`` (the ``http`` table's
rows, executables by their first bytes); a side that is not read (``DISCARD`` sink) is framed
for that alone, its bodies neither decoded nor scanned.
"""

from __future__ import annotations

import email
import email.header
import re
import zlib
from collections import deque
from urllib.parse import unquote_to_bytes

from . import structured

HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ",
                b"TRACE ", b"PROPFIND ", b"PROPPATCH ", b"MKCOL ", b"COPY ", b"MOVE ", b"LOCK ",
                b"UNLOCK ", b"REPORT ", b"SEARCH ")
#: Starts of file formats without readable text (images, media, programs): a body that starts
#: so is framed but not read. Archives and compressed files are opened (``containers``).
BINARY_MAGIC = structured.OPAQUE_MAGIC
#: Longest command or header line kept while waiting for its end; longer ones are scanned raw.
MAX_LINE = 65536


def scan_message(msg, sink, limits) -> None:
    """Every MIME part of a parsed message to the sink: its headers (encoded words decoded), a
    blank line, its body (base64 / quoted-printable decoded, then read as a ``structured``
    unit: an attached CSV, zip or spreadsheet) and a line end after it."""
    for part in msg.walk():
        for name, value in part.items():  # field names (name="kvnr") are anchors for the body
            sink.write(f"{name}: {_header_text(value)}\n".encode("utf-8", "surrogateescape"))
        sink.write(b"\n")  # the body starts a paragraph (a CSV file's header line)
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if payload:
            charset = (part.get_content_charset() or "").lower()
            if charset.startswith("utf-16") or charset.startswith("utf-32"):
                payload = payload.decode(charset, "replace").encode("utf-8")
            structured.render(payload, sink, limits)
            sink.write(b"\n")


def _header_text(value) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except Exception:  # noqa: BLE001 - an unknown charset or a broken encoded word: keep it as sent
        return str(value)


_HEAD_END = re.compile(rb"\r?\n\r?\n")


class Http:
    """HTTP/1.x messages of one direction (requests or responses), pipelined or kept alive."""

    def __init__(self, sink, side):
        self.sink, self.side = sink, side
        self.request = side.is_client
        self.buf = bytearray()
        self.body: Body | None = None

    def data(self, data: bytes) -> None:
        while data:
            if self.body is not None:
                data = self.body.feed(data)
                if self.body.done:
                    self.body.close()
                    self.body = None
                continue
            self.buf += data
            data = self._head()
            if self.side.decoder is not self:
                if data:
                    self.side.decoder.data(data)
                return

    def _head(self) -> bytes:
        """Parse a complete message head from the buffer; return the bytes after it."""
        while self.buf[:1] in (b"\r", b"\n") and self.buf:  # blank lines between messages
            del self.buf[:1]
        m = _HEAD_END.search(self.buf)
        if m is None:
            if len(self.buf) > MAX_LINE or (self.buf and not self._plausible()):
                rest = bytes(self.buf)
                self.buf.clear()
                self.side.restart(rest)
            return b""
        head, rest = bytes(self.buf[:m.start()]), bytes(self.buf[m.end():])
        self.buf.clear()
        lines = head.split(b"\n")
        start = lines[0].rstrip(b"\r")
        if not self._plausible(start):
            self.side.restart(head + m.group(0) + rest)
            return b""
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        # A blank line after the head, as on the wire: the body starts a paragraph, where the
        # scanner looks for a CSV header line.
        self.sink.write(unquote_to_bytes(start.replace(b"+", b" ")) + b"\n"
                        + unquote_to_bytes(b"\n".join(lines[1:])) + b"\n\n")
        framing, tunnel = self._framing(start, fields)
        watch, finished = self._record(start, fields)
        if tunnel:  # CONNECT or Upgrade: what follows is another protocol
            if finished:
                finished()
            self.side.restart(rest)
            return b""
        if framing is not None:
            self.body = Body(framing, fields, self.sink, self.side.limits, watch, finished,
                             read=self.sink is not _discard())
        elif finished:
            finished()
        return rest

    def _record(self, start: bytes, fields: dict):
        """Tell the session of this message: (body bytes callback, end of response callback)."""
        session = self.side.flow.session()
        if self.request:
            method, _, target = start.partition(b" ")
            ex = session.request(method, target.rpartition(b" ")[0] or target, fields)

            def count(data: bytes) -> None:
                ex.req_len += len(data)
            return count, None
        parts = start.split(b" ")
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() and len(parts[1]) == 3 else None
        if status is not None and 100 <= status < 200 and status != 101:
            return None, None  # interim: the real response follows
        ex = session.response(status, fields)
        return ex.body, lambda: session.done(ex)

    def _plausible(self, start: bytes | None = None) -> bool:
        s = bytes(self.buf[:16]) if start is None else start
        if self.request:
            return s.startswith(HTTP_METHODS) or any(m.startswith(s) for m in HTTP_METHODS)
        return s.startswith(b"HTTP/1.") or b"HTTP/1.".startswith(s)

    def _framing(self, start: bytes, fields: dict) -> tuple[tuple | None, bool]:
        """(framing, tunnel): framing is ("chunked",), ("length", n), ("close",) or None (no body)."""
        methods: deque = self.side.flow.methods
        if self.request:
            method = start.split(b" ", 1)[0]
            methods.append(method)
            if method == b"CONNECT":
                return None, True
        else:
            parts = start.split(b" ")
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 200
            if 100 <= status < 200 and status != 101:
                return None, False  # interim (100 Continue): the real response follows
            method = methods.popleft() if methods else b"GET"
            if status == 101 or (method == b"CONNECT" and 200 <= status < 300):
                return None, True
            if method == b"HEAD" or status in (204, 304):
                return None, False
        if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            return ("chunked",), False
        length = fields.get(b"content-length")
        if length is not None and length.isdigit():
            return (("length", int(length)) if int(length) else None), False
        return (None if self.request else ("close",)), False

    def close(self) -> None:
        if self.body is not None:
            self.body.close()
        elif self.buf:
            self.sink.write(bytes(self.buf))
        self.sink.boundary()


class Body:
    """One message body: framing (length, chunked, until close), content coding (gzip,
    deflate), then the content type's decoding (multipart, URL-encoded form, JSON, text)."""

    def __init__(self, framing: tuple, fields: dict, sink, limits, watch=None, finished=None, read: bool = True):
        self.watch, self.finished = watch, finished  # the session's (``Http._record``)
        self.kind = framing[0]
        self.left = framing[1] if self.kind == "length" else 0
        self.state, self.line = "size", bytearray()
        self.done = False
        self.decoded = 0
        self.max_decoded = limits.max_decoded_bytes
        coding = fields.get(b"content-encoding", b"").strip().lower()
        self.inflate = zlib.decompressobj(47) if coding in (b"gzip", b"x-gzip", b"deflate") else None
        self.brotli = None
        if coding == b"br":
            import brotli

            self.brotli = brotli.Decompressor()
        self.first = True
        self.opaque = not read or coding not in (b"", b"identity", b"gzip", b"x-gzip", b"deflate", b"br")  # zstd ...
        self.content = content_decoder(fields.get(b"content-type", b""), sink, limits)

    def feed(self, data: bytes) -> bytes:
        """Take this body's bytes from ``data``; return the bytes after the body's end."""
        if self.kind == "length":
            take = data[:self.left]
            self.left -= len(take)
            self._entity(take)
            self.done = self.left == 0
            return data[len(take):]
        if self.kind == "close":
            self._entity(data)
            return b""
        return self._chunked(data)

    def _chunked(self, data: bytes) -> bytes:
        while data and not self.done:
            if self.state == "data":
                take = data[:self.left]
                self.left -= len(take)
                data = data[len(take):]
                self._entity(take)
                if self.left == 0:
                    self.state = "crlf"
                continue
            end = data.find(b"\n")
            if end < 0:
                self.line += data
                if len(self.line) > MAX_LINE:
                    raise ValueError("chunk size line too long")
                return b""
            line = bytes(self.line + data[:end]).strip()
            self.line.clear()
            data = data[end + 1:]
            if self.state == "crlf":
                self.state = "size"
            elif self.state == "size":
                size = int(line.split(b";", 1)[0], 16)  # ValueError: not chunked after all
                self.state, self.left = ("data", size) if size else ("trailer", 0)
            elif not line:  # the empty line after the trailer ends the body
                self.done = True
        return data

    def _entity(self, data: bytes) -> None:
        if data and self.watch is not None:
            self.watch(data)
        if not data or self.opaque or self.decoded > self.max_decoded:
            return
        if self.inflate is not None:
            data = self._inflate(data)
        elif self.brotli is not None:
            data = self._unbrotli(data)
        if not self.decoded and data.startswith(BINARY_MAGIC):
            self.opaque = True  # an image, archive or program: no text to read, framing only
            return
        self.decoded += len(data)
        self.content.feed(data)

    def _inflate(self, data: bytes) -> bytes:
        try:
            out = self.inflate.decompress(data, self.max_decoded)
        except zlib.error:
            if not self.first:
                self.opaque = True
                return b""
            self.inflate = zlib.decompressobj(-15)  # "deflate" sent as a raw stream
            out = self.inflate.decompress(data, self.max_decoded)
        self.first = False
        return out

    def _unbrotli(self, data: bytes) -> bytes:
        """br within the decoded-bytes limit (a brotli bomb stops there)."""
        import brotli

        left = self.max_decoded - self.decoded
        try:
            out = self.brotli.process(data, output_buffer_limit=max(1, left))
        except brotli.error:
            self.opaque = True
            return b""
        if len(out) >= left:
            self.opaque = True  # the limit: the rest is not read
        return out

    def close(self) -> None:
        self.content.close()
        if self.finished is not None:
            finished, self.finished = self.finished, None
            finished()


def _discard():
    from .decode import DISCARD  # decode imports this module

    return DISCARD


def content_decoder(content_type: bytes, sink, limits):
    ctype = content_type.split(b";", 1)[0].strip().lower()
    if ctype.startswith(b"multipart/") and ctype != b"multipart/byteranges":  # ranges: parts of one file
        return Multipart(content_type, sink, limits)
    if ctype == b"application/x-www-form-urlencoded":
        return Form(sink)
    return Content(sink, limits)


class Text:
    """Text as it is. A message's end is only a line end for the sink: the next message's text
    follows in the same chunks (fewer, larger scans), and no value can span a line end."""

    def __init__(self, sink):
        self.sink = sink

    def feed(self, data: bytes) -> None:
        self.sink.write(data)

    def close(self) -> None:
        self.sink.write(b"\n")


class Content(structured.Unit):
    """Any other body: a ``structured`` unit, its layout recognised from its bytes."""


class Form(Text):
    """application/x-www-form-urlencoded: decoded field by field (cut at ``&``)."""

    carry = b""

    def feed(self, data: bytes) -> None:
        data = self.carry + data
        cut = data.rfind(b"&") + 1
        if cut == 0 and len(data) <= MAX_LINE:
            self.carry = data
            return
        cut = cut or len(data)
        self.carry = data[cut:]
        self.sink.write(_form_text(data[:cut]))

    def close(self) -> None:
        self.sink.write(_form_text(self.carry) + b"\n")


def _form_text(data: bytes) -> bytes:
    return unquote_to_bytes(data.replace(b"+", b" ")).replace(b"&", b"\n")


class Multipart(Text):
    """multipart/*: kept whole up to ``limit`` bytes and split into parts by the ``email``
    package (part headers, base64 / quoted-printable bodies); beyond the limit, raw."""

    def __init__(self, content_type: bytes, sink, limits):
        super().__init__(sink)
        self.head = b"Content-Type: " + content_type + b"\r\n\r\n"
        self.buf: bytearray | None = bytearray()
        self.limits = limits
        self.limit = limits.max_buffered_bytes

    def feed(self, data: bytes) -> None:
        if self.buf is None:
            self.sink.write(data)
            return
        self.buf += data
        if len(self.buf) > self.limit:
            self.sink.write(bytes(self.buf))
            self.buf = None

    def close(self) -> None:
        if self.buf:
            scan_message(email.message_from_bytes(self.head + bytes(self.buf)), self.sink, self.limits)
        self.sink.write(b"\n")


