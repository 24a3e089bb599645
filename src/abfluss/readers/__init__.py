"""Readers: one module per telemetry format, chosen by content, never by file name."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

from ..errors import InputError
from .base import GZIP_MAGIC, ReadReport, read_head

ReadFn = Callable[[Path, ReadReport], Iterator[tuple[str, pa.Table]]]

FORMATS = ("pcap", "netflow", "zeek", "suricata-eve", "nfdump", "argus-binetflow", "squid")


#: The first four bytes of pcap (both byte orders, micro- and nanosecond) and pcapng files, as
#: ``pcap.sniff`` knows them.
_CAPTURE_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
                   b"\x0a\x0d\x0d\x0a")


class NotTelemetry(InputError):
    """The file is clearly no telemetry (a README, a licence, expected-output JSON): ``ignored``."""


def detect(path: Path) -> tuple[str, ReadFn]:
    """The format of ``path`` and its reader's ``read`` function; ``InputError`` if unknown."""
    from . import _other, binetflow, nfdump, squid, suricata, zeek

    try:
        head = read_head(path)
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (OSError, gzip.BadGzipFile) as e:
        raise InputError(f"{path}: cannot read: {e}") from None
    if not head.strip():
        with open(path, "rb") as f:
            if f.read(2) == GZIP_MAGIC:  # read_head gives nothing for a gzip stream that cannot be read
                raise InputError(f"{path}: byte 0: starts like gzip but is no readable gzip stream")
        raise InputError(f"{path}: empty file")
    # the capture readers (NFStream, and with it pandas: a second at start-up) are imported
    # only for a file that starts like a capture
    if head[:4] in _CAPTURE_MAGICS:
        from . import netflow, pcap

        if pcap.sniff(head, path):
            return ("netflow", netflow.read) if netflow.sniff_pcap(path) else ("pcap", pcap.read)
    # tried in this order: Zeek TSV before eve.json before Zeek JSON (both are JSON lines)
    for sniff, fmt, read in ((zeek.sniff_tsv, "zeek", zeek.read), (suricata.sniff, "suricata-eve", suricata.read),
                             (zeek.sniff_json, "zeek", zeek.read), (nfdump.sniff, "nfdump", nfdump.read),
                             (binetflow.sniff, "argus-binetflow", binetflow.read), (squid.sniff, "squid", squid.read)):
        if sniff(head, path):
            return fmt, read
    why = _other.reason(head)
    if why:
        raise NotTelemetry(f"{path}: {why}")
    raise InputError(
        f"{path}: byte 0: not a recognised format "
        "(expected pcap/pcapng, Zeek TSV or JSON log, Suricata eve.json, a NetFlow/IPFIX export capture, "
        "an nfdump file, Argus binetflow or a Squid access.log)")
