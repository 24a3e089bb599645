"""A flow and its two sides: each side's stream reassembled, its application sniffed and
decoded, and the detectors' hits tallied per distinct value; the flow's ``sessions.Session``
gets what its protocol said (HTTP, logins, files, SSH banners), also from sides not read."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .. import decode
from ..decode import DISCARD, Raw
from ..sessions import Session
from ..streams import TCP, UDP, Side, Sink

if TYPE_CHECKING:
    from .inspector import Inspector

#: HTTP requests remembered per connection until their responses come (methods only).
MAX_PENDING_REQUESTS = 256
#: Bytes of a side of an SSH connection searched for its version line (RFC 4253: 255 at most,
#: after optional other lines from the server).
SSH_BANNER_BYTES = 1024
#: Applications whose control lines or message heads are parsed on a side that is not read.
PARSED_UNREAD = ("http", "smtp", "ftp")


class Direction:
    """One side of a flow: stream -> sniffing -> decoder -> sink -> tally of hits."""

    __slots__ = ("flow", "is_client", "stream", "sink", "decoder", "head", "resniff", "payload",
                 "gaps", "hits", "limits", "read", "counting", "peek", "banner")

    def __init__(self, flow: "Flow", is_client: bool, insp: "Inspector", read: bool = True):
        s = insp.settings
        self.flow, self.is_client, self.limits = flow, is_client, s
        self.stream = Side(self, s.max_buffered_bytes) if flow.proto == TCP else None
        self.sink = Sink(insp.scan, self._tally, s.chunk_bytes, s.context_bytes, s.binary_share)
        self.decoder = None
        self.head = b""
        self.resniff = False
        self.read = read  # False: inbound, sniffed (TLS? FTP replies?) but not scanned
        self.counting = flow.encrypted  # True: bytes are only counted from here on
        self.peek = flow.app == "ssh"  # True: still looking for this side's SSH version line
        self.banner = b""
        self.payload = self.gaps = 0  # UDP; TCP counts in its stream
        self.hits: dict[tuple[str, str], list] = {}

    def data(self, data: bytes) -> None:
        flow = self.flow
        if self.counting:
            if self.peek:
                self._banner(data)
            return
        if self.decoder is None:
            self.head += data
            udp = flow.proto == UDP  # a datagram is whole: never wait for the next one
            app = decode.sniff(self.head, flow.server_port, udp, final=udp)
            if app is None:
                return
            data, self.head = self.head, b""
            if app in decode.ENCRYPTED:
                flow.encrypt(app)
                if self.peek:
                    self._banner(data)
                return
            self._start(app)
            if self.counting:
                return
        try:
            self.decoder.data(data)
        except Exception:  # noqa: BLE001 - no message: it could quote payload
            # Malformed for this decoder: this piece and the rest are read raw. Part of the
            # piece may have been read already: a hit may count twice, a value is never lost.
            self._flush_decoder()
            self.decoder = self._raw()
            self.decoder.data(data)

    def _banner(self, data: bytes) -> None:
        """Collect this side's first line starting ``SSH-`` (the version), then only count."""
        self.banner += data[:SSH_BANNER_BYTES - len(self.banner)]
        if self.banner.startswith(b"SSH-"):
            start = 0
        else:
            start = self.banner.find(b"\nSSH-")
            start = start + 1 if start >= 0 else -1
        end = self.banner.find(b"\n", start) if start >= 0 else -1
        if end < 0 and len(self.banner) < SSH_BANNER_BYTES:
            return  # the line is not complete yet
        if end >= 0:
            self.flow.session().ssh_banner(self.is_client, self.banner[start:end])
        self.peek, self.banner = False, b""
        if self.stream is not None:
            self.stream.finish()

    def _start(self, app: str) -> None:
        flow = self.flow
        if self.resniff or flow.app == "ftp-data":
            app = "raw"  # a tunnel after CONNECT/STARTTLS that is not TLS, or a file: plain bytes
        if flow.app in (None, "raw"):
            flow.app = app
        if flow.app == "ftp-data" and flow.proto == TCP:  # a file: typed (and hashed) read or not
            inner = decode.decoder_for(app, self.is_client)(self.sink, self) if self.read else None
            self.decoder = decode.FtpData(inner, self)
        elif self.read:
            self.decoder = decode.decoder_for(app, self.is_client, flow.proto == UDP)(self.sink, self)
        elif app in PARSED_UNREAD and flow.proto != UDP:
            # FTP replies announce the passive data connections; HTTP heads, SMTP and FTP lines
            # are the protocol records: parsed, not scanned
            self.decoder = decode.decoder_for(app, self.is_client)(DISCARD, self)
        else:
            self.counting, self.decoder = True, None

    def gap(self, n: int) -> None:
        """Bytes are missing: the decoder's framing is lost, so the rest is read raw."""
        if self.decoder is not None and not isinstance(self.decoder, decode.Raw):
            self._flush_decoder()  # what a decoder holds (a body being collected) is read first
            self.decoder = self._raw()
        self.sink.boundary()

    def _raw(self):
        """The decoder after lost framing: the rest as it is, into the detectors only on a side
        that is read (a side parsed for its protocol records alone, or inbound, stays unread;
        without a key there are no detectors at all)."""
        return decode.Raw(self.sink if self.read else DISCARD)

    def _flush_decoder(self) -> None:
        try:
            self.decoder.close()
        except Exception:  # noqa: BLE001 - as in data(): no message
            pass

    def restart(self, rest: bytes) -> None:
        """The decoder met another protocol (TLS after STARTTLS, a CONNECT tunnel): sniff again."""
        self.decoder, self.head, self.resniff = None, b"", True
        self.sink.boundary()
        if rest:
            self.data(rest)

    def datagram(self, payload: bytes, missing: int) -> None:
        self.payload += len(payload)
        self.gaps += missing
        if self.counting:
            return
        dec = self.decoder
        if dec.__class__ is Raw and dec.sink is self.sink:
            self.sink.line(payload)  # as data() through Raw and the line end below, in one call
            return
        self.data(payload)
        if not self.counting:
            self.sink.write(b"\n")  # datagrams are separate messages: no value joins across them

    def close(self) -> None:
        if self.stream is not None:
            self.stream.finish()
        if self.decoder is None and self.head and not self.counting:
            head, self.head = self.head, b""
            app = decode.sniff(head, self.flow.server_port, self.flow.proto == UDP, final=True)
            if app in decode.ENCRYPTED:
                self.flow.encrypt(app)
                return
            self._start(app)
            self.data(head)
        if self.decoder is not None and not self.counting:
            try:
                self.decoder.close()
            except Exception:  # noqa: BLE001 - as in data()
                pass
        self.sink.boundary()

    def _tally(self, hits: list) -> None:
        for h in hits:
            k = (h.category, h.hmac)
            e = self.hits.get(k)
            if e is None:
                self.hits[k] = [1, bool(h.anchored), h.masked]
            else:
                e[0] += 1
                e[1] = e[1] or bool(h.anchored)

    @property
    def bytes(self) -> tuple[int, int]:
        if self.stream is not None:
            return self.stream.delivered, self.stream.gaps
        return self.payload, self.gaps


class Flow:
    """A TCP connection or UDP flow; sides are made when they first carry payload."""

    __slots__ = ("insp", "proto", "client_addr", "client_port", "server_addr", "server_port", "ts",
                 "last", "closing", "app", "encrypted", "methods", "dirs", "isn", "inbound", "sess", "control")

    def __init__(self, insp: "Inspector", proto: int, client: tuple, server: tuple, ts: float, app=None):
        self.insp, self.proto = insp, proto
        self.client_addr, self.client_port = client
        self.server_addr, self.server_port = server
        self.ts = ts
        self.last = insp.now
        self.closing = None
        self.app = app
        self.encrypted = False
        # HTTP request methods waiting for their response (bounded: responses may go unread)
        self.methods = deque(maxlen=MAX_PENDING_REQUESTS)
        self.dirs: list[Direction | None] = [None, None]  # client, server
        self.isn: list[int | None] = [None, None]
        self.inbound = (False, False)  # per side: sent from outside to inside (not read)
        self.sess: Session | None = None
        self.control: Flow | None = None  # an FTP data connection's control connection

    def direction(self, from_client: bool) -> Direction:
        i = 0 if from_client else 1
        d = self.dirs[i]
        if d is None:
            d = self.dirs[i] = Direction(self, from_client, self.insp,
                                         not self.inbound[i] and self.insp.scan is not None)
            if d.stream is not None and self.isn[i] is not None:
                d.stream.syn(self.isn[i])
        return d

    def encrypt(self, app: str) -> None:
        """TLS/SSH/QUIC seen on either side: from here on, both sides are only counted."""
        self.encrypted, self.app = True, app
        for d in self.dirs:
            if d is not None:
                d.sink.boundary()  # cleartext before the handshake (EHLO, CONNECT) is still read
                d.peek, d.banner = app == "ssh", d.head  # each side's SSH version line is a record
                d.decoder, d.head, d.counting = None, b"", True
                if d.stream is not None:
                    d.stream.finish()  # segments still waiting are counted, then dropped

    def expect(self, addr: bytes, port: int) -> None:
        self.insp.expected[(addr, port)] = self.last
        self.insp.announcers[(addr, port)] = self

    def session(self) -> Session:
        """The flow's protocol records, made when a decoder first has something to tell."""
        if self.sess is None:
            self.sess = Session(self, self.insp.records)
        return self.sess

    def close(self) -> None:
        for d in self.dirs:
            if d is not None:
                d.close()
        if self.sess is not None:
            self.sess.close()
