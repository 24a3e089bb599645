"""Archives and compressed data opened in memory, with limits no bomb can get past.

gzip (also concatenated members), zip (and the office formats built on it: xlsx, ods, docx),
tar, bzip2 and xz are recognised by their first bytes, never by a name or a content type. Every
member is read through a bounded decompressor: at most ``Budget.left`` bytes in all (shared by
every member and nesting level of one unit) and, once past ``MIN_ALLOWANCE``, at most
``max_ratio`` times the member's compressed size, whatever the archive's headers claim. What a
limit cuts off is not read; the reason is kept in ``Budget.skipped`` (without names or content).
"""

from __future__ import annotations

import bz2
import io
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

GZIP, ZIP, ZIP_EMPTY, BZIP2, XZ = b"\x1f\x8b", b"PK\x03\x04", b"PK\x05\x06", b"BZh", b"\xfd7zXZ\x00"
#: Decompressed bytes a member may always have, whatever its ratio (a small file of zeros is harmless).
MIN_ALLOWANCE = 1 << 20
#: Members read from one archive at most (a zip of a million empty files is a bomb of its own kind).
MAX_MEMBERS = 10_000


@dataclass
class Budget:
    """Decompressed bytes still allowed for one unit (a body, a mail part, a file) and its members."""
    left: int
    max_ratio: float
    skipped: list[str] = field(default_factory=list)

    def allowance(self, compressed: int) -> int:
        return max(0, min(self.left, max(MIN_ALLOWANCE, int(compressed * self.max_ratio))))

    def take(self, n: int) -> None:
        self.left -= n

    def skip(self, reason: str) -> None:
        if len(self.skipped) < 100:
            self.skipped.append(reason)


def kind(data: bytes) -> str | None:
    """The container format of ``data`` from its first bytes, or None."""
    if data.startswith(GZIP):
        return "gzip"
    if data.startswith((ZIP, ZIP_EMPTY)):
        return "zip"
    if data.startswith(BZIP2) and data[3:4].isdigit():
        return "bzip2"
    if data.startswith(XZ):
        return "xz"
    if len(data) >= 512 and data[257:262] == b"ustar":
        return "tar"
    return None


def members(fmt: str, data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every member of a container, each within the budget. A damaged
    container yields what could be read before the damage."""
    try:
        if fmt == "zip":
            yield from _zip(data, budget)
        elif fmt == "tar":
            yield from _tar(data, budget)
        else:
            out = _stream(fmt, data, budget)
            if out:
                yield "", out
    except Exception:  # noqa: BLE001 - attacker-written: any damage ends this container, not the stream
        budget.skip(f"{fmt}: damaged")


def _stream(fmt: str, data: bytes, budget: Budget) -> bytes:
    """gzip, bzip2 or xz decompressed up to the allowance (concatenated gzip members too)."""
    cap = budget.allowance(len(data))
    out = bytearray()
    rest = data
    while rest and len(out) < cap:
        if fmt == "gzip":
            d = zlib.decompressobj(47)
            out += d.decompress(rest, cap - len(out))
            truncated = bool(d.unconsumed_tail)
            rest = b"" if truncated else d.unused_data
            if not rest.startswith(GZIP):
                rest = b""
        else:
            d = bz2.BZ2Decompressor() if fmt == "bzip2" else lzma.LZMADecompressor()
            out += d.decompress(rest, cap - len(out))
            truncated = not d.eof and not d.needs_input
            rest = d.unused_data if d.eof else b""
        if truncated:
            budget.skip(f"{fmt}: size or ratio limit")
            break
    budget.take(len(out))
    return bytes(out)


def _zip(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > MAX_MEMBERS:
            budget.skip("zip: too many members")
            infos = infos[:MAX_MEMBERS]
        for info in infos:
            if budget.left <= 0:
                budget.skip("zip: size limit")
                return
            out = read_member(zf, info, budget)
            if out is not None:
                yield info.filename, out


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: Budget) -> bytes | None:
    """One zip member within the budget (None: encrypted or unreadable, with the reason kept)."""
    if info.flag_bits & 0x1:
        budget.skip("zip: encrypted member")
        return None
    cap = budget.allowance(info.compress_size)
    try:
        with zf.open(info) as f:
            out = f.read(cap + 1)  # the header's file_size may lie: the read is bounded
    except Exception:  # noqa: BLE001 - a damaged or unsupported member: the others are still read
        budget.skip("zip: unreadable member")
        return None
    if len(out) > cap:
        budget.skip("zip: size or ratio limit")
        out = out[:cap]
    budget.take(len(out))
    return out


def _tar(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for n, m in enumerate(tf):
            if n >= MAX_MEMBERS:
                budget.skip("tar: too many members")
                return
            if not m.isfile():
                continue
            if m.size > budget.left:
                budget.skip("tar: size limit")
                continue
            f = tf.extractfile(m)
            if f is None:
                continue
            out = f.read(m.size)
            budget.take(len(out))
            yield m.name, out
