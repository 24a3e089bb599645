"""DNS over TCP reassembly (``_dns_wire.TcpStreams``) against the simple version it replaced, on
generated streams cut into segments that arrive out of order, overlapping and twice; and its cost
on many tiny segments out of order.

The simple version looked through every held segment for each one that arrived: fuzzing found a
12 KB message in one-byte segments, odd ones first, that took 4.5 CPU s; a full buffer (131,072
one-byte segments) would have held an ingest for hours. The reassembly now keeps the held
segments ordered; what it hands on must not change.
"""

from __future__ import annotations

import random
import struct
import time

from hypothesis import given, settings, strategies as st

from abfluss.readers import _dns_wire as wire


class ScanningTcpStreams:
    """The reassembly as it was before (the oracle): a scan of the held segments per segment."""

    def __init__(self):
        self._streams = {}

    def add(self, key, seq, flags, payload):
        st = self._streams.get(key)
        if flags & 0x02:
            self._streams[key] = [(seq + 1) & 0xFFFFFFFF, b"", {}]
            return [], None
        if st is None:
            if not payload:
                return [], None
            st = self._streams[key] = [seq, b"", {}]
        if payload:
            st[2].setdefault(seq, payload)
        while st[2]:
            nxt = st[0]
            seg = st[2].pop(nxt, None)
            if seg is None:
                older = [s for s in st[2] if (nxt - s) & 0xFFFFFFFF < 1 << 31]
                if not older:
                    break
                s = older[0]
                seg = st[2].pop(s)[(nxt - s) & 0xFFFFFFFF:]
                if not seg:
                    continue
            st[1] += seg
            st[0] = (nxt + len(seg)) & 0xFFFFFFFF
        if sum(len(v) for v in st[2].values()) + len(st[1]) > wire.MAX_TCP_BUFFER:
            self._streams.pop(key)
            return [], "lost"
        out, buf = [], st[1]
        while len(buf) >= 2:
            length = int.from_bytes(buf[:2], "big")
            if len(buf) < 2 + length:
                break
            out.append(buf[2:2 + length])
            buf = buf[2 + length:]
        st[1] = buf
        lost = None
        if flags & 0x05 and (buf or st[2]):
            lost = "ended inside"
            self._streams.pop(key)
        elif flags & 0x05:
            self._streams.pop(key)
        return out, lost

    def leftovers(self):
        return [k for k, st in self._streams.items() if st[1] or st[2]]


KEY = ("10.0.0.5", 40000, "10.0.0.53", 53)


@st.composite
def segmented_streams(draw):
    """Length-prefixed messages, cut at random places; some pieces sent twice or overlapping,
    some missing, the order shuffled; sequence numbers near the 32-bit wrap too."""
    msgs = draw(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=6))
    stream = b"".join(struct.pack(">H", len(m)) + m for m in msgs)
    isn = draw(st.sampled_from([0, 1000, 0xFFFFFFFF - 200, 0xFFFFFFFF]))
    rnd = random.Random(draw(st.integers(0, 2 ** 32)))
    cuts = sorted({0, len(stream), *(rnd.randrange(len(stream) + 1) for _ in range(draw(st.integers(0, 40))))})
    pieces = [(a, stream[a:b]) for a, b in zip(cuts, cuts[1:])]
    for _ in range(draw(st.integers(0, 8))):  # retransmissions overlapping any stretch
        a = rnd.randrange(len(stream))
        pieces.append((a, stream[a:a + rnd.randrange(1, 80)]))
    if draw(st.booleans()) and len(pieces) > 1:
        pieces.pop(rnd.randrange(len(pieces)))  # a gap never filled
    rnd.shuffle(pieces)
    syn = draw(st.booleans())
    segs = [((isn + 1 + a) & 0xFFFFFFFF if syn else (isn + a) & 0xFFFFFFFF, 0x18, p) for a, p in pieces]
    if draw(st.booleans()):
        segs[-1] = (segs[-1][0], 0x19, segs[-1][2])  # FIN on the last one sent
    return ([(isn, 0x02, b"")] if syn else []) + segs


@settings(max_examples=400, deadline=None)
@given(segmented_streams())
def test_reassembly_hands_on_what_the_simple_version_did(segments):
    new, old = wire.TcpStreams(), ScanningTcpStreams()
    for seq, flags, payload in segments:
        got, lost = new.add(KEY, seq, flags, payload)
        want, lost_old = old.add(KEY, seq, flags, payload)
        assert got == want
        assert (lost is None) == (lost_old is None)
    assert len(new.leftovers()) == len(old.leftovers())


def _one_byte_segments_odd_first(n: int) -> float:
    """CPU seconds to reassemble one n-byte message sent in one-byte segments, odd ones first."""
    msg = bytes(random.Random(n).randrange(256) for _ in range(n))
    stream = struct.pack(">H", n) + msg
    t = wire.TcpStreams()
    t.add(KEY, 0, 0x02, b"")
    cuts = [(i, stream[i:i + 1]) for i in range(len(stream))]
    start = time.process_time()
    got = []
    for i, seg in cuts[1::2] + cuts[::2]:
        got += t.add(KEY, 1 + i, 0x18, seg)[0]
    spent = time.process_time() - start
    assert got == [msg]
    return spent


def test_many_tiny_segments_out_of_order_cost_about_their_number():
    """Four times the segments cost about four times the time (a scan per segment: sixteen)."""
    small, large = (min(_one_byte_segments_odd_first(n) for _ in range(3)) for n in (6_000, 24_000))
    assert large < 9 * small, (small, large)
