"""The packet index and Python loop payload inspection used before its C loop (``dlp/inspect/_loop.c``),
kept verbatim (``readers/_index.py`` and ``capture._inspect_indexed`` as of c57ec52) as the reference
the C loop is checked against (tests/test_inspect_loop.py): ``reference_inspect`` feeds every packet
to ``Inspector._general``, the Python rules the C loop hands all but the simplest packets to."""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from abfluss.dlp.inspect import Settings
from abfluss.dlp.inspect.inspector import Inspector
from abfluss.dlp.scanner import Scanner
from abfluss.dlp.streams import PCAP_BE, PCAP_LE, packets, slice_packet
from abfluss.readers._split import part_of


def reference_inspect(path: Path, key: bytes | None, settings: Settings = Settings(), part: int = 0, parts: int = 1):
    """``inspect_pcap`` of a classic Ethernet pcap as it was: the index, then every packet through
    ``Inspector._general`` (``Inspection``). Other captures: packet by packet through ``_general``."""
    with open(path, "rb") as f:
        datalink, frames = packets(f)
        insp = Inspector(Scanner(key).scan if key is not None else None, settings, datalink, part, parts)
        f.seek(0)
        classic = f.read(4) in PCAP_LE + PCAP_BE and datalink == 1 and os.fstat(f.fileno()).st_size > 24
        if not classic:
            insp.sliced = insp._general  # Inspector.packet's calls, straight to the Python rules
            for ts, buf in frames:
                insp.packets += 1
                insp.packet(ts, buf)
            return insp.finish()
        size = os.fstat(f.fileno()).st_size
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            records, _cut = walk(mm, size)
            insp.packets = len(records)
            for ix in chunks(mm, size, records):
                want = ix.kind != SKIP
                if parts > 1:
                    want &= (ix.kind == SLOW) | (ix.part(parts) == part)
                rows = np.flatnonzero(want)
                src, dst = ix.addresses(rows)
                cols = [a[rows].tolist() for a in (ix.kind, ix.now, ix.ts, ix.proto, ix.sport, ix.dport, ix.flags,
                                                   ix.seq, ix.pstart, ix.pend, ix.missing, ix.start, ix.end)]
                for kind, now, ts, proto, sport, dport, flags, seq, ps, pe, missing, start, end, a, b in zip(*cols, src, dst):
                    if kind == SLICED:
                        insp._general(now, ts, proto, a, b, sport, dport, flags, seq, mm[ps:pe] if pe > ps else b"",
                                      missing)
                        continue
                    p = slice_packet(datalink, mm[start:end])
                    if p is not None and (parts == 1 or part_of(p[1], p[2], parts) == part):
                        insp._general(now, ts, *p)
        return insp.finish()


# -- readers/_index.py as it was -----------------------------------------------------------------
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
    """Record offsets of a classic pcap (memory map ``mm``), and where a cut record starts."""
    order = "<" if mm[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    length = struct.Struct(order + "I").unpack_from
    offsets = []
    append = offsets.append
    off, cut = 24, None
    while off < size:
        if off + 16 > size:
            cut = off
            break
        end = off + 16 + length(mm, off + 8)[0]
        if end > size:
            cut = off
            break
        append(off)
        off = end
    return np.array(offsets, dtype=np.int64), cut


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
