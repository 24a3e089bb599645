"""Payload inspection's per-packet loop in C (``dlp/inspect/_loop.c``) against the Python rules it
takes over. The C loop handles packets that continue an open flow without a SYN itself and hands
every other packet to ``Inspector._general``; fed every packet, ``_general`` alone is the
reference. Both must give the same ``dlp``, ``inspected`` and protocol-record tables: on real
captures through the packet index (``inspect_pcap``, one and two parts), and on generated packet
sequences (hypothesis) that stress what the C side decides: idle and closed flows, SYNs reusing
ports, FIN/RST, retransmitted, overlapping and out-of-order segments, encrypted and SSH sides
that are only counted, datagrams, payload cut by the snap length, packets older than the latest."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import dpkt
import numpy as np
import pytest
from _abfluss_inspect import frame as frame_of
from hypothesis import HealthCheck, given, settings, strategies as st

from abfluss.dlp.inspect import Settings, inspect_pcap
from abfluss.dlp.inspect.inspector import Inspector
from abfluss.dlp.scanner import Scanner
from abfluss.dlp.structured import units
from abfluss.dlp.structured.records import SNIFF_CHARS
from conftest import ROOT, data
from inspectref import SLICED, chunks, reference_inspect, walk

KEY = b"k" * 32

CAPTURES = [ROOT / "examples" / n for n in ("lab-dlp.pcap", "lab-dlp-exports.pcap", "lab-dlp-tls.pcap")] + [
    ROOT / "examples" / "protocols" / f"{n}.pcap" for n in ("ftp-login", "http", "smtp-auth", "ssh")] + [
    data(p) for p in ("zeek-traces/http-post-large.pcap", "zeek-traces/sshguess.pcap", "zeek-traces/pe.pcap",
                      "zeek-traces/Teredo.pcap", "zeek-traces/reverse-ssh.pcap", "zeek-traces/wstunnel-https.pcap",
                      "dns-tunnel/netrack-dns2tcp/dns2tcp-2018-03-23.pcap")]


def _tables(result) -> dict:
    return {"dlp": result.dlp, "inspected": result.inspected, **result.records, "packets": result.packets}


def _reference(path: Path, key: bytes | None, part: int = 0, parts: int = 1) -> dict:
    return _tables(reference_inspect(path, key, Settings(), part, parts))


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
def test_capture_cut_short_as_python(tmp_path, cut):
    """A record cut short anywhere in its header or frame ends the pass where the Python walk
    ended it (and so do trailing bytes too few for a header)."""
    raw = CAPTURES[0].read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(raw[:len(raw) - cut] if cut else raw + b"\x00" * 7)
    _assert_same(_tables(inspect_pcap(path, KEY, Settings())), _reference(path, KEY))


def _frames(path: Path, n: int) -> list[tuple[int, int, bytes]]:
    with open(path, "rb") as f:
        return [(int(ts), 0, bytes(buf)) for (ts, buf), _ in zip(dpkt.pcap.Reader(f), range(n))]


#: Real frames to mutate: HTTP with payload, IPv6 (Teredo), SSH, DNS.
FRAMES = [f for _s, _u, f in _frames(CAPTURES[0], 40) + _frames(CAPTURES[10], 40) + _frames(CAPTURES[11], 30)
          + _frames(CAPTURES[-1], 30)]
#: Header fields that decide how a frame is sliced, (offset, size, values worth trying besides any).
FIELDS = ((12, 2, (0x0800, 0x86DD, 0x8100, 0x88A8, 0x0806)),  # ethertype, VLAN tags
          (14, 1, (0x45, 0x46, 0x4F, 0x40, 0x60)),  # version / IHL (IP options; IHL 0)
          (16, 2, (0, 1, 20, 40, 1500, 0xFFFF)),  # IPv4 total length (0: the frame's) or IPv6 flow label
          (18, 2, (0, 1, 8, 20, 0xFFFF)),  # IPv6 payload length
          (20, 2, (0, 0x4000, 0x2000, 0x1000, 0x0001, 0x1FFF)),  # IPv4 fragment; IPv6 next header
          (23, 1, (6, 17, 1, 41, 0)),  # IPv4 protocol
          (34, 2, (53, 80, 0)), (36, 2, (53, 443)),  # IPv4 ports
          (46, 1, (0x50, 0x80, 0xF0, 0x00, 0x10)), (47, 1, (0x02, 0x12, 0x11, 0x04, 0x18)),  # data offset, flags
          (54, 2, (53, 80)), (66, 1, (0x50, 0xF0, 0x00)))  # IPv6 ports, data offset


@st.composite
def mutated_frame(draw) -> bytes:
    frame = bytearray(FRAMES[draw(st.integers(0, len(FRAMES) - 1))])
    for off, size, values in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        value = draw(st.sampled_from(values) | st.integers(0, (1 << 8 * size) - 1))
        frame[off:off + size] = value.to_bytes(size, "big")
    if draw(st.booleans()):  # cut by the snap length
        frame = frame[:draw(st.integers(0, len(frame)))]
    return bytes(frame)


@settings(max_examples=int(os.environ.get("ABFLUSS_INSPECT_LOOP_EXAMPLES", "300")), deadline=None)
@given(st.lists(mutated_frame(), min_size=1, max_size=20))
def test_mutated_frames_sliced_as_the_index_sliced_them(frames):
    """Frames with changed header bytes (VLAN tags, IPv6 extension headers, IP options, fragments,
    lengths that lie), cut by the snap length: the C loop reads each as the index did."""
    raw = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(
        struct.pack("<IIII", 1_700_000_000, 0, len(f), len(f)) + f for f in frames)
    records, _cut = walk(raw, len(raw))
    (ix,) = list(chunks(raw, len(raw), records))
    src, dst = ix.addresses(np.arange(len(frames)))
    for i, frame in enumerate(frames):
        got = frame_of(frame, 3)
        assert got[0] == ix.kind[i], (i, frame.hex())
        if got[0] == SLICED:
            pe, ps = int(ix.pend[i] - ix.start[i]), int(ix.pstart[i] - ix.start[i])
            want = (SLICED, ix.proto[i], src[i], dst[i], ix.sport[i], ix.dport[i], ix.flags[i], ix.seq[i],
                    frame[ps:pe] if pe > ps else b"", ix.missing[i], ix.part(3)[i])
            assert got == tuple(int(x) if isinstance(x, np.integer) else x for x in want), (i, frame.hex())


@settings(max_examples=int(os.environ.get("ABFLUSS_INSPECT_LOOP_EXAMPLES", "100")) // 2, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(mutated_frame(), st.integers(-3, 3)), min_size=1, max_size=30),
       st.sampled_from((b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\x3c\x4d")), st.integers(0, 20))
def test_mutated_captures_inspected_as_python(tmp_path_factory, picks, magic, cut):
    """Whole captures of such frames, out of time order, in either byte order and time unit, the
    last record cut short: the C loop's tables equal the Python loop's."""
    order = "<" if magic == b"\xd4\xc3\xb2\xa1" else ">"
    raw = magic + struct.pack(order + "HHiIII", 2, 4, 0, 0, 65535, 1) + b"".join(
        struct.pack(order + "IIII", 1_700_000_000 + shift, 250, len(f), len(f)) + f for f, shift in picks)
    path = tmp_path_factory.mktemp("m") / "m.pcap"
    path.write_bytes(raw[:len(raw) - cut] if cut < 10 else raw)
    for key, part, parts in ((KEY, 0, 1), (None, 1, 2)):
        _assert_same(_tables(inspect_pcap(path, key, Settings(), part, parts)), _reference(path, key, part, parts))


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


# -- the head of an HTTP body ----------------------------------------------------------------

def test_body_head_from_a_shorter_prefix_as_before():
    """``units._head`` decodes a shorter prefix first: the same characters as the 4-byte bound's
    decode, also when multi-byte characters bring the prefix's length to about SNIFF_CHARS and a
    sequence is cut where the prefix ends."""
    first = units._HEAD_FIRST
    extra = first - SNIFF_CHARS  # two-byte characters that bring the prefix to SNIFF_CHARS characters
    for wide in (0, 1, extra - 4, extra - 3, extra - 2, extra - 1, extra, extra + 1, 3 * extra):
        for back in range(5):
            for seq in ("\U0001F600".encode(), "ä".encode(), b"\xf0\x9f", b"\xff", b"a", b"\xe4\xb8"):
                for fill in ("ä".encode(), b"\xff", b"a"):
                    start = "ä".encode() * wide
                    n = max(0, first - back - len(start))
                    data = start + fill * (n // len(fill)) + b"a" * (n % len(fill)) + seq + b"a" * 3000
                    want = data[:4 * SNIFF_CHARS + 4].decode("utf-8", "surrogateescape")[:SNIFF_CHARS]
                    assert units._head(data) == want, (wide, back, seq, fill)
