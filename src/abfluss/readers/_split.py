"""Which of N parallel workers reads a packet: a symmetric hash of its two addresses.

Captures are read by N processes at once (``--jobs``); each takes the packets whose host pair
hashes to its number. The hash is symmetric (both directions of a conversation land in the same
worker) and uses the addresses only, never the ports: a DNS query and its answer, the segments
of a TCP stream, and an FTP control connection with the data connections it announces all stay
together, so every worker sees whole conversations and the merged result equals one process's.
``_index`` computes the same hash for all packets of a capture at once.
"""

from __future__ import annotations

import os
import socket


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


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
