"""Which of N parallel workers reads a packet: a symmetric hash of its two addresses.

Captures are read by N processes at once (``--jobs``); each takes the packets whose host pair
hashes to its number. The hash is symmetric (both directions of a conversation land in the same
worker) and uses the addresses only, never the ports: a DNS query and its answer, the segments
of a TCP stream, and an FTP control connection with the data connections it announces all stay
together, so every worker sees whole conversations and the merged result equals one process's.
Payload inspection's C loop (``dlp/inspect/_loop.c``, ``part_of``) computes the same hash.
"""

from __future__ import annotations

import os
import socket

#: Processes one part of a capture keeps busy: NFStream's meter and the inspection worker, each
#: about a core; the DNS worker and the calling process (flow rows, Parquet, catalog) take
#: another half between them (on an idle 2-core machine one part kept 1.6-1.7 cores busy).
#: ``--jobs N`` (processes) therefore splits a capture into N // 2 parts: on 2 cores a second
#: part found no idle core and only added its own pass over every packet (2 parts took 0.84x
#: the time of one there, 4 parts 0.67x).
PROCESSES_PER_PART = 2


def fold(a: bytes, b: bytes) -> int:
    """The XOR of the big-endian 32-bit words of both packed addresses (symmetric)."""
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    out = 0
    while x:
        out ^= x & 0xFFFFFFFF
        x >>= 32
    return out


def part_of(a: bytes | str, b: bytes | str, n: int) -> int:
    """The worker (0 … n-1) for a packet between addresses ``a`` and ``b`` (packed or text)."""
    if isinstance(a, str):
        a, b = _packed(a), _packed(b)
    return (((fold(a, b) * 0x9E3779B1) & 0xFFFFFFFF) >> 16) % n


def _packed(address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)


def capture_parts(processes: int) -> int:
    """Parts a capture is split into when ``processes`` processes may work on it (at least one)."""
    return max(1, processes // PROCESSES_PER_PART)


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
