"""A capture as a plain file NFStream and the workers can read: the file itself, or a private
decompressed copy of a gzip-compressed one (bounded, never left behind).
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from pathlib import Path

from ..fsutil import DiskFullError
from .base import GZIP_MAGIC, ReadReport

#: A gzip-compressed capture is decompressed to a private file of at most this many times its
#: compressed size (real captures compress 2-10 fold; a "gzip bomb" a thousandfold) ...
GZIP_MAX_RATIO = 100
#: ... or of this many bytes, whichever is larger; the rest is not read (and the input says so).
GZIP_MIN_LIMIT = 64 << 20
#: Decompression stops (and the input fails, nothing stored) when the temporary folder would be
#: left with less free space than this: abfluss must not fill the disk other programs write to.
TMP_RESERVE = 256 << 20



class _plain_copy:
    """The path of an uncompressed version of the capture: the file itself, or a private copy
    when it is gzip-compressed (or must be read only up to ``report.content.limit``).

    The copy is unlinked as soon as it is created and reached through ``/proc/<pid>/fd/<n>``
    (NFStream's meter and the scan workers are forked, and the descriptor lives as long as this
    process): nothing is left behind whatever ends the process, SIGTERM and kill -9 included.
    Its size is bounded (GZIP_MAX_RATIO, GZIP_MIN_LIMIT); a full disk fails the input.
    """

    def __init__(self, path: Path, report: ReadReport):
        self.path, self.report = path, report
        self.fd: int | None = None

    def __enter__(self) -> Path:
        content = self.report.content
        bounded = content is not None and content.limit is not None
        with open(self.path, "rb") as f:
            gz = f.read(2) == GZIP_MAGIC
        if not gz and not bounded:
            return self.path
        fd, tmp = tempfile.mkstemp(suffix=".pcap", prefix="abfluss-")
        os.unlink(tmp)
        self.fd = fd
        limit = max(GZIP_MAX_RATIO * os.path.getsize(self.path), GZIP_MIN_LIMIT) if gz else None
        with (content.open() if content is not None else open(self.path, "rb")) as raw:
            self._copy(gzip.GzipFile(fileobj=raw) if gz else raw, limit)
        return Path(f"/proc/{os.getpid()}/fd/{fd}")

    def _copy(self, src, limit: int | None) -> None:
        written = 0
        while True:
            want = 1 << 20 if limit is None else min(1 << 20, limit - written + 1)  # one byte more: over?
            try:
                chunk = src.read(want)
            except (EOFError, OSError, zlib.error):
                return  # truncated or corrupt gzip: keep what decompressed; the packet scan reports the cut
            if not chunk:
                return
            over = limit is not None and written + len(chunk) > limit
            if over:
                chunk = chunk[:limit - written]
            st = os.fstatvfs(self.fd)
            if st.f_bavail * st.f_frsize - len(chunk) < TMP_RESERVE:
                raise DiskFullError(f"{self.path}: decompressing would leave less than {TMP_RESERVE >> 20} MB free "
                                    f"in {tempfile.gettempdir()} (set TMPDIR to a larger disk); nothing stored")
            view = memoryview(chunk)
            while view:
                view = view[os.write(self.fd, view):]
            written += len(chunk)
            if over:
                self.report.skip(f"byte {written} (decompressed)", f"decompressed beyond {GZIP_MAX_RATIO}x the "
                                 "compressed size: the rest is not read", count=0)
                return

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
