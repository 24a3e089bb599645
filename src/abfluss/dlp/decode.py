"""Application decoding of reassembled streams: what the detectors read, and what they cannot.

``sniff`` names a stream's application from its first bytes (TLS and SSH are recognised so
their bytes are only counted, never scanned). Decoders turn the wire bytes into the text a
person would see: HTTP/1.x messages with chunked framing, gzip/deflate, multipart forms,
URL-encoded forms and JSON escapes undone (``decode_http``); SMTP mail split into MIME parts
by the standard library's ``email`` package (base64 and quoted-printable decoded); FTP control
lines (which announce the data connections); anything else as raw bytes. The HTTP, SMTP and
FTP decoders also tell the flow's ``sessions.Session`` what the protocol said (requests and
responses, logins and their replies); on a side that is not read they run with ``DISCARD`` as
their sink, for that alone. Every decoder has
``data(bytes)`` and ``close()`` and writes to a ``streams.Sink``; a decoder that meets
something it cannot follow calls ``side.restart(rest)``, which sniffs the rest again (TLS after
STARTTLS or CONNECT) or falls back to raw.
"""

from __future__ import annotations

import email
import re

from . import structured
from .decode_http import HTTP_METHODS, MAX_LINE, Http, scan_message

#: Bytes a stream's start must have before it is named (unless the stream ends sooner).
SNIFF_BYTES = 8
#: Applications whose payload is encrypted: counted, never scanned.
ENCRYPTED = frozenset({"tls", "ssh", "quic", "dtls"})
SMTP_PORTS = (25, 587, 2525)
FTP_PORT, FTP_DATA_PORT = 21, 20
_SMTP_COMMANDS = re.compile(rb"(?i)(RSET|QUIT|NOOP|MAIL FROM:|RCPT TO:|HELO |EHLO |DATA\r?\n)")
_PASV = re.compile(rb"^227 .*?(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
_EPSV = re.compile(rb"^229 .*?\(\|\|\|(\d+)\|\)")
_PORT = re.compile(rb"(?i)^PORT (\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
_EPRT = re.compile(rb"(?i)^EPRT \|\d\|[^|]+\|(\d+)\|")


def sniff(head: bytes, server_port: int, udp: bool, final: bool = False) -> str | None:
    """The application of a stream from its first bytes; None while more bytes are needed."""
    if len(head) >= 3 and head[0] in (0x14, 0x15, 0x16, 0x17):
        # TLS records only on TCP: a DNS query whose id is 0x1603 with RD set has the same bytes
        if head[1] == 3 and head[2] <= 4 and not udp:
            return "tls"
        if head[1] == 0xFE:
            return "dtls"
    if not udp and len(head) >= 4 and head[0] & 0x80 and head[2] == 1 and head[3] in (0, 2, 3):
        # SSL 2 compatible ClientHello: TCP only, or every DNS query with the id's high bit set
        # and flags RD (0x01 0x00) read as one, and its payload was never scanned
        return "tls"
    if head.startswith(b"SSH-"):
        return "ssh"
    if udp:  # datagrams are read as they are (SSDP looks like HTTP but has no streams)
        return "quic" if server_port == 443 else "raw"
    if head.startswith(HTTP_METHODS) or head.startswith(b"HTTP/1."):
        return "http"
    if head[:5].upper() in (b"EHLO ", b"HELO ") or server_port in SMTP_PORTS:
        return "smtp"
    if server_port == FTP_PORT:
        return "ftp"
    if len(head) < SNIFF_BYTES and not final:
        return None
    return "raw"


class _Discard:
    """A sink that reads nothing: a side parsed for its protocol records, not scanned."""

    scanned = 0

    def write(self, data: bytes) -> None:
        pass

    def boundary(self) -> None:
        pass


DISCARD = _Discard()


class File:
    """A stream that carries one file or unknown data (FTP data, other TCP): a ``structured``
    unit (CSV, archives, JSON … recognised from the content)."""

    def __init__(self, sink, side):
        self.sink = sink
        self.unit = structured.Unit(sink, side.limits, newline=False)

    def data(self, data: bytes) -> None:
        self.unit.feed(data)

    def close(self) -> None:
        self.unit.close()
        self.sink.boundary()


class FtpData:
    """An FTP data connection: a file, read by ``inner`` (when the side is read at all) and
    typed by its first bytes for the session (an executable becomes a ``files`` row)."""

    def __init__(self, inner, side):
        self.inner, self.side = inner, side
        self.file = side.flow.session().transfer()

    def data(self, data: bytes) -> None:
        self.file.body(data)
        if self.inner is not None:
            self.inner.data(data)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
        self.side.flow.session().transferred(self.file, self.side.is_client)


class Raw:
    """Bytes as they are."""

    def __init__(self, sink, side=None):
        self.sink = sink

    def data(self, data: bytes) -> None:
        self.sink.write(data)

    def close(self) -> None:
        self.sink.boundary()


class Lines:
    """A line-based control channel (SMTP commands, FTP): lines to the sink, ``line`` per line;
    a line that does not start with text means the channel switched to TLS."""

    def __init__(self, sink, side):
        self.sink, self.side = sink, side
        self.buf = bytearray()

    def data(self, data: bytes) -> None:
        self.buf += data
        while self.buf:
            first = self.buf[0]
            if not (0x20 <= first < 0x7F or first in (9, 10, 13)):
                rest = bytes(self.buf)
                self.buf.clear()
                self.side.restart(rest)
                return
            end = self.buf.find(b"\n")
            if end < 0:
                if len(self.buf) > MAX_LINE:
                    self.sink.write(bytes(self.buf))
                    self.buf.clear()
                return
            line = bytes(self.buf[:end + 1])
            del self.buf[:end + 1]
            self.sink.write(line)
            rest = self.line(line)
            if rest is not None:  # the line handed the rest of the stream to another state
                self.side.decoder.data(rest)
                return

    def line(self, line: bytes) -> bytes | None:
        return None

    def close(self) -> None:
        if self.buf:
            self.sink.write(bytes(self.buf))
        self.sink.boundary()


class Ftp(Lines):
    """FTP control: the lines, plus the data connections announced by PASV/EPSV/PORT/EPRT, and
    the logins (USER/PASS and the server's 230/530)."""

    def line(self, line: bytes) -> None:
        flow = self.side.flow
        if self.side.is_client:
            flow.session().ftp_command(line)
        else:
            flow.session().ftp_reply(line)
        if m := _PASV.match(line) or _EPSV.match(line):
            port = int(m.group(5)) * 256 + int(m.group(6)) if m.re is _PASV else int(m.group(1))
            flow.expect(flow.server_addr, port)  # the control connection's server: safe behind NAT
        elif m := _PORT.match(line) or _EPRT.match(line):
            port = int(m.group(5)) * 256 + int(m.group(6)) if m.re is _PORT else int(m.group(1))
            flow.expect(flow.client_addr, port)
        return None


class Smtp(Lines):
    """SMTP client side: commands as lines; after DATA the mail up to the lone dot, parsed whole
    (up to ``limit`` bytes) with the ``email`` package, or scanned raw beyond that."""

    def __init__(self, sink, side):
        super().__init__(sink, side)
        self.limit = side.limits.max_buffered_bytes

    def line(self, line: bytes) -> bytes | None:
        self.side.flow.session().smtp_command(line)
        if line.rstrip().upper() == b"DATA":
            mail = Mail(self.sink, self, self.side.limits)
            self.side.decoder = mail
            rest = bytes(self.buf)
            self.buf.clear()
            return rest
        return None


class SmtpReplies(Lines):
    """SMTP server side: the reply lines (read as lines), which say how an AUTH ended."""

    def line(self, line: bytes) -> None:
        self.side.flow.session().smtp_reply(line)
        return None


class Mail:
    """One mail after DATA, up to ``<CRLF>.<CRLF>``; then back to the commands."""

    def __init__(self, sink, commands: Smtp, limits):
        self.sink, self.commands, self.limits = sink, commands, limits
        self.limit = limits.max_buffered_bytes
        self.buf = bytearray()
        self.searched = 0
        self.streaming = False
        self.checked = False

    def data(self, data: bytes) -> None:
        self.buf += data
        if not self.checked:
            if b"\n" not in self.buf and len(self.buf) < 64:
                return
            self.checked = True
            if _SMTP_COMMANDS.match(self.buf):  # DATA was refused: the client went on with commands
                self._back(bytes(self.buf))
                return
        end = 0 if self.buf.startswith(b".\r\n") else self.buf.find(b"\r\n.\r\n", self.searched)
        if end < 0:
            self.searched = max(0, len(self.buf) - 4)
            if len(self.buf) > self.limit:
                self._stream(len(self.buf) - 4)
            return
        body, rest = bytes(self.buf[:end + 2 if end else 0]), bytes(self.buf[end + (5 if end else 3):])
        if self.sink is DISCARD:
            pass  # a side parsed for its commands only: the mail is not read
        elif self.streaming:
            self.sink.write(_unstuff(body))
        else:
            scan_message(email.message_from_bytes(_unstuff(body)), self.sink, self.limits)
        self.sink.write(b"\n")
        self._back(rest)

    def _stream(self, upto: int) -> None:
        """Too big to parse whole: scan what came so far raw, keep the tail for the end marker."""
        self.streaming = True
        upto = self.buf.rfind(b"\n", 0, upto) + 1 or upto
        self.sink.write(_unstuff(bytes(self.buf[:upto])))
        del self.buf[:upto]
        self.searched = 0

    def _back(self, rest: bytes) -> None:
        self.commands.side.decoder = self.commands
        if rest:
            self.commands.data(rest)

    def close(self) -> None:
        if self.buf:
            self.sink.write(_unstuff(bytes(self.buf)))
        self.sink.boundary()


def _unstuff(body: bytes) -> bytes:
    """Undo SMTP dot-stuffing: a line's leading dot was doubled by the sender."""
    return body.replace(b"\n..", b"\n.")


#: Decoder per application, for the client and the server side.
DECODERS = {
    "http": (Http, Http),
    "smtp": (Smtp, SmtpReplies),
    "ftp": (Ftp, Ftp),
}


def decoder_for(app: str, is_client: bool, udp: bool = False):
    pair = DECODERS.get(app)
    if pair:
        return pair[0] if is_client else pair[1]
    return Raw if udp else File  # a datagram is a message of its own; a TCP stream may be a file
