"""Identifiers counted in the shapes real exports have (issue 12): every layout of
``tests/dlpgen.py`` in every encoding and container, exports written by real tools (sqlite3 in
every .mode, Python's csv dialects, zip), HTTP bodies with every content coding, and the limits
that keep archives and compressed bodies from exhausting memory. Counts are exact: distinct
valid values per category, invalid check digits never counted."""

from __future__ import annotations

import base64
import gzip
import io
import json
import random
import shutil
import sqlite3
import subprocess
import time
import zipfile
import zlib
from collections import Counter

import brotli
import pytest

import dlpgen
from abfluss.dlp import Scanner, structured
from abfluss.dlp.containers import Budget
from abfluss.dlp.inspect import Inspector, Settings
from abfluss.dlp.streams import Sink
from test_dlp_streams import Capture, Conn

KEY = bytes(range(32))
RECS = dlpgen.people(random.Random(12), 60)
#: The golden counts of RECS (60 records: 15 % wrong check digits, shared accounts, duplicates).
GOLDEN = {"kvnr": 47, "ik": 48, "iban": 43, "icd10": 8, "email": 53}


def count(data: bytes, settings: Settings = Settings(), budget: Budget | None = None) -> dict[str, int]:
    """Distinct values per category of one unit, through the real chunking sink."""
    seen: set = set()
    sink = Sink(Scanner(KEY).scan, lambda hits: seen.update((h.category, h.hmac) for h in hits),
                settings.chunk_bytes, settings.context_bytes, settings.binary_share)
    structured.render(data, sink, settings, budget)
    sink.boundary()
    return dict(Counter(c for c, _ in seen))


def inspected(cap: Capture, settings: Settings = Settings()) -> dict[str, int]:
    """Distinct values per category of a synthetic capture through payload inspection."""
    insp = Inspector(Scanner(KEY).scan, settings)
    for ts, buf in cap.packets:
        insp.packet(ts, buf)
    rows = insp.finish().dlp.to_pylist()
    return dict(Counter(c for c, _ in {(r["category"], r["hmac"]) for r in rows}))


def test_the_generator_is_what_the_golden_counts_say():
    assert dlpgen.expected(RECS) == GOLDEN
    assert sum(not p.kvnr_ok for p in RECS) > 0 and sum(not p.iban_ok for p in RECS) > 0
    assert len({p.iban for p in RECS}) < len(RECS) and len(set(RECS)) < len(RECS)  # shared, duplicated


# -- every layout, every encoding --------------------------------------------------------------

@pytest.mark.parametrize("encoding", dlpgen.ENCODINGS)
@pytest.mark.parametrize("layout", sorted(dlpgen.TEXT_LAYOUTS))
def test_text_layout_golden(layout, encoding):
    assert count(dlpgen.encoded(dlpgen.TEXT_LAYOUTS[layout](RECS), encoding)) == GOLDEN


@pytest.mark.parametrize("layout", sorted(dlpgen.FILE_LAYOUTS))
def test_office_file_golden(layout):
    assert count(dlpgen.FILE_LAYOUTS[layout](RECS)) == GOLDEN


@pytest.mark.parametrize("container", sorted(dlpgen.CONTAINERS))
def test_container_golden(container):
    csv_bytes = dlpgen.encoded(dlpgen.excel_de(RECS), "cp1252")
    assert count(dlpgen.CONTAINERS[container](csv_bytes)) == GOLDEN


def test_records_keep_their_column_names_as_anchors():
    out = b"".join(structured.encode(x) for x in structured.convert(dlpgen.excel_de(RECS[:2])))
    first = out.split(b"\n")[1].split(b"\t")
    assert first[2] == b"Krankenversichertennummer=" + RECS[0].kvnr.encode()
    assert first[3] == b"Institutionskennzeichen=" + RECS[0].ik.encode()
    assert first[1] == ".".join(reversed(RECS[0].dob.split("-"))).encode()  # not an anchor: as it was


# -- item 1: separators are not decimal points --------------------------------------------------

def test_the_motivating_case_a_csv_of_400_persons_posted_over_http():
    """name,date_of_birth,kvnr,iban,icd10: each identifier follows a numeric column (issue 12)."""
    recs = dlpgen.people(random.Random(400), 400, invalid=0, shared=0, duplicates=0)
    body = ("name,date_of_birth,kvnr,iban,icd10\n"
            + "".join(f'"{p.name}",{p.dob},{p.kvnr},{p.iban},{p.icd10}\n' for p in recs)).encode()
    cap = Capture()
    c = Conn(cap, ("10.0.0.5", 40000), ("203.0.113.9", 80))
    c.send(b"POST /import HTTP/1.1\r\nHost: unknown.test\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n%s"
           % (len(body), body))
    c.close()
    got = inspected(cap)
    assert got["kvnr"] == 400 and got["iban"] == 400 and got["icd10"] == len({p.icd10 for p in recs})
    # the scanner alone, on the raw bytes, too: `digit,KVNR` is a column, not a fraction
    assert {h.category for h in Scanner(KEY).scan(body)} >= {"kvnr", "iban"}


def test_decimal_comma_in_german_prose_is_still_not_a_candidate():
    text = ("Die Quote (IK-Bezug) stieg um 3,101575519 Prozentpunkte, der Beitrag lag bei 12,5 Prozent.\n"
            "Im Vorjahr waren es 2,104940005 Prozentpunkte und 11,0 Prozent.\n").encode()
    assert count(text) == {}
    assert Scanner(KEY).scan(text) == []


def test_a_mistyped_iban_hides_no_phone_number():
    assert count(b"IBAN: DE88 3704 0044 0532 0130 00\n") == {}


# -- real tools -------------------------------------------------------------------------------------

SQLITE_MODES = ("csv", "tabs", "list", "json", "insert", "html", "markdown")


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory):
    assert shutil.which("sqlite3"), "sqlite3 missing: apt-get install sqlite3"
    path = tmp_path_factory.mktemp("sqlite") / "kasse.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE versicherte (name TEXT, geburtsdatum TEXT, kvnr TEXT, ik INTEGER, iban TEXT, "
                "icd10 TEXT, email TEXT, betrag REAL)")
    con.executemany("INSERT INTO versicherte VALUES (?,?,?,?,?,?,?,?)",
                    [(p.name, p.dob, p.kvnr, int(p.ik), p.iban, p.icd10, p.email, p.amount) for p in RECS])
    con.commit()
    con.close()
    return path


@pytest.mark.parametrize("mode", SQLITE_MODES)
def test_sqlite3_export_in_every_mode(sqlite_db, mode):
    out = subprocess.run(["sqlite3", "-cmd", ".headers on", "-cmd", f".mode {mode}", str(sqlite_db),
                          "SELECT * FROM versicherte"], capture_output=True, check=True, timeout=60).stdout
    assert count(out) == GOLDEN, mode


def test_sqlite3_dump(sqlite_db):
    """`.dump`: CREATE TABLE, then INSERT without a column list (the columns come from CREATE)."""
    out = subprocess.run(["sqlite3", str(sqlite_db), ".dump"], capture_output=True, check=True, timeout=60).stdout
    assert b"INSERT INTO versicherte VALUES(" in out
    assert count(out) == GOLDEN


@pytest.mark.parametrize("dialect", ("excel", "excel-tab"))
def test_python_csv_dialects(dialect):
    import csv

    buf = io.StringIO()
    w = csv.writer(buf, dialect=dialect)
    w.writerow(dlpgen.HEADERS["de"])
    w.writerows(dlpgen._row(p, True, False) for p in RECS)
    assert count(buf.getvalue().encode("cp1252", "replace")) == GOLDEN


def test_zip_made_by_the_zip_tool(tmp_path):
    assert shutil.which("zip"), "zip missing: apt-get install zip"
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "versicherte.csv").write_bytes(dlpgen.encoded(dlpgen.excel_de(RECS), "cp1252"))
    (tmp_path / "export" / "faelle.json").write_text(dlpgen.ndjson(RECS[:10]))
    subprocess.run(["zip", "-q", "-r", "-9", "out.zip", "export"], cwd=tmp_path, check=True, timeout=60)
    data = (tmp_path / "out.zip").read_bytes()
    assert count(data) == GOLDEN
    cap = Capture()  # and uploaded as a multipart form, base64-free
    c = Conn(cap, ("10.0.0.5", 40001), ("203.0.113.9", 80))
    part = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="out.zip"\r\n'
            b"Content-Type: application/zip\r\n\r\n" + data + b"\r\n--B--\r\n")
    c.send(b"POST /u HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: %d\r\n\r\n%s"
           % (len(part), part))
    c.close()
    assert inspected(cap) == GOLDEN


# -- HTTP content codings and bodies ---------------------------------------------------------------

def _post(body: bytes, headers: bytes) -> Capture:
    cap = Capture()
    c = Conn(cap, ("10.0.0.5", 40002), ("203.0.113.9", 80))
    c.send(b"POST /x HTTP/1.1\r\n" + headers + b"Content-Length: %d\r\n\r\n%s" % (len(body), body), size=700)
    c.close()
    return cap


@pytest.mark.parametrize("coding", ("gzip", "deflate", "br"))
def test_content_encoding(coding):
    raw = dlpgen.encoded(dlpgen.TEXT_LAYOUTS["fhir-json"](RECS), "utf-8")
    body = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}[coding](raw)
    assert inspected(_post(body, b"Content-Type: application/fhir+json\r\nContent-Encoding: %s\r\n" % coding.encode())) == GOLDEN


def test_base64_body_and_archive_content_types():
    xlsx = dlpgen.xlsx(RECS)
    assert inspected(_post(base64.b64encode(xlsx), b"Content-Type: text/plain\r\n")) == GOLDEN
    tgz = dlpgen.CONTAINERS["tar.gz"](dlpgen.encoded(dlpgen.hl7(RECS), "utf-8"))
    assert inspected(_post(tgz, b"Content-Type: application/gzip\r\n")) == GOLDEN


def test_a_large_csv_is_streamed_record_by_record():
    """Beyond max_buffered_bytes a delimited unit is converted as it arrives (quoted line breaks
    across the cuts included) and still counted exactly."""
    recs = dlpgen.people(random.Random(5), 3000)
    text = dlpgen.delimited(recs, ";", "de", note=True).encode("utf-16")
    small = Settings(max_buffered_bytes=64 << 10, chunk_bytes=16 << 10)
    cap = Capture()
    c = Conn(cap, ("10.0.0.5", 40003), ("203.0.113.9", 2121))  # a raw TCP file transfer
    c.send(text, size=1400)
    c.close()
    assert inspected(cap, small) == dlpgen.expected(recs)


# -- limits ----------------------------------------------------------------------------------------

def test_gzip_bomb_stops_at_the_ratio_limit():
    bomb = gzip.compress(b"\0" * (64 << 20), 9)  # 64 MB of zeros in ~64 KB
    s = Settings()
    budget = Budget(s.max_decoded_bytes, s.max_ratio)
    t = time.process_time()
    assert count(bomb, s, budget) == {}
    assert time.process_time() - t < 10
    assert budget.left >= s.max_decoded_bytes - max(1 << 20, len(bomb) * s.max_ratio) - 1
    assert "gzip: size or ratio limit" in budget.skipped


def test_zip_bomb_lying_sizes_and_nesting_are_bounded():
    buf = io.BytesIO()  # 20 members of 4 MB zeros each (4 KB compressed each)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(20):
            z.writestr(f"m{i}.bin", b"\0" * (4 << 20))
    s = Settings(max_decoded_bytes=8 << 20)
    budget = Budget(s.max_decoded_bytes, s.max_ratio)
    assert count(buf.getvalue(), s, budget) == {}
    assert budget.left >= 0 and "zip: size or ratio limit" in budget.skipped
    nested = dlpgen.encoded(dlpgen.excel_de(RECS), "utf-8")
    for i in range(8):  # zip in zip in zip …: opened up to max_depth, then counted as binary
        nested = dlpgen._zip({f"level{i}.zip": nested})
    budget = Budget(s.max_decoded_bytes, s.max_ratio)
    assert count(nested, s, budget) == {} and "nesting limit" in budget.skipped
    assert count(dlpgen.CONTAINERS["zip"](dlpgen.encoded(dlpgen.excel_de(RECS), "utf-8"))[:-30]) == {}  # damaged
    ok = dlpgen._zip({"a.csv": dlpgen.excel_de(RECS), "b.csv": "x"})
    assert count(ok[:len(ok) // 2] + b"\0" * 10, s) == {}  # cut: no traceback, nothing invented


def test_xml_entities_are_not_expanded():
    lol = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "A123456780"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
           b"<l><kvnr>&b;&b;</kvnr><kvnr>M987654323</kvnr></l>\n")
    out = bytearray()

    class Collect:
        def write(self, b):
            out.extend(b)

        def boundary(self):
            pass

    structured.render(lol, Collect(), Settings())
    assert len(out) <= len(lol) + 2 and out.count(b"A123456780") == 1  # read as text, nothing expanded
    assert count(lol) == {"kvnr": 2}


def test_json_keys_anchor_and_broken_json_is_text():
    assert count(json.dumps({"patient": {"ik": 101575519}}).encode()) == {"ik": 1}
    assert count(b'{"ik": 101575519, broken') == {"ik": 1}  # text: the key is 6 bytes away
