"""Follow files that are being appended to (Zeek logs, Suricata eve.json), across rotation.

Each followed name (``conn.log``, ``eve.json``) is tracked by its file id (device and inode)
and a byte offset. Every poll reads the complete lines after the offset (a line still being
written waits), stores them as one input and moves on. When the name points to a new file
(rotation), the old file is looked up by inode in the same directory and read to its end
first; a file that shrank (copytruncate) is read again from its start.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .. import readers
from ..errors import InputError
from ..readers import suricata, zeek
from ..readers.base import MAX_LINE
from ..fsutil import scratch_dir
from ..store import Workspace
from . import state
from .chunks import Stored, store_chunk

#: Most bytes read from one file per poll: a long backlog is worked off in bounded pieces.
MAX_CHUNK = 16 << 20
#: Names of the current logs in a Zeek log directory (rotated ones carry a time in their name).
ZEEK_CURRENT = re.compile(r"^(conn|dns|http|ssl|open_conn)\.log$")


def file_id(st: os.stat_result) -> str:
    return f"{st.st_dev}-{st.st_ino}"


class FileFollower:
    """One followed name. ``poll`` stores what was appended since the last poll."""

    def __init__(self, ws: Workspace, source: str, path: Path, sensor: str,
                 committed: dict, saved: dict):
        self.ws, self.source, self.path, self.sensor = ws, source, Path(path), sensor
        self.committed = committed  # (source, file id) -> stored end offset, updated as we go
        prev = saved.get(source)
        self.file, self.offset = (prev[0], prev[1]) if prev else (None, 0)
        self.header = b""
        self.lost: list[str] = []  # rotated files that vanished before they were read to the end
        self.skips: list[str] = []  # overlong lines skipped (not part of any stored chunk)

    def _resume(self, fid: str) -> int:
        return max(self.committed.get((self.source, fid), 0), self.offset if fid == self.file else 0)

    def poll(self) -> Stored:
        total = Stored()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return total
        fid = file_id(st)
        if self.file is not None and fid != self.file:
            old = self._find(self.file)
            if old is not None:  # the previous file, renamed by rotation: finish it first
                self._drain(old, self.file, total)
            elif self._resume(self.file) > 0:
                self.lost.append(self.file)
            self.header = b""
            self.file, self.offset = fid, 0
        if self.file is None:
            self.file = fid
        self._drain(self.path, fid, total)
        return total

    def _find(self, fid: str) -> Path | None:
        for p in self.path.parent.iterdir():
            try:
                if p.is_file() and file_id(p.stat()) == fid:
                    return p
            except OSError:
                continue
        return None

    def _drain(self, path: Path, fid: str, total: Stored) -> None:
        offset = self._resume(fid)
        while True:
            try:
                size = os.path.getsize(path)
            except OSError:
                return
            if size < offset:  # truncated in place: start again
                offset = 0
            if size == offset:
                break
            with open(path, "rb") as f:
                if offset > 0 and not self.header:
                    self.header = _header(f.read(1 << 16))
                f.seek(offset)
                data = f.read(MAX_CHUNK)
            cut = data.rfind(b"\n")
            if cut < 0 and size - offset > MAX_LINE:  # an overlong line: skip it, never wait forever
                offset, before = self._skip_line(path, offset, total), offset
                if offset != before:
                    continue
                break
            if cut < 0:
                break  # a line still being written
            data = data[:cut + 1]
            end = offset + len(data)
            self._store(path, fid, offset, end, data, total)
            offset = end
            if len(data) < MAX_CHUNK // 2:
                break
        self.offset = offset
        if fid == self.file:
            state.save(self.ws, self.source, fid, offset)

    def _skip_line(self, path: Path, offset: int, total: Stored) -> int:
        """The offset after the overlong line at ``offset`` (unchanged while its end is not written)."""
        with open(path, "rb") as f:
            f.seek(offset)
            pos = offset
            while block := f.read(1 << 20):
                nl = block.find(b"\n")
                if nl >= 0:
                    total.skipped += 1
                    if len(self.skips) < 20:
                        self.skips.append(f"{path}: byte {offset}: line longer than {MAX_LINE} bytes: skipped")
                    return pos + nl + 1
                pos += len(block)
        return offset

    def _reader(self, chunk: Path):
        """The chunk's reader: by content, else by the kind of source (a chunk that starts with a
        bad line is still read, and its bad lines are counted)."""
        try:
            return readers.detect(chunk)[1]
        except InputError:
            return suricata.read if self.source.startswith("eve:") else zeek.read

    def _store(self, path: Path, fid: str, start: int, end: int, data: bytes, total: Stored) -> None:
        if start == 0:
            self.header = _header(data)
        body = data if start == 0 or not self.header else self.header + data
        with scratch_dir(self.ws.root, ".watch-") as tmp:
            chunk = tmp / self.path.name  # the Zeek reader takes the log type from the name
            chunk.write_bytes(body)
            if not _has_records(body):
                res = Stored()
            else:
                res = store_chunk(self.ws, self._reader(chunk), chunk, state.label(self.source, fid, start, end),
                                  len(data), self.sensor, hashlib.sha256(data).hexdigest())
        self.committed[(self.source, fid)] = end
        for k, v in res.records.items():
            total.records[k] = total.records.get(k, 0) + v
        total.skipped += res.skipped
        total.bytes += res.bytes
        total.missed += res.missed


def _header(data: bytes) -> bytes:
    """The leading ``#`` lines of a Zeek TSV log (empty for JSON lines)."""
    out = []
    for line in data.splitlines(keepends=True):
        if not line.startswith(b"#"):
            break
        if line.startswith((b"#close", b"#open")):
            continue
        out.append(line)
    return b"".join(out)


def _has_records(body: bytes) -> bool:
    return any(line.strip() and not line.startswith(b"#") for line in body.splitlines())


def zeek_followers(ws: Workspace, directory: Path, sensor: str, committed: dict, saved: dict) -> "ZeekDir":
    return ZeekDir(ws, Path(directory), sensor, committed, saved)


class ZeekDir:
    """All current logs of a Zeek log directory; a log that appears later is followed too."""

    def __init__(self, ws: Workspace, directory: Path, sensor: str, committed: dict, saved: dict):
        self.ws, self.dir, self.sensor = ws, directory, sensor
        self.committed, self.saved = committed, saved
        self.followers: dict[str, FileFollower] = {}
        for source in saved:  # logs followed before a restart, even if their name is gone now
            prefix = f"zeek:{self.dir}/"
            if source.startswith(prefix):
                self._follower(source[len(prefix):])

    def _follower(self, name: str) -> FileFollower:
        if name not in self.followers:
            self.followers[name] = FileFollower(self.ws, f"zeek:{self.dir}/{name}", self.dir / name,
                                                self.sensor, self.committed, self.saved)
        return self.followers[name]

    def poll(self) -> Stored:
        total = Stored()
        if self.dir.is_dir():
            for p in sorted(self.dir.iterdir()):
                if ZEEK_CURRENT.match(p.name):
                    self._follower(p.name)
        for f in self.followers.values():
            r = f.poll()
            for k, v in r.records.items():
                total.records[k] = total.records.get(k, 0) + v
            total.bytes += r.bytes
            total.missed += r.missed
        return total

    @property
    def lost(self) -> list[str]:
        return [x for f in self.followers.values() for x in f.lost]
