"""Context anchors for the DLP scanner: keywords and schema names near a value, and CSV headers.

DOMAIN.md §2 rule 1/4: a value is "anchored" when a keyword or FHIR identifier system for its
category lies within ±64 bytes of it. Anchors are searched with plain substring search (`bytes.find`)
in the windows around candidate values only; a regular-expression alternation over the whole
payload ran at 4–12 MB/s and was the bottleneck. A CSV column whose header names the category
anchors every value in that column, because in a table the header is far from later rows.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass

_LETTER = (ord("A"), ord("a"))  # letters in the class string (see scanner._CLASS_TABLE)
CSV_DELIMITERS = (b";", b",", b"\t", b"|")


@dataclass(frozen=True)
class Anchor:
    """A keyword (lower case unless `case`) that anchors `categories`. `left`/`right`: the
    neighbouring character on that side must not be a letter (short words such as IK or Tel);
    without it the needle matches inside German compounds (Krankenversichertennummer)."""
    needle: str
    categories: tuple[str, ...]
    left: bool = False
    right: bool = False
    case: bool = False


ANCHORS = (
    # KVNR: field names, FHIR systems http://fhir.de/sid/{gkv,pkv}/kvid-10, type code KVZ10, EHIC field 6
    Anchor("versichertennummer", ("kvnr",)), Anchor("versichertennr", ("kvnr",)),
    Anchor("versicherten-id", ("kvnr",)), Anchor("versichertenid", ("kvnr",)),
    Anchor("versicherten_id", ("kvnr",)), Anchor("kvnr", ("kvnr",), left=True, right=True),
    Anchor("kvid", ("kvnr",), left=True), Anchor("kvz10", ("kvnr",), left=True),
    Anchor("kennnummer", ("kvnr",)), Anchor("insurant", ("kvnr",), left=True),
    Anchor("egk", ("kvnr",), left=True, right=True),
    # IK: http://fhir.de/sid/arge-ik/iknr
    Anchor("institutionskennzeichen", ("ik",)), Anchor("ik", ("ik",), left=True, right=True),
    Anchor("iknr", ("ik",), left=True), Anchor("kostentr", ("ik",)),
    Anchor("iban", ("iban",), left=True), Anchor("bankverbindung", ("iban",)),
    Anchor("kontonummer", ("iban",)),
    Anchor("steuer-id", ("idnr",)), Anchor("steuerid", ("idnr",)), Anchor("steuer_id", ("idnr",)),
    Anchor("identifikationsnummer", ("idnr",)), Anchor("idnr", ("idnr",), left=True),
    Anchor("steueridnr", ("idnr",)), Anchor("TIN", ("idnr",), left=True, right=True, case=True),
    # RVNR: "versicherungsnummer" also covers Renten-/Sozialversicherungsnummer
    Anchor("versicherungsnummer", ("rvnr",)), Anchor("rvnr", ("rvnr",), left=True, right=True),
    Anchor("svnr", ("rvnr",), left=True, right=True), Anchor("vsnr", ("rvnr",), left=True, right=True),
    Anchor("rv-nummer", ("rvnr",)), Anchor("sv-nummer", ("rvnr",)),
    # ICD: also http://fhir.de/CodeSystem/bfarm/icd-10-gm and the HL7 v2 DG1 segment
    Anchor("icd", ("icd10",), left=True), Anchor("diagnos", ("icd10",)),
    Anchor("Dx", ("icd10",), left=True, right=True, case=True),
    Anchor("DG1", ("icd10",), left=True, right=True, case=True),
    Anchor("e-mail", ("email",)), Anchor("email", ("email",)), Anchor("mailto:", ("email",)),
    Anchor("mail from:", ("email",)), Anchor("rcpt to:", ("email",)),  # SMTP envelope
    Anchor("telefon", ("phone",)), Anchor("tel", ("phone",), left=True, right=True),
    Anchor("phone", ("phone",)), Anchor("mobil", ("phone",), left=True),
    Anchor("handy", ("phone",), left=True, right=True), Anchor("fax", ("phone",), left=True, right=True),
    Anchor("rufnummer", ("phone",)),
)
MAX_NEEDLE = max(len(a.needle) for a in ANCHORS)
# (needle as bytes, case-sensitive, left rule, right rule, categories): encoded once.
_NEEDLES = tuple((a.needle.encode(), a.case, a.left, a.right, a.categories) for a in ANCHORS)
# Literal spellings whose presence anywhere in a payload makes an ICD search worthwhile.
ICD_HINTS = (b"ICD", b"icd", b"Icd", b"DIAGNOS", b"Diagnos", b"diagnos", b"DG1", b"Dx")


class Payload:
    """One payload's bytes, class string and lazily computed lower-case copy for anchor search."""

    def __init__(self, raw: bytes, cls: bytes):
        self.raw, self.cls = raw, cls
        self._low: bytes | None = None
        self.shaped: Counter[str] = Counter()  # tokens of an identifier's shape, valid or not

    @property
    def low(self) -> bytes:
        if self._low is None:
            self._low = self.raw.lower()
        return self._low

    def __repr__(self) -> str:  # never show payload bytes
        return f"Payload({len(self.raw)} bytes)"

    def line_bounds(self, pos: int, limit: int) -> tuple[int, int]:
        """The line around `pos`, looked for at most `limit` bytes either way (a longer line is
        not a record, and unbounded searches would make many values quadratic)."""
        lo = max(0, pos - limit)
        start = self.raw.rfind(b"\n", lo, pos) + 1 or lo
        end = self.raw.find(b"\n", pos, pos + limit)
        return start, min(len(self.raw), pos + limit) if end < 0 else end

    def find_anchors(self, start: int, end: int, categories: frozenset[str] | None = None
                     ) -> list[tuple[int, int, tuple[str, ...]]]:
        """Anchor occurrences lying within raw[start:end], with their word-boundary rules applied;
        with ``categories``, only the anchors of those categories are looked for."""
        out = []
        cls, n = self.cls, len(self.cls)
        for needle, case, left, right, cats in _NEEDLES:
            if categories is not None and categories.isdisjoint(cats):
                continue
            hay = self.raw if case else self.low
            i = hay.find(needle, start, end)
            size = len(needle)
            while i >= 0:
                j = i + size
                if not ((left and i > 0 and cls[i - 1] in _LETTER)
                        or (right and j < n and cls[j] in _LETTER)):
                    out.append((i, j, cats))
                i = hay.find(needle, i + 1, end)
        return out


class Anchors:
    """Anchor occurrences near a set of value spans, queried per value and category."""

    def __init__(self, p: Payload, spans: list[tuple[int, int]], window: int,
                 categories: frozenset[str] | None = None):
        # Only the anchors of ``categories`` (those of the values asked about) are looked for:
        # an anchor of another category can answer no query.
        self.window = window
        found = []
        for ws, we in _merge((s - window - MAX_NEEDLE, e + window + MAX_NEEDLE) for s, e in spans):
            found.extend(p.find_anchors(max(0, ws), we, categories))
        found.sort()
        self._found = found
        self._starts = [f[0] for f in found]

    def near(self, start: int, end: int, category: str) -> bool:
        lo, hi = start - self.window, end + self.window
        i = bisect_left(self._starts, lo - MAX_NEEDLE)
        while i < len(self._found) and self._found[i][0] < hi:
            a_start, a_end, cats = self._found[i]
            if a_end > lo and category in cats:
                return True
            i += 1
        return False


def _merge(windows) -> list[tuple[int, int]]:
    """Sorted, non-overlapping union of (start, end) windows."""
    out: list[tuple[int, int]] = []
    lo = hi = None
    for s, e in sorted(windows):
        if hi is not None and s <= hi:
            if e > hi:
                hi = e
        else:
            if hi is not None:
                out.append((lo, hi))
            lo, hi = s, e
    if hi is not None:
        out.append((lo, hi))
    return out


@dataclass(frozen=True)
class _Table:
    header_end: int
    end: int
    delimiter: bytes
    columns: dict[int, tuple[str, ...]]


class CsvHeaders:
    """Tables in a payload whose header line names an identifier category.

    A header is the first line of the payload or the first line after a blank line (HTTP and MIME
    bodies start there), delimited by ; , tab or |, with an anchor word in at least one field and
    no candidate value in it. The table runs to the next blank line. Quoted delimiters inside
    fields are not parsed (they shift the column of the rest of that row).
    """

    def __init__(self, p: Payload, value_starts: list[int], max_header_bytes: int, max_field: int,
                 max_line: int):
        self.max_line = max_line
        self.tables: list[_Table] = []
        for hs in _paragraph_starts(p.raw):
            he = p.raw.find(b"\n", hs)
            he = len(p.raw) if he < 0 else he
            if he - hs > max_header_bytes or _has_value(value_starts, hs, he):
                continue
            table = _header(p, hs, he, max_field)
            if table:
                self.tables.append(table)
        self.tables.sort(key=lambda t: t.header_end)
        self._ends = [t.header_end for t in self.tables]

    def column_anchors(self, p: Payload, start: int, end: int, category: str) -> bool:
        i = bisect_left(self._ends, start) - 1
        if i < 0 or start >= self.tables[i].end:
            return False
        t = self.tables[i]
        line_start = p.line_bounds(start, self.max_line)[0]
        if p.raw.find(t.delimiter, start, end) >= 0:
            return False
        return category in t.columns.get(p.raw.count(t.delimiter, line_start, start), ())


def _paragraph_starts(raw: bytes):
    yield 0
    for sep in (b"\n\n", b"\n\r\n"):
        i = raw.find(sep)
        while i >= 0:
            yield i + len(sep)
            i = raw.find(sep, i + 1)


def _has_value(starts: list[int], lo: int, hi: int) -> bool:
    i = bisect_left(starts, lo)
    return i < len(starts) and starts[i] < hi


def _header(p: Payload, hs: int, he: int, max_field: int) -> _Table | None:
    line = p.raw[hs:he]
    delim = max(CSV_DELIMITERS, key=line.count)
    if line.count(delim) == 0 or any(len(f.strip()) > max_field for f in line.split(delim)):
        return None
    columns: dict[int, tuple[str, ...]] = {}
    for a_start, _, cats in p.find_anchors(hs, he):
        col = line.count(delim, 0, a_start - hs)
        columns[col] = tuple(sorted(set(columns.get(col, ())) | set(cats)))
    if not columns:
        return None
    end = min((i for i in (p.raw.find(b"\n\n", he), p.raw.find(b"\n\r\n", he)) if i >= 0),
              default=len(p.raw))
    return _Table(he, end, delim, columns)
