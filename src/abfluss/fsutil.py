"""Files abfluss writes: never through a symlink planted in its folders, scratch folders that a
killed process leaves behind are removed by the next one, and a full disk is one clear line.

A workspace and a report folder may sit where other people can write (a shared case folder, a
tenant's export): a symlink planted there must not make abfluss delete or overwrite its target.
So files are written under a fresh name and renamed over the old one (a rename replaces a link,
it never follows it), a workspace holding a symlink is refused, and scratch folders are made by
``mkdtemp`` (a new name, created exclusively).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import AbflussError

#: A scratch folder without its lock file is stale after this many seconds (its creator, if
#: alive, locks it immediately after creating it).
STALE_UNLOCKED_SECONDS = 60
_LOCK = ".owner"
#: errno values that mean "no room to write": a full disk, a quota or a file size limit.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def unchanged(a: os.stat_result, b: os.stat_result) -> bool:
    """The same file with the same content as far as the file system tells: inode, device, size
    and modification time (what an ingest checks before trusting a hash taken earlier)."""
    return (a.st_ino, a.st_dev, a.st_size, a.st_mtime_ns) == (b.st_ino, b.st_dev, b.st_size, b.st_mtime_ns)


class DiskFullError(AbflussError):
    """A write failed for lack of space: nothing partial was kept."""


def no_space(e: BaseException) -> bool:
    """True when ``e`` is a write failing for lack of space (also as DuckDB reports it)."""
    if isinstance(e, OSError) and e.errno in NO_SPACE:
        return True
    text = str(e)
    return "No space left on device" in text or "Disk quota exceeded" in text or "File too large" in text


def disk_full_line(e: BaseException) -> str:
    """What a command says when ``e`` (``no_space``) ended it: one line, no traceback."""
    what = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
    where = f" ({e.filename})" if isinstance(e, OSError) and e.filename else ""
    return f"disk full: {what}{where}; nothing partial was kept"


def find_symlink(root: Path) -> Path | None:
    """The first symbolic link inside ``root`` (not ``root`` itself), walking without following links."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in (*dirnames, *filenames):
            p = Path(dirpath) / name
            if p.is_symlink():
                return p
    return None


def replace_file(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically, replacing a file or a symlink there without following it."""
    import tempfile  # not for every command that imports this module

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_text_nofollow(path: Path) -> str:
    """The text of ``path``; OSError if it is a symlink (a planted link must not be read through)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, encoding="utf-8") as f:
        return f.read()


@contextmanager
def scratch_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A private folder ``parent/<prefix>XXXX`` removed afterwards. It holds a locked file while in
    use, so :func:`remove_stale` can tell a dead process's leftovers from a running one's."""
    import tempfile

    remove_stale(parent, prefix)
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fd = os.open(d / _LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield d
    finally:
        os.close(fd)
        shutil.rmtree(d, ignore_errors=True)


def remove_stale(parent: Path, prefix: str) -> int:
    """Remove scratch folders ``parent/<prefix>*`` whose process is gone; return how many."""
    removed = 0
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return 0
    for e in entries:
        if not e.name.startswith(prefix) or e.is_symlink() or not e.is_dir(follow_symlinks=False):
            continue
        if _stale(Path(e.path)):
            shutil.rmtree(e.path, ignore_errors=True)
            removed += 1
    return removed


def is_stale(d: Path) -> bool:
    """True when the scratch folder ``d`` belongs to no running process."""
    return _stale(d)


def _stale(d: Path) -> bool:
    try:
        fd = os.open(d / _LOCK, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:  # an older version's folder, or one being created this instant
        try:
            return time.time() - d.stat().st_mtime > STALE_UNLOCKED_SECONDS
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
