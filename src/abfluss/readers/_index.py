"""Every packet of a classic Ethernet pcap located and sliced to L4 at once, with NumPy.

The DNS scan and payload inspection each passed over every packet in Python (record header,
Ethernet, IP, TCP/UDP: a few µs a packet, as much as NFStream's meter spends). Here only the
walk from record to record stays a Python loop (the records' lengths chain them); everything
else is computed for all packets together: times, the latest time so far, TCP/UDP fields as
``streams.slice_packet`` reads them, which worker reads each packet (``_split``), and which
packets may be DNS or ARP. Frames the vectorised slicing does not cover (VLAN tags, IPv6
extension headers) are marked for ``slice_packet`` itself, so each packet is read one way.
"""

from __future__ import annotations

from dataclasses import dataclass

import _abfluss_inspect as _c
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: ``kind``: not TCP/UDP (or a non-first fragment, or too short): nothing to read
SKIP = 0
#: ``kind``: TCP or UDP sliced here (fields valid)
SLICED = 1
#: ``kind``: to be sliced one by one (VLAN tags, IPv6 extension headers)
SLOW = 2

_MIX = np.uint64(0x9E3779B1)


#: Packets indexed at a time (bounds the memory: about 300 bytes a packet while indexing).
CHUNK = 500_000


@dataclass
class Index:
    """Packets ``first`` … ``first + len(start) - 1`` (0-based) of a capture."""
    first: int
    start: np.ndarray  # frame start (file offset), int64
    end: np.ndarray  # frame end
    ts: np.ndarray  # seconds, float64 (as ``sec + frac / scale``)
    now: np.ndarray  # the latest time of all packets up to and including each one
    kind: np.ndarray  # SKIP / SLICED / SLOW
    proto: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    flags: np.ndarray
    seq: np.ndarray
    pstart: np.ndarray  # payload start (file offset)
    pend: np.ndarray  # payload end within the frame
    missing: np.ndarray  # payload bytes the IP header announces beyond the captured frame
    v6: np.ndarray  # bool
    fold: np.ndarray  # symmetric address hash (``_split.fold``), uint64; valid where kind == SLICED
    dns: np.ndarray  # bool: may be a DNS packet (port 53; VLAN frames too): checked exactly later
    arp: np.ndarray  # bool: may be an ARP frame
    src4: np.ndarray  # the addresses' bytes, (n, 4) and (n, 16) uint8
    dst4: np.ndarray
    src16: np.ndarray
    dst16: np.ndarray

    def part(self, n: int) -> np.ndarray:
        """The worker (0 … n-1) of each packet, as ``_split.part_of`` computes it."""
        return (((self.fold * _MIX) & np.uint64(0xFFFFFFFF)) >> np.uint64(16)) % np.uint64(n)

    def addresses(self, rows: np.ndarray) -> tuple[list, list]:
        """Packed source and destination addresses of ``rows`` (indexes into this chunk)."""
        v6 = self.v6[rows]
        src, dst = np.empty(len(rows), dtype=object), np.empty(len(rows), dtype=object)
        for mask, s, d, width in ((~v6, self.src4, self.dst4, "V4"), (v6, self.src16, self.dst16, "V16")):
            if mask.any():
                r = rows[mask]
                src[mask] = np.ascontiguousarray(s[r]).view(width).ravel().tolist()
                dst[mask] = np.ascontiguousarray(d[r]).view(width).ravel().tolist()
        return src.tolist(), dst.tolist()


def walk(mm, size: int) -> tuple[np.ndarray, int | None]:
    """Record offsets of a classic pcap (memory map ``mm`` of ``size`` bytes), and where a cut
    record starts. In C (``dlp/inspect/_loop.c``): the records' lengths chain them, so this is a
    loop over every packet (a tenth of the inspection pass in Python)."""
    offsets, cut = _c.walk(mm if size == len(mm) else mm[:size])
    return np.frombuffer(offsets, dtype=np.int64), cut


def chunks(mm, size: int, records: np.ndarray):
    """The index of a classic pcap of Ethernet frames (``mm``: its memory map; ``records``:
    ``walk``'s offsets), ``CHUNK`` packets at a time."""
    latest = -np.inf
    for first in range(0, len(records), CHUNK):
        index = _build(mm, size, records[first:first + CHUNK], first, latest)
        latest = index.now[-1]
        yield index


#: Bytes of each frame gathered at once: Ethernet, IPv4 with options or IPv6, TCP's fixed header.
WINDOW = 96


def _build(mm, size: int, rec: np.ndarray, first: int, latest: float) -> Index:
    n = len(rec)
    buf = np.frombuffer(mm, dtype=np.uint8)
    magic = bytes(mm[:4])
    little = magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    scale = 1e9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e6
    # one gather: each record's header and the first WINDOW bytes of its frame (past the end of
    # a short frame: the next record's bytes, never used as this frame's: lengths are checked)
    span = 16 + WINDOW
    inside = rec <= size - span
    if size >= span:  # rows copied in one gather (the last records' rows are redone below)
        w = sliding_window_view(buf, span)[np.minimum(rec, size - span)]
    else:
        w = np.zeros((n, span), dtype=np.uint8)
    for i in np.flatnonzero(~inside).tolist():  # the last records of the file
        w[i] = 0
        w[i, :size - rec[i]] = buf[rec[i]:]
    head = np.ascontiguousarray(w[:, :12]).view("<u4" if little else ">u4")
    ts = head[:, 0].astype(np.float64) + head[:, 1].astype(np.float64) / scale
    now = np.maximum.accumulate(np.concatenate([[latest], ts]))[1:]
    fs = rec + 16
    length = head[:, 2].astype(np.int64)
    fe = fs + length
    f = w[:, 16:]  # the frame
    rows = np.arange(n)

    def u8(col):
        return f[:, col].astype(np.int64)

    def be16(col):
        return u8(col) << 8 | u8(col + 1)

    def at(off):  # the byte at per-row offset ``off`` (within WINDOW, else 0)
        inside = off < WINDOW
        return np.where(inside, f[rows, np.minimum(off, WINDOW - 1)], 0).astype(np.int64)

    eth = be16(12)
    vlan = (eth == 0x8100) | (eth == 0x88A8)
    v4 = (eth == 0x0800) & (length >= 34)
    v6 = (eth == 0x86DD) & (length >= 54)
    ihl = (u8(14) & 0x0F) * 4
    total = be16(16)
    frag = be16(20) & 0x1FFF
    proto = np.where(v6, u8(20), u8(23))
    l4 = np.where(v6, 54, 14 + ihl)  # within the frame
    ip_end = fs + np.where(v6, 54 + be16(18), np.where(total > 0, 14 + total, length))
    tcp, udp = proto == 6, proto == 17
    sliced = ((v4 & (frag == 0)) | v6) & ((tcp & (length >= l4 + 20)) | (udp & (length >= l4 + 8)))
    kind = np.where(sliced, SLICED, SKIP).astype(np.int8)
    kind[vlan & (length >= 34)] = SLOW
    kind[v6 & ~tcp & ~udp] = SLOW  # extension headers (or another protocol): slice_packet decides
    kind[(kind == SLICED) & (l4 + 20 > WINDOW)] = SLOW  # long IP options: past the window
    sport = at(l4) << 8 | at(l4 + 1)
    dport = at(l4 + 2) << 8 | at(l4 + 3)
    pstart = fs + np.where(tcp, l4 + (at(l4 + 12) >> 4) * 4, l4 + 8)
    pend = np.minimum(ip_end, fe)
    payload = np.maximum(pend - pstart, 0)  # len(buf[start:end]) as slice_packet slices it
    missing = np.maximum(ip_end - pstart - payload, 0)
    seq = (at(l4 + 4) << 24 | at(l4 + 5) << 16 | at(l4 + 6) << 8 | at(l4 + 7))
    src4, dst4 = f[:, 26:30], f[:, 30:34]
    fold = (np.ascontiguousarray(src4).view(">u4").ravel() ^ np.ascontiguousarray(dst4).view(">u4").ravel()
            ).astype(np.uint64)
    src16, dst16 = f[:, 22:38], f[:, 38:54]
    if v6.any():
        words = np.concatenate([src16[v6], dst16[v6]], axis=1).view(">u4").astype(np.uint64)
        fold[v6] = np.bitwise_xor.reduce(words, axis=1)
    dns = (((eth == 0x0800) | (eth == 0x86DD)) & (tcp | udp) & ((sport == 53) | (dport == 53))) | vlan
    dns |= ((eth == 0x0800) | (eth == 0x86DD)) & (tcp | udp) & (l4 + 4 > WINDOW)  # ports past the window
    arp = (length >= 42) & ((eth == 0x0806) | vlan)
    return Index(first, fs, fe, ts, now, kind, proto, sport, dport, np.where(tcp, at(l4 + 13), 0),
                 np.where(tcp, seq, 0), pstart, pend, missing, v6, fold, dns, arp, src4, dst4, src16, dst16)
