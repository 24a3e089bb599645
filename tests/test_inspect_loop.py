"""Payload inspection's per-packet loop in C (``dlp/inspect/_loop.c``) against the Python rules it
takes over. The C loop handles packets that continue an open flow without a SYN itself and hands
every other packet to ``Inspector._general``; fed every packet, ``_general`` alone is the
reference. Both must give the same ``dlp``, ``inspected`` and protocol-record tables: on real
captures through the packet index (``inspect_pcap``, one and two parts), and on generated packet
sequences (hypothesis) that stress what the C side decides: idle and closed flows, SYNs reusing
ports, FIN/RST, retransmitted, overlapping and out-of-order segments, encrypted and SSH sides
that are only counted, datagrams, payload cut by the snap length, packets older than the latest."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from abfluss.dlp.inspect import Settings, inspect_pcap
from abfluss.dlp.inspect.inspector import Inspector
from abfluss.dlp.scanner import Scanner
from abfluss.dlp.streams import packets, slice_packet
from abfluss.readers import _index
from abfluss.readers._split import part_of
from conftest import ROOT, data

KEY = b"k" * 32

CAPTURES = [ROOT / "examples" / n for n in ("lab-dlp.pcap", "lab-dlp-exports.pcap", "lab-dlp-tls.pcap")] + [
    ROOT / "examples" / "protocols" / f"{n}.pcap" for n in ("ftp-login", "http", "smtp-auth", "ssh")] + [
    data(p) for p in ("zeek-traces/http-post-large.pcap", "zeek-traces/sshguess.pcap", "zeek-traces/pe.pcap",
                      "zeek-traces/Teredo.pcap", "zeek-traces/reverse-ssh.pcap", "zeek-traces/wstunnel-https.pcap",
                      "dns-tunnel/netrack-dns2tcp/dns2tcp-2018-03-23.pcap")]


def _tables(result) -> dict:
    return {"dlp": result.dlp, "inspected": result.inspected, **result.records, "packets": result.packets}


def _reference(path: Path, key: bytes | None, part: int = 0, parts: int = 1) -> dict:
    """The Python loop ``inspect_pcap`` ran before the C loop, every packet through ``_general``."""
    with open(path, "rb") as f:
        datalink, _frames = packets(f)
        insp = Inspector(Scanner(key).scan if key else None, Settings(), datalink, part, parts)
        size = os.fstat(f.fileno()).st_size
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            records, _cut = _index.walk(mm, size)
            insp.packets = len(records)
            for ix in _index.chunks(mm, size, records):
                want = ix.kind != _index.SKIP
                if parts > 1:
                    want &= (ix.kind == _index.SLOW) | (ix.part(parts) == part)
                rows = np.flatnonzero(want)
                src, dst = ix.addresses(rows)
                cols = [a[rows].tolist() for a in (ix.kind, ix.now, ix.ts, ix.proto, ix.sport, ix.dport, ix.flags,
                                                   ix.seq, ix.pstart, ix.pend, ix.missing, ix.start, ix.end)]
                for kind, now, ts, proto, sport, dport, flags, seq, ps, pe, missing, start, end, a, b in zip(*cols, src, dst):
                    if kind == _index.SLICED:
                        insp._general(now, ts, proto, a, b, sport, dport, flags, seq, mm[ps:pe] if pe > ps else b"", missing)
                        continue
                    p = slice_packet(datalink, mm[start:end])
                    if p is not None and (parts == 1 or part_of(p[1], p[2], parts) == part):
                        insp._general(now, ts, *p)
        return _tables(insp.finish())


def _walk_reference(mm, size: int) -> tuple[list, int | None]:
    """The record walk as Python did it."""
    order = "little" if mm[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else "big"
    offsets, off = [], 24
    while off < size:
        if off + 16 > size:
            return offsets, off
        end = off + 16 + int.from_bytes(mm[off + 8:off + 12], order)
        if end > size:
            return offsets, off
        offsets.append(off)
        off = end
    return offsets, None


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        if name == "packets":
            assert got[name] == want[name]
        else:
            assert got[name].equals(want[name]), name


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_c_loop_gives_the_python_loops_tables(path):
    assert path.is_file(), f"test data missing: {path}"
    _assert_same(_tables(inspect_pcap(path, KEY, Settings())), _reference(path, KEY))


@pytest.mark.parametrize("path", CAPTURES[4:6] + CAPTURES[-3:], ids=lambda p: p.name)
def test_c_loop_per_part_and_without_key(path):
    for part in (0, 1):
        _assert_same(_tables(inspect_pcap(path, KEY, Settings(), part, 2)), _reference(path, KEY, part, 2))
    _assert_same(_tables(inspect_pcap(path, None, Settings())), _reference(path, None))


@pytest.mark.parametrize("cut", [0, 1, 15, 16, 17, 40])
def test_record_walk_as_python(tmp_path, cut):
    """Every record boundary found, and a record cut short anywhere in its header or frame."""
    raw = CAPTURES[0].read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(raw[:len(raw) - cut] if cut else raw + b"\x00" * 7)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        offsets, at = _index.walk(mm, len(mm))
        want, want_at = _walk_reference(mm, len(mm))
        assert offsets.tolist() == want and at == want_at


# -- generated packet sequences --------------------------------------------------------------

HOSTS = (b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", b"\xc0\xa8\x01\x07")
PAYLOADS = (b"", b"", b"", b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd",
            b"\x16\x03\x01\x00\x05hello", b"SSH-2.0-OpenSSH_9.0\r\n", b"\x00\x01binary\xff" * 9,
            b"KVNR A123456780, IBAN DE89370400440532013000\n", b"USER anna\r\n", b"x" * 300)

packet = st.tuples(
    st.floats(0, 40),  # time step (s): crosses the linger and idle timeouts below
    st.booleans(),  # older than the latest packet
    st.sampled_from((6, 6, 6, 17)),
    st.sampled_from(HOSTS), st.sampled_from(HOSTS),
    st.sampled_from((80, 443, 22, 21, 25, 53, 40000)), st.sampled_from((80, 443, 40000, 40001)),
    st.sampled_from((0x10, 0x18, 0x02, 0x12, 0x11, 0x04, 0x14, 0x01, 0x00)),
    st.integers(0, 2**32 - 1) | st.sampled_from((0, 1, 30, 2**32 - 5)),
    st.sampled_from(PAYLOADS),
    st.sampled_from((0, 0, 0, 7, 1400)),
)


def _run(seq: list, general: bool) -> dict:
    insp = Inspector(Scanner(KEY).scan, Settings(idle_timeout=60.0, close_linger=10.0, max_buffered_bytes=512))
    feed = insp._general if general else insp.sliced
    t = now = 1_700_000_000.0
    for step, older, proto, src, dst, sport, dport, flags, sq, payload, missing in seq:
        t += step
        now = max(now, t)
        feed(now, t - 5 if older else t, proto, src, dst, sport, dport, flags if proto == 6 else 0,
             sq if proto == 6 else 0, payload, missing)
    return _tables(insp.finish())


@settings(max_examples=int(os.environ.get("ABFLUSS_INSPECT_LOOP_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(packet, max_size=60))
def test_generated_packets_same_as_python(seq):
    _assert_same(_run(seq, general=False), _run(seq, general=True))


def test_generated_stream_continues_in_c():
    """A connection's segments after its SYN are the C loop's own: the same tables, and with
    sequence numbers that follow on, one stream (no gaps)."""
    a, b = HOSTS[0], HOSTS[1]
    seq = [(0.1, False, 6, a, b, 40000, 443, 0x02, 99, b"", 0), (0.1, False, 6, b, a, 443, 40000, 0x12, 499, b"", 0),
           (0.1, False, 6, a, b, 40000, 443, 0x18, 100, PAYLOADS[5], 0)]
    pos = 100 + len(PAYLOADS[5])
    for i in range(50):
        seq.append((0.01, False, 6, a, b, 40000, 443, 0x18, pos, b"y" * 100, 0))
        pos += 100
    seq.append((0.01, False, 6, a, b, 40000, 443, 0x11, pos, b"", 0))
    got = _run(seq, general=False)
    _assert_same(got, _run(seq, general=True))
    row = got["inspected"].to_pylist()[0]
    assert row["encrypted"] and row["payload_bytes"] == pos - 100 and row["gaps"] == 0
