"""Protocol records of a capture, from the streams payload inspection rebuilds anyway.

The decoders (``decode``, ``decode_http``) tell each flow's ``Session`` what the protocol said,
and it writes the rows Zeek's logs give for the same traffic, into the same tables:

``http``      one row per request with its response: method, Host, URI, User-Agent, body
              lengths, status code, and the response's MIME type (``resp_mime_types``) from its
              magic bytes (PE ``MZ``…``PE\\0\\0``, ELF ``\\x7fELF``, Mach-O) or else its Content-Type;
``files``     an executable response body (by magic bytes or an executable Content-Type) or
              FTP data transfer (by magic bytes) with its MD5, SHA-1 and SHA-256, as Zeek's
              files.log;
``logins``    SMTP AUTH and FTP USER/PASS attempts with the server's verdict (235/535, 230/530);
``software``  each side's SSH banner (``SSH-2.0-OpenSSH_9.2p1`` -> ssh-client ``OpenSSH``),
              as Zeek's software.log.

Sides the inspection does not read (sent from outside in, or everything when inspection is
off) are still parsed for these records: their bodies are framed and their first bytes
sniffed, never scanned. Passwords are never kept: an AUTH exchange gives only the user name.
A request whose response never came is written with the flow's end (status null): nothing
seen is dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from zlib import crc32

import pyarrow as pa

from ..readers._zeek_maps import SMTP_FAIL, SMTP_OK
from ..schema import EXECUTABLE_MIME, TS, conform
from .streams import address

#: Requests of one connection waiting for their responses; beyond this the oldest is written
#: without its response (a client pipelining into a server that never answers).
MAX_PENDING = 256
#: First body bytes kept to recognise an executable: a PE's header offset (``e_lfanew``) is
#: within them in every real program (linkers put it at 0x80-0x200).
MAGIC_BYTES = 4096
#: Longest text kept of a reply, a URI, a header value (as Zeek's log fields, cut not dropped).
MAX_TEXT = 8192
REPLY_MAX = 200
#: MIME type named for each executable format recognised by its magic bytes (Zeek's names).
MAGIC_MIME = {"pe": "application/x-dosexec", "elf": "application/x-executable", "macho": "application/x-mach-binary"}
_MACHO = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")
_PORT = re.compile(rb":\d+$")
_REPLY = re.compile(rb"^(\d{3})( |$)(.*)")
_SSH_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9.+]*")
_FILENAME = re.compile(rb"""(?i)filename\*?=\s*(?:UTF-8'')?"?([^";]+)""")


def executable(head: bytes) -> str | None:
    """``pe``, ``elf`` or ``macho`` from a file's first bytes, else None. ``pe`` is a Windows
    program: a DOS ``MZ`` header whose ``e_lfanew`` points at ``PE\\0\\0`` (or at the 16-bit
    ``NE``/``LE``/``LX`` headers of older Windows DLLs and drivers, which libmagic and so Zeek
    also call ``application/x-dosexec``); ``MZ`` alone is two letters any file may start with."""
    if head.startswith(b"\x7fELF"):
        return "elf"
    if head[:4] in _MACHO:
        return "macho"
    if head.startswith(b"MZ") and len(head) >= 0x40:
        off = struct.unpack_from("<I", head, 0x3C)[0]
        if head[off:off + 4] == b"PE\0\0" or head[off:off + 2] in (b"NE", b"LE", b"LX"):
            return "pe"
    return None


def flow_uid(proto: int, client: str, cport: int, server: str, sport: int, ts: float) -> str:
    """The pcap reader's flow id (``readers.pcap._uid``) for a flow opened by ``client``: the
    rows join their flow record (no VLAN or tunnel id: those flows keep their own)."""
    ms = int(ts * 1000)
    return f"N{ms:x}{crc32(f'{proto} {client} {cport} {server} {sport} 0 0'.encode()):08x}"


def _text(b: bytes | None, limit: int = MAX_TEXT) -> str | None:
    return None if b is None else b[:limit].decode("utf-8", "replace")


class Records:
    """Column lists of the four tables, turned into Arrow tables at the end."""

    COLUMNS = {
        "http": ("ts", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "method", "host", "uri", "user_agent",
                 "request_body_len", "response_body_len", "status_code", "resp_mime_types"),
        "files": ("ts", "uid", "fuid", "source", "tx_h", "rx_h", "mime_type", "filename", "size", "md5",
                  "sha1", "sha256", "executable"),
        "logins": ("ts", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "app", "user", "result", "reply",
                   "attempts"),
        "software": ("ts", "host", "host_p", "kind", "name", "version"),
    }

    def __init__(self):
        self.cols = {t: {c: [] for c in cs} for t, cs in self.COLUMNS.items()}

    def add(self, table: str, *values) -> None:
        for col, v in zip(self.COLUMNS[table], values):
            self.cols[table][col].append(v)

    def tables(self) -> dict[str, pa.Table]:
        out = {}
        for name, cols in self.cols.items():
            if not cols["ts"]:
                continue
            data = dict(cols)
            data["ts"] = pa.array([round(t * 1_000_000) for t in data["ts"]], pa.int64()).cast(TS)
            out[name] = conform(name, data).sort_by("ts")
        return out


class Exchange:
    """One HTTP request and its response, as far as seen."""

    __slots__ = ("ts", "method", "uri", "host", "ua", "req_len", "answered", "status", "ctype", "disposition",
                 "resp_len", "head", "hashes", "name")

    def __init__(self, ts: float, method=None, uri=None, host=None, ua=None):
        self.ts, self.method, self.uri, self.host, self.ua = ts, method, uri, host, ua
        self.req_len = 0
        self.answered = False
        self.status = self.ctype = self.disposition = None
        self.resp_len = 0
        self.head = b""
        self.hashes = None
        self.name = None  # an FTP transfer's file name (from its control connection)

    def body(self, data: bytes) -> None:
        """Response entity bytes (after chunking, before content coding). What may be a program
        (its first bytes or its Content-Type say so) is hashed whole, as Zeek's files.log."""
        before = len(self.head)
        if before < MAGIC_BYTES:
            self.head += data[:MAGIC_BYTES - before]
        if before < 4 <= len(self.head) and (self.head[:2] in (b"MZ", b"\x7fE") or self.head[:4] in _MACHO
                                             or self.ctype in EXECUTABLE_MIME):
            self.hashes = (hashlib.md5(), hashlib.sha1(), hashlib.sha256())  # noqa: S324 - file ids, as Zeek's
            for h in self.hashes:
                h.update(self.head[:before])
        self.resp_len += len(data)
        if self.hashes is not None:
            for h in self.hashes:
                h.update(data)


class Session:
    """What one flow's protocol said so far; writes its rows to ``Records``."""

    __slots__ = ("flow", "records", "uid", "exchanges", "smtp", "smtp_user", "ftp_user", "ftp_pass", "ftp_file")

    def __init__(self, flow, records: Records):
        self.flow, self.records = flow, records
        self.uid = flow_uid(flow.proto, address(flow.client_addr), flow.client_port, address(flow.server_addr),
                            flow.server_port, flow.ts)
        self.exchanges: list[Exchange] = []  # requests waiting for (or receiving) their response
        self.smtp = None  # None, or the AUTH mechanism while the exchange runs
        self.smtp_user = None
        self.ftp_user = None
        self.ftp_pass = False
        self.ftp_file = None  # the file of the latest RETR/STOR (named on its data connection)

    @property
    def ids(self) -> tuple:
        f = self.flow
        return (self.uid, address(f.client_addr), f.client_port, address(f.server_addr), f.server_port)

    # -- HTTP --------------------------------------------------------------------------------

    def request(self, method: bytes, uri: bytes, fields: dict) -> Exchange:
        host = fields.get(b"host")
        if host is not None:
            host = _PORT.sub(b"", host)  # as Zeek: the name without its port
        ex = Exchange(self.flow.insp.now, _text(method), _text(uri), _text(host) or None,
                      _text(fields.get(b"user-agent")))
        waiting = [e for e in self.exchanges if not e.answered]
        if len(waiting) >= MAX_PENDING:
            self.exchanges.remove(waiting[0])
            self._write(waiting[0])
        self.exchanges.append(ex)
        return ex

    def response(self, status: int | None, fields: dict) -> Exchange:
        ex = next((e for e in self.exchanges if not e.answered), None)
        if ex is None:  # the capture began after the request
            ex = Exchange(self.flow.insp.now)
            self.exchanges.append(ex)
        ex.answered, ex.status = True, status
        ex.ctype = _text(fields.get(b"content-type", b"").split(b";", 1)[0].strip().lower()) or None
        ex.disposition = fields.get(b"content-disposition")
        return ex

    def done(self, ex: Exchange) -> None:
        """The response's body ended (or it had none): its rows are complete."""
        if ex in self.exchanges:
            self.exchanges.remove(ex)
        self._write(ex)

    def _write(self, ex: Exchange) -> None:
        kind = executable(ex.head) if ex.head else None
        mime = MAGIC_MIME[kind] if kind else ex.ctype
        kind = kind or (EXECUTABLE_MIME.get(ex.ctype) if ex.ctype and ex.resp_len else None)
        uid, orig_h, orig_p, resp_h, resp_p = self.ids
        self.records.add("http", ex.ts, uid, orig_h, orig_p, resp_h, resp_p, ex.method, ex.host, ex.uri, ex.ua,
                         ex.req_len, ex.resp_len if ex.answered else None, ex.status,
                         [mime] if mime else None)
        if kind:
            digests = [h.hexdigest() for h in ex.hashes] if ex.hashes else [None] * 3
            self.records.add("files", ex.ts, uid, self._fuid(uid, ex), "http", resp_h, orig_h, mime, self._filename(ex),
                             ex.resp_len, *digests, kind)

    @staticmethod
    def _filename(ex: Exchange) -> str | None:
        if ex.disposition and (m := _FILENAME.search(ex.disposition)):
            return _text(m.group(1).strip(), 255)
        name = (ex.uri or "").split("?", 1)[0].split("#", 1)[0].rsplit("/", 1)[-1]
        return name or None

    # -- FTP data connections -----------------------------------------------------------------

    def transfer(self) -> Exchange:
        """A data connection's first bytes: the file is the one its control connection asked
        for last (the server sends only after RETR, the client only after STOR's reply)."""
        ex = Exchange(self.flow.insp.now)
        control = self.flow.control
        ex.name = control.sess.ftp_file if control is not None and control.sess is not None else None
        return ex

    def transferred(self, ex: Exchange, from_client: bool) -> None:
        """An FTP data connection ended: an executable in it is a ``files`` row."""
        kind = executable(ex.head)
        if kind is None:
            return
        uid, orig_h, _op, resp_h, _rp = self.ids
        tx, rx = (orig_h, resp_h) if from_client else (resp_h, orig_h)
        digests = [h.hexdigest() for h in ex.hashes] if ex.hashes else [None] * 3
        self.records.add("files", ex.ts, uid, self._fuid(uid, ex), "ftp", tx, rx, MAGIC_MIME[kind], ex.name,
                         ex.resp_len, *digests, kind)

    def _fuid(self, uid: str, ex: Exchange) -> str:
        return f"F{crc32(f'{uid} {ex.ts}'.encode()):08x}{len(self.records.cols['files']['ts']):x}"

    # -- SMTP and FTP logins -----------------------------------------------------------------

    def smtp_command(self, line: bytes) -> None:
        words = line.strip().split(None, 2)
        if self.smtp is not None:
            if self.smtp == b"LOGIN" and self.smtp_user is None and words and words[0] != b"*":
                self.smtp_user = _b64(words[0])  # the first answer to 334 is the user name
            return
        if len(words) >= 2 and words[0].upper() == b"AUTH":
            self.smtp, self.smtp_user = words[1].upper(), None
            if len(words) == 3:
                self.smtp_user = _plain_user(words[2]) if self.smtp == b"PLAIN" else _b64(words[2])

    def smtp_reply(self, line: bytes) -> None:
        m = _REPLY.match(line.rstrip(b"\r\n"))
        if m is None or self.smtp is None or m.group(1) == b"334":
            return
        reply = _text(line.strip(), REPLY_MAX)
        result = "success" if SMTP_OK.search(reply) else "failure" if SMTP_FAIL.search(reply) else None
        self._login("smtp", self.smtp_user, result, reply, 1)
        self.smtp = self.smtp_user = None

    def ftp_command(self, line: bytes) -> None:
        word, _, arg = line.strip().partition(b" ")
        word = word.upper()
        if word in (b"RETR", b"STOR", b"STOU", b"APPE") and arg.strip():
            self.ftp_file = _text(arg.strip(), 255)
        elif word == b"USER":
            self.ftp_user, self.ftp_pass = _text(arg.strip(), 255), False
        elif word == b"PASS":
            self.ftp_pass = True

    def ftp_reply(self, line: bytes) -> None:
        m = _REPLY.match(line.rstrip(b"\r\n"))
        if m is None or self.ftp_user is None:
            return
        code = int(m.group(1))
        if self.ftp_pass and code in (230, 530):  # the answer to PASS
            self._login("ftp", self.ftp_user, "success" if code == 230 else "failure", _text(line.strip(), REPLY_MAX), 1)
            self.ftp_user, self.ftp_pass = None, False
        elif not self.ftp_pass and code == 530:  # USER refused outright (as Zeek: no attempt)
            self._login("ftp", self.ftp_user, "failure", _text(line.strip(), REPLY_MAX), 0)
            self.ftp_user = None

    def _login(self, app: str, user, result, reply, attempts: int) -> None:
        self.records.add("logins", self.flow.insp.now, *self.ids, app, user, result, reply, attempts)

    # -- SSH ---------------------------------------------------------------------------------

    def ssh_banner(self, is_client: bool, line: bytes) -> None:
        """``SSH-2.0-OpenSSH_9.2p1 Debian-2``: the software after the protocol version."""
        text = _text(line.split(b"\n", 1)[0].strip(), 255) or ""
        parts = text.split("-", 2)
        if len(parts) < 3 or not parts[2]:
            return
        version = parts[2]
        m = _SSH_NAME.match(version)
        f = self.flow
        host, port = (f.client_addr, None) if is_client else (f.server_addr, f.server_port)
        self.records.add("software", f.insp.now, address(host), port, "ssh-client" if is_client else "ssh-server",
                         m.group(0) if m else None, version)

    def close(self) -> None:
        for ex in self.exchanges:
            self._write(ex)
        self.exchanges.clear()


def _b64(word: bytes) -> str | None:
    try:
        return _text(base64.b64decode(word, validate=True), 255)
    except (binascii.Error, ValueError):
        return None


def _plain_user(word: bytes) -> str | None:
    """AUTH PLAIN's user (authzid NUL authcid NUL password): the authentication id; the password
    is never decoded further than this split."""
    try:
        parts = base64.b64decode(word, validate=True).split(b"\0")
    except (binascii.Error, ValueError):
        return None
    return _text(parts[1], 255) if len(parts) == 3 else None
