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
