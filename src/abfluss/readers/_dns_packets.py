"""One dpkt pass over a capture: every DNS message on port 53, the capture's end, and truncation.

Queries and responses are paired as Zeek's dns.log pairs them (client, server, ports,
transaction id); a query without a response is still a row, with no rcode.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pyarrow as pa

from ..schema import TS, conform
from .base import ReadReport, ip_layer

DNS_PORT = 53

QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 12: "PTR", 13: "HINFO", 15: "MX",
          16: "TXT", 28: "AAAA", 33: "SRV", 35: "NAPTR", 43: "DS", 46: "RRSIG", 47: "NSEC",
          48: "DNSKEY", 64: "SVCB", 65: "HTTPS", 99: "SPF", 255: "*", 252: "AXFR", 251: "IXFR"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}

_FIELDS = ("ts", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "trans_id", "query", "qtype",
           "rcode", "answers", "answer_types", "ttls", "query_bytes", "answer_bytes")


@dataclass
class Scan:
    packets: int
    last_ts: int | None  # microseconds
    dns: pa.Table | None


def _reader(f):
    head = f.read(4)
    f.seek(0)
    if head == b"\x0a\x0d\x0d\x0a":
        return dpkt.pcapng.Reader(f)
    return dpkt.pcap.Reader(f)


def _addr(ip) -> str:
    if isinstance(ip, dpkt.ip6.IP6):
        return socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst)
    return socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst)


def _fast_l4(datalink: int, buf: bytes):
    """(proto, src, dst, sport, dport, payload) sliced from raw Ethernet bytes when the packet may be
    DNS; None when it cannot be; ``False`` when only a full decode can tell (other link types)."""
    if datalink != dpkt.pcap.DLT_EN10MB:
        return False
    off, ethertype = 14, buf[12:14]
    while ethertype in (b"\x81\x00", b"\x88\xa8"):  # VLAN tags
        ethertype, off = buf[off + 2:off + 4], off + 4
    if ethertype == b"\x08\x00":
        if len(buf) < off + 28 or buf[off + 6] & 0x1F or buf[off + 7]:
            return None  # too short, or a non-first fragment
        proto, src, dst = buf[off + 9], buf[off + 12:off + 16], buf[off + 16:off + 20]
        total = int.from_bytes(buf[off + 2:off + 4], "big")
        end = off + total if total else len(buf)
        off += (buf[off] & 0x0F) * 4
        family = socket.AF_INET
    elif ethertype == b"\x86\xdd":
        if len(buf) < off + 48:
            return None
        proto, src, dst = buf[off + 6], buf[off + 8:off + 24], buf[off + 24:off + 40]
        end = off + 40 + int.from_bytes(buf[off + 4:off + 6], "big")
        off += 40
        family = socket.AF_INET6
    else:
        return None
    if proto not in (6, 17):
        return None
    sport, dport = int.from_bytes(buf[off:off + 2], "big"), int.from_bytes(buf[off + 2:off + 4], "big")
    if DNS_PORT not in (sport, dport):
        return None
    if proto == 17:
        payload, name = buf[off + 8:end], "udp"
    else:
        payload, name = buf[off + (buf[off + 12] >> 4) * 4:end][2:], "tcp"  # 2-byte length prefix
    return name, socket.inet_ntop(family, src), socket.inet_ntop(family, dst), sport, dport, payload


def _short(f, record_start: int, size: int) -> bool:
    """True when the record that starts at ``record_start`` claims more bytes than the file has."""
    if f.tell() < size:
        return False
    here = f.tell()
    f.seek(0)
    magic = f.read(4)
    f.seek(record_start + 8)
    raw = f.read(4)
    f.seek(here)
    if len(raw) < 4:
        return True
    caplen = int.from_bytes(raw, "little" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else "big")
    return record_start + 16 + caplen > size


def scan(path: Path, report: ReadReport) -> Scan:
    pending: dict[tuple, dict] = {}
    rows: list[dict] = []
    packets, last_ts = 0, None
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        try:
            reader = _reader(f)
        except (ValueError, dpkt.dpkt.Error) as e:
            report.skip("byte 0", f"not a readable capture: {e}")
            return Scan(0, None, None)
        datalink = reader.datalink()
        classic = isinstance(reader, dpkt.pcap.Reader)
        record_start = f.tell()
        try:
            for ts, buf in reader:
                # Only the record that reaches the end of the file can be cut short: a classic pcap
                # record is a 16-byte header and its bytes, so no tell() per packet is needed.
                # (pcapng readers raise on a cut block instead: handled below.)
                record_end = record_start + 16 + len(buf) if classic else f.tell()
                if classic and record_end >= size and _short(f, record_start, size):
                    report.skip(f"packet {packets + 1} (byte {record_start} of {size})",
                                "capture is truncated in this packet; the packets before it are read")
                    break
                record_start = record_end
                packets += 1
                last_ts = int(ts * 1_000_000)
                l4 = _fast_l4(datalink, buf)
                if l4 is False:
                    l4 = _slow_l4(datalink, buf)
                if l4:
                    _dns(ts, l4, pending, rows)
        except dpkt.dpkt.NeedData:
            report.skip(f"packet {packets + 1} (byte {record_start} of {size})",
                        "capture is truncated in this packet; the packets before it are read")
        except (dpkt.dpkt.UnpackError, ValueError) as e:
            report.skip(f"packet {packets + 1} (byte {record_start} of {size})",
                        f"unreadable packet record ({e or type(e).__name__}); the packets before it are read")
    rows.extend(pending.values())
    if not rows:
        return Scan(packets, last_ts, None)
    rows.sort(key=lambda r: r["ts"])
    cols = {k: [r.get(k) for r in rows] for k in _FIELDS}
    cols["ts"] = pa.array(cols["ts"], pa.int64()).cast(TS)
    return Scan(packets, last_ts, conform("dns", cols))


def _slow_l4(datalink: int, buf: bytes):
    """The same as ``_fast_l4`` through dpkt's decoders, for loopback, SLL and raw-IP captures."""
    try:
        ip = ip_layer(datalink, buf)
        l4 = ip.data
        if not isinstance(l4, (dpkt.udp.UDP, dpkt.tcp.TCP)) or DNS_PORT not in (l4.sport, l4.dport):
            return None
        payload = bytes(l4.data)
        if isinstance(l4, dpkt.tcp.TCP):
            return ("tcp", *_addr(ip), l4.sport, l4.dport, payload[2:])
        return ("udp", *_addr(ip), l4.sport, l4.dport, payload)
    except Exception:  # noqa: BLE001 - not decodable: the flow is still metered by NFStream
        return None


def _dns(ts: float, l4: tuple, pending: dict, rows: list) -> None:
    proto, src, dst, sport, dport, payload = l4
    if len(payload) < 12:
        return
    try:
        msg = dpkt.dns.DNS(payload)
    except Exception:  # noqa: BLE001 - not DNS after all (or cut by the snap length)
        return
    if not msg.qd:
        return
    q = msg.qd[0]
    us = int(ts * 1_000_000)
    if msg.qr == dpkt.dns.DNS_Q:
        key = (src, sport, dst, dport, msg.id, q.name.lower())
        pending[key] = {"ts": us, "orig_h": src, "orig_p": sport, "resp_h": dst, "resp_p": dport,
                        "proto": proto, "trans_id": msg.id, "query": q.name.lower(),
                        "qtype": QTYPES.get(q.type, str(q.type)), "query_bytes": len(payload)}
        return
    key = (dst, dport, src, sport, msg.id, q.name.lower())
    row = pending.pop(key, None) or {
        "ts": us, "orig_h": dst, "orig_p": dport, "resp_h": src, "resp_p": sport, "proto": proto,
        "trans_id": msg.id, "query": q.name.lower(), "qtype": QTYPES.get(q.type, str(q.type))}
    answers, types, ttls = [], [], []
    for rr in msg.an:
        value = _rdata(rr)
        if value is not None:
            answers.append(value)
            types.append(QTYPES.get(rr.type, str(rr.type)))
            ttls.append(float(rr.ttl))
    row.update(rcode=RCODES.get(msg.rcode, str(msg.rcode)), answers=answers, answer_types=types, ttls=ttls,
               answer_bytes=len(payload))
    rows.append(row)


def _rdata(rr) -> str | None:
    try:
        if rr.type == dpkt.dns.DNS_A:
            return socket.inet_ntoa(rr.ip)
        if rr.type == dpkt.dns.DNS_AAAA:
            return socket.inet_ntop(socket.AF_INET6, rr.ip6)
        if rr.type in (dpkt.dns.DNS_CNAME, dpkt.dns.DNS_PTR, dpkt.dns.DNS_NS):
            return rr.cname if rr.type != dpkt.dns.DNS_PTR else rr.ptrname
        if rr.type == dpkt.dns.DNS_MX:
            return rr.mxname
        if rr.type == dpkt.dns.DNS_TXT:
            return " ".join(t.decode("latin-1") if isinstance(t, bytes) else t for t in rr.text)
    except Exception:  # noqa: BLE001
        return None
    return f"<{QTYPES.get(rr.type, rr.type)}:{len(rr.rdata)} bytes>"
