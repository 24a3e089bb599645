"""The in-tree fuzzers (tests/fuzz/): every seed once, then a short coverage-guided run.

``make fuzz`` runs each target for minutes; here the run is short (``ABFLUSS_FUZZ_SECONDS``,
default 15 s for the fast targets together and 6 s for the whole pcap reader) with a fixed
libFuzzer seed, so the suite repeats the same mutations instead of turning red by chance; ``make
fuzz`` explores with new seeds. A crash fails
the test and names the input file that reproduces it (``tests/fuzz/run.py TARGET FILE``).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

import targets  # noqa: E402

RUN = Path(__file__).resolve().parent / "fuzz" / "run.py"
SECONDS = float(os.environ.get("ABFLUSS_FUZZ_SECONDS", "15"))


@pytest.fixture(autouse=True, scope="module")
def _work(tmp_path_factory):
    targets.WORK = tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_every_seed_runs(name):
    seeds = targets.seeds(name)
    assert seeds
    for seed in seeds:
        targets.TARGETS[name](seed)


# Inputs the fuzzers found, rebuilt by hand: each raised out of a reader before its fix.
_FRAGMENT_THEN_HOP = (struct.pack(">IHBB", 0x60000000, 16, 44, 64) + bytes(15) + b"\x01" + bytes(15) + b"\x02"
                      + bytes([0, 0, 0, 0]) + bytes(4) + bytes([59, 0]) + bytes(6))  # IPv6 fragment header, then hop-by-hop


def _pcapng_far_future(payload: bytes = b"") -> bytes:
    """A pcapng whose one packet (UDP, ``payload``) is stamped 2**64-1 microseconds (year 586524)."""
    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    udp = struct.pack(">HHHH", 5000, 6000, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\x0a\0\0\x01",
                     b"\xc6\x33\x64\x07") + udp
    frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip
    return (block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
            + block(1, struct.pack("<HHI", 1, 0, 65535))
            + block(6, struct.pack("<IIIII", 0, 0xFFFFFFFF, 0xFFFFFFFF, len(frame), len(frame)) + frame))


def _pcapng_bad_tsresol() -> bytes:
    """A pcapng whose interface block has an if_tsresol option without its byte (dpkt: struct.error
    while opening the reader)."""
    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    return (block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
            + block(1, struct.pack("<HHI", 1, 0, 65535) + struct.pack("<HH", 9, 0) + bytes(4)))


def _pcap(linktype: int, *frames: bytes) -> bytes:
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    return head + b"".join(struct.pack("<IIII", 1700000000, 0, len(f), len(f)) + f for f in frames)


# An eve.json of five events whose first DNS line holds a byte that is not UTF-8 in a key no table
# keeps: the block reader took it, the DNS line's own parse raised UnicodeDecodeError (a traceback).
_EVE_DNS_NOT_UTF8 = (b'{"timestamp":"2024-02-08T15:00:00.000000+0000","flow_id":1,"event_type":"dns","s'
                     b'rc_ip":"10.0.0.1","src_port":40000,"dest_ip":"10.0.0.53","dest_port":53,"pr\xf2to":'
                     b'"UDP","dns":{"type":"query","id":7,"rrname":"files.drop.example","rrtype":"A"}}\n'
                     b'{"timestamp":"2024-02-08T15:00:00.100000+0000","flow_id":1,"event_type":"dns","s'
                     b'rc_ip":"10.0.0.53","src_port":53,"dest_ip":"10.0.0.1","dest_port":40000,"proto":'
                     b'"UDP","dnw":{"version":2,"type":"answer","id":7,"rrname":"files.drop.example","r'
                     b'rtype":"A","rcode":"NOERROR","answers":[{"rrname":"files.drop.example","rrtype":'
                     b'"A","ttl":60,"rdata":"203.0.113.66"}]}}\n{"timestamp":"2024-02-08T15:00:01+0000",'
                     b'"flow_id":2,"event_type":"http","src_ip":"10.0.0.1","src_port":40001,"dest_ip":"'
                     b'203.0.113.66","dest_port":80,"http":{"hostname":"files.drop.example","url":"/up"'
                     b',"http_method":"POST","status":988,"length":12}}\n{"timestamp":"2024-02-08T15:00:'
                     b'02+0000","flow_id":3,"event_type":"tls","src_ip":"10.0.0.1","src_port":40002,"de'
                     b'st_ip":"203.0.113.66","dest_port":443,"tls":{"sni":"files.drop.example","version'
                     b'":"TLS 1.3","ja3":{"hash":"abc"}}}\n{"timestamp":"2024-02-08T15:00:03+0000","flow'
                     b'_id":4,"event_type":"alert","src_ip":"10.0.0.1","src_port":40003,"dest_ip":"203.'
                     b'0.113.66","dest_port":443,"proto":"TCP","alert":{"signature":"x","signature_id":'
                     b'1,"severity":2}}\n')


@pytest.mark.parametrize("name,data", [
    ("netflow", _pcap(101, _FRAGMENT_THEN_HOP)),  # dpkt: AttributeError 'IP6HopOptsHeader' ... 'frag_off'
    ("dns_scan", _pcap(101, _FRAGMENT_THEN_HOP)),
    ("inspect", _pcap(101, _FRAGMENT_THEN_HOP)),
    ("pcap", _pcapng_far_future()),  # NFStream passes the time on; Arrow: OverflowError
    ("inspect", _pcapng_bad_tsresol()),  # dpkt.pcapng.Reader: struct.error
    ("netflow", _pcapng_bad_tsresol()),
    ("binetflow", b"\x1f\x8bartTime,Dur,Proto\n"),  # gzip.BadGzipFile 'Unknown compression method'
    ("binetflow", b"StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,"
                  b"SrcBytes,Label\n2011/08/10 09:46:53.047277,1.0,tcp,10.0.0.1,1234,->,1.2.3\x004,80,S_,0,0,"
                  b"2,120,60,x\n"),  # inet_pton: ValueError 'embedded null character'
    ("squid", b'127.0.0.1 - - [06/Dec/2026:19:32:40 +0000] "GET http://a.example/ HTTP/1.1" 200 '
              b'99999999999999999999\n'),  # Arrow: OverflowError 'Python int too large to convert to C long'
    ("eve", _EVE_DNS_NOT_UTF8),  # json.loads of the DNS line: UnicodeDecodeError
    ("inspect", _pcapng_far_future(b"upload " * 20)),  # Inspector.packet took the time: Arrow OverflowError
], ids=["netflow-ip6-fragment-hop", "dns_scan-ip6-fragment-hop", "inspect-ip6-fragment-hop", "pcap-far-future-time",
                        "inspect-pcapng-bad-tsresol",
                        "netflow-pcapng-bad-tsresol", "binetflow-gzip-magic-bad-header",
                        "binetflow-nul-address", "squid-huge-byte-count", "eve-dns-line-not-utf8",
                        "inspect-pcapng-far-future-time"])
def test_found_by_fuzzing(name, data):
    targets.TARGETS[name](data)


@pytest.mark.parametrize("name,seconds", [("fast", SECONDS), ("pcap", max(4.0, SECONDS / 2.5))])
def test_short_fuzzing_run_finds_nothing(tmp_path, name, seconds):
    crashes = tmp_path / "crashes"
    p = subprocess.run([sys.executable, str(RUN), name, "--seconds", str(seconds), "--crashes", str(crashes),
                        "--seed", "1"],
                       capture_output=True, text=True, timeout=seconds + 240,
                       env={**os.environ, "ABFLUSS_FUZZ_WORK": str(tmp_path / "work")})
    found = sorted(crashes.glob("*")) if crashes.exists() else []
    assert p.returncode == 0 and not found, f"crash inputs {found}:\n{p.stderr[-4000:]}"
    assert "stat::number_of_executed_units" in p.stderr
