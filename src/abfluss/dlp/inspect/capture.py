"""A capture file read for inspection: classic pcap of Ethernet frames through the packet
index (``readers._index``), anything else packet by packet."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import _abfluss_inspect as _loop
import dpkt
import numpy as np

from ...errors import AbflussError
from ...readers import _index
from ...readers._split import part_of
from ..streams import PCAP_BE, PCAP_LE, packets, slice_packet
from .inspector import Inspection, Inspector
from .settings import Settings


class InspectionError(AbflussError):
    """Payload inspection failed; the message names the error's type only (see the module doc)."""


def inspect_pcap(path: Path, key: bytes | None, settings: Settings = Settings(), part: int = 0,
                 parts: int = 1) -> Inspection:
    """Inspect every packet of a pcap/pcapng file (uncompressed) with the workspace key ``key``;
    with ``parts`` > 1 only the host pairs of worker ``part`` (see ``Inspector``). Without a key
    nothing is scanned: the pass gives the protocol records (``sessions``) only.

    A capture cut short ends the pass at the cut: the packets before it are inspected. Any
    other failure raises ``InspectionError`` without the original message, which could quote
    payload.
    """
    from ..scanner import Scanner

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
    """The packets of worker ``insp.part`` in capture order, sliced by the index and passed to
    the C loop (``_loop.c``) as columns; frames the index leaves to ``slice_packet`` (VLAN tags,
    IPv6 extension headers) are sliced one by one."""
    size = os.fstat(f.fileno()).st_size
    sliced, datalink, part, parts = insp.sliced, insp.datalink, insp.part, insp.parts
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:

        def slow(now: float, ts: float, start: int, end: int) -> None:
            p = slice_packet(datalink, mm[start:end])
            if p is not None and (parts == 1 or part_of(p[1], p[2], parts) == part):
                sliced(now, ts, *p)

        records, _cut = _index.walk(mm, size)  # a record cut short ends the pass (the DNS scan reports it)
        insp.packets = len(records)
        for ix in _index.chunks(mm, size, records):
            want = ix.kind != _index.SKIP
            if parts > 1:
                want &= (ix.kind == _index.SLOW) | (ix.part(parts) == part)
            rows = np.flatnonzero(want)
            _loop.run(insp, mm, *_columns(ix, rows), slow)


#: The columns of ``_loop.run``'s integer table, in its order (``_loop.c``: ``C_KIND`` …).
_COLUMNS = ("kind", "proto", "sport", "dport", "flags", "seq", "pstart", "pend", "missing", "start", "end", "v6")


def _columns(ix: _index.Index, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packets ``rows`` of an index chunk as ``_loop.run`` reads them: an int64 table, the
    (now, ts) times, and the source and destination addresses at bytes 0 and 16 of 32."""
    n = len(rows)
    cols = np.empty((n, len(_COLUMNS)), dtype=np.int64)
    for j, name in enumerate(_COLUMNS):
        cols[:, j] = getattr(ix, name)[rows]
    times = np.empty((n, 2), dtype=np.float64)
    times[:, 0], times[:, 1] = ix.now[rows], ix.ts[rows]
    addrs = np.zeros((n, 32), dtype=np.uint8)
    addrs[:, 0:4], addrs[:, 16:20] = ix.src4[rows], ix.dst4[rows]
    v6 = rows[ix.v6[rows]]
    if len(v6):
        at = np.flatnonzero(ix.v6[rows])
        addrs[at, 0:16], addrs[at, 16:32] = ix.src16[v6], ix.dst16[v6]
    return cols, times, addrs
