"""The C reader of eve.json blocks (``readers/_eve_json.c``) against what it replaces.

``_eve_json.read`` must give exactly pyarrow's table (explicit schema, other keys ignored) for
every block it takes, and take the plain blocks a sensor writes; ``_eve_json.lines`` must decide
every block as the NumPy and regular-expression test it replaced (kept here as the reference).
Real events, hand-written edge cases and hypothesis' generated and mutated lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from abfluss.readers import _eve_fast, _eve_json

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EVE = DATA / "slips" / "test6-malicious.suricata.json"


def arrow(data: bytes) -> pa.Table | None:
    try:
        return pjson.read_json(pa.BufferReader(data), read_options=_eve_fast._READ_ALONE,
                               parse_options=_eve_fast._OPTIONS)
    except pa.ArrowInvalid:
        return None


def same(a, b, path: str) -> None:
    """Equal arrays, validity and the values under null parents included."""
    a = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
    b = b.combine_chunks() if isinstance(b, pa.ChunkedArray) else b
    assert a.type == b.type and len(a) == len(b), path
    assert a.is_valid().equals(b.is_valid()), path
    if pa.types.is_struct(a.type):
        for i, field in enumerate(a.type):
            same(a.field(i), b.field(i), f"{path}/{field.name}")
    elif pa.types.is_list(a.type):
        assert a.value_lengths().fill_null(0).equals(b.value_lengths().fill_null(0)), path
        same(a.flatten(), b.flatten(), f"{path}/[]")
    else:
        assert a.equals(b), path


def check(data: bytes) -> bool:
    """C's table equals pyarrow's whenever C gives one; whether it did."""
    got = _eve_json.read(data, len(data))
    if got is None:
        return False
    ref = arrow(data)
    assert ref is not None, data
    assert got.schema == ref.schema
    for name in ref.schema.names:
        same(got.column(name), ref.column(name), name)
    got.validate(full=False)
    return True


def test_real_events_every_block_size():
    lines = EVE.read_bytes().splitlines(keepends=True)
    assert check(b"".join(lines))
    for size in (1, 7, 100):
        for i in range(0, len(lines), size):
            assert check(b"".join(lines[i:i + size]))


SAMPLES = [
    # DNS v1 (one record per answer event), v2 (answers and grouped), v3 (queries and answers)
    b'{"timestamp":"2020-01-01T00:00:00.000000+0000","event_type":"dns","flow_id":1,"src_ip":"10.0.0.1",'
    b'"src_port":53,"dest_ip":"10.0.0.2","dest_port":4000,"proto":"UDP","dns":{"type":"answer","id":7,'
    b'"rrname":"a.test","rrtype":"A","ttl":60,"rdata":"1.2.3.4","rcode":"NOERROR"}}',
    b'{"timestamp":"2020-01-01T00:00:00.000000+0000","event_type":"dns","dns":{"version":2,"type":"answer",'
    b'"id":7,"rrname":"a.test","rrtype":"A","rcode":"NOERROR","answers":[{"rrname":"a.test","rrtype":"A",'
    b'"ttl":60,"rdata":"1.2.3.4"},{"rrtype":"TXT","rdata":"x"}],"grouped":{"A":["1.2.3.4"]}}}',
    b'{"timestamp":"2020-01-01T00:00:00.000000+0000","event_type":"dns","dns":{"version":3,"type":"request",'
    b'"id":7,"queries":[{"rrname":"a.test","rrtype":"A"}],"answers":[]}}',
    b'{"timestamp":"2020-01-01T00:00:00.000000+0000","event_type":"tls","tls":{"sni":"x.test","version":'
    b'"TLS 1.3","ja3":{"hash":"ab","string":"1,2"},"ja3s":{},"notbefore":"2016-06-07T00:00:00",'
    b'"fingerprint":"aa:bb"},"ether":{"src_macs":["AA:bb:cc:dd:ee:ff"],"dest_macs":[]}}',
    b'{"timestamp":"2020-01-01T00:00:00.000000+0000","event_type":"flow","tcp":{"rst":true,"syn":true},'
    b'"flow":{"start":"x","state":"new","pkts_toclient":-0,"bytes_toserver":9223372036854775807},'
    b'"flow_id":-9223372036854775808}',
    b'{ "timestamp" : "t" ,\t"event_type":"http" , "http" : { "url" : "/a\\/b\\"c\\u00e9\\ud83d\\ude00\\n" } }',
    b'{"event_type":"x","other":[1,2.5,-0.0,true,false,null,{"a":[[]]},"s"],"n":{}}',
    b'{"event_type":"x","src_ip":"\xc3\xa9\xff"}',
    b'{}',
    b' \t{"a":1} \r',
]


@pytest.mark.parametrize("line", SAMPLES)
def test_samples(line):
    assert check(line + b"\n")


REFUSED = [  # not taken by C: pyarrow decides (and refuses most of them)
    b'{"src_port":"80"}', b'{"src_port":80.0}', b'{"src_port":1e2}', b'{"src_ip":5}', b'{"tcp":{"rst":1}}',
    b'{"src_ip":"x","src_ip":"y"}', b'{"tls":{"sni":"a","sni":"b"}}', b'{"a":NaN}', b'{"a":1e999}',
    b'{"src_port":99999999999999999999}', b'{"ether":{"src_macs":["a",1]}}', b'{"src_ip":"a\\ud83d"}',
    b'{"src_ip":"a\x01"}', b'{"a":[1,2,}', b'{"s\\u0072c_ip":"x"}', b'{"src_ip":null}', b'{"a":1}{"b":2}',
    b'{"a":"\\u0000"}', b'{"a":01}', b'{"a":1.}', b'{"a":-}', b'{"a":tru}', b'{"a":1,}', b'{"a" 1}',
    b'{"dns":{"answers":[null]}}', b'{"flow":[]}', b'{"a":1} x',
]


@pytest.mark.parametrize("line", REFUSED)
def test_refused(line):
    assert _eve_json.read(line + b"\n", len(line) + 1) is None


def test_nesting_limit():
    deep = b'{"a":' + b"[" * 600 + b"]" * 600 + b"}\n"
    assert _eve_json.read(deep, len(deep)) is None
    ok = b'{"a":' + b"[" * 300 + b"]" * 300 + b"}\n"
    assert check(ok)


# --- generated lines ------------------------------------------------------------------------------

def _names(t: pa.DataType) -> set[str]:
    out = set()
    for f in t if pa.types.is_struct(t) else ():
        out.add(f.name)
        out |= _names(f.type.value_type if pa.types.is_list(f.type) else f.type)
    return out


KEYS = sorted(_names(pa.struct(list(_eve_fast.SCHEMA))) | {"x", "grouped", "metadata"})
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64), texts,
                    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(["80", "tcp", "2020-01-01"]))
values = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(st.sampled_from(KEYS), kids, max_size=5)), max_leaves=12)
objects = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)
REAL = [x for x in EVE.read_bytes().splitlines() if x][:200]


def _text(obj, spaced: bool, ascii_only: bool) -> bytes:
    sep = (", ", ": ") if spaced else (",", ":")
    return json.dumps(obj, separators=sep, ensure_ascii=ascii_only).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(objects, st.booleans(), st.booleans()), min_size=1, max_size=6))
def test_generated_objects(rows):
    check(b"".join(_text(o, s, a) + b"\n" for o, s, a in rows))


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(REAL + SAMPLES), st.integers(0, 2000), st.binary(max_size=4),
                          st.integers(0, 3)), min_size=1, max_size=4))
@example([(SAMPLES[1], 40, b"", 2)])
def test_mutated_lines(edits):
    """Real lines with bytes inserted, replaced or removed at a position: C takes them only
    where pyarrow gives the same table."""
    lines = []
    for line, at, new, how in edits:
        at %= len(line) + 1
        cut = {0: 0, 1: len(new), 2: 1, 3: 0}[how]
        lines.append(line if how == 3 else line[:at] + new + line[at + cut:])
    check(b"".join(x.replace(b"\n", b" ") + b"\n" for x in lines))


# --- the block test -------------------------------------------------------------------------------

_NULL = re.compile(rb":\s*null\b")


def reference_lines(data: bytes, end: int, max_openers: int) -> np.ndarray | None:
    """The block test as NumPy and a regular expression gave it before it moved to C."""
    buf = np.frombuffer(data, np.uint8, end)
    if not end or buf[end - 1] != 0x0A:
        return None
    ends = np.flatnonzero(buf == 0x0A)
    starts = np.concatenate(([0], ends[:-1] + 1))
    if (buf[starts] != 0x7B).any() or (ends <= starts).any() or (buf[ends - 1] != 0x7D).any():
        return None
    if _NULL.search(data, 0, end):
        return None
    opening = np.flatnonzero((buf | 0x20) == 0x7B)
    if (np.searchsorted(opening, ends) - np.searchsorted(opening, starts) > max_openers).any():
        return None
    return ends


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from([b"{", b"}", b"[", b"\n", b":", b" ", b"\t", b"\x0b", b"null", b"nul", b"l",
                                 b"_", b"a", b"0", b'"', b"\x7b\x5b\x3a"]), max_size=40),
       st.integers(0, 3), st.integers(0, 45))
@example([b"{", b":", b"\n", b" ", b"null", b"}", b"\n"], 3, 7)
def test_block_test_equals_reference(parts, max_openers, cut):
    data = b"".join(parts)
    end = min(cut, len(data))
    got, ref = _eve_json.lines(data, end, max_openers), reference_lines(data, end, max_openers)
    assert (got is None) == (ref is None)
    if ref is not None:
        assert got.tolist() == ref.tolist()


def test_block_test_real_events():
    data = EVE.read_bytes()
    end = data.rfind(b"\n") + 1
    assert _eve_json.lines(data, end, _eve_fast._MAX_OPENERS).tolist() == \
        reference_lines(data, end, _eve_fast._MAX_OPENERS).tolist()


#: Suricata's own timestamp form: byte positions of the digits and the separators every value has.
_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25, 27, 28, 29, 30])
_SEPARATORS = {4: b"-", 7: b"-", 10: b"T", 13: b":", 16: b":", 19: b"."}
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def reference_times(col: pa.Array, max_us: int) -> np.ndarray | None:
    """The NumPy reading of Suricata's timestamps that ``_eve_json.times`` replaced."""
    n = len(col)
    offsets = np.frombuffer(col.buffers()[1], np.int32, n + 1, col.offset * 4)
    valid = np.ones(n, bool) if col.null_count == 0 else pc_is_valid(col)
    if (np.diff(offsets) != np.where(valid, 31, 0)).any():
        return None
    first = int(offsets[0])
    m = np.frombuffer(col.buffers()[2] or b"", np.uint8, int(offsets[-1]) - first, first).reshape(-1, 31)
    for at, char in _SEPARATORS.items():
        if (m[:, at] != char[0]).any():
            return None
    if ((m[:, 26] != 0x2B) & (m[:, 26] != 0x2D)).any():
        return None
    d = m[:, _DIGITS] - np.uint8(0x30)
    if (d > 9).any():
        return None
    d = d.astype(np.int64)
    num = lambda i, w: sum(d[:, i + k] * 10 ** (w - 1 - k) for k in range(w))  # noqa: E731
    year, month, day = num(0, 4), num(4, 2), num(6, 2)
    hour, minute, second, frac = num(8, 2), num(10, 2), num(12, 2), num(14, 6)
    zone = (num(20, 2) * 60 + num(22, 2)) * np.where(m[:, 26] == 0x2D, -1, 1)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    last = _DAYS_IN_MONTH[np.clip(month, 0, 12)] + (leap & (month == 2))
    if ((month < 1) | (month > 12) | (day < 1) | (day > last) | (hour > 23) | (minute > 59) | (second > 59)
            | (num(20, 2) > 23) | (num(22, 2) > 59)).any():
        return None
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    us = ((days * 86400 + hour * 3600 + minute * 60 + second - zone * 60) * 1_000_000 + frac)
    if (us < 0).any() or (us > max_us).any():
        return None
    full = np.zeros(n, np.int64)
    full[valid] = us
    return full


def pc_is_valid(col: pa.Array) -> np.ndarray:
    return col.is_valid().to_numpy(zero_copy_only=False)


MAX_US = 253402214400 * 10**6
STAMPS = ["2021-06-06T15:57:37.272281+0200", "2024-02-29T23:59:59.999999+0000", "1970-01-01T00:00:00.000000+0000",
          "1969-12-31T23:00:00.000000-0200", "0000-02-29T00:00:00.000000-2359", "9999-12-30T12:00:00.000000+0000"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(STAMPS + [None]), st.integers(0, 32), st.binary(min_size=0, max_size=2)),
                min_size=1, max_size=5), st.integers(0, 2))
@example([("2000-02-29T00:00:00.000000+0000", 0, b"")], 0)
@example([("2100-02-29T00:00:00.000000+0000", 0, b"")], 0)
@example([("1970-01-01T00:30:00.000000+0100", 0, b"")], 0)
def test_times_equal_reference(values, cut):
    """``_eve_json.times`` (C) decides every column and gives every value as the NumPy reading it
    replaced: real forms with digits, separators and lengths changed, nulls, an array offset."""
    texts = []
    for v, at, new in values:
        if v is not None and at < len(v):
            v = (v.encode()[:at] + new + v.encode()[at + len(new):]).decode("latin-1")
        texts.append(v)
    col = pa.array(["x"] * cut + texts, pa.string()).slice(cut)
    got, ref = _eve_json.times(col, MAX_US), reference_times(col, MAX_US)
    assert (got is None) == (ref is None), texts
    if ref is not None:
        assert got.tolist() == ref.tolist(), texts


def test_times_real_events():
    from abfluss.readers import suricata
    events = [json.loads(x) for x in EVE.read_text().splitlines()]
    col = pa.array([e["timestamp"] for e in events])
    assert _eve_json.times(col, MAX_US).tolist() == [suricata._ts(e["timestamp"]) for e in events]
    assert _eve_json.times(col.slice(3, 0), MAX_US).tolist() == []
    assert _eve_json.times(pa.array([None, None], pa.string()), MAX_US).tolist() == [0, 0]
    assert _eve_json.times(pa.array([""], pa.string()), MAX_US) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 3000))
def test_newlines_equal_bytes_count(data, end):
    end = min(end, len(data))
    assert _eve_json.newlines(data, end) == data.count(b"\n", 0, end)
