"""The C DNS parser (``_dns_wire.c``) against the Python parser it replaced (``dnsref``), result for
result and reason for reason: on every DNS message of the lab's tunnel captures (iodine's raw,
base32/64/64u/128 encodings, NULL/TXT/SRV/MX/CNAME/A records, dns2tcp), on those messages cut
and with bytes changed, and on hypothesis' messages (any label bytes, pointers anywhere, records
that run past their end). The frame slicer (``l4``) likewise against the Python one.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import dpkt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dnsref
from abfluss.readers import _dns_wire as wire

DATA = Path(__file__).resolve().parents[1] / "examples"
CAPTURES = sorted((DATA / "tunnels").glob("*.pcap")) + [DATA / "lab-dns-tunnel.pcap", DATA / "demo.pcap"]
#: hypothesis examples; ``make fuzz`` runs many more (ABFLUSS_DNS_EXAMPLES).
EXAMPLES = int(os.environ.get("ABFLUSS_DNS_EXAMPLES", "150"))


def reference(buf: bytes):
    try:
        m = dnsref.parse(buf)
    except dnsref.WireError as e:
        return "error", str(e)
    return m.id, m.qr, m.opcode, m.rcode, m.key, m.qtype, m.query, m.answers, m.answer_types, m.ttls


def compiled(buf: bytes, start: int = 0, end: int | None = None):
    try:
        return wire.parse_at(buf, start, len(buf) if end is None else end)
    except wire.WireError as e:
        return "error", str(e)


def same(buf: bytes) -> None:
    assert compiled(buf) == reference(buf), buf.hex()
    framed = b"\xaa" * 7 + buf + b"\x55" * 9  # inside a larger buffer, as from the capture's memory map
    assert compiled(framed, 7, 7 + len(buf)) == reference(buf), buf.hex()


def frames() -> list[bytes]:
    out = []
    for path in CAPTURES:
        with open(path, "rb") as f:
            r = dpkt.pcap.Reader(f)
            assert r.datalink() == dpkt.pcap.DLT_EN10MB, path
            out += [bytes(buf) for _ts, buf in r]
    return out


FRAMES = frames()


def test_every_real_message_and_its_mutations_parse_as_before():
    rng = random.Random(7)
    messages = 0
    kinds = set()
    for frame in FRAMES:
        ref = dnsref._fast_l4(dnsref.DLT_EN10MB, frame)
        assert wire.l4(frame, 0, len(frame)) == ref
        if not ref or ref[0] != "udp" or not ref[5]:
            continue
        buf = ref[5]
        messages += 1
        same(buf)
        r = reference(buf)
        if r[0] != "error":
            kinds.update((r[5], *r[8]))
        if EXAMPLES < 1000 and rng.random() > 0.25:  # a quarter of them cut and changed (``make fuzz``: all of them)
            continue
        for cut in rng.sample(range(len(buf)), min(4, len(buf))):
            same(buf[:cut])
        b = bytearray(buf)
        for _ in range(3):
            b[rng.randrange(len(b))] = rng.choice((0, 0xC0, 0x3F, 0xFF, rng.randrange(256)))
            same(bytes(b))
    assert messages > 5000 and {"NULL", "TXT", "SRV", "MX", "CNAME", "A"} <= kinds


def test_frames_cut_and_changed_slice_as_before():
    rng = random.Random(11)
    for frame in rng.sample(FRAMES, 3000):
        for _ in range(2):
            b = bytearray(frame[:rng.randrange(len(frame) + 1)])
            if len(b) > 14 and rng.random() < 0.5:  # a VLAN tag or another header byte changed
                i = rng.randrange(12, min(len(b), 80))
                b[i] = rng.choice((0x81, 0x00, 0x86, 0xDD, 0x08, 0x35, rng.randrange(256)))
            frame2 = bytes(b)
            assert wire.l4(frame2, 0, len(frame2)) == dnsref._fast_l4(dnsref.DLT_EN10MB, frame2)
            padded = frame2 + bytes(64)  # the memory map goes on after the frame: never read past its end
            assert wire.l4(padded, 0, len(frame2)) == dnsref._l4_in_place(padded, 0, len(frame2))


@st.composite
def messages(draw):
    """DNS-shaped bytes: a header, names of any bytes (with length octets that may be wrong and
    pointers anywhere), records of the types the parser reads, and then bytes changed or cut."""
    def name(valid=None):
        valid = draw(st.integers(0, 4)) > 0 if valid is None else valid  # mostly well-formed
        parts = []
        for _ in range(draw(st.integers(0, 6))):
            label = draw(st.binary(max_size=63 if valid else 70))
            n = len(label) if valid else draw(st.sampled_from((len(label) & 0xFF, draw(st.integers(0, 255)))))
            parts.append(bytes([n]) + label)
        ends = (b"\x00", b"\xc0\x0c") if valid else (b"\x00", b"", bytes([0xC0 | draw(st.integers(0, 3)),
                                                                       draw(st.integers(0, 255))]))
        return b"".join(parts) + draw(st.sampled_from(ends))

    flags = draw(st.sampled_from((0x0100, 0x8180, 0x8183, 0x8580))) if draw(st.integers(0, 4)) \
        else draw(st.integers(0, 0xFFFF))
    qd = draw(st.sampled_from((0, 1, 1, 1, 2, draw(st.integers(0, 0xFFFF)))))
    answers = []
    for _ in range(draw(st.integers(0, 4))):
        rtype = draw(st.sampled_from((1, 28, 2, 5, 12, 39, 15, 33, 16, 99, 10, 65280, draw(st.integers(0, 0xFFFF)))))
        if draw(st.booleans()):
            rdata = draw(st.binary(max_size=60))
        else:  # a name, after MX's or SRV's numbers
            rdata = b"\x00\x01\x00\x02\x00\x35"[:draw(st.sampled_from((0, 2, 6)))] + name()
        rdlen = draw(st.sampled_from((len(rdata), len(rdata), draw(st.integers(0, 0xFFFF)))))
        answers.append(draw(st.sampled_from((b"\xc0\x0c", name()))) + struct.pack(">HHIH", rtype, 1,
                                                                                  draw(st.integers(0, 2**32 - 1)),
                                                                                  rdlen) + rdata)
    an = draw(st.sampled_from((len(answers), draw(st.integers(0, 0xFFFF)))))
    buf = struct.pack(">HHHHHH", draw(st.integers(0, 0xFFFF)), flags, qd, an, 0, 0)
    buf += b"".join(name(draw(st.integers(0, 9)) > 0).replace(b"\xc0\x0c", b"\x00") + struct.pack(">HH", draw(st.sampled_from(
        (1, 16, 10, 28, draw(st.integers(0, 0xFFFF))))), 1)[:draw(st.sampled_from((4, 4, 4, 1, 0)))] for _ in range(min(qd, 2)))
    buf += b"".join(answers)
    b = bytearray(buf)
    for _ in range(draw(st.sampled_from((0, 0, 1, 3)))):
        if b:
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
    return bytes(b[:draw(st.integers(0, len(b)))]) if draw(st.integers(0, 3)) == 0 else bytes(b)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.integers(0, 80))
def test_any_bytes_parse_as_before(buf, off):
    same(buf)
    try:
        want = dnsref.read_name(buf, off)
    except dnsref.WireError as e:
        want = str(e)
    try:
        got = wire.read_name(buf, off)
    except wire.WireError as e:
        got = str(e)
    assert got == want


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_parse_as_before(buf):
    same(buf)
    same(b"\x00\x07\x81\x80\x00\x01\x00\x03\x00\x00\x00\x00" + buf)  # a response header before them


def test_the_length_limits_are_where_they_were():
    """Names around MAX_NAME (1024 bytes) in queries, responses and answers, pointer chains that
    grow a name beyond it, more than MAX_JUMPS pointers, and a further question of > 1024 labels."""
    def head(flags, qd=1, an=0):
        return struct.pack(">HHHHHH", 9, flags, qd, an, 0, 0)

    def long_name(raw: int) -> bytes:  # labels of 63 and a last one: ``raw`` bytes with the dots
        out, left = b"", raw
        while left > 0:
            k = min(63, left)
            out += bytes([k]) + b"a" * k
            left -= k + 1
        return out + b"\x00"

    cases = []
    for raw in (1020, 1021, 1022, 1023, 1024):
        for flags in (0x0100, 0x8180):
            q = long_name(raw)
            cases.append(head(flags) + q + b"\x00\x10\x00\x01")
            cases.append(head(flags, an=1) + b"\x01q\x00\x00\x05\x00\x01" + b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x01"
                         + struct.pack(">H", len(q)) + q)
    # each of 200 labels points back to the one before: the name grows past the limit, and the jumps too
    chain = bytearray(head(0x8180, an=1) + b"\x01a\x00\x00\x01\x00\x01")
    prev = 12
    for _ in range(200):
        here = len(chain)
        chain += b"\x3f" + b"b" * 63 + bytes([0xC0 | prev >> 8, prev & 0xFF])
        prev = here
    for at in range(12, len(chain), 97):
        cases.append(bytes(chain[:12]) + b"".join([bytes(chain[12:])]) + bytes([0xC0 | at >> 8, at & 0xFF]))
    question = head(0x0100, qd=2) + b"\x01a\x00\x00\x01\x00\x01" + b"\x01x" * 1100 + b"\x00\x00\x01\x00\x01"
    cases.append(question)
    got = set()
    for buf in cases:
        same(buf)
        got.add(reference(buf)[-1] if reference(buf)[0] == "error" else "ok")
        for off in range(0, len(buf), 61):
            try:
                want = dnsref.read_name(buf, off)
            except dnsref.WireError as e:
                want = str(e)
            try:
                have = wire.read_name(buf, off)
            except wire.WireError as e:
                have = str(e)
            assert have == want
    assert {"ok", "name longer than any DNS name"} <= got


# -- whole captures: frames walked, sliced, parsed and paired in C, against the Python loop ----------

def _eth(payload_ip: bytes, ethertype: int, tags=()) -> bytes:
    head = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02"
    for tpid, vid in tags:
        head += struct.pack(">HH", tpid, vid)
    return head + struct.pack(">H", ethertype) + payload_ip


def _udp(src: str, dst: str, sport: int, dport: int, data: bytes, tags=()) -> bytes:
    u = dpkt.udp.UDP(sport=sport, dport=dport, data=data)
    u.ulen = len(u)
    if ":" in src:
        import socket
        ip = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src), dst=socket.inet_pton(socket.AF_INET6, dst),
                          nxt=17, hlim=64, data=u)
        ip.plen = len(u)
        return _eth(bytes(ip), 0x86DD, tags)
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))), p=17, data=u)
    ip.len = len(ip)
    return _eth(bytes(ip), 0x0800, tags)


def _tcp(src: str, dst: str, sport: int, dport: int, seq: int, flags: int, data: bytes) -> bytes:
    t = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, flags=flags, data=data)
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))), p=6, data=t)
    ip.len = len(ip)
    return _eth(bytes(ip), 0x0800)


def _q(labels, qtype=1, tid=1, flags=0x0100):
    return struct.pack(">HHHHHH", tid, flags, 1, 0, 0, 0) + b"".join(
        bytes([len(x)]) + x for x in labels) + b"\x00" + struct.pack(">HH", qtype, 1)


def _r(q: bytes, rtype: int, rdata: bytes, flags=0x8180):
    return (q[:2] + struct.pack(">HHHHH", flags, 1, 1, 0, 0) + q[12:] + b"\xc0\x0c"
            + struct.pack(">HHIH", rtype, 1, 300, len(rdata)) + rdata)


def _frames() -> list[bytes]:
    c, s, c6, s6 = "10.0.0.5", "10.0.0.53", "fd00::5", "fd00::53"
    q1 = _q([b"www", b"Example", b"test"], 1, tid=1)
    q1_0x20 = q1[:12] + bytes([3]) + b"WwW" + q1[16:]  # the resolver answers with the case changed
    q2 = _q([b"\xff\xfe" + bytes(range(0xBC, 0xD0)), b"t", b"tunlab", b"test"], 10, tid=2)
    q3 = _q([b"v6", b"example", b"test"], 16, tid=3)
    q4 = _q([b"tagged", b"test"], 28, tid=4)
    compressed = struct.pack(">HHHHHH", 5, 0x0100, 1, 0, 0, 0) + b"\xc0\x02\x00\x01\x00\x01"  # into the header
    tq = [_q([b"tcp%d" % i, b"example", b"test"], 16, tid=10 + i) for i in range(3)]
    stream = b"".join(struct.pack(">H", len(m)) + m for m in tq)
    answers = b"".join(struct.pack(">H", len(m)) + m for m in (_r(tq[0], 16, b"\x03abc"), _r(tq[1], 16, b"\x00")))
    arp = dpkt.arp.ARP(sha=b"\x02" * 6, spa=bytes([10, 0, 0, 5]), tha=b"\x00" * 6, tpa=bytes([10, 0, 0, 1]))
    return [
        _udp(c, s, 40000, 53, q1), _udp(c, s, 40000, 53, q1),  # a query and its retransmission
        _udp(s, c, 53, 40000, _r(q1_0x20, 1, b"\x0a\x00\x00\x07")),
        _udp(s, c, 53, 40001, _r(_q([b"nobody", b"asked"], 1, tid=99), 1, b"\x01\x02\x03\x04")),
        _udp(c, s, 40002, 53, q2), _udp(s, c, 53, 40002, _r(q2, 10, b"\x00\xff" * 50)),
        _udp(c6, s6, 40003, 53, q3), _udp(s6, c6, 53, 40003, _r(q3, 16, b"\x05a.b\xffc")),
        _udp(c, s, 40004, 53, q4, tags=[(0x8100, 7)]),
        _udp(s, c, 53, 40004, _r(q4, 28, bytes(range(16))), tags=[(0x88A8, 1), (0x8100, 7)]),
        _udp(c, s, 40005, 53, compressed),
        _udp(c, s, 40006, 53, b"\x10\xd1\x9e" + bytes(200)),  # not DNS: a counted skip
        _udp(c, s, 40007, 53, b""),  # empty
        _eth(bytes(arp), 0x0806), _eth(bytes(arp), 0x0806, tags=[(0x8100, 7)]),
        _tcp(c, s, 41000, 53, 1000, dpkt.tcp.TH_SYN, b""),
        _tcp(c, s, 41000, 53, 1001 + 20, dpkt.tcp.TH_ACK, stream[20:]),  # before the first piece
        _tcp(c, s, 41000, 53, 1001, dpkt.tcp.TH_ACK, stream[:20]),
        _tcp(s, c, 53, 41000, 5000, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, b""),
        _tcp(s, c, 53, 41000, 5001, dpkt.tcp.TH_ACK, answers),
        _tcp(c, s, 41000, 53, 1001 + len(stream), dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, b""),
        _tcp(c, s, 41001, 53, 7000, dpkt.tcp.TH_ACK, stream[:30]),  # joined mid-stream, ends inside a message
    ]


def _write(path: Path, frames: list[bytes], pcapng: bool = False, cut: int = 0) -> None:
    with open(path, "wb") as f:
        w = (dpkt.pcapng.Writer if pcapng else dpkt.pcap.Writer)(f, snaplen=65535)
        for i, frame in enumerate(frames):
            w.writepkt(frame, ts=1_700_000_000 + i * 0.25)
    if cut:
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size - cut)


def test_captures_decode_as_the_python_loop_did(tmp_path):
    import pyarrow as pa

    from abfluss.readers import _dns_packets, _split
    from abfluss.readers.base import ReadReport

    frames = _frames()
    real = [f for path in CAPTURES[:4] for f in frames_of(path)]
    for name, data, pcapng, cut in (("made.pcap", frames, False, 0), ("made-cut.pcap", frames, False, 5),
                                    ("made.pcapng", frames, True, 0), ("real.pcap", real + frames, False, 0)):
        path, ref = tmp_path / name, tmp_path / f"ref-{name}"
        _write(path, data, pcapng, cut)
        _write(ref, data[:-1] if cut else data, pcapng)  # a record cut short ends the scan: not read
        for part, parts in ((0, 1), (0, 2), (1, 2)):
            mine = None if parts == 1 else (lambda l4, k=part, n=parts: _split.part_of(l4[1], l4[2], n) == k)
            want_report, got_report = ReadReport(f"ref-{name}"), ReadReport(name)
            want = dnsref.scan(ref, want_report, mine)
            got = _dns_packets.scan(path, got_report, part, parts)
            table = got.dns.set_column(0, "ts", got.dns.column("ts").cast(pa.int64())) if got.dns else None
            rows = [{k: r[k] for k in dnsref.FIELDS} for r in table.to_pylist()] if table else []
            assert rows == want, (name, part)
            if parts == 1:
                whole = want
            skips = [m for m in got_report.messages if "truncated" not in m]
            assert skips == [m.replace("ref-", "") for m in want_report.messages], (name, part)
            assert any("truncated" in m for m in got_report.messages) == (bool(cut) and not part), (name, part)
            if part == 0 and not pcapng:
                assert got.arp is not None and got.arp.num_rows >= 2
        assert {r["proto"] for r in whole} == {"udp", "tcp"} and any(":" in r["orig_h"] for r in whole)
        assert any(r["query"].startswith("\\xff\\xfe") for r in whole) and len(whole) >= 10


def frames_of(path: Path) -> list[bytes]:
    with open(path, "rb") as f:
        return [bytes(buf) for _ts, buf in dpkt.pcap.Reader(f)]
