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

import pytest
from defusedxml import ElementTree as DET

from abfluss.dlp import Scanner, ScanSettings
from abfluss.dlp import scanner as sc
from abfluss.dlp.inspect import Settings
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
        m = sc._EMAIL.search(raw, max(0, i - sc._EMAIL_BEFORE), i + sc._EMAIL_AFTER)
        while m and m.end() <= i:
            m = sc._EMAIL.search(raw, m.end(), i + sc._EMAIL_AFTER)
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
