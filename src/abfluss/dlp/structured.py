"""Structured payloads parsed as what they are, and written for the detectors as records.

A body, mail part, archive member or file transfer is one *unit*. Its layout is recognised from
its content (never its name or content type): containers (gzip, zip, tar, bzip2, xz, and the
office files xlsx / ods / docx inside zip), base64 text, JSON, NDJSON, XML (FHIR XML included),
HTML tables, HL7 v2, SQL dumps (``INSERT … VALUES``, ``COPY … FROM stdin``), delimited text
(``,`` ``;`` tab ``|``, markdown tables, quoted fields with separators and line breaks) and fixed
width columns. Text is UTF-8, cp1252/Latin-1 (bytes kept as they are) or UTF-16/32 with a BOM
(or UTF-16 recognised by its zero bytes).

What the detectors read is one line per record, its fields separated by tabs: a field whose
name (CSV header, JSON key, XML element, SQL column, HL7 field label) is an anchor word is
written ``name=value``, so the name sits right before the value however far the header is (a
tab can be part of no identifier, and nothing is then a "decimal fraction" of a neighbouring
number column). JSON objects, XML elements and HL7 segments are records of their own; FHIR's
``system`` and ``value`` land on one line, so the system URI anchors the value.

Limits: a unit is parsed whole up to ``max_buffered_bytes``; a larger one is streamed when it
is delimited text (exports are), otherwise read as text. Decompressed bytes of a unit and all
its members stay within ``max_decoded_bytes`` and ``max_ratio`` (see ``containers``); nesting
stops at ``max_depth``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator

from . import containers, office
from .containers import Budget

#: Characters of a unit's start looked at to recognise its layout.
SNIFF_CHARS = 64 << 10
#: Records looked at to recognise a delimited or fixed-width layout.
SNIFF_RECORDS = 25
#: Characters looked at to recognise a delimited layout, and the longest first line it may have.
DELIMITED_SNIFF_CHARS = 16 << 10
MAX_RECORD_CHARS = 8 << 10
#: Share of sampled records that must have the same number of fields for a delimited layout.
DELIMITED_SHARE = 0.9
#: Longest header field; a longer first-row field is data, not a column name.
MAX_HEADER_FIELD = 64
DELIMITERS = (",", ";", "\t", "|")
#: Starts of files with no text to read (images, media, programs, PDF): passed on as they are,
#: so the sink counts them as binary.
OPAQUE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"MZ\x90\x00", b"MSCF", b"7z\xbc\xaf", b"Rar!",
                b"(\xb5/\xfd", b"RIFF", b"OggS", b"ID3\x03", b"\x00\x00\x00\x18ftyp", b"\x00\x00\x00\x20ftyp",
                b"\x00\x00\x01\xba", b"wOF2", b"wOFF", b"\x7fELF", b"%PDF-")
_B64 = re.compile(rb"[A-Za-z0-9+/=\r\n]+")
_WIDE = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_B64_MIN = 64
_CLEAN = re.compile(r"[\t\r\n]+")
_DIGITS5 = re.compile(r"\d{5}")
_MD_RULE = re.compile(r"^[\s|:\-+]*$")


def anchor_name(name: str) -> bool:
    """Does a column or key name hold an anchor word (context.ANCHORS, with its boundary rules)?"""
    from .context import ANCHORS  # context imports nothing from here; kept lazy for import order

    low = name.lower()
    for a in ANCHORS:
        hay = name if a.case else low
        i = hay.find(a.needle)
        while i >= 0:
            j = i + len(a.needle)
            if not ((a.left and i > 0 and hay[i - 1].isalpha())
                    or (a.right and j < len(hay) and hay[j].isalpha())):
                return True
            i = hay.find(a.needle, i + 1)
    return False


_PREFIX_CACHE: dict[str, str] = {}


def _prefix(name) -> str:
    """``name=`` for an anchoring name, else nothing (most columns: no bytes added)."""
    name = str(name)
    p = _PREFIX_CACHE.get(name)
    if p is None:
        p = _clean(name) + "=" if anchor_name(name) else ""
        if len(_PREFIX_CACHE) < 10_000:
            _PREFIX_CACHE[name] = p
    return p


def _clean(v) -> str:
    s = v if isinstance(v, str) else "" if v is None else str(v)
    return _CLEAN.sub(" ", s) if ("\n" in s or "\t" in s or "\r" in s) else s


# -- text --------------------------------------------------------------------------------------

def decode_text(data: bytes) -> str:
    """The unit as text: BOMs honoured, UTF-16 without BOM recognised by its zero bytes, else
    UTF-8 with undecodable bytes (cp1252, Latin-1) kept as they are (surrogateescape)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", "surrogateescape")
    for bom, enc in ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
                     (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom):].decode(enc, "replace")
    enc = _utf16_guess(data)
    if enc:
        return data.decode(enc, "replace")
    return data.decode("utf-8", "surrogateescape")


def _utf16_guess(data: bytes) -> str | None:
    sample = data[:512]
    if len(sample) < 8:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    if odd > 0.4 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.4 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def is_text(data: bytes) -> bool:
    """Few control bytes (as the sink's binary test): the result of a base64 decoding is text."""
    if data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _utf16_guess(data):
        return True
    sample = data[:1024]
    ctrl = sum(1 for b in sample if b < 9 or 13 < b < 32 or b == 127)
    return ctrl <= 0.1 * len(sample)


# -- units ---------------------------------------------------------------------------------------

def render(data: bytes, sink, limits, budget: Budget | None = None, depth: int = 0) -> None:
    """Write one whole unit to ``sink`` as the detectors should read it (see the module doc)."""
    if budget is None:
        budget = Budget(limits.max_decoded_bytes, limits.max_ratio)
    if not data:
        return
    fmt = containers.kind(data)
    if fmt is not None:
        if depth >= limits.max_depth:
            budget.skip("nesting limit")
            sink.write(data)  # counted as binary by the sink
            return
        sink.boundary()
        doc = office.document(data, budget) if fmt == "zip" else None
        if doc is not None:  # xlsx, ods, docx, odt: their content parts as records
            try:
                for piece in doc:
                    sink.write(encode(piece))
            except Exception:  # noqa: BLE001 - a damaged document: what was read before counts
                budget.skip("office: damaged")
        else:
            for _name, member in containers.members(fmt, data, budget):
                sink.boundary()
                render(member, sink, limits, budget, depth + 1)
        sink.boundary()
        return
    if data.startswith(OPAQUE_MAGIC):
        sink.write(data)
        return
    if len(data) >= _B64_MIN and depth < limits.max_depth and _B64.fullmatch(data):
        decoded = _base64(data)
        if decoded is not None and (containers.kind(decoded) or is_text(decoded)):
            render(decoded, sink, limits, budget, depth + 1)
            return
    text = decode_text(data)
    try:
        pieces = convert(text)
        first = next(pieces, None)
        if first is text:
            second = next(pieces, None)
            if second is None and not data.startswith(_WIDE) and not _utf16_guess(data):
                sink.write(data)  # plain text in an ASCII-compatible encoding: the bytes as they came
                return
            pieces = _chain([second] if second is not None else [], pieces)
        if first is not None:
            sink.write(encode(first))
        for piece in pieces:
            sink.write(encode(piece))
    except Exception:  # noqa: BLE001 - a layout that breaks half-way (a CSV field over csv's limit …)
        budget.skip("layout: damaged, read as text")
        sink.boundary()
        sink.write(encode(text))  # values already written count once more at most, none is lost


def _base64(data: bytes) -> bytes | None:
    compact = data.replace(b"\r", b"").replace(b"\n", b"")
    if len(compact) % 4:
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def convert(text: str) -> Iterator[str]:
    """Text of one unit in record form, by its layout."""
    head = text[:SNIFF_CHARS]
    start = head.lstrip()[:1]
    if start in ("{", "["):
        out = _json_text(text)
        if out is not None:
            yield from out
            return
    if start == "<":
        yield from _markup(text)
        return
    if head.startswith(("MSH", "\x0bMSH")) or "\rMSH|" in head[:200] or "\nMSH|" in head[:200]:
        yield from hl7(text)
        return
    if _sql_hint(head):
        yield from sql(text)
        return
    dialect = sniff_delimited(head)
    if dialect is not None:
        yield from delimited(text, dialect)
        return
    cols = sniff_fixed(head)
    if cols is not None:
        yield from fixed_width(text, cols)
        return
    yield text


# -- delimited text ----------------------------------------------------------------------------

class Dialect(csv.Dialect):
    delimiter = ","
    quotechar = '"'
    doublequote = True
    skipinitialspace = False
    lineterminator = "\n"
    quoting = csv.QUOTE_MINIMAL
    strict = False


def _dialect(delim: str) -> type[Dialect]:
    return type("D", (Dialect,), {"delimiter": delim})


def sniff_delimited(head: str):
    """(dialect, markdown) when most of the first records have the same number (≥ 2) of fields
    for one of , ; tab |; None for prose (commas after which most fields start with a space,
    varying counts) and single lines."""
    cut = head.rfind("\n", 0, DELIMITED_SNIFF_CHARS)
    if cut < 0 or cut > MAX_RECORD_CHARS and head.find("\n") > MAX_RECORD_CHARS:
        return None  # no line end, or a first line longer than any table's header
    sample = head[:cut]
    lines = [ln for ln in sample.split("\n", SNIFF_RECORDS + 1)[:SNIFF_RECORDS] if ln.strip()]
    if len(lines) < 2:
        return None
    best = None
    for d in DELIMITERS:
        if d not in lines[0]:
            continue
        try:
            rows = list(csv.reader(io.StringIO("\n".join(lines)), _dialect(d)))
        except csv.Error:
            continue
        markdown = d == "|" and all(ln.strip().startswith("|") for ln in lines)
        counts = Counter(len(r) for r in rows)
        n, k = counts.most_common(1)[0]
        if n < 2 or k < DELIMITED_SHARE * len(rows) or (len(rows) == 2 and k != 2):
            continue
        if len(rows) < 3 and not is_header(rows[0]):
            continue  # two lines without column names: too little to call it a table
        if d in ",;" and _prose(rows):
            continue
        score = (k / len(rows), n)
        if best is None or score > best[0]:
            best = (score, d, markdown)
    return None if best is None else (_dialect(best[1]), best[2])


def _prose(rows: list[list[str]]) -> bool:
    """Separators followed by a space in most fields, or fields of many words: sentences with
    commas (and decimal commas: `12,5 Prozent`), not columns."""
    later = [f for r in rows for f in r[1:]]
    words = [f for r in rows for f in r if f.count(" ") >= 3]
    return bool(later) and (sum(f.startswith(" ") for f in later) > 0.5 * len(later)
                            or len(words) > 0.5 * sum(len(r) for r in rows))


def is_header(row: list[str]) -> bool:
    """A first row of column names: short fields, no long numbers, at least one letter."""
    return (any(any(ch.isalpha() for ch in f) for f in row)
            and all(len(f) <= MAX_HEADER_FIELD and not _DIGITS5.search(f) for f in row))


def table(rows: Iterable[list], header: list | None = None) -> Iterator[str]:
    """Records as tab-separated lines, anchoring column names written before their values.
    Without ``header`` the first row is taken for one when it looks like column names."""
    prefixes: list[str] = []
    it = iter(rows)
    if header is None:
        first = next(it, None)
        if first is None:
            return
        if is_header([str(f) for f in first]):
            yield "\t".join(_clean(f) for f in first) + "\n"
            prefixes = [_prefix(f) for f in first]
        else:
            it = _chain([first], it)
    else:
        prefixes = [_prefix(f) for f in header]
        yield "\t".join(_clean(f) for f in header) + "\n"
    if not any(prefixes):
        for row in it:
            yield "\t".join(_clean(f) for f in row) + "\n"
        return
    n = len(prefixes)
    for row in it:
        yield "\t".join((prefixes[i] if i < n else "") + _clean(f) for i, f in enumerate(row)) + "\n"


def _chain(*its):
    for it in its:
        yield from it


def delimited(text: str, sniffed) -> Iterator[str]:
    dialect, markdown = sniffed
    rows: Iterable[list[str]] = csv.reader(io.StringIO(text, newline=""), dialect)
    if markdown:
        rows = ([f.strip() for f in r[1:-1]] for r in rows if r and not _MD_RULE.match("|".join(r)))
    yield from table(r for r in rows if r)


class DelimitedStream:
    """Delimited text too large to hold: converted record by record as it arrives."""

    def __init__(self, sniffed, header: list[str] | None = None):
        self.dialect, self.markdown = sniffed
        self.pending = ""
        self.header: list[str] | None = header
        self.prefixes: list[str] | None = None

    def feed(self, text: str) -> Iterator[str]:
        self.pending += text
        cut = self.pending.rfind("\n") + 1
        # a quoted field may hold line breaks: cut only where the quotes are balanced
        while cut and self.pending.count(self.dialect.quotechar, 0, cut) % 2:
            cut = self.pending.rfind("\n", 0, cut - 1) + 1
        if not cut:
            if len(self.pending) > SNIFF_CHARS * 16:  # an unbalanced quote: give up on it
                cut = len(self.pending)
            else:
                return
        part, self.pending = self.pending[:cut], self.pending[cut:]
        yield from self._rows(part)

    def close(self) -> Iterator[str]:
        if self.pending:
            part, self.pending = self.pending, ""
            yield from self._rows(part)

    def _rows(self, part: str) -> Iterator[str]:
        rows = csv.reader(io.StringIO(part, newline=""), self.dialect)
        if self.markdown:
            rows = ([f.strip() for f in r[1:-1]] for r in rows if r and not _MD_RULE.match("|".join(r)))
        for r in rows:
            if not r:
                continue
            if self.prefixes is None:
                self.header = r if is_header(r) else []
                self.prefixes = [_prefix(f) for f in self.header]
                yield "\t".join(_clean(f) for f in r) + "\n"
                if self.header:
                    continue
            n = len(self.prefixes)
            yield "\t".join((self.prefixes[i] if i < n else "") + _clean(f) for i, f in enumerate(r)) + "\n"


# -- fixed width ---------------------------------------------------------------------------------

_WORD_START = re.compile(r"(?<=\s)\S")


def sniff_fixed(head: str) -> list[int] | None:
    """Column starts of a fixed-width table: word starts of the header line before which every
    data line has a space (at least 3 data lines, at least 2 columns)."""
    lines = [ln.rstrip("\r") for ln in head.split("\n", SNIFF_RECORDS + 1)[:SNIFF_RECORDS] if ln.strip()]
    if len(lines) < 4:
        return None
    header, data = lines[0], lines[1:]
    if header[:1].isspace() or not is_header(header.split()):
        return None
    starts = [0]
    for m in _WORD_START.finditer(header):
        p = m.start()
        if all(len(ln) <= p or ln[p - 1] == " " for ln in data) and sum(len(ln) > p for ln in data) >= len(data) / 2:
            starts.append(p)
    return starts if len(starts) >= 3 else None


def fixed_width(text: str, starts: list[int]) -> Iterator[str]:
    bounds = list(zip(starts, starts[1:] + [None]))
    rows = ([ln[a:b].strip() for a, b in bounds] for ln in text.replace("\r", "").split("\n") if ln.strip())
    yield from table(rows)


# -- JSON ------------------------------------------------------------------------------------------

def _json_text(text: str) -> Iterator[str] | None:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        lines = [ln for ln in text.split("\n") if ln.strip()]
        docs = []
        for ln in lines:
            try:
                docs.append(json.loads(ln))
            except (ValueError, RecursionError):
                return None  # not JSON: read as text
        return _chain(*(json_records(d) for d in docs))
    return json_records(doc)


def json_records(doc) -> Iterator[str]:
    """Each object as a record of its scalar members (``key=value`` where the key anchors),
    written after the key it hangs from; nested objects and arrays are records of their own."""
    stack = [("", doc)]
    while stack:
        key, v = stack.pop()
        if isinstance(v, dict):
            fields = [_clean(key)] if key else []
            nested = []
            for k, x in v.items():
                if isinstance(x, (dict, list)):
                    nested.append((k, x))
                else:
                    fields.append(_prefix(k) + _scalar(x))
            yield "\t".join(fields) + "\n"
            stack.extend(reversed(nested))
        elif isinstance(v, list):
            scalars = [_scalar(x) for x in v if not isinstance(x, (dict, list))]
            if scalars:
                p = _prefix(key)
                yield "\t".join([_clean(key)] + [p + s for s in scalars]) + "\n"
            stack.extend(reversed([(key, x) for x in v if isinstance(x, (dict, list))]))
        else:
            yield _prefix(key) + _scalar(v) + "\n"


def _scalar(x) -> str:
    if x is None or isinstance(x, bool):
        return ""
    return _clean(x if isinstance(x, str) else str(x))


# -- XML and HTML ----------------------------------------------------------------------------------

_HTML = re.compile(r"(?is)^\s*(?:<!doctype\s+html|<html|<head|<body|<table|<tr|<th|<td|<p>|<div)")
_ROW = re.compile(r"(?is)<tr\b[^>]*>(.*?)(?=<tr\b|</table|\Z)")
_CELL = re.compile(r"(?is)<t[dh]\b[^>]*>(.*?)(?=<t[dh]\b|</tr|\Z)")
_TAG = re.compile(r"(?s)<[^>]*>")


def _markup(text: str) -> Iterator[str]:
    if _HTML.match(text):
        yield from html(text)
        return
    out = xml(text)
    if out is None:
        yield text
        yield "\n"
    else:
        yield from out


def html(text: str) -> Iterator[str]:
    """HTML as it is (prose, attributes), plus its tables as records (sqlite3's .mode html)."""
    yield text
    low = text.lower()
    if "<td" not in low and "<th" not in low:
        return
    from html import unescape

    yield "\n\n"

    rows = ([unescape(_TAG.sub(" ", c)).strip() for c in _CELL.findall(r)] for r in _ROW.findall(text))
    yield from table(r for r in rows if r)


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def xml(text: str) -> Iterator[str] | None:
    """Each element with attributes or leaf children as a record: ``name=value`` of its leaf
    children (FHIR's ``<system value=…/>`` and ``<value value=…/>`` meet on one line), its text."""
    from defusedxml import ElementTree as DET  # no entity expansion, no external entities

    try:
        root = DET.fromstring(text.encode("utf-8", "surrogateescape") if text.startswith("<?xml") else text)
    except Exception:  # noqa: BLE001 - ParseError, EntitiesForbidden, DTDForbidden …: read as text
        return None
    return _xml_records(root)


def _xml_records(root) -> Iterator[str]:
    stack = [root]
    while stack:
        el = stack.pop()
        name = _local(el.tag)
        fields = [_clean(name)] + [_prefix(_local(k)) + _clean(v) for k, v in el.attrib.items()]
        nested = []
        for child in el:
            cname = _local(child.tag)
            if len(child):
                nested.append(child)
            else:
                if child.text and child.text.strip():
                    fields.append(_prefix(cname) + _clean(child.text.strip()))
                for k, v in child.attrib.items():
                    label = cname if _local(k) == "value" else f"{cname}.{_local(k)}"
                    fields.append(_prefix(label) + _clean(v))
            if child.tail and child.tail.strip():
                fields.append(_clean(child.tail.strip()))
        if el.text and el.text.strip():
            fields.append(_prefix(name) + _clean(el.text.strip()))
        yield "\t".join(fields) + "\n"
        stack.extend(reversed(nested))


# -- HL7 v2 ----------------------------------------------------------------------------------------

#: Field labels (anchor words) of HL7 v2 fields that carry the identifiers of DOMAIN.md §2.
HL7_LABELS = {
    "PID-2": "patient id", "PID-3": "patient identifier list", "PID-4": "alternate patient id",
    "PID-19": "svnr", "PID-13": "telefon", "PID-14": "telefon",
    "IN1-3": "IK", "IN1-36": "versichertennummer", "IN1-49": "versichertennummer",
    "IN2-1": "versichertennummer", "IN2-8": "svnr",
    "DG1-3": "diagnose", "DG1-4": "diagnose", "PRB-3": "diagnose",
    "GT1-12": "svnr", "NK1-5": "telefon",
}
#: Coded fields (CE/CWE: code^text^coding system^alternate code^text^system): the coding
#: systems' names ("I10", "ICD10GM") are left out, they are not diagnoses.
HL7_CODED = {"DG1-3", "PRB-3"}
_CODED_KEEP = (0, 1, 3, 4)
_HL7_ESC = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}


def hl7(text: str) -> Iterator[str]:
    """One record per segment: each field as ``SEG-n label=component\\tcomponent…``."""
    text = text.replace("\x0b", "").replace("\x1c", "\n")
    fs, comp, rep, esc, sub = "|", "^", "~", "\\", "&"
    for seg in re.split(r"\r\n|\r|\n", text):
        if len(seg) < 4:
            if not seg.strip():
                yield "\n"
            continue
        name = seg[:3]
        if name == "MSH" and len(seg) >= 8:
            fs = seg[3]
            comp, rep, esc, sub = (seg[4:8] + "^~\\&"[len(seg[4:8]):])[:4]
        fields = seg.split(fs)
        out = [name]
        split = str.maketrans({comp: "\t", rep: "\t", sub: "\t", "\t": " "})
        for i, f in enumerate(fields[1:], 1):
            if not f or (name == "MSH" and i == 1):
                continue
            field = f"{name}-{i + 1 if name == 'MSH' else i}"  # MSH-1 is the separator itself
            if field in HL7_CODED:
                parts = []
                for r in f.split(rep):
                    comps = r.split(comp)
                    parts += [comps[j] for j in _CODED_KEEP if j < len(comps) and comps[j]]
                value = "\t".join(parts)
            else:
                value = f.translate(split)  # components, repetitions, subcomponents: separate fields
                if "\t\t" in value:
                    value = "\t".join(p for p in value.split("\t") if p)
            if esc in value:
                value = _hl7_unescape(value, esc)
            label = HL7_LABELS.get(field)
            out.append(f"{field} {label}={value}" if label else f"{field}={value}")
        yield "\t".join(out).replace("\r", " ").replace("\n", " ") + "\n"


def _hl7_unescape(v: str, esc: str) -> str:
    if esc not in v:
        return v
    return re.sub(re.escape(esc) + r"([FSTRE])" + re.escape(esc), lambda m: _HL7_ESC[m.group(1)], v)


# -- SQL dumps -------------------------------------------------------------------------------------

_SQL_HINT = re.compile(r"(?i)INSERT\s+(?:OR\s+\w+\s+|IGNORE\s+)?INTO\s|COPY\s+[\w.\"]+[^;\n]*\bFROM\s+stdin")
_SQL_STMT = re.compile(
    r"""(?is)(?:CREATE\s+(?:TEMP(?:ORARY)?\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<ct>[`"\[\]\w.]+)\s*\(
        |INSERT\s+(?:OR\s+\w+\s+|IGNORE\s+)?INTO\s+(?P<it>[`"\[\]\w.]+)\s*(?:\((?P<icols>[^)]*)\))?\s*VALUES\s*
        |COPY\s+(?P<cp>[`"\[\]\w.]+)\s*(?:\((?P<ccols>[^)]*)\))?\s+FROM\s+stdin[^\n]*\n)""", re.X)
_SQL_TOKEN = re.compile(r"""\s*(?:'((?:[^'\\]|''|\\.)*)'|([(),;])|(X'[0-9A-Fa-f]*')|([^\s(),;']+))""", re.S)
_CONSTRAINT = {"primary", "unique", "constraint", "foreign", "check", "key", "index", "fulltext"}
_COPY_ESC = re.compile(r"\\(.)")
_COPY_MAP = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\", "N": ""}


_SQL_WORDS = ("insert", "copy", "create")


def _sql_at(text: str, low: str, pos: int, rx: re.Pattern, words=_SQL_WORDS):
    """The next match of ``rx`` at a keyword from ``pos`` on: the keywords are found by plain
    substring search in the lower-case copy (a case-insensitive regex search ran at 4 MB/s)."""
    while True:
        found = [i for i in (low.find(w, pos) for w in words) if i >= 0]
        if not found:
            return None
        i = min(found)
        if i == 0 or not (low[i - 1].isalnum() or low[i - 1] == "_"):
            m = rx.match(text, i)
            if m:
                return m
        pos = i + 1


def _sql_hint(head: str) -> bool:
    if not any(w in head for w in ("INSERT", "insert", "Insert", "COPY", "copy", "Copy")):
        return False
    low = head.lower()
    return ("insert" in low or "copy" in low) and _sql_at(head, low, 0, _SQL_HINT, ("insert", "copy")) is not None


def _ident(name: str) -> str:
    return name.strip().strip('`"[]').rsplit(".", 1)[-1].strip('`"[]')


def sql(text: str) -> Iterator[str]:
    """CREATE TABLE column lists remembered, INSERT tuples and COPY rows as records with their
    columns as header; everything else passed on as text."""
    tables: dict[str, list[str]] = {}
    pos = 0
    low = text.lower()
    while True:
        m = _sql_at(text, low, pos, _SQL_STMT)
        if m is None:
            yield text[pos:]
            yield "\n"
            return
        yield text[pos:m.start()]
        yield "\n"
        if m.group("ct"):
            end, cols = _create_columns(text, m.end())
            tables[_ident(m.group("ct")).lower()] = cols
            yield text[m.start():end]
            yield "\n"
            pos = end
        elif m.group("it"):
            name = _ident(m.group("it"))
            cols = [_ident(c) for c in m.group("icols").split(",")] if m.group("icols") else tables.get(name.lower())
            rows: list[list[str]] = []
            pos = _insert_values(text, m.end(), rows)
            yield from table(rows, cols or [])
        else:
            name = _ident(m.group("cp"))
            cols = [_ident(c) for c in m.group("ccols").split(",")] if m.group("ccols") else tables.get(name.lower())
            end = text.find("\n\\.", m.end() - 1)
            end = len(text) if end < 0 else end
            rows = [[_COPY_ESC.sub(lambda e: _COPY_MAP.get(e.group(1), e.group(1)), f) for f in ln.split("\t")]
                    for ln in text[m.end():end].split("\n") if ln]
            yield from table(rows, cols or [])
            pos = end + 3


def _create_columns(text: str, start: int) -> tuple[int, list[str]]:
    depth, i, quote = 1, start, None
    while i < len(text) and depth:
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        i += 1
    body = text[start:i - 1]
    cols, depth, cur = [], 0, ""
    for ch in body + ",":
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            words = cur.split()
            if words and words[0].lower() not in _CONSTRAINT:
                cols.append(_ident(words[0]))
            cur = ""
        else:
            cur += ch
    return i, cols


def _insert_values(text: str, pos: int, rows: list[list[str]]) -> int:
    """Parse ``(v, …), (v, …);`` from ``pos``; return the position after it."""
    row: list[str] | None = None
    n = len(text)
    while pos < n:
        m = _SQL_TOKEN.match(text, pos)
        if m is None:
            return pos + 1
        pos = m.end()
        s, punct, blob, word = m.groups()
        if punct == "(":
            row = []
        elif punct == ")":
            if row is not None:
                rows.append(row)
            row = None
        elif punct == ";":
            return pos
        elif punct == ",":
            continue
        elif row is None:
            return m.start()  # not a tuple list after all
        elif s is not None:
            row.append(s.replace("''", "'").replace("\\'", "'").replace("\\\\", "\\"))
        elif blob is not None:
            row.append("")
        else:
            row.append("" if word.upper() == "NULL" else word)
    return pos


# -- streaming units -------------------------------------------------------------------------------

class Unit:
    """One unit arriving in pieces (an HTTP body, an FTP file, a raw stream): held whole up to
    ``max_buffered_bytes`` and rendered at its end; a larger one is streamed as delimited text
    when it is that, decompressed on the fly when it is gzip, else passed on as text."""

    def __init__(self, sink, limits, newline: bool = True):
        self.sink, self.limits, self.newline = sink, limits, newline
        self.buf: bytearray | None = bytearray()
        self.stream = None  # DelimitedStream, _GzipStream, or "raw"
        self.decoder = None  # incremental text decoder of a DelimitedStream

    def feed(self, data: bytes) -> None:
        if self.buf is not None:
            self.buf += data
            if len(self.buf) > self.limits.max_buffered_bytes:
                self._go_streaming()
            return
        self._stream(data)

    def _go_streaming(self) -> None:
        data, self.buf = bytes(self.buf), None
        if data.startswith(containers.GZIP):
            self.stream = _GzipStream(Unit(self.sink, self.limits, self.newline), self.limits)
        else:
            head = decode_text(data[:SNIFF_CHARS * 2])
            sniffed = None if head.lstrip()[:1] in ("{", "[", "<") else sniff_delimited(head[:SNIFF_CHARS])
            if sniffed is not None:
                self.stream = DelimitedStream(sniffed)
                enc = "utf-8"
                if data.startswith(codecs.BOM_UTF8):
                    data = data[3:]
                elif data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) or _utf16_guess(data):
                    enc = "utf-16" if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else _utf16_guess(data)
                self.decoder = codecs.getincrementaldecoder(enc)("surrogateescape" if enc == "utf-8" else "replace")
            else:
                self.stream = "raw"
        self._stream(data)

    def _stream(self, data: bytes) -> None:
        if self.stream == "raw":
            self.sink.write(data)
        elif isinstance(self.stream, _GzipStream):
            self.stream.feed(data)
        else:
            try:
                for piece in self.stream.feed(self.decoder.decode(data)):
                    self.sink.write(encode(piece))
            except Exception:  # noqa: BLE001 - the table broke (csv's field limit …): text from here
                self.stream = "raw"
                self.sink.write(data)

    def close(self) -> None:
        if self.buf is not None:
            data, self.buf = bytes(self.buf), None
            render(data, self.sink, self.limits)
        elif isinstance(self.stream, DelimitedStream):
            try:
                for piece in self.stream.feed(self.decoder.decode(b"", final=True)):
                    self.sink.write(encode(piece))
                for piece in self.stream.close():
                    self.sink.write(encode(piece))
            except Exception:  # noqa: BLE001 - as in _stream
                self.sink.write(encode(self.stream.pending))
        elif isinstance(self.stream, _GzipStream):
            self.stream.close()
        if self.newline:  # a message's end is a line end: the next message follows in the same chunk
            self.sink.write(b"\n")


class _GzipStream:
    """A gzip unit too large to hold: inflated within the size and ratio limits into a Unit."""

    def __init__(self, inner: Unit, limits):
        import zlib

        self.inner, self.d = inner, zlib.decompressobj(47)
        self.seen = self.produced = 0
        self.ratio, self.total = limits.max_ratio, limits.max_decoded_bytes
        self.stopped = False

    def feed(self, data: bytes) -> None:
        import zlib

        if self.stopped:
            return
        self.seen += len(data)
        cap = min(self.total, max(containers.MIN_ALLOWANCE, int(self.seen * self.ratio))) - self.produced
        try:
            out = self.d.decompress(data, max(1, cap))
        except zlib.error:
            self.stopped = True
            return
        self.produced += len(out)
        if self.d.unconsumed_tail or self.produced >= self.total:
            self.stopped = True  # size or ratio limit: the rest is not read
        self.inner.feed(out)

    def close(self) -> None:
        self.inner.close()
