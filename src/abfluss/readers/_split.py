"""Which of N parallel workers reads a packet: a symmetric hash of its two addresses.

Captures are read by N processes at once (``--jobs``); each takes the packets whose host pair
hashes to its number. The hash is symmetric (both directions of a conversation land in the same
worker) and uses the addresses only, never the ports: a DNS query and its answer, the segments
of a TCP stream, and an FTP control connection with the data connections it announces all stay
together, so every worker sees whole conversations and the merged result equals one process's.
"""

from __future__ import annotations

import os
from zlib import crc32


def part_of(a: bytes | str, b: bytes | str, n: int) -> int:
    """The worker (0 … n-1) for a packet between addresses ``a`` and ``b`` (packed or text)."""
    if isinstance(a, str):
        a, b = a.encode(), b.encode()
    return crc32(a + b if a <= b else b + a) % n


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
