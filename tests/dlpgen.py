"""Insured-person records and the layouts real exports put them in (issue 12), for the golden,
property-based and benchmark tests of payload inspection.

``people(rng, n)`` makes records with valid and invalid check digits, shared bank accounts and
duplicated persons; ``expected(records)`` is the exact number of distinct values per category the
detectors must report; ``LAYOUTS`` writes records as CSV (every separator, quoted fields with
separators and line breaks, German and English headers), a German Excel export, fixed width,
JSON, NDJSON, XML, FHIR JSON and XML, HL7 v2, SQL INSERT and COPY, an HTML table, markdown, and
xlsx / ods / docx files; ``CONTAINERS`` wraps a file in gzip, zip, tar, tar.gz or base64.
Check digits are computed with the project's validators and cross-checked with python-stdnum.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import random
import tarfile
import zipfile
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from stdnum import iban as std_iban

from abfluss.dlp import identifiers as ids

LETTERS = "ABCDEFGHJKLMNPRSTUVW"  # X (gematik test identities) left out: they are suppressed
ICD = ("E11.90", "J45.0", "I10.00", "F32.1", "M54.5", "C50.9", "K21.0", "N18.3")
FIRST = ("Max", "Erika", "Jürgen", "Özlem", "Renée", "Hans-Peter", "Ägidius", "Straße")


@dataclass(frozen=True)
class Person:
    name: str
    dob: str  # ISO date
    kvnr: str
    kvnr_ok: bool
    ik: str
    ik_ok: bool
    iban: str
    iban_ok: bool
    icd10: str
    email: str
    amount: float


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def kvnr(rng: random.Random, ok: bool) -> str:
    body = rng.choice(LETTERS) + _digits(rng, 8)
    check = ids.kvnr_check_digit(body)
    return body + str(check if ok else (check + rng.randrange(1, 10)) % 10)


def ik(rng: random.Random, ok: bool) -> str:
    while True:
        head = rng.choice(("10", "18", "26")) + _digits(rng, 6)
        good = [d for d in "0123456789" if ids.is_ik(head + d)]
        v = head + (good[0] if ok else rng.choice([d for d in "0123456789" if d not in good]))
        if ids.is_ik(v) == ok:
            return v


def iban(rng: random.Random, ok: bool) -> str:
    bban = _digits(rng, 18)
    check = 98 - int(bban + "131400") % 97
    if not ok:
        check = (check + rng.randrange(1, 96)) % 97 + 2  # 02..98, never the right one
        if check == 98 - int(bban + "131400") % 97:
            check = check % 97 + 2
    v = f"DE{check:02d}{bban}"
    assert std_iban.is_valid(v) == ok and ids.is_iban(v) == ok
    return v


def people(rng: random.Random, n: int, invalid: float = 0.15, shared: float = 0.1,
           duplicates: float = 0.1) -> list[Person]:
    """``n`` records: a share with wrong check digits, some sharing another's account, some
    duplicated (the same person twice)."""
    out: list[Person] = []
    for i in range(n):
        if out and rng.random() < duplicates:
            out.append(rng.choice(out))
            continue
        k_ok, ik_ok, b_ok = (rng.random() >= invalid for _ in range(3))
        acct = rng.choice(out).iban if out and rng.random() < shared else None
        y, m, d = rng.randrange(1930, 2020), rng.randrange(1, 13), rng.randrange(1, 29)
        out.append(Person(
            name=f"{rng.choice(FIRST)} {'Müller' if i % 3 else 'Doe, J.'}", dob=f"{y}-{m:02d}-{d:02d}",
            kvnr=kvnr(rng, k_ok), kvnr_ok=k_ok, ik=ik(rng, ik_ok), ik_ok=ik_ok,
            iban=acct or iban(rng, b_ok), iban_ok=ids.is_iban(acct) if acct else b_ok,
            icd10=rng.choice(ICD), email=f"p{rng.randrange(10**6)}.m{i}@praxis-{rng.randrange(100)}.de",
            amount=rng.randrange(100, 10**6) / 100))
    return out


def expected(recs: list[Person], categories=("kvnr", "ik", "iban", "icd10", "email")) -> dict[str, int]:
    """Distinct valid values per category: what the detectors must count."""
    got = {"kvnr": {p.kvnr for p in recs if p.kvnr_ok}, "ik": {p.ik for p in recs if p.ik_ok},
           "iban": {p.iban for p in recs if p.iban_ok}, "icd10": {p.icd10 for p in recs},
           "email": {p.email for p in recs}}
    return {c: len(got[c]) for c in categories if got[c]}


# -- layouts (each: records -> text; files: records -> bytes) ------------------------------------

HEADERS = {
    "en": ("name", "date_of_birth", "kvnr", "ik", "iban", "icd10", "email", "amount"),
    "de": ("Name", "Geburtsdatum", "Krankenversichertennummer", "Institutionskennzeichen", "IBAN",
           "Diagnose (ICD-10)", "E-Mail", "Betrag"),
    "de2": ("Nachname, Vorname", "Geb.-Datum", "Versichertennummer", "IK", "Bankverbindung", "ICD",
            "Email", "Summe"),
}


def _row(p: Person, german: bool, grouped: bool) -> list[str]:
    dob = p.dob if not german else ".".join(reversed(p.dob.split("-")))
    amount = f"{p.amount:.2f}".replace(".", "," if german else ".")
    acct = " ".join(p.iban[i:i + 4] for i in range(0, len(p.iban), 4)) if grouped else p.iban
    return [p.name, dob, p.kvnr, p.ik, acct, p.icd10, p.email, amount]


def delimited(recs, delimiter=",", header="en", quoting=csv.QUOTE_MINIMAL, crlf=False, german=False,
              grouped=False, note=False) -> str:
    """CSV/TSV/…; ``note`` adds a column with separators and a line break inside quotes."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator="\r\n" if crlf else "\n")
    head = list(HEADERS[header]) + (["Bemerkung"] if note else [])
    w.writerow(head)
    for i, p in enumerate(recs):
        w.writerow(_row(p, german, grouped) + ([f"Rückruf{delimiter} bitte\nZeile {i}"] if note else []))
    return buf.getvalue()


def excel_de(recs) -> str:
    """What German Excel writes for "CSV (Trennzeichen-getrennt)": ; decimal commas, dd.mm.yyyy, CRLF."""
    return delimited(recs, ";", "de", crlf=True, german=True)


def fixed(recs) -> str:
    cols = [(h, w) for h, w in zip(("Name", "Geburtsdatum", "KVNR", "IK", "IBAN", "ICD", "E-Mail", "Betrag"),
                                   (22, 13, 12, 11, 30, 9, 40, 12))]
    lines = ["".join(h.ljust(w) for h, w in cols).rstrip()]
    for p in recs:
        vals = _row(p, True, True)
        lines.append("".join(v.ljust(w) for v, (_, w) in zip(vals, cols)).rstrip())
    return "\n".join(lines) + "\n"


def _obj(p: Person) -> dict:
    return {"name": p.name, "birthDate": p.dob, "kvnr": p.kvnr, "ik": int(p.ik), "iban": p.iban,
            "diagnose": {"icd10": p.icd10}, "email": p.email, "betrag": p.amount}


def as_json(recs) -> str:
    return json.dumps({"export": "Versicherte", "persons": [_obj(p) for p in recs]}, ensure_ascii=False, indent=1)


def ndjson(recs) -> str:
    return "".join(json.dumps(_obj(p)) + "\n" for p in recs)


def xml(recs) -> str:
    rows = "".join(f"<Versicherter><Name>{escape(p.name)}</Name><Geburtsdatum>{p.dob}</Geburtsdatum>"
                   f"<Versichertennummer>{p.kvnr}</Versichertennummer><IK>{p.ik}</IK><IBAN>{p.iban}</IBAN>"
                   f"<Diagnose code={quoteattr(p.icd10)}/><EMail>{p.email}</EMail></Versicherter>\n" for p in recs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Export>\n{rows}</Export>\n'


def _fhir_patient(p: Person) -> dict:
    return {"resourceType": "Patient", "identifier": [
        {"system": "http://fhir.de/sid/gkv/kvid-10", "value": p.kvnr},
        {"system": "http://fhir.de/sid/arge-ik/iknr", "value": p.ik}],
        "name": [{"text": p.name}], "birthDate": p.dob, "telecom": [{"system": "email", "value": p.email}]}


def _fhir_condition(p: Person) -> dict:
    return {"resourceType": "Condition", "code": {"coding": [
        {"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "code": p.icd10}]},
        "extension": [{"url": "http://example.test/iban", "valueString": p.iban}]}


def fhir_json(recs) -> str:
    entries = [{"resource": r} for p in recs for r in (_fhir_patient(p), _fhir_condition(p))]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}, indent=1)


def fhir_xml(recs) -> str:
    out = ['<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/>']
    for p in recs:
        out.append(f'<entry><resource><Patient><identifier><system value="http://fhir.de/sid/gkv/kvid-10"/>'
                   f'<value value="{p.kvnr}"/></identifier><identifier><system value="http://fhir.de/sid/arge-ik/iknr"/>'
                   f'<value value="{p.ik}"/></identifier><name><text value={quoteattr(p.name)}/></name>'
                   f'<birthDate value="{p.dob}"/><telecom><system value="email"/><value value="{p.email}"/></telecom>'
                   f'</Patient></resource></entry>')
        out.append(f'<entry><resource><Condition><code><coding><system value="http://fhir.de/CodeSystem/bfarm/icd-10-gm"/>'
                   f'<code value="{p.icd10}"/></coding></code><extension url="http://example.test/iban">'
                   f'<valueString value="{p.iban}"/></extension></Condition></resource></entry>')
    out.append("</Bundle>")
    return "\n".join(out)


def hl7(recs) -> str:
    msgs = []
    for i, p in enumerate(recs):
        name = p.name.replace(",", "").split()
        msgs.append("\r".join([
            f"MSH|^~\\&|KIS|KH|ABR|KK|20240102030405||ADT^A08|M{i}|P|2.5",
            f"PID|1||{p.kvnr}^^^&1.2.276.0.76.4.8&ISO^KVZ10||{name[-1]}^{name[0]}||{p.dob.replace('-', '')}",
            f"IN1|1|VK|{p.ik}|Kasse|||||||||||||||||||||||||||||||||{p.kvnr}",
            f"DG1|1||{p.icd10}^Diagnose^I10||20240101",
            f"NK1|1|Kontakt|||{p.email}",
            f"ZBK|1|{p.iban}"]) + "\r")
    return "".join(msgs)


def sql_insert(recs, column_list=True) -> str:
    def q(v):
        return "'" + str(v).replace("'", "''") + "'"
    cols = "(name, geburtsdatum, kvnr, ik, iban, icd10, email, betrag)" if column_list else ""
    create = ("CREATE TABLE versicherte (name TEXT, geburtsdatum DATE, kvnr CHAR(10), ik INTEGER, "
              "iban TEXT, icd10 TEXT, email TEXT, betrag NUMERIC(10,2), PRIMARY KEY (kvnr));\n")
    vals = ",\n".join(f"({q(p.name)}, {q(p.dob)}, {q(p.kvnr)}, {p.ik}, {q(p.iban)}, {q(p.icd10)}, {q(p.email)}, {p.amount})"
                      for p in recs)
    return f"-- dump\nBEGIN;\n{create}INSERT INTO versicherte {cols} VALUES\n{vals};\nCOMMIT;\n"


def sql_copy(recs) -> str:
    rows = "".join(f"{p.name}\t{p.dob}\t{p.kvnr}\t{p.ik}\t{p.iban}\t{p.icd10}\t{p.email}\t{p.amount}\n" for p in recs)
    return ("SET client_encoding = 'UTF8';\n"
            "COPY public.versicherte (name, geburtsdatum, kvnr, ik, iban, icd10, email, betrag) FROM stdin;\n"
            f"{rows}\\.\n")


def html_table(recs) -> str:
    head = "".join(f"<th>{h}</th>" for h in HEADERS["de"])
    rows = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in _row(p, True, False)) + "</tr>\n" for p in recs)
    return f"<!DOCTYPE html><html><body><table><tr>{head}</tr>\n{rows}</table></body></html>\n"


def markdown(recs) -> str:
    lines = ["| " + " | ".join(HEADERS["en"]) + " |", "|" + "---|" * len(HEADERS["en"])]
    lines += ["| " + " | ".join(_row(p, False, False)) + " |" for p in recs]
    return "\n".join(lines) + "\n"


def xlsx(recs) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(list(HEADERS["de"]))
    for p in recs:
        row = _row(p, True, False)
        ws.append(row[:3] + [int(p.ik)] + row[4:7] + [p.amount])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _zip(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def ods(recs) -> bytes:
    """An OpenDocument spreadsheet as LibreOffice lays it out (content.xml, table rows)."""
    def cell(v):
        return f'<table:table-cell office:value-type="string"><text:p>{escape(str(v))}</text:p></table:table-cell>'
    rows = [HEADERS["de"]] + [_row(p, True, False) for p in recs]
    body = "".join("<table:table-row>" + "".join(cell(v) for v in r)
                   + '<table:table-cell table:number-columns-repeated="1016"/></table:table-row>' for r in rows)
    content = ('<?xml version="1.0" encoding="UTF-8"?><office:document-content '
               'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
               'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
               'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:spreadsheet>'
               f'<table:table table:name="Export">{body}</table:table></office:spreadsheet></office:body>'
               '</office:document-content>')
    return _zip({"mimetype": "application/vnd.oasis.opendocument.spreadsheet", "content.xml": content})


def docx(recs) -> bytes:
    """A Word document: a paragraph, then a table with a header row (word/document.xml)."""
    def tc(v):
        return f"<w:tc><w:p><w:r><w:t>{escape(str(v))}</w:t></w:r></w:p></w:tc>"
    rows = [HEADERS["de"]] + [_row(p, True, False) for p in recs]
    tbl = "<w:tbl>" + "".join("<w:tr>" + "".join(tc(v) for v in r) + "</w:tr>" for r in rows) + "</w:tbl>"
    doc = ('<?xml version="1.0" encoding="UTF-8"?><w:document '
           'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
           f'<w:p><w:r><w:t>Liste der Versicherten</w:t></w:r></w:p>{tbl}</w:body></w:document>')
    return _zip({"[Content_Types].xml": "<Types/>", "word/document.xml": doc})


TEXT_LAYOUTS = {
    "csv": lambda r: delimited(r, ","),
    "csv-quoted-all": lambda r: delimited(r, ",", "de2", quoting=csv.QUOTE_ALL, note=True),
    "semicolon": lambda r: delimited(r, ";", "de", note=True),
    "tsv": lambda r: delimited(r, "\t", "en"),
    "pipe": lambda r: delimited(r, "|", "de2"),
    "excel-de": excel_de,
    "csv-grouped-iban": lambda r: delimited(r, ";", "de", german=True, grouped=True),
    "fixed-width": fixed,
    "json": as_json,
    "ndjson": ndjson,
    "xml": xml,
    "fhir-json": fhir_json,
    "fhir-xml": fhir_xml,
    "hl7v2": hl7,
    "sql-insert": sql_insert,
    "sql-insert-no-columns": lambda r: sql_insert(r, column_list=False),
    "sql-copy": sql_copy,
    "html-table": html_table,
    "markdown": markdown,
}
FILE_LAYOUTS = {"xlsx": xlsx, "ods": ods, "docx": docx}
ENCODINGS = ("utf-8", "cp1252", "utf-16")  # utf-16 writes a BOM


def encoded(text: str, encoding: str) -> bytes:
    return text.encode(encoding, "replace" if encoding == "cp1252" else "strict")


def gz(b: bytes) -> bytes:
    return gzip.compress(b, mtime=0)


def tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CONTAINERS = {
    "plain": lambda b: b,
    "gzip": gz,
    "zip": lambda b: _zip({"export/versicherte.csv": b}),
    "tar": lambda b: tar({"versicherte.dat": b}),
    "tar.gz": lambda b: gz(tar({"a/versicherte.dat": b})),
    "base64": lambda b: base64.encodebytes(b),
    "zip-in-base64": lambda b: base64.encodebytes(_zip({"x.txt": b})),
}
