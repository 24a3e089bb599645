"""A NetFlow v5/v9/IPFIX collector on a UDP port.

A receiving thread queues datagrams (bounded: what does not fit is counted as dropped, the
collector's capture loss, as are datagrams the kernel dropped because the socket buffer was
full); each poll decodes the queued ones with the same decoder as the export-capture reader
and stores them as one input. Templates and sampling options are kept across polls and, in
the catalog's ``watch_state``, across restarts: a v9/IPFIX exporter sends its templates only
every few minutes (or, as in many captures, once), so data arriving after a restart is decoded
with the templates learnt before it. A clean stop (SIGTERM) reads what the socket still holds;
datagrams still queued when the watcher is killed are lost, as UDP datagrams are while it is down.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time
from collections import deque
from pathlib import Path

from ..readers import netflow as nf
from ..readers.base import ReadReport
from ..store import Workspace
from . import state
from .chunks import Stored, store_chunk

#: Datagrams queued between polls at most (about 1.5 GB/s of exports would not fit in 1 s).
MAX_QUEUE = 200_000


def _dump_domains(domains: dict) -> list:
    """The decoder's per-exporter state as JSON-able rows (templates, samplers, system init time)."""
    out = []
    for (exporter, version, domain_id), d in domains.items():
        out.append({"exporter": exporter, "version": version, "domain": domain_id,
                    "templates": [[tid, [list(f) for f in fields], opt] for tid, (fields, opt) in d.templates.items()],
                    "samplers": [[k, v] for k, v in d.samplers.items()],
                    "default_rate": d.default_rate, "sys_init_ms": d.sys_init_ms})
    return out


def _load_domains(rows: list) -> dict:
    domains = {}
    for r in rows or []:
        try:
            d = nf._Domain()
            d.templates = {int(tid): ([(f[0], f[1], f[2]) for f in fields], bool(opt))
                           for tid, fields, opt in r["templates"]}
            d.samplers = {int(k): float(v) for k, v in r["samplers"]}
            d.default_rate, d.sys_init_ms = r.get("default_rate"), r.get("sys_init_ms")
            domains[(r["exporter"], int(r["version"]), int(r["domain"]))] = d
        except (KeyError, TypeError, ValueError, IndexError):
            continue  # a damaged entry: wait for the exporter's next templates
    return domains


def _kernel_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped for this socket (receive buffer full), from /proc/net/udp."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
        with open("/proc/net/udp") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if len(cols) >= 13 and cols[9] == inode:
                    return int(cols[12])
    except (OSError, ValueError):
        pass
    return None


class NetflowSource:
    def __init__(self, ws: Workspace, port: int, sensor: str, host: str = "0.0.0.0"):
        self.ws, self.port, self.sensor, self.host = ws, port, sensor, host
        self.source = f"netflow:{port}"
        self.queue: deque = deque()
        self.lost_datagrams = 0  # datagrams lost: queue full, or dropped by the kernel
        self.received = 0
        self.decoder = nf.NetflowDecoder()
        saved = state.load(ws).get(self.source)
        if saved:
            self.decoder.domains = _load_domains(saved[2].get("domains"))
        self._saved_state = _dump_domains(self.decoder.domains)
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.lost: list[str] = []
        self._kernel_dropped = 0
        self._bytes_per_datagram = 0.0  # flow bytes per decoded datagram, to estimate lost bytes
        self._dropped_counted = 0

    def start(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((self.host, self.port))
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _take(self, data: bytes, addr: str) -> None:
        self.received += 1
        if len(self.queue) >= MAX_QUEUE:
            self.lost_datagrams += 1
        else:
            self.queue.append((time.time(), addr, data))

    def _receive(self) -> None:
        while not self.stopping.is_set():
            try:
                data, (addr, _port) = self.sock.recvfrom(65535)
            except (socket.timeout, OSError):
                continue
            self._take(data, addr)

    def _kernel(self) -> None:
        if self.sock is not None and (k := _kernel_drops(self.sock)) is not None and k > self._kernel_dropped:
            self.lost_datagrams += k - self._kernel_dropped
            self._kernel_dropped = k

    def stop(self) -> None:
        """Stop receiving; what the socket still holds is queued for the final poll."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self.sock is not None:
            self._kernel()
            self.sock.setblocking(False)
            while True:
                try:
                    data, (addr, _port) = self.sock.recvfrom(65535)
                except (BlockingIOError, OSError):
                    break
                self._take(data, addr)
            self.sock.close()
            self.sock = None

    def poll(self, final: bool = False) -> Stored:
        self._kernel()
        items = [self.queue.popleft() for _ in range(len(self.queue))]
        res = self._store(items) if items else Stored()
        if res.bytes and items:
            self._bytes_per_datagram = res.bytes / len(items)
        if self.lost_datagrams > self._dropped_counted:  # capture loss in bytes: lost datagrams at the mean size
            res.missed += round((self.lost_datagrams - self._dropped_counted) * self._bytes_per_datagram)
            self._dropped_counted = self.lost_datagrams
        dump = _dump_domains(self.decoder.domains)
        if dump != self._saved_state:
            state.save(self.ws, self.source, "udp", 0, {"domains": dump})
            self._saved_state = dump
        return res

    def _store(self, items: list) -> Stored:
        digest = hashlib.sha256()
        for t, addr, data in items:
            digest.update(struct.pack("!d", t) + addr.encode() + data)
        first = items[0][0]

        def read(_path: Path, report: ReadReport):
            report.format = "netflow"
            rows: list = []
            for n, (_t, addr, data) in enumerate(items):
                version = nf.netflow_version(data)
                if version is None:
                    report.skip(f"datagram {n}", "not NetFlow v5/v9/IPFIX")
                    continue
                self.decoder.datagrams += 1
                try:
                    self.decoder._packet(version, data, addr, rows, report, f"datagram {n}")
                except (ValueError, struct.error, IndexError, KeyError, nf.IPFIXMalformedRecord) as e:
                    report.skip(f"datagram {n}", f"malformed NetFlow v{version} packet: {e or type(e).__name__}")
            for table, batch in nf._batches(rows):
                report.add(table, batch.num_rows)
                yield table, batch

        label = state.label(self.source, "udp", int(first * 1e6), int(items[-1][0] * 1e6))
        return store_chunk(self.ws, read, Path("-"), label, sum(len(d) for *_x, d in items),
                           self.sensor, digest.hexdigest())
