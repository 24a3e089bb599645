"""Payload inspection of a capture: sensitive values per flow side, and what could be read.

One pass over the packets (dpkt, sliced to L4 without full decoding) rebuilds each TCP
direction in order (``streams``), names and decodes its application (``decode``) and runs the
detectors (``scanner``) over the decoded text. Only counts, keyed hashes and masked forms
leave this module: the ``dlp`` table has one row per flow side, category and distinct value
(its HMAC) with the number of hits, timed at the flow's start so it falls in the same analysis
window as the flow; ``inspected`` has one row per flow side with the payload
bytes, the bytes the detectors read, the gaps, and whether the side was encrypted (TLS, SSH,
QUIC: counted, never read). Rows carry the flow's Community ID, so they join with ``flows``.
The same pass writes the protocol records (``sessions``: HTTP requests and responses, SMTP
and FTP logins, executables, SSH banners) into the tables Zeek's logs fill; it runs for them
alone (nothing scanned, no ``dlp``/``inspected`` rows) when a capture is read without inspection.

Nothing here may put payload into a message: decoder errors are swallowed (the side is then
read raw), and the caller reports failures by exception type only.
"""

from __future__ import annotations

import ipaddress
import mmap
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import dpkt
import numpy as np
import pyarrow as pa

from ..errors import AbflussError
from ..readers import _index
from ..readers._community_id import community_id
from ..readers._split import part_of
from ..schema import TS, conform
from . import decode
from .decode import DISCARD
from .sessions import Records, Session
from .streams import ACK, FIN, PCAP_BE, PCAP_LE, RST, SYN, TCP, UDP, Side, Sink, address, packets, slice_packet

PROTO_NAMES = {TCP: "tcp", UDP: "udp"}
#: HTTP requests remembered per connection until their responses come (methods only).
MAX_PENDING_REQUESTS = 256
#: Capture seconds between two sweeps for flows that ended or went idle.
SWEEP_SECONDS = 10.0
#: Rows kept as Python lists before they are turned into an Arrow table.
ROWS_PER_BATCH = 100_000
#: Bytes of a side of an SSH connection searched for its version line (RFC 4253: 255 at most,
#: after optional other lines from the server).
SSH_BANNER_BYTES = 1024
#: Applications whose control lines or message heads are parsed on a side that is not read.
PARSED_UNREAD = ("http", "smtp", "ftp")


@dataclass(frozen=True)
class Settings:
    max_buffered_bytes: int = field(default=4 << 20, metadata={
        "help": "Per flow side: bytes of out-of-order segments held while waiting for a missing "
                "one, and the largest mail or multipart body decoded whole (larger: scanned raw)."})
    max_decoded_bytes: int = field(default=64 << 20, metadata={
        "help": "Per unit (an HTTP body, a mail part, a file): decompressed bytes read at most, "
                "all archive members and nesting levels together (a bomb stops here)."})
    max_ratio: float = field(default=100.0, metadata={
        "help": "A compressed member or body beyond 1 MiB may expand at most this many times its "
                "compressed size (real exports compress 5-20x; a bomb 1000x); the rest is not read."})
    max_depth: int = field(default=4, metadata={
        "help": "Containers opened inside each other at most (zip in tar.gz in base64 …)."})
    chunk_bytes: int = field(default=64 << 10, metadata={
        "help": "Decoded text is scanned in chunks of about this size per flow side."})
    context_bytes: int = field(default=128, metadata={
        "help": "Bytes of the neighbouring chunks scanned with a chunk, for anchors near a value "
                "(the detectors look 64 bytes around a value)."})
    binary_share: float = field(default=0.10, metadata={
        "help": "A write (a packet's payload, a decoded part or body piece) with more than this "
                "share of control bytes (sampled at its start and middle) is binary (image, "
                "archive, ciphertext) and not scanned."})
    idle_timeout: float = field(default=120.0, metadata={
        "help": "Seconds without a packet after which a flow is complete (as the flow meter's)."})
    close_linger: float = field(default=10.0, metadata={
        "help": "Seconds a flow is kept after FIN or RST for late retransmissions."})
    internal_networks: tuple = field(default=(), metadata={
        "help": "CIDRs of the organisation (ingest passes networks.internal). A flow side sent by "
                "an external address to an internal one (a download, an inbound request) is then "
                "counted but not read: it cannot be an outflow, and reading less is data "
                "minimisation. Empty: every side is read."})


@dataclass
class Inspection:
    dlp: pa.Table
    inspected: pa.Table
    packets: int = 0
    #: The protocol records (``sessions.Records``): http, files, logins, software; only non-empty ones.
    records: dict = field(default_factory=dict)


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
            self.decoder = decode.Raw(self.sink)
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
            self.decoder = decode.Raw(self.sink)
        self.sink.boundary()

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
        if not self.counting:
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


class Inspector:
    """Packets in, flows reassembled and scanned, rows out."""

    def __init__(self, scan, settings: Settings = Settings(), datalink: int = dpkt.pcap.DLT_EN10MB,
                 part: int = 0, parts: int = 1):
        self.scan, self.settings, self.datalink = scan, settings, datalink
        self.part, self.parts = part, parts  # this worker reads the host pairs of ``part`` (``_split``)
        self.now = float("-inf")  # the latest packet time so far (of all packets, every worker's)
        self.flows: dict[tuple, Flow] = {}
        self.first: dict[tuple, float] = {}  # first packet of a flow before its first payload
        self.expected: dict[tuple[bytes, int], float] = {}  # FTP data connections announced
        self.announcers: dict[tuple[bytes, int], Flow] = {}  # ... and the control connection that did
        self.rows = Rows()
        self.records = Records()
        self.next_sweep = float("-inf")
        self.packets = 0
        self.networks = [ipaddress.ip_network(n) for n in settings.internal_networks]
        self.internal: dict[bytes, bool] = {}  # address -> inside networks (cached per address)

    def packet(self, ts: float, buf: bytes) -> None:
        # Whether a flow ended (idle, closed) is decided when its next packet comes, against the
        # latest time of all packets, never by when a sweep happened to run: a worker that reads
        # a part of the host pairs (``parts``) then ends and starts exactly the flows one
        # process does. Sweeps only free memory.
        now = self.now = ts if ts > self.now else self.now
        p = slice_packet(self.datalink, buf)
        if p is None:
            return
        if self.parts > 1 and part_of(p[1], p[2], self.parts) != self.part:
            if now >= self.next_sweep:
                self._sweep(now)
            return
        self.sliced(now, ts, *p)

    def sliced(self, now: float, ts: float, proto: int, src: bytes, dst: bytes, sport: int, dport: int,
               flags: int, seq: int, payload: bytes, missing: int) -> None:
        """A TCP/UDP packet already sliced (``packet``, or ``inspect_pcap``'s index) at ``now``."""
        self.now = now
        if src < dst or (src == dst and sport < dport):
            key = (proto, src, sport, dst, dport)
        else:
            key = (proto, dst, dport, src, sport)
        flow = self.flows.get(key)
        s = self.settings
        if flow is not None and (now - flow.last > s.idle_timeout or (
                flow.closing is not None and now - flow.closing > s.close_linger)):
            self._end(key, flow)  # idle or closed: this packet starts a new flow
            flow = None
        syn = flags & SYN
        if flow is not None and syn and not flags & ACK and flow.client_addr == src and (
                flow.closing is not None or flow.dirs != [None, None]):
            self._end(key, flow)  # the ports were reused for a new connection
            flow = None
        if flow is None:
            if not (payload or missing or syn):
                # No payload yet (a capture that starts mid-connection): remember when the flow
                # began, so its rows fall in the same analysis window as the flow meter's record.
                first = self.first.get(key)
                if first is None or now - first > s.idle_timeout:
                    self.first[key] = ts
                return
            first = self.first.pop(key, None)
            flow = self._new(key, proto, src, sport, dst, dport, flags,
                             ts if first is None or now - first > s.idle_timeout else first)
        flow.last = now  # as NFStream, which takes a packet older than the latest as of the latest time
        from_client = src == flow.client_addr and sport == flow.client_port
        if proto == TCP:
            if syn:
                flow.isn[0 if from_client else 1] = seq
                d = flow.dirs[0 if from_client else 1]
                if d is not None:
                    d.stream.syn(seq)
            if payload or missing:
                d = flow.direction(from_client)
                if d.counting and not d.peek:  # encrypted or inbound: no reassembly, no copy held
                    d.stream.count(seq, len(payload) + missing)
                else:
                    d.stream.segment(seq, payload, missing)
            if flags & (FIN | RST) and flow.closing is None:
                flow.closing = now
        elif payload or missing:
            flow.direction(from_client).datagram(payload, missing)
        if now >= self.next_sweep:
            self._sweep(now)

    def _new(self, key, proto, src, sport, dst, dport, flags, ts) -> Flow:
        a, b = (src, sport), (dst, dport)
        if proto == TCP and flags & SYN:
            client, server = (a, b) if not flags & ACK else (b, a)
        elif sport < 1024 <= dport:  # started mid-flow with the server's answer
            client, server = b, a
        else:
            client, server = a, b
        app = None
        announced = self.expected.pop(server, None)
        control = self.announcers.pop(server, None)
        if announced is not None and self.now - announced > self.settings.idle_timeout:
            announced = control = None  # too long ago (as if swept)
        if announced is not None or decode.FTP_DATA_PORT in (sport, dport) and proto == TCP:
            app = "ftp-data"
        flow = self.flows[key] = Flow(self, proto, client, server, ts, app)
        flow.control = control
        if self.networks:
            inside = self._inside(client[0]), self._inside(server[0])
            flow.inbound = (inside[1] and not inside[0], inside[0] and not inside[1])
        return flow

    def _inside(self, packed: bytes) -> bool:
        known = self.internal.get(packed)
        if known is None:
            ip = ipaddress.ip_address(packed)
            known = self.internal[packed] = any(ip in n for n in self.networks if n.version == ip.version)
        return known

    def _sweep(self, now: float) -> None:
        s = self.settings
        self.next_sweep = now + SWEEP_SECONDS
        for key, flow in list(self.flows.items()):
            if now - flow.last > s.idle_timeout or (flow.closing is not None and now - flow.closing > s.close_linger):
                self._end(key, flow)
        for table in (self.expected, self.first):
            for k, t in list(table.items()):
                if now - t > s.idle_timeout:
                    del table[k]
        for k in [k for k in self.announcers if k not in self.expected]:
            del self.announcers[k]

    def _end(self, key, flow: Flow) -> None:
        del self.flows[key]
        flow.close()
        self.rows.add(flow)

    def finish(self) -> Inspection:
        for key, flow in list(self.flows.items()):
            self._end(key, flow)
        dlp, inspected = self.rows.tables()
        return Inspection(dlp, inspected, self.packets, self.records.tables())


class Rows:
    """The ``dlp`` and ``inspected`` rows of finished flows: column lists, turned into Arrow
    tables every ``ROWS_PER_BATCH`` rows so a capture of millions of flows stays compact."""

    DLP = ("ts", "community_id", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "sender", "app",
           "category", "hmac", "masked", "anchored", "hits")
    INSPECTED = ("ts", "community_id", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "sender", "app",
                 "payload_bytes", "scanned_bytes", "encrypted", "gaps")

    def __init__(self):
        self.cols = {"dlp": {c: [] for c in self.DLP}, "inspected": {c: [] for c in self.INSPECTED}}
        self.done: dict[str, list[pa.Table]] = {"dlp": [], "inspected": []}

    def add(self, flow: Flow) -> None:
        if flow.dirs == [None, None]:
            return
        orig_h, resp_h = address(flow.client_addr), address(flow.server_addr)
        cid = community_id(flow.proto, orig_h, resp_h, flow.client_port, flow.server_port)
        common = (_us(flow.ts), cid, orig_h, flow.client_port, resp_h, flow.server_port, PROTO_NAMES[flow.proto])
        app = flow.app or "raw"
        dlp, inspected = self.cols["dlp"], self.cols["inspected"]
        for d, sender in zip(flow.dirs, ("orig", "resp")):
            if d is None:
                continue
            payload, gaps = d.bytes
            if not (payload or gaps):
                continue
            for k, v in zip(self.INSPECTED, (*common, sender, app, payload, d.sink.scanned, flow.encrypted, gaps)):
                inspected[k].append(v)
            for (category, hmac), (hits, anchored, masked) in sorted(d.hits.items()):
                for k, v in zip(self.DLP, (*common, sender, app, category, hmac, masked, anchored, hits)):
                    dlp[k].append(v)
        for name in ("dlp", "inspected"):
            if len(self.cols[name]["ts"]) >= ROWS_PER_BATCH:
                self._seal(name)

    def _seal(self, name: str) -> None:
        cols = self.cols[name]
        data = dict(cols)
        data["ts"] = pa.array(data["ts"], pa.int64()).cast(TS)
        self.done[name].append(conform(name, data))
        for c in cols.values():
            c.clear()

    def tables(self) -> tuple[pa.Table, pa.Table]:
        for name in ("dlp", "inspected"):
            self._seal(name)
        return pa.concat_tables(self.done["dlp"]), pa.concat_tables(self.done["inspected"])


def _us(ts: float) -> int:
    """Microseconds, floored to the millisecond as NFStream times its flows: a flow's rows then
    fall in every analysis window its flow record falls in."""
    us = round(ts * 1_000_000)
    return us - us % 1000


class InspectionError(AbflussError):
    """Payload inspection failed; the message names the error's type only (see the module doc)."""


def inspect_pcap(path: Path, key: bytes | None, settings: Settings = Settings(), part: int = 0,
                 parts: int = 1) -> Inspection:
    """Inspect every packet of a pcap/pcapng file (uncompressed) with the workspace key ``key``;
    with ``parts`` > 1 only the host pairs of worker ``part`` (see ``Inspector``).

    A capture cut short ends the pass at the cut: the packets before it are inspected. Any
    other failure raises ``InspectionError`` without the original message, which could quote
    payload.
    """
    from .scanner import Scanner

    try:
        with open(path, "rb") as f:
            try:
                datalink, frames = packets(f)
            except (ValueError, dpkt.dpkt.Error):
                return Inspector(None, settings).finish()
            insp = Inspector(Scanner(key).scan if key is not None else None, settings, datalink, part, parts)
            if _indexable(f, datalink):
                _inspect_indexed(f, insp)
                return insp.finish()
            packet, frames = insp.packet, iter(frames)
            while True:
                try:
                    ts, buf = next(frames)
                except StopIteration:
                    break
                except (dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, ValueError):
                    break  # a cut pcapng block: the DNS pass of the pcap reader reports where
                insp.packets += 1
                packet(ts, buf)
            return insp.finish()
    except OSError as e:
        raise InspectionError(f"{path}: cannot read: {e.strerror}") from None
    except Exception as e:  # noqa: BLE001
        raise InspectionError(f"payload inspection failed ({type(e).__name__})") from None


def _indexable(f, datalink: int) -> bool:
    """A classic pcap of Ethernet frames: sliced for all packets at once (``readers._index``)."""
    here = f.tell()
    f.seek(0)
    magic = f.read(4)
    f.seek(here)  # a pcapng reader goes on from here
    return magic in PCAP_LE + PCAP_BE and datalink == dpkt.pcap.DLT_EN10MB and os.fstat(f.fileno()).st_size > 24


def _inspect_indexed(f, insp: Inspector) -> None:
    """The packets of worker ``insp.part`` in capture order, sliced by the index; frames it
    leaves to ``slice_packet`` (VLAN tags, IPv6 extension headers) are sliced one by one."""
    size = os.fstat(f.fileno()).st_size
    sliced, datalink, part, parts = insp.sliced, insp.datalink, insp.part, insp.parts
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        records, _cut = _index.walk(mm, size)  # a record cut short ends the pass (the DNS scan reports it)
        insp.packets = len(records)
        for ix in _index.chunks(mm, size, records):
            want = ix.kind != _index.SKIP
            if parts > 1:
                want &= (ix.kind == _index.SLOW) | (ix.part(parts) == part)
            rows = np.flatnonzero(want)
            src, dst = ix.addresses(rows)
            cols = [a[rows].tolist() for a in (ix.kind, ix.now, ix.ts, ix.proto, ix.sport, ix.dport, ix.flags,
                                               ix.seq, ix.pstart, ix.pend, ix.missing, ix.start, ix.end)]
            for kind, now, ts, proto, sport, dport, flags, seq, ps, pe, missing, start, end, a, b in zip(*cols, src, dst):
                if kind == _index.SLICED:
                    sliced(now, ts, proto, a, b, sport, dport, flags, seq, mm[ps:pe] if pe > ps else b"", missing)
                    continue
                p = slice_packet(datalink, mm[start:end])
                if p is not None and (parts == 1 or part_of(p[1], p[2], parts) == part):
                    sliced(now, ts, *p)
