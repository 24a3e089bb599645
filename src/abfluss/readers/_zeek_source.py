"""Zeek log text as blocks of whole lines, gunzipped ahead while the current block is parsed."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .base import MAX_LINE, ReadReport, open_maybe_gzip


class Source:
    """The decompressed content as (data, end) blocks, ``data[:end]`` whole lines (the file's last
    line may lack its newline). A broken gzip stream ends early after the last whole line and
    sets ``error``. A line longer than ``MAX_LINE`` is skipped (reported with its number) and
    an empty line takes its place, so later line numbers stay right."""

    def __init__(self, path: Path, report: ReadReport, block: int, newlines=None):
        self.path, self.report, self.error = path, report, None
        #: ``newlines(data, end)``: the newlines in ``data[:end]`` (the eve reader's is in C)
        self._newlines = newlines or (lambda data, end: data.count(b"\n", 0, end))
        self.block = block  # bytes of decompressed text per block
        self.newlines = 0  # newlines yielded so far: the number of the line being assembled - 1
        self.long_lines = 0

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        rest, skipping = b"", False
        with open_maybe_gzip(self.path, self.report) as f, _Ahead() as pool:
            read = f.read if not isinstance(f, gzip.GzipFile) else lambda n: self._gunzip(f, n)
            ahead = _Done(read(self.block))  # the first block here: a small log needs no thread
            while True:
                chunk = ahead.result()
                if skipping and chunk:  # inside an overlong line: drop it up to its newline
                    nl = chunk.find(b"\n")
                    if nl < 0 and not self.error:
                        ahead = pool.submit(read, self.block)
                        continue
                    chunk, skipping = (b"\n" + chunk[nl + 1:] if nl >= 0 else b""), False
                data = rest + chunk if rest else chunk
                if self.error or not chunk:
                    break
                # read (and gunzip) the next block meanwhile; a short block was the end of the file
                ahead = pool.submit(read, self.block) if len(chunk) >= self.block else _Done(b"")
                end = data.rfind(b"\n") + 1
                if end:
                    data, end = self._cut_long(data, end)
                    yield data, end
                    self.newlines += self._newlines(data, end)
                rest = data[end:]
                if len(rest) > MAX_LINE:
                    self._long(self.newlines + 1)
                    rest, skipping = b"", True
        end = data.rfind(b"\n") + 1 if self.error else len(data)
        if end:
            data, end = self._cut_long(data, end)
        if end:
            yield data, end

    def _cut_long(self, data: bytes, end: int) -> tuple[bytes, int]:
        """``data[:end]`` without its lines longer than MAX_LINE (an empty line in each one's place).
        Steps a line-length at a time: a few ``rfind`` calls per block when all lines are short."""
        pos = 0  # always the start of a line
        while end - pos > MAX_LINE:
            nl = data.rfind(b"\n", pos, pos + MAX_LINE + 1)
            if nl >= 0:
                pos = nl + 1
                continue
            stop = data.find(b"\n", pos, end)
            stop = end if stop < 0 else stop  # the file's last line, without its newline
            self._long(self.newlines + data.count(b"\n", 0, pos) + 1)
            data, end = data[:pos] + data[stop:], end - (stop - pos)
        return data, end

    def _long(self, line: int) -> None:
        self.long_lines += 1
        self.report.skip(f"line {line}", f"longer than {MAX_LINE} bytes: skipped")

    def _gunzip(self, f: gzip.GzipFile, size: int) -> bytes:
        parts, n = [], 0
        try:
            while n < size and (part := f.read1(1 << 20)):
                parts.append(part)
                n += len(part)
        except EOFError:
            self.error = "truncated gzip stream"
        except (OSError, zlib.error) as e:
            self.error = f"corrupt gzip stream ({e})"
        return b"".join(parts)



class _Done:
    """A read already done, shaped like the future of one still running."""

    def __init__(self, value: bytes):
        self.value = value

    def result(self) -> bytes:
        return self.value


class _Ahead:
    """A one-thread pool started only when a second block is to be read ahead (a file of one
    block, most rotated logs, never starts a thread)."""

    def __init__(self):
        self.pool: ThreadPoolExecutor | None = None

    def submit(self, fn, *args):
        if self.pool is None:
            self.pool = ThreadPoolExecutor(1)
        return self.pool.submit(fn, *args)

    def __enter__(self) -> "_Ahead":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown()
