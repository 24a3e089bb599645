"""How far an input has been read, for the progress bar, whichever reader (or child process) reads it.

Readers differ: the Zeek and eve readers read in this process, NFStream's meter and the DNS scan
read a capture in child processes. Linux tells every descriptor's offset in /proc, so the bar
needs no cooperation from the readers: the largest offset on the input among this process and
its descendants is how far the input has been read.
"""

from __future__ import annotations

import os
from pathlib import Path


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        out += kids
        todo += kids
    return out


def read_position(path: Path | str) -> int | None:
    """The largest offset at which this process or a descendant has ``path`` open; None if none does."""
    target = os.path.realpath(path)
    best = None
    for pid in (os.getpid(), *_descendants(os.getpid())):
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") != target:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    pos = int(f.readline().split()[1])
            except (OSError, ValueError, IndexError):
                continue
            best = pos if best is None else max(best, pos)
    return best
