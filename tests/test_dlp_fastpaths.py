"""The scanner's and decoders' fast paths give exactly what the plain ways they replace give.

Each speed-up of payload inspection (issue 12's speed target) keeps a slower, obviously right
way of doing the same: HMAC from the standard library, the e-mail search over the whole window,
overlap resolution over all candidates at once, defusedxml for every XML document, decoding a
unit whole before sniffing its layout. These tests run both on random and hostile inputs.
"""

from __future__ import annotations

import codecs
import hmac
import json
import random
from contextlib import contextmanager

import pyarrow.compute as pc
import pytest
from conftest import ROOT, data
from defusedxml import ElementTree as DET
from hypothesis import example, given, settings
from hypothesis import strategies as st

from abfluss.dlp import Scanner, ScanSettings
from abfluss.dlp import patterns, scanner as sc
from abfluss.dlp.inspect import Settings, inspect_pcap
from abfluss.dlp.keys import Keyed
from abfluss.dlp.structured import markup, units
from abfluss.dlp.structured.text import decode_text


@pytest.mark.parametrize("size", [0, 1, 31, 32, 63, 64, 65, 200])
def test_keyed_hash_is_hmac_sha256(size):
    rng = random.Random(size)
    key = rng.randbytes(size)
    keyed = Keyed(key)
    for msg in (b"", b"kvnr:A123456780", rng.randbytes(300)):
        assert keyed.hexdigest(msg) == hmac.digest(key, msg, "sha256").hex()
    assert "Keyed(...)" == repr(keyed)


def _emails_by_window(raw: bytes) -> list[tuple[int, int]]:
    """The e-mail search as it was: the whole window around each @ searched."""
    out = []
    i = raw.find(b"@")
    while i >= 0:
        m = patterns._EMAIL.search(raw, max(0, i - patterns._EMAIL_BEFORE), i + patterns._EMAIL_AFTER)
        while m and m.end() <= i:
            m = patterns._EMAIL.search(raw, m.end(), i + patterns._EMAIL_AFTER)
        if m and m.start() <= i:
            out.append(m.span())
            i = raw.find(b"@", m.end())
        else:
            i = raw.find(b"@", i + 1)
    return out


def _emails_fast(raw: bytes) -> list[tuple[int, int]]:
    out = []
    local = raw.translate(sc._LOCAL_PART)
    i = raw.find(b"@")
    while i >= 0:
        m = sc._email_at(raw, local, i)
        if m and m.start() <= i:
            out.append(m.span())
            i = raw.find(b"@", m.end())
        else:
            i = raw.find(b"@", i + 1)
    return out


def test_email_local_part_search_equals_the_window_search():
    rng = random.Random(12)
    parts = [b"a", b"Z", b"7", b".", b"-", b"_", b"+", b"%", b"@", b"@", b" ", b"\n", b"=", b"de", b"x" * 63,
             b"y" * 70, b"p.m@praxis-1.de", b"a@b.cd.ef@x.de"]
    for _ in range(20_000):
        raw = b"".join(rng.choice(parts) for _ in range(rng.randrange(1, 40)))
        assert _emails_fast(raw) == _emails_by_window(raw), raw


def _claim_all_at_once(cands):
    """Overlap resolution as it was: every candidate against every kept span."""
    return Scanner._claim_run(list(cands))


def test_overlap_runs_equal_resolution_over_all_candidates():
    rng = random.Random(7)
    cats = list(sc._PRIORITY)
    for _ in range(3_000):
        cands = []
        for _ in range(rng.randrange(0, 25)):
            start = rng.randrange(0, 120)
            cands.append(sc._Cand(rng.choice(cats), start, start + rng.randrange(1, 25), "v"))
        fast = Scanner._claim(cands)
        assert [id(c) for c in fast] == [id(c) for c in _claim_all_at_once(cands)]


def test_scan_results_do_not_depend_on_the_hash_cache():
    """One scanner over many payloads (its caches filled and cleared) reports what a fresh one does."""
    rng = random.Random(3)
    import dlpgen

    texts = [dlpgen.TEXT_LAYOUTS["csv"](dlpgen.people(rng, 30)).encode() for _ in range(4)]
    shared = Scanner(b"k" * 32, ScanSettings())
    for t in texts * 2:
        assert shared.scan(t) == Scanner(b"k" * 32, ScanSettings()).scan(t)


FHIR = ('<Patient xmlns="http://hl7.org/fhir"><identifier><system value="http://fhir.de/sid/gkv/kvid-10"/>'
        '<value value="A123456780"/></identifier><name><family value="M\u00fcller"/></name>'
        '<!-- a comment --><![CDATA[x < y]]></Patient>')


@pytest.mark.parametrize("doc", [
    FHIR,
    FHIR.encode(),
    b'<?xml version="1.0" encoding="UTF-8"?>' + FHIR.encode(),
    b'<?xml version="1.0" encoding="ISO-8859-1"?><a k="\xe4">\xfc</a>',
    '<a><b x="1">t</b>tail<c/></a>',
])
def test_xml_without_doctype_parses_as_defusedxml_does(doc):
    assert markup._plain_xml(doc)
    fast = list(markup._xml_records(markup.parse_xml(doc)))
    assert fast == list(markup._xml_records(DET.fromstring(doc)))


@pytest.mark.parametrize("doc", [
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "A123456780">]><l>&a;</l>',
    '<!doctype html><a/>',
    b'<?xml version="1.0" encoding="UTF-16"?><a/>',
    "\ufeff<a/>".encode("utf-16"),
])
def test_xml_with_a_doctype_or_another_encoding_goes_through_defusedxml(doc):
    assert not markup._plain_xml(doc)


@pytest.mark.parametrize("encoding", ["utf-32", "utf-32-be", "utf-16", "utf-8-sig"])
def test_units_with_a_bom_are_decoded_before_their_layout_is_sniffed(encoding):
    doc = json.dumps([{"name": f"P{i}", "kvnr": f"A12345678{i}"} for i in range(10)])
    data = (codecs.BOM_UTF32_BE + doc.encode("utf-32-be")) if encoding == "utf-32-be" else doc.encode(encoding)
    seen = []

    class Sink:
        def write(self, b):
            seen.append(b)

        def boundary(self):
            pass

    units.render(data, Sink(), Settings())
    assert "\tkvnr=A123456780\n" in b"".join(seen).decode()  # read as the JSON it is


@pytest.mark.parametrize("data", [
    "Hallo Welt, \u00e4\u00f6\u00fc ".encode() * 40_000,  # plain, longer than the sniffed head
    b"\xe4\xf6" * 70_000 + b"\xc3",  # Latin-1 bytes and a cut UTF-8 sequence
    "\u20ac".encode() * 90_000,  # 3-byte characters across the head's end
])
def test_head_sniffing_sees_what_the_whole_text_shows(data):
    text = decode_text(data)
    assert units._head(data) == text[:units.SNIFF_CHARS]
    assert units._plain(units._head(data))
    assert list(units.convert(text)) == [text]  # what convert makes of the whole text: itself


# --- small units: the scanner's candidate test, the sink's and the datagram's short ways ----------------
# A DNS tunnel is tens of thousands of datagrams of a few dozen bytes; each is one unit for the
# detectors. ``scanner.may_hold`` rules out a unit no candidate pattern can match before any
# search runs; ``Sink.line`` writes a datagram and its line end in one call; ``Sink.boundary``
# counts a last chunk of line ends alone without scanning it and no longer keeps context it
# drops; ``Direction.datagram`` hands a raw datagram to ``Sink.line``. The plain ways below are
# the code as it was; with and without the short ways the hits and counts must be the same.

def _fragments() -> list[bytes]:
    rng = random.Random(19)
    import dlpgen

    values = [dlpgen.kvnr(rng, ok) for ok in (True, False)] + [dlpgen.ik(rng, ok) for ok in (True, False)] + \
        [dlpgen.iban(rng, ok) for ok in (True, False)]
    values += ["A123456780", "a123456780", "A123456780101575519", "101575519", "10157551", "DE89 3704 0044 0532 0130 00",
               "GB82WEST12345698765432", "36574261809", "36 574 261 809", "11123456786", "10010490A443",
               "10010490 A 443", "E11.90", "J45.0 G", "A54.4\u2020", "U07.1!", "max.mustermann@aok.de",
               "a@b.cd", "x@example.org", "+49 201 1234567", "0201/1234567", "+49 (0)170 1234567",
               "0049 30 12345678", "0170 12", "X000000014"]
    shapes = ["1234567", "12345678", "123456789", "12 345", "12 345 678", "DE89", "DE8937", "A12", "E11", "+4",
              "+49", "+49 1", "0 1", "01", "012", "0(0)", "(0) 1", "@", "a@", "@b.de", "12,5", "3.14", "1.0.2"]
    words = ["KVNR: ", "IK ", "IBAN ", "Steuer-ID ", "RVNR ", "ICD-10 ", "Diagnose ", "Dx ", "DG1|", "Tel. ",
             "E-Mail: ", "Name;KVNR;ICD;IBAN\n", "mailto:", "Message-ID: <", "nick!", "hidemyself", "q+Z8An/waBA"]
    seps = [" ", "\n", "\n\n", "\r\n", ",", ";", ".", "/", "-", "+", "\t", "(", ")", "<", ">", "=", "|", "\x00", "\x03"]
    return [s.encode() for s in values + shapes + words + seps] + [b"\xe2\x80\xa0", b"\x86", b"\xff\xfe", b"\x85\x80\x00\x01"]


FRAGMENTS = _fragments()
SMALL_UNITS = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=6),
                                 st.text("abcXYZ0123456789+/=", max_size=12).map(str.encode)),
                       max_size=24).map(b"".join)
PATTERNS_ON_CLASSES = (sc._KVNR, sc._DIGITS, sc._GROUPED, sc._IBAN, sc._ICD_START)


@settings(max_examples=3000, deadline=None, derandomize=True, database=None)
@given(SMALL_UNITS)
def test_a_unit_ruled_out_holds_no_candidate(raw):
    cls = raw.translate(sc._CLASS_TABLE)
    if sc.may_hold(raw, cls):
        return
    assert not any(rx.search(cls) for rx in PATTERNS_ON_CLASSES)
    assert not sc._PHONE_PLUS.search(raw) and not sc._PHONE_ZERO.search(raw) and b"@" not in raw
    assert Scanner(b"k" * 32, OPEN_SETTINGS)._kept(raw, hidden=True) == []


OPEN_SETTINGS = ScanSettings(suppress_values=frozenset(), suppress_email_domains=())


def _plain_boundary(self):
    if self.buf:
        part = bytes(self.buf)
        self.buf.clear()
        self._scan(part, b"")
        self._remember(part)
    self.before = self.header = b""
    self.fresh = True


def _plain_line(self, data):
    self.write(data)
    self.write(b"\n")


def _plain_datagram(self, payload, missing):
    self.payload += len(payload)
    self.gaps += missing
    if not self.counting:
        self.data(payload)
        if not self.counting:
            self.sink.write(b"\n")


@contextmanager
def plain_ways():
    """The short ways switched off: every unit scanned in full, every datagram written as two
    writes, every last chunk scanned and its context remembered (the code before them)."""
    from abfluss.dlp.inspect.flows import Direction
    from abfluss.dlp.streams import Sink

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sc, "may_hold", lambda raw, cls: True)
        mp.setattr(Sink, "boundary", _plain_boundary)
        mp.setattr(Sink, "line", _plain_line)
        mp.setattr(Direction, "datagram", _plain_datagram)
        yield


def _sink_run(ops, settings: ScanSettings) -> tuple:
    from abfluss.dlp.streams import Sink

    scanner, seen = Scanner(b"k" * 32, settings), []
    s = Sink(scanner.scan, seen.extend, 96, 32, 0.10)
    for op, data in ops:
        if op == "line":
            s.line(data)
        elif op == "write":
            s.write(data)
        else:
            s.boundary()
    s.boundary()
    return seen, s.scanned, s.binary, [scanner.scan(d) for _, d in ops], [scanner.scan_spans(d) for _, d in ops]


BINARY_UNITS = st.binary(min_size=64, max_size=160).map(lambda b: b"\x00\x01\x85\x80" * 8 + b)
#: Records as datagrams carry them: an anchor word, a value, a separator (so that anchors, values
#: and binary datagrams between them meet often).
RECORDS = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=4).map(b"".join)
OPS = st.lists(st.tuples(st.sampled_from(("line", "line", "write", "boundary")),
                         st.one_of(RECORDS, RECORDS, SMALL_UNITS, BINARY_UNITS,
                                   st.sampled_from((b"", b"\n", b" \r\n")))),
               max_size=40)


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(OPS, st.sampled_from((OPEN_SETTINGS, ScanSettings())))
@example([("line", b"B818365841"), ("line", b"B818365841" * 7 + b"Diagnose <E11.90")], ScanSettings())  # chunk cut
@example([("line", b"IK "), ("line", b"\x00\x01\x85\x80" * 16), ("line", b"101575519")], OPEN_SETTINGS)  # binary
@example([("write", b"KVNR: A123456780 " * 6), ("line", b"\n")], OPEN_SETTINGS)  # blank chunk after context
def test_small_units_give_the_same_hits_and_counts_without_the_short_ways(ops, scan_settings):
    """Datagrams, writes and boundaries through a small sink (chunks of 96 bytes): the same hits,
    scanned and binary bytes, and per unit the same scan and scan_spans, with and without."""
    fast = _sink_run(ops, scan_settings)
    with plain_ways():
        plain = _sink_run(ops, scan_settings)
    assert fast == plain


@pytest.mark.parametrize("path", ["examples/tunnels/iodine-private-direct.pcap", "examples/lab-dns-tunnel.pcap",
                                  "examples/lab-dlp.pcap", "dns-tunnel/netrack-dns2tcp/dns2tcp-2018-03-23.pcap"])
def test_captures_give_the_same_tables_without_the_short_ways(path):
    p = ROOT / path if path.startswith("examples/") else data(path)
    assert p.is_file(), p
    fast = inspect_pcap(p, b"k" * 32, Settings())
    with plain_ways():
        plain = inspect_pcap(p, b"k" * 32, Settings())
    assert pc.sum(fast.inspected["scanned_bytes"]).as_py() > 0  # the datagrams were read
    assert fast.dlp.equals(plain.dlp) and fast.inspected.equals(plain.inspected)
    assert fast.records.keys() == plain.records.keys()
    assert all(fast.records[k].equals(plain.records[k]) for k in fast.records)


HINT_SPELLINGS = [b"ICD", b"icd", b"Icd", b"iCd", b"IcD", b"DIAGNOS", b"Diagnos", b"diagnos", b"DiAgNoS", b"DG1",
                  b"dg1", b"Dg1", b"Dx", b"dx", b"DX", b"dX", b"D", b"x", b"I", b"\xc4", b"\xe4"]


@settings(max_examples=2000, deadline=None, derandomize=True, database=None)
@given(st.lists(st.one_of(st.sampled_from(HINT_SPELLINGS), st.binary(max_size=3)), max_size=12).map(b"".join))
def test_icd_hints_found_through_the_lower_case_copy_as_spelled(raw):
    from abfluss.dlp.context import ICD_HINTS, Payload

    assert sc._icd_hinted(Payload(raw, raw.translate(sc._CLASS_TABLE))) == any(h in raw for h in ICD_HINTS)
