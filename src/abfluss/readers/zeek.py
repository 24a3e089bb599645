"""Zeek logs: TSV (``#fields``/``#types`` headers) and JSON lines, plain or gzip-compressed.

conn and open_conn fill ``flows``, dns ``dns``, http and open_http ``http``, ssl and open_ssl
``tls``, notice ``alerts``, smtp, ftp and ssh ``logins``, files and pe ``files``, software
``software``, tunnel ``tunnels``, arp ``arp``, x509 ``certs`` (``_zeek_x509``); other logs (weird,
dhcp, ...) yield nothing. The log type is the ``#path`` /
``_path``, else the file name, else the columns. A file whose name says ``open_conn`` (or
open_http, open_ssl) is an open log even when its path says ``conn``, as RITA writes them.

The file is read in blocks of whole lines (``BLOCK`` bytes, the next one read and gunzipped
while the current one is parsed: ``_zeek_source``). pyarrow parses a block in one go; only a block holding a bad
record is parsed again line by line, so every skipped record is reported with its exact line
number in the decompressed file. The formats: ``_zeek_tsv`` and
``_zeek_json``; the field maps: ``_zeek_types``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from ..errors import InputError
from ._zeek_json import Json
from ._zeek_source import Source
from ._zeek_tsv import Tsv
from .base import ReadReport

#: ``report.format`` of the two formats; ``sniff_tsv``/``sniff_json`` tell them apart, ``read`` reads both.
FORMAT_TSV, FORMAT_JSON = "zeek-tsv", "zeek-json"
FORMAT = FORMAT_TSV
#: Bytes of decompressed text parsed at once: well under a million rows of any mapped log.
BLOCK = 32 << 20
_KEY = re.compile(rb'"([^"\\]+)"\s*:')


def sniff_tsv(head: bytes, path: Path | None = None) -> bool:
    return head.lstrip(b" \t\r\n").startswith(b"#separator")


def sniff_json(head: bytes, path: Path | None = None) -> bool:
    """A JSON object with ``_path`` or ``ts`` (Suricata's eve has ``event_type`` and ``timestamp``).
    Zeek JSON logs written without ``_path`` (files, arp, software …) are claimed too, so they are
    reported as logs abfluss does not read rather than as unknown files."""
    line = head.lstrip(b" \t\r\n").split(b"\n", 1)[0]
    if not line.startswith(b"{"):
        return False
    try:
        obj = json.loads(line)
        keys = set(obj) if isinstance(obj, dict) else set()
    except (ValueError, RecursionError):  # longer than the head, or nested too deep: judge by the keys
        keys = {k.decode("utf-8", "replace") for k in _KEY.findall(line)}
    if "event_type" in keys:
        return False
    return "_path" in keys or "ts" in keys


def sniff(head: bytes, path: Path | None = None) -> bool:
    return sniff_tsv(head, path) or sniff_json(head, path)


def read(path: Path, report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
    """Yield (table, rows) from a Zeek TSV or JSON log, the format detected by content."""
    path = Path(path)
    source = Source(path, report, BLOCK)
    blocks = iter(source)
    try:
        first = next(blocks, None)
    except OSError as e:  # missing, unreadable, a directory
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if first is None:
        raise InputError(f"{path}: empty or unreadable file" + (f" ({source.error})" if source.error else ""))
    head = first[0][: min(first[1], 1 << 16)].lstrip(b" \t\r\n")
    if head.startswith(b"{"):
        report.format, parser = FORMAT_JSON, Json(path, report, head)
    elif head.startswith(b"#") or b"\t" in head.split(b"\n", 1)[0]:
        report.format, parser = FORMAT_TSV, Tsv(path, report)
    else:
        raise InputError(f"{path}: not a Zeek TSV or JSON log")
    rows = 0
    for data, end in _chain(first, blocks):
        for table, t in parser.feed(data, end):
            if t.num_rows:
                report.add(table, t.num_rows)
                rows += t.num_rows
                yield table, t
    if source.error:
        report.skip(f"line {parser.line}", source.error)
    if rows == 0 and parser.other and not parser.bad:
        report.ignored = f"Zeek {', '.join(sorted(parser.other_types))} log: not a log abfluss reads"
    bad = parser.bad + source.long_lines
    if rows == 0 and (bad or source.error) and not parser.other:
        why = [f"{bad} bad records"] * bool(bad) + [source.error] * bool(source.error)
        raise InputError(f"{path}: no readable Zeek record ({', '.join(why)})")


def _chain(first, rest):
    yield first
    yield from rest

