"""Records as the detectors read them: one line per record, fields separated by tabs, a field
whose name (CSV header, JSON key, XML element, SQL column, HL7 field label) holds an anchor word
written ``name=value`` (see the package doc)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

#: Characters of a unit's start looked at to recognise its layout.
SNIFF_CHARS = 64 << 10
#: Records looked at to recognise a delimited or fixed-width layout.
SNIFF_RECORDS = 25
#: Longest header field; a longer first-row field is data, not a column name.
MAX_HEADER_FIELD = 64
_CLEAN = re.compile(r"[\t\r\n]+")
_DIGITS5 = re.compile(r"\d{5}")


def anchor_name(name: str) -> bool:
    """Does a column or key name hold an anchor word (context.ANCHORS, with its boundary rules)?"""
    from ..context import ANCHORS  # context imports nothing from here; kept lazy for import order

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


def prefix(name) -> str:
    """``name=`` for an anchoring name, else nothing (most columns: no bytes added)."""
    name = str(name)
    p = _PREFIX_CACHE.get(name)
    if p is None:
        p = clean(name) + "=" if anchor_name(name) else ""
        if len(_PREFIX_CACHE) < 10_000:
            _PREFIX_CACHE[name] = p
    return p


def clean(v) -> str:
    s = v if isinstance(v, str) else "" if v is None else str(v)
    return _CLEAN.sub(" ", s) if ("\n" in s or "\t" in s or "\r" in s) else s


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
            yield "\t".join(clean(f) for f in first) + "\n"
            prefixes = [prefix(f) for f in first]
        else:
            it = chain([first], it)
    else:
        prefixes = [prefix(f) for f in header]
        yield "\t".join(clean(f) for f in header) + "\n"
    if not any(prefixes):
        for row in it:
            yield "\t".join(clean(f) for f in row) + "\n"
        return
    n = len(prefixes)
    for row in it:
        yield "\t".join((prefixes[i] if i < n else "") + clean(f) for i, f in enumerate(row)) + "\n"


def chain(*its):
    for it in its:
        yield from it
