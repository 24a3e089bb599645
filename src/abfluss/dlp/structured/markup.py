"""XML (FHIR XML included) and HTML: elements and table rows as records."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .records import clean, prefix, table


_HTML = re.compile(r"(?is)^\s*(?:<!doctype\s+html|<html|<head|<body|<table|<tr|<th|<td|<p>|<div)")
_ROW = re.compile(r"(?is)<tr\b[^>]*>(.*?)(?=<tr\b|</table|\Z)")
_CELL = re.compile(r"(?is)<t[dh]\b[^>]*>(.*?)(?=<t[dh]\b|</tr|\Z)")
_TAG = re.compile(r"(?s)<[^>]*>")


def markup(text: str) -> Iterator[str]:
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


_LOCAL_NAMES: dict = {}  # tag -> local name: a document repeats a few tags thousands of times


def _local(tag) -> str:
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""
        if len(_LOCAL_NAMES) < 10_000:
            _LOCAL_NAMES[tag] = name
    return name


def xml(text: str) -> Iterator[str] | None:
    """Each element with attributes or leaf children as a record: ``name=value`` of its leaf
    children (FHIR's ``<system value=…/>`` and ``<value value=…/>`` meet on one line), its text."""
    try:
        root = parse_xml(text.encode("utf-8", "surrogateescape") if text.startswith("<?xml") else text)
    except Exception:  # noqa: BLE001 - ParseError, EntitiesForbidden, DTDForbidden …: read as text
        return None
    return _xml_records(root)


#: Encodings in which a document's bytes show a DOCTYPE as the ASCII bytes ``<!DOCTYPE``.
_ASCII_LIKE = frozenset({"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1",
                         "iso-8859-15", "windows-1252", "cp1252"})
_ENCODING = re.compile(rb"""^(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def parse_xml(data: str | bytes):
    """The ElementTree root of an XML document (``ParseError`` and defusedxml's errors raise).

    Entities can only be declared in a DOCTYPE. A document without one, in an encoding whose
    bytes show a DOCTYPE as ASCII (a ``str`` is always read as UTF-8), is parsed by the C parser;
    anything else by defusedxml (no entity expansion, no external entities), whose parser
    calls Python for every element and took a third of the time of reading an XML export."""
    if _plain_xml(data):
        from xml.etree.ElementTree import fromstring

        return fromstring(data)
    from defusedxml import ElementTree as DET

    return DET.fromstring(data)


def _plain_xml(data: str | bytes) -> bool:
    if isinstance(data, bytes):
        if b"\x00" in data[:4] or data.startswith((b"\xfe\xff", b"\xff\xfe")):
            return False  # UTF-16/32: the checks below would not see the markup
        m = _ENCODING.match(data[:256])
        if m and m.group(1).decode("ascii").lower() not in _ASCII_LIKE:
            return False
        bang = b"<!"
    else:
        bang = "<!"
    i = data.find(bang)
    while i >= 0:
        if data[i + 2:i + 9].upper() in (b"DOCTYPE", "DOCTYPE"):
            return False
        i = data.find(bang, i + 2)
    return True


def _xml_records(root) -> Iterator[str]:
    stack = [root]
    while stack:
        el = stack.pop()
        name = _local(el.tag)
        fields = [clean(name)] + [prefix(_local(k)) + clean(v) for k, v in el.attrib.items()]
        nested = []
        for child in el:
            cname = _local(child.tag)
            if len(child):
                nested.append(child)
            else:
                if child.text and child.text.strip():
                    fields.append(prefix(cname) + clean(child.text.strip()))
                for k, v in child.attrib.items():
                    label = cname if _local(k) == "value" else f"{cname}.{_local(k)}"
                    fields.append(prefix(label) + clean(v))
            if child.tail and child.tail.strip():
                fields.append(clean(child.tail.strip()))
        if el.text and el.text.strip():
            fields.append(prefix(name) + clean(el.text.strip()))
        yield "\t".join(fields) + "\n"
        stack.extend(reversed(nested))
