"""The contract every reader follows, and the report it fills in.

A reader is a module with

    FORMAT: str                              # e.g. "zeek-tsv"
    def sniff(head: bytes, path: Path) -> bool
        # head: the first 64 KiB of the (decompressed) file
    def read(path: Path, report: ReadReport) -> Iterator[tuple[str, pa.Table]]
        # yields (table name, table conforming to schema.reader_schema(table))

Readers never abort a whole input for one bad record: they call ``report.skip`` with the
position and go on. They raise ``InputError`` only when nothing at all can be read.
"""

from __future__ import annotations

import gzip
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

#: How many skip messages an input keeps (the counts are always complete).
MAX_MESSAGES = 20
#: Longest line (bytes) the text readers (Zeek, eve.json) accept: a longer one is skipped with a
#: message, so a hostile file cannot make a reader hold gigabytes for one record. Real records
#: are far shorter (the largest eve events, stats, are tens of KB).
MAX_LINE = 4 << 20

GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class ReadReport:
    """What one input yielded: records per table, skipped records, first bad positions."""

    path: str
    format: str = "unknown"
    records: Counter = field(default_factory=Counter)
    skipped: int = 0
    messages: list[str] = field(default_factory=list)
    #: Set when the input is of a known kind that abfluss does not use (a Zeek x509.log): why.
    ignored: str | None = None

    def skip(self, position: str, reason: str, count: int = 1) -> None:
        """Count ``count`` skipped records; remember the first few as '<file>: <position>: <reason>'."""
        self.skipped += count
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(f"{self.path}: {position}: {reason}")

    def add(self, table: str, n: int) -> None:
        self.records[table] += n

    @property
    def total(self) -> int:
        return sum(self.records.values())


def open_maybe_gzip(path: Path) -> io.BufferedIOBase:
    """Open ``path`` for binary reading, transparently decompressing gzip (detected by content)."""
    f = open(path, "rb")
    magic = f.read(2)
    f.seek(0)
    if magic == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    return f


def read_head(path: Path, size: int = 65536) -> bytes:
    """The first ``size`` bytes of the decompressed content (shorter if the file is shorter or corrupt)."""
    with open_maybe_gzip(path) as f:
        try:
            return f.read(size)
        except (EOFError, OSError, gzip.BadGzipFile):
            return b""


def ip_layer(linktype: int, buf: bytes):
    """The IP layer (dpkt IP or IP6) of a captured frame, for the link types captures use; None otherwise."""
    if linktype == dpkt.pcap.DLT_EN10MB:
        return dpkt.ethernet.Ethernet(buf).data
    if linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        return dpkt.loopback.Loopback(buf).data
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(buf).data
    if linktype == 276:  # LINUX_SLL2
        return dpkt.sll2.SLL2(buf).data
    if linktype in (101, 12, 14, 228, 229) and buf:  # LINKTYPE_RAW, DLT_RAW variants, IPV4, IPV6
        return dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
    return None
