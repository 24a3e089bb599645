"""Packets in, flows reassembled and scanned, rows out (``Inspector``)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import _abfluss_inspect as _loop
import dpkt
import pyarrow as pa

from ...readers._dns_packets import MAX_SECONDS
from ...readers._split import part_of
from .. import decode
from ..sessions import Records
from ..streams import ACK, FIN, RST, SYN, TCP, slice_packet
from .flows import Flow
from .rows import Rows
from .settings import Settings

#: Capture seconds between two sweeps for flows that ended or went idle.
SWEEP_SECONDS = 10.0


@dataclass
class Inspection:
    dlp: pa.Table
    inspected: pa.Table
    packets: int = 0
    #: The protocol records (``sessions.Records``): http, files, logins, software; only non-empty ones.
    records: dict = field(default_factory=dict)


class Inspector:
    """Packets in, flows reassembled and scanned, rows out."""

    def __init__(self, scan, settings: Settings = Settings(), datalink: int = dpkt.pcap.DLT_EN10MB,
                 part: int = 0, parts: int = 1):
        self.scan, self.settings, self.datalink = scan, settings, datalink
        self.idle, self.linger = settings.idle_timeout, settings.close_linger  # read for every packet
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
        if not 0 <= ts <= MAX_SECONDS:
            return  # a crafted pcapng timestamp: the DNS pass reports the packet skipped
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
        """A TCP/UDP packet already sliced (``packet``) at ``now``: through the loop in C
        (``_loop.c``), which hands what it does not do itself to ``_general``. A classic pcap's
        packets go through the same C code in bulk (``capture._inspect_classic``)."""
        _loop.packet(self, now, ts, proto, src, dst, sport, dport, flags, seq, payload, missing)

    def _general(self, now: float, ts: float, proto: int, src: bytes, dst: bytes, sport: int, dport: int,
                 flags: int, seq: int, payload: bytes, missing: int) -> None:
        """Every rule for a packet. The C loop (``_loop.c``) does the branches for a packet that
        continues an open flow without a SYN itself, and calls this for every other packet;
        fed every packet, this alone gives the same tables (tests/test_inspect_loop.py)."""
        self.now = now
        if src < dst or (src == dst and sport < dport):
            key = (proto, src, sport, dst, dport)
        else:
            key = (proto, dst, dport, src, sport)
        flow = self.flows.get(key)
        idle = self.idle
        if flow is not None and (now - flow.last > idle or (
                flow.closing is not None and now - flow.closing > self.linger)):
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
                if first is None or now - first > idle:
                    self.first[key] = ts
                return
            first = self.first.pop(key, None)
            flow = self._new(key, proto, src, sport, dst, dport, flags,
                             ts if first is None or now - first > idle else first)
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
