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

import contextlib
import gzip
import hashlib
import io
import os
import struct
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..fsutil import unchanged

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
    #: The input's bytes as the reader reads them (hashed while read); None: read the path directly.
    content: "Content | None" = None

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


class Content:
    """One input's bytes, hashed (SHA-256) while the reader reads them, so the hash an input is
    stored under is the hash of exactly what was read even when the file grows meanwhile.

    Every file object from :meth:`open` feeds one hash in file order (a reader that seeks back
    re-reads what is hashed already). With ``limit`` the reader sees only the first ``limit``
    bytes. :meth:`finish` hashes what the reader left unread (the tail after a corrupt gzip
    stream) and says whether the file grew after the reader had seen its end.

    A reader whose file another program reads (NFStream opens the path itself) calls
    :meth:`hash_aside` meanwhile, so the hash is not left for :meth:`finish` to compute after it.
    ``aside=False`` (the file was hashed before reading) makes that a no-op.
    """

    def __init__(self, path: Path, limit: int | None = None, aside: bool = True):
        self.path, self.limit = Path(path), limit
        self._hash = hashlib.sha256()
        self.hashed = 0  # bytes hashed so far: always a prefix of the file
        self.end_seen: int | None = None  # the size at which a reader first hit the end
        self.used = False
        self._may_aside, self._aside = aside, None

    def hash_aside(self) -> None:
        """Start hashing the file on a thread of low priority (hashlib and reads release the GIL)
        while another program reads it, using what CPU that leaves; :meth:`finish` takes over
        what the thread has hashed and hashes the rest itself. It counts only if the file is
        unchanged then (size, mtime, inode as the thread saw them before reading); otherwise
        ``finish`` hashes the whole file itself, as without this."""
        if self._may_aside and self._aside is None and not self.used and self.limit is None:
            self._aside = _Aside(self.path)

    def open(self) -> io.BufferedReader:
        self.used = True
        return io.BufferedReader(_HashingRaw(self, open(self.path, "rb", buffering=0)), 1 << 20)

    def _feed(self, fd: int, pos: int, data: memoryview) -> None:
        if pos > self.hashed:  # a reader skipped ahead: hash the gap from the file itself
            self._update(os.pread(fd, pos - self.hashed, self.hashed))
        if pos + len(data) > self.hashed:
            self._update(data[self.hashed - pos:])

    def _update(self, data) -> None:
        self._hash.update(data)
        self.hashed += len(data)

    def finish(self) -> tuple[str, int, bool]:
        """(SHA-256 hex, bytes hashed, whether the file grew after a reader saw its end)."""
        grew = False
        aside, self._aside, self._may_aside = self._aside, None, False
        if aside is not None and self.hashed == 0 and not self.used:
            done = aside.result()
            if done is not None:
                self._hash, self.hashed = done
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.hashed)
            while self.limit is None or self.hashed < self.limit:
                want = 1 << 20 if self.limit is None else min(1 << 20, self.limit - self.hashed)
                chunk = f.read(want)
                if not chunk:
                    break
                grew = grew or self.end_seen is not None
                self._update(chunk)
        return self._hash.hexdigest(), self.hashed, grew


class _Aside(threading.Thread):
    """A file hashed from its start on a daemon thread (``Content.hash_aside``) until told to stop."""

    #: Added to the thread's nice value (Linux: per thread): the DNS and inspection workers
    #: share a core with this process while NFStream's meter keeps the other busy, and
    #: whatever delays them lengthens the ingest; the thread gets the CPU they leave.
    NICE = 10

    def __init__(self, path: Path):
        super().__init__(name="abfluss-hash", daemon=True)
        self.path = path
        self._halt = False
        self._done: tuple | None = None  # (stat before reading, hash, bytes hashed)
        self.start()

    def run(self) -> None:
        if sys.platform.startswith("linux"):  # elsewhere nice() is the whole process's
            with contextlib.suppress(OSError):
                os.nice(self.NICE)
        try:
            with open(self.path, "rb", buffering=0) as f:
                st = os.fstat(f.fileno())
                h, n = hashlib.sha256(), 0
                view = memoryview(bytearray(1 << 20))
                while not self._halt and (k := f.readinto(view)):
                    h.update(view[:k])
                    n += k
            self._done = (st, h, n)
        except OSError:
            pass  # Content.finish hashes the file itself

    def result(self) -> tuple | None:
        """Stop; (hash, bytes hashed) of the file's start if the file is as the thread found it,
        else None."""
        self._halt = True
        self.join()
        if self._done is None:
            return None
        st, h, n = self._done
        try:
            now = os.stat(self.path)
        except OSError:
            return None
        return (h, n) if unchanged(st, now) and n <= st.st_size else None


class _HashingRaw(io.RawIOBase):
    def __init__(self, content: Content, f):
        self.content, self.f, self.pos = content, f, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        limit = self.content.limit
        view = memoryview(b)
        if limit is not None:
            view = view[:max(0, limit - self.pos)]
        n = self.f.readinto(view) if len(view) else 0
        if n:
            self.content._feed(self.f.fileno(), self.pos, view[:n])
            self.pos += n
        elif self.content.end_seen is None and self.pos >= self.content.hashed:
            self.content.end_seen = self.pos
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = self.f.seek(offset, whence)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def fileno(self) -> int:
        return self.f.fileno()

    def close(self) -> None:
        self.f.close()
        super().close()


def open_maybe_gzip(path: Path, report: ReadReport | None = None) -> io.BufferedIOBase:
    """Open ``path`` for binary reading, transparently decompressing gzip (detected by content);
    through ``report.content`` (hashed while read) when the report has one."""
    content = report.content if report is not None else None
    f = content.open() if content is not None and content.path == Path(path) else open(path, "rb")
    magic = f.read(2)
    f.seek(0)
    if magic == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    return f


def read_head(path: Path, size: int = 65536) -> bytes:
    """The first ``size`` bytes of the decompressed content (shorter if the file is shorter or corrupt)."""
    parts, have = [], 0
    with open_maybe_gzip(path) as f:
        try:  # in small reads: a gzip stream cut short still shows what comes before the cut
            while have < size and (part := f.read(min(4096, size - have))):
                parts.append(part)
                have += len(part)
        except (EOFError, OSError, gzip.BadGzipFile):
            pass
    return b"".join(parts)


#: The packet decoder, imported by the first capture read (``_dpkt``): 0.05-0.07 CPU s that the
#: ingest of a log, which imports this module too, does not need.
dpkt = None


def _dpkt():
    global dpkt
    import dpkt as module

    dpkt = module
    return module


def pcapng_reader(f) -> dpkt.pcapng.Reader:
    """dpkt's pcapng reader of ``f``. dpkt reads the first interface's options while opening and
    raises ``struct.error`` on a malformed one (an ``if_tsresol`` without its byte: found by
    fuzzing); that is raised as ``ValueError``, which the callers take as "not a readable capture"."""
    if dpkt is None:
        _dpkt()
    try:
        return dpkt.pcapng.Reader(f)
    except (struct.error, OverflowError) as e:
        raise ValueError(f"malformed pcapng header block ({e})") from None


def ip_layer(linktype: int, buf: bytes):
    """The IP layer (dpkt IP or IP6) of a captured frame, for the link types captures use; None
    otherwise. A frame dpkt cannot decode raises ``dpkt.UnpackError`` (dpkt itself also raises
    AttributeError, KeyError ... on crafted headers: found by fuzzing)."""
    try:
        return _ip_layer(linktype, buf)
    except dpkt.dpkt.UnpackError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, struct.error) as e:
        raise dpkt.dpkt.UnpackError(f"undecodable frame ({type(e).__name__})") from None


def _ip_layer(linktype: int, buf: bytes):
    if dpkt is None:
        _dpkt()
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


def flush_table(name: str, cols: dict[str, list], report: ReadReport):
    """The rows gathered column-wise in ``cols`` as one conformed table of ``name``; counts them in
    ``report`` and empties the lists for the next chunk (the row-building readers share this)."""
    from abfluss.schema import conform

    t = conform(name, cols)
    report.add(name, t.num_rows)
    for v in cols.values():
        v.clear()
    return t
