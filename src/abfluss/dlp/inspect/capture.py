"""A capture file read for inspection: classic pcap of Ethernet frames by the C loop
(``_loop.c``) in one call, anything else packet by packet (each through the same C loop)."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import _abfluss_inspect as _loop
import dpkt

from ...errors import AbflussError
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
            if _classic(f, datalink):
                _inspect_classic(f, insp)
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


def _classic(f, datalink: int) -> bool:
    """A classic pcap of Ethernet frames: read by the C loop from a memory map."""
    here = f.tell()
    f.seek(0)
    magic = f.read(4)
    f.seek(here)  # a pcapng reader goes on from here
    return magic in PCAP_LE + PCAP_BE and datalink == dpkt.pcap.DLT_EN10MB and os.fstat(f.fileno()).st_size > 24


def _inspect_classic(f, insp: Inspector) -> None:
    """The packets of worker ``insp.part`` in capture order, through the C loop (``_loop.c``:
    records walked and frames sliced from a memory map, as ``slice_packet`` slices them);
    frames it leaves to ``slice_packet`` (VLAN tags, IPv6 extension headers) come back here.
    A record cut short ends the pass (the DNS scan reports it)."""
    sliced, datalink, part, parts = insp.sliced, insp.datalink, insp.part, insp.parts
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:

        def slow(now: float, ts: float, start: int, end: int) -> None:
            p = slice_packet(datalink, mm[start:end])
            if p is not None and (parts == 1 or part_of(p[1], p[2], parts) == part):
                sliced(now, ts, *p)

        insp.packets, _cut = _loop.capture(insp, mm, part, parts, slow)
