"""Inputs the fuzzers found (tests/fuzz), through the real ``abfluss ingest``: each is one line
naming file and position, never a traceback; the readable packets of a capture are still stored
and the skipped one is counted."""

from __future__ import annotations

import struct

import dpkt
from conftest import run_cli

HEADER = b"StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label\n"
ROW = b"2011/08/10 09:46:53.047277,1.0,tcp,10.0.0.1,1234,->,10.0.0.2,80,S_,0,0,2,120,60,flow=x\n"
GOOD_US = 1_700_000_000_000_000


def _block(kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def _dns_frame(i: int) -> bytes:
    dns = dpkt.dns.DNS(id=i, qd=[dpkt.dns.DNS.Q(name=f"q{i}.example.com")])
    udp = dpkt.udp.UDP(sport=5000 + i, dport=53, data=bytes(dns))
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), p=17, data=udp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def pcapng(times_us, idb_options: bytes = b"") -> bytes:
    """A pcapng of one DNS query per time (microseconds, 64 bits as the format stores them)."""
    idb = struct.pack("<HHI", 1, 0, 65535) + (idb_options + bytes(4) if idb_options else b"")
    out = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)) + _block(1, idb)
    for i, t in enumerate(times_us):
        f = _dns_frame(i)
        out += _block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(f), len(f)) + f)
    return out


#: An if_tsresol option (code 9) without its one byte: dpkt raised struct.error while opening.
BAD_TSRESOL = struct.pack("<HH", 9, 0)


def test_fuzz_found_inputs_through_ingest(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    # the gzip magic in front of a binetflow header: gzip.BadGzipFile out of the reader; detection
    # said "empty file"
    (src / "gzip_magic.binetflow").write_bytes(b"\x1f\x8b" + HEADER[2:] + ROW)
    # a malformed interface option: "format detection failed (error)" from dpkt's struct.error
    (src / "bad_option.pcapng").write_bytes(pcapng([GOOD_US], BAD_TSRESOL))
    # one packet stamped 2**64-1 µs among good ones: the DNS pass overflowed Arrow (all its queries
    # lost), payload inspection failed, and the capture was "failed" with nothing stored
    (src / "far_future.pcapng").write_bytes(pcapng([GOOD_US, (1 << 64) - 1, GOOD_US + 2]))
    (src / "zz_good.binetflow").write_bytes(HEADER + ROW)
    p = run_cli("ingest", str(src), workspace=tmp_path / "ws")
    err = p.stderr + p.stdout
    assert "Traceback" not in err, err
    assert f"{src}/gzip_magic.binetflow: byte 0: starts like gzip but is no readable gzip stream" in err
    assert (f"{src}/bad_option.pcapng: byte 0: not a readable capture: malformed pcapng header block "
            "(unpack requires a buffer of 1 bytes)") in err
    assert (f"{src}/far_future.pcapng: packet 2 (byte 156 of 372): packet time out of range "
            "(18446744073710 s); packet not decoded") in err
    assert "payload inspection" not in err and "format detection failed" not in err
    # stored: the good binetflow (1 flow) and the capture's two good DNS queries with their flow;
    # skipped: the packet of crafted time, NFStream's two flows that carry it, bad_option's byte 0
    assert "2 stored, 0 already present, 2 failed; 4 records read, 4 skipped" in p.stdout, p.stdout
