"""Read back a lab capture (classic pcap, Ethernet, IPv4): per-connection payload counts, and slimming.

Standard library only. `connections()` gives, per TCP/UDP 5-tuple, the first and last packet
time, the time of the first SYN, and packets and transport-payload bytes in each direction
(taken from the IP header's total length, so a truncated packet still counts in full).
`slim()` cuts the frames of bulk TCP segments to their first bytes, keeping every header and
every small packet (handshakes, requests, DNS) whole; the record keeps the original length,
as tcpdump -s does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

ETH_IPV4 = b"\x08\x00"
TCP, UDP = 6, 17


def records(path: Path) -> Iterator[tuple[float, bytes, bytes, int]]:
    """(timestamp, record header, frame, original length) for each record of a little-endian µs pcap."""
    with open(path, "rb") as f:
        head = f.read(24)
        if head[:4] != b"\xd4\xc3\xb2\xa1":
            raise ValueError(f"{path}: not a little-endian microsecond pcap")
        while len(rh := f.read(16)) == 16:
            sec, usec, incl, orig = struct.unpack("<IIII", rh)
            yield sec + usec / 1e6, rh, f.read(incl), orig


def parse(frame: bytes) -> tuple | None:
    """(proto, src, sport, dst, dport, payload_len, tcp_flags) of an IPv4 TCP/UDP frame, else None."""
    if frame[12:14] != ETH_IPV4 or len(frame) < 34:
        return None
    ihl = (frame[14] & 0x0F) * 4
    total = struct.unpack(">H", frame[16:18])[0]
    proto = frame[23]
    src, dst = ".".join(map(str, frame[26:30])), ".".join(map(str, frame[30:34]))
    l4 = 14 + ihl
    if proto == TCP and len(frame) >= l4 + 14:
        sport, dport = struct.unpack(">HH", frame[l4:l4 + 4])
        doff = (frame[l4 + 12] >> 4) * 4
        return proto, src, sport, dst, dport, total - ihl - doff, frame[l4 + 13]
    if proto == UDP and len(frame) >= l4 + 8:
        sport, dport = struct.unpack(">HH", frame[l4:l4 + 4])
        return proto, src, sport, dst, dport, total - ihl - 8, 0
    return None


def connections(path: Path) -> dict[tuple, dict]:
    """Per (proto, client, client port, server, server port): the client is whoever sent first."""
    conns: dict[tuple, dict] = {}
    for ts, _rh, frame, _orig in records(path):
        p = parse(frame)
        if p is None:
            continue
        proto, src, sport, dst, dport, plen, flags = p
        fwd, rev = (proto, src, sport, dst, dport), (proto, dst, dport, src, sport)
        key = rev if rev in conns else fwd
        c = conns.setdefault(key, {"first": ts, "syn": None, "last": ts, "pkts_c2s": 0, "pkts_s2c": 0,
                                   "payload_c2s": 0, "payload_s2c": 0})
        d = "c2s" if key == fwd else "s2c"
        c["last"] = ts
        c[f"pkts_{d}"] += 1
        c[f"payload_{d}"] += plen
        if proto == TCP and flags & 0x02 and not flags & 0x10 and c["syn"] is None:
            c["syn"] = ts
    return conns


def slim(src: Path, dst: Path, big: int, keep: int) -> dict:
    """Copy src to dst, cutting frames of TCP segments with more than `big` payload bytes to `keep` bytes."""
    n = cut = before = after = 0
    with open(src, "rb") as f:
        head = bytearray(f.read(24))
    with open(dst, "wb") as out:
        out.write(bytes(head))
        for _ts, rh, frame, orig in records(src):
            p = parse(frame)
            n += 1
            before += 16 + len(frame)
            if p and p[0] == TCP and p[5] > big:
                frame = frame[:keep]
                rh = rh[:8] + struct.pack("<II", len(frame), orig)
                cut += 1
            out.write(rh + frame)
            after += 16 + len(frame)
    return {"packets": n, "packets_cut": cut, "bytes_before": before + 24, "bytes_after": after + 24,
            "rule": f"frames of TCP segments with more than {big} payload bytes are cut to their first "
                    f"{keep} bytes (Ethernet+IP+TCP headers and the start of the payload); every other "
                    f"frame is whole; each record keeps the original frame length"}


def totals(conns: dict[tuple, dict], server_ip: str, server_port: int | None = None, client_ip: str | None = None) -> dict:
    """Summed payload and connection count of the connections to one server (optionally one port/client)."""
    sel = [c for k, c in conns.items() if k[3] == server_ip and (server_port is None or k[4] == server_port)
           and (client_ip is None or k[1] == client_ip)]
    return {"connections": len(sel), "payload_c2s": sum(c["payload_c2s"] for c in sel),
            "payload_s2c": sum(c["payload_s2c"] for c in sel)}


def key_str(k: tuple) -> str:
    return f"{'tcp' if k[0] == TCP else 'udp'} {k[1]}:{k[2]} -> {k[3]}:{k[4]}"
