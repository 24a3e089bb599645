"""Delimited text (``,`` ``;`` tab ``|``, markdown tables, quoted fields with separators and line
breaks), whole or streamed, and fixed-width columns."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator

from .records import SNIFF_CHARS, SNIFF_RECORDS, clean, is_header, prefix, table

#: Characters looked at to recognise a delimited layout, and the longest first line it may have.
DELIMITED_SNIFF_CHARS = 16 << 10
MAX_RECORD_CHARS = 8 << 10
#: Share of sampled records that must have the same number of fields for a delimited layout.
DELIMITED_SHARE = 0.9
DELIMITERS = (",", ";", "\t", "|")
_MD_RULE = re.compile(r"^[\s|:\-+]*$")


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
                self.prefixes = [prefix(f) for f in self.header]
                yield "\t".join(clean(f) for f in r) + "\n"
                if self.header:
                    continue
            n = len(self.prefixes)
            yield "\t".join((self.prefixes[i] if i < n else "") + clean(f) for i, f in enumerate(r)) + "\n"


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
