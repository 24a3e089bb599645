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

Modules, by responsibility: ``units`` (recognise and render a unit, whole or streamed), ``text``
(its text), ``records`` (anchors and the record lines), ``delimited`` (delimited and fixed-width
text), ``jsondoc``, ``markup`` (XML, HTML), ``hl7``, ``sql``.
"""

from .delimited import DelimitedStream, Dialect, delimited, fixed_width, sniff_delimited, sniff_fixed
from .hl7 import HL7_CODED, HL7_LABELS, hl7
from .jsondoc import json_records
from .markup import html, xml
from .records import SNIFF_CHARS, SNIFF_RECORDS, anchor_name, is_header, table
from .sql import sql
from .text import decode_text, encode, is_text
from .units import OPAQUE_MAGIC, Unit, convert, render

__all__ = ["OPAQUE_MAGIC", "HL7_CODED", "HL7_LABELS", "SNIFF_CHARS", "SNIFF_RECORDS", "DelimitedStream", "Dialect",
           "Unit", "anchor_name", "convert", "decode_text", "delimited", "encode", "fixed_width", "hl7", "html",
           "is_header", "is_text", "json_records", "render", "sniff_delimited", "sniff_fixed", "sql", "table", "xml"]
