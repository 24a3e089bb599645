"""Zeek logs: TSV (``#fields``/``#types`` headers) and JSON lines, plain or gzip-compressed.

conn and open_conn fill ``flows``, dns ``dns``, http and open_http ``http``, ssl and open_ssl
``tls``, notice ``alerts``; other logs (files, x509, weird, ...) yield nothing. The log type is the ``#path`` /
``_path``, else the file name, else the columns. A file whose name says ``open_conn`` (or
open_http, open_ssl) is an open log even when its path says ``conn``, as RITA writes them.

The file is read in blocks of whole lines (``BLOCK`` bytes, the next one read and gunzipped
while the current one is parsed). pyarrow parses a block in one go; only a block holding a bad
record is parsed again line by line, so every skipped record is reported with its exact line
number in the decompressed file. A TSV header may start again anywhere (concatenated logs); a
conn or dns log whose header was cut off is read with Zeek's default fields.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from ..errors import InputError
from . import _zeek_types as zt
from .base import MAX_LINE, ReadReport, open_maybe_gzip

#: ``report.format`` of the two formats; ``sniff_tsv``/``sniff_json`` tell them apart, ``read`` reads both.
FORMAT_TSV, FORMAT_JSON = "zeek-tsv", "zeek-json"
FORMAT = FORMAT_TSV
#: Bytes of decompressed text parsed at once: well under a million rows of any mapped log.
BLOCK = 32 << 20
_KEY = re.compile(rb'"([^"\\]+)"\s*:')
_LEAD = re.compile(rb"[ \t\r]*#")
_ISO_TS = re.compile(rb'"ts"\s*:\s*"')
_TARGET = re.compile(r"(open_)?(conn|dns|http|ssl)(?![a-z])|notice(?![a-z_])")
_SEP_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
#: Bytes that cannot separate fields: line ends, the header mark, NUL (pyarrow's CSV parser
#: takes one ASCII delimiter other than these).
_BAD_SEPARATORS = b"\n\r#\x00"


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
    source = _Source(path, report)
    blocks = iter(source)
    try:
        first = next(blocks, None)
    except OSError as e:  # missing, unreadable, a directory
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if first is None:
        raise InputError(f"{path}: empty or unreadable file" + (f" ({source.error})" if source.error else ""))
    head = first[0][: min(first[1], 1 << 16)].lstrip(b" \t\r\n")
    if head.startswith(b"{"):
        report.format, parser = FORMAT_JSON, _Json(path, report, head)
    elif head.startswith(b"#") or b"\t" in head.split(b"\n", 1)[0]:
        report.format, parser = FORMAT_TSV, _Tsv(path, report)
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


class _Source:
    """The decompressed content as (data, end) blocks, ``data[:end]`` whole lines (the file's last
    line may lack its newline). A broken gzip stream ends early after the last whole line and
    sets ``error``. A line longer than ``MAX_LINE`` is skipped (reported with its number) and
    an empty line takes its place, so later line numbers stay right."""

    def __init__(self, path: Path, report: ReadReport):
        self.path, self.report, self.error = path, report, None
        self.newlines = 0  # newlines yielded so far: the number of the line being assembled - 1
        self.long_lines = 0

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        rest, skipping = b"", False
        with open_maybe_gzip(self.path, self.report) as f, ThreadPoolExecutor(1) as pool:
            read = f.read if not isinstance(f, gzip.GzipFile) else lambda n: self._gunzip(f, n)
            ahead = pool.submit(read, BLOCK)
            while True:
                chunk = ahead.result()
                if skipping and chunk:  # inside an overlong line: drop it up to its newline
                    nl = chunk.find(b"\n")
                    if nl < 0 and not self.error:
                        ahead = pool.submit(read, BLOCK)
                        continue
                    chunk, skipping = (b"\n" + chunk[nl + 1:] if nl >= 0 else b""), False
                data = rest + chunk if rest else chunk
                if self.error or not chunk:
                    break
                ahead = pool.submit(read, BLOCK)  # read (and gunzip) the next block meanwhile
                end = data.rfind(b"\n") + 1
                if end:
                    data, end = self._cut_long(data, end)
                    yield data, end
                    self.newlines += data.count(b"\n", 0, end)
                rest = data[end:]
                if len(rest) > MAX_LINE:
                    self._long(self.newlines + 1)
                    rest, skipping = b"", True
        end = data.rfind(b"\n") + 1 if self.error else len(data)
        if end:
            data, end = self._cut_long(data, end)
        if end:
            yield data, end

    def _cut_long(self, data: bytes, end: int) -> tuple[bytes, int]:
        """``data[:end]`` without its lines longer than MAX_LINE (an empty line in each one's place).
        Steps a line-length at a time: a few ``rfind`` calls per block when all lines are short."""
        pos = 0  # always the start of a line
        while end - pos > MAX_LINE:
            nl = data.rfind(b"\n", pos, pos + MAX_LINE + 1)
            if nl >= 0:
                pos = nl + 1
                continue
            stop = data.find(b"\n", pos, end)
            stop = end if stop < 0 else stop  # the file's last line, without its newline
            self._long(self.newlines + data.count(b"\n", 0, pos) + 1)
            data, end = data[:pos] + data[stop:], end - (stop - pos)
        return data, end

    def _long(self, line: int) -> None:
        self.long_lines += 1
        self.report.skip(f"line {line}", f"longer than {MAX_LINE} bytes: skipped")

    def _gunzip(self, f: gzip.GzipFile, size: int) -> bytes:
        parts, n = [], 0
        try:
            while n < size and (part := f.read1(1 << 20)):
                parts.append(part)
                n += len(part)
        except EOFError:
            self.error = "truncated gzip stream"
        except (OSError, zlib.error) as e:
            self.error = f"corrupt gzip stream ({e})"
        return b"".join(parts)


class _Parser:
    """What both formats share: the line count, the log type of a path, skip reporting."""

    def __init__(self, path: Path, report: ReadReport):
        self.path, self.report, self.bad, self.line = path, report, 0, 1
        self.other = False  # records of a log type we do not read were seen
        self.other_types: set[str] = set()
        self.name_log = zt.log_from_name(path.name)
        self.col_log: str | None = None

    def target(self, path_value: str | None) -> str | None:
        """The mapped log type for a ``#path``/``_path`` value (None: a log we do not read)."""
        if path_value:
            m = _TARGET.match(path_value)
            log = m.group(0) if m else None
        else:
            log = self.name_log or self.col_log
        if log in ("conn", "http", "ssl") and self.name_log == "open_" + log:
            log = self.name_log
        return log

    def skip(self, line: int, reason: str) -> None:
        self.bad += 1
        self.report.skip(f"line {line}", reason)

    @staticmethod
    def lines(data: bytes, start: int, stop: int) -> int:
        return data.count(b"\n", start, stop) + (stop > start and data[stop - 1] != 0x0A)


class _Tsv(_Parser):
    def __init__(self, path: Path, report: ReadReport):
        super().__init__(path, report)
        self.sep, self.set_sep, self.empty, self.unset = b"\t", ",", "(empty)", "-"
        self.log_path: str | None = None
        self.fields: list[str] | None = None

    def feed(self, data: bytes, end: int) -> Iterator[tuple[str, pa.Table]]:
        pos = 0
        if self.line == 1 and (m := _LEAD.match(data)):  # whitespace before the first header
            pos = m.end() - 1
        while pos < end:
            if data[pos] == 0x23:  # '#': a header or #close line
                nl = data.find(b"\n", pos, end)
                nl = end if nl < 0 else nl
                self._directive(data[pos:nl].rstrip(b"\r"))
                self.line, pos = self.line + 1, nl + 1
                continue
            stop = _next_comment(data, pos, end)
            yield from self._run(data, pos, stop)
            pos = stop

    def _directive(self, text: bytes) -> None:
        key, _, value = text.partition(b" " if text.startswith(b"#separator") else self.sep or b"\t")
        value_s = value.decode("utf-8", "replace")
        if key == b"#separator":
            self.sep = _separator(value)
            self.fields, self.log_path = None, None
            if self.sep is None:
                self.report.skip(f"line {self.line}", f"unusable #separator {value[:20]!r}: the lines "
                                 "up to the next #separator are skipped", count=0)
        elif key == b"#set_separator":
            self.set_sep = zt.unescape(value_s)
        elif key == b"#empty_field":
            self.empty = value_s
        elif key == b"#unset_field":
            self.unset = value_s
        elif key == b"#path":
            self.log_path = value_s
        elif key == b"#fields" and self.sep is not None:
            self.fields = _unique(value_s.split(self.sep.decode("latin-1")))
            self.col_log = zt.log_from_columns(self.fields)

    def _run(self, data: bytes, start: int, stop: int) -> Iterator[tuple[str, pa.Table]]:
        """Lines ``data[start:stop]``, all of one header block."""
        if self.sep is None:  # the block's #separator was unusable: its records cannot be split
            n = self.lines(data, start, stop)
            self.bad += n
            where = f"line {self.line}" if n == 1 else f"lines {self.line}-{self.line + n - 1}"
            self.report.skip(where, "no usable #separator", count=n)
            self.line += n
            return
        if self.fields is None:
            self._default_fields(data, start, stop)
        log = self.target(self.log_path)
        if log not in zt.MAPS:
            self.line += self.lines(data, start, stop)
            self.other = True
            self.other_types.add(str(self.log_path or log))
            return
        spec = zt.fields_for(log)
        present = [src for _, src, _ in spec if src in self.fields]
        t = self._fast(data, start, stop, spec, present)
        if t is None:
            t = self._slow(data, start, stop, spec, present)
        else:
            self.line += t.num_rows  # empty lines are not skipped on the fast path: rows == lines
        if t is not None and t.num_rows:
            cols = self._columns(t, spec, escaped=data.find(b"\\", start, stop) >= 0)
            yield zt.MAPS[log][0], zt.finish(log, cols, t.num_rows, log.startswith("open_"))

    def _default_fields(self, data: bytes, start: int, stop: int) -> None:
        """Zeek's default field list for data without a header (a log whose top was cut off)."""
        nl = data.find(b"\n", start, stop)
        ncols = data.count(self.sep, start, stop if nl < 0 else nl) + 1
        fields = zt.DEFAULT_FIELDS.get((self.name_log, ncols))
        if fields is None:
            raise InputError(f"{self.path}: line {self.line}: Zeek TSV data without a #fields header")
        self.fields = list(fields)

    def _options(self, present: list[str], types: dict, bad: list | None) -> dict:
        def handler(row):
            bad.append(row)
            return "skip"

        return dict(
            read_options=pcsv.ReadOptions(column_names=self.fields, block_size=4 << 20),
            parse_options=pcsv.ParseOptions(
                delimiter=self.sep.decode("latin-1"), quote_char=False, ignore_empty_lines=False,
                invalid_row_handler=handler if bad is not None else None),
            convert_options=pcsv.ConvertOptions(
                column_types=types, include_columns=present, null_values=[self.unset],
                true_values=["T"], false_values=["F"], strings_can_be_null=True))

    def _fast(self, data, start, stop, spec, present) -> pa.Table | None:
        """Every line typed by pyarrow, or None if any line is bad (the slow path then finds it)."""
        if "ts" not in present:
            return None
        bad: list = []
        try:
            types = {src: zt.READ_TYPE[kind] for _, src, kind in spec if src in present}
            src = pa.BufferReader(pa.py_buffer(data)[start:stop])
            t = pcsv.read_csv(src, **self._options(present, types, bad))
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return None
        if bad or t.column("ts").null_count:
            return None
        for _, name, kind in spec:
            if name in present:
                col = t.column(name)
                try:
                    col = self._list(col).cast(pa.list_(pa.float64())) if kind == zt.LIST_FLOAT else col
                except pa.ArrowInvalid:
                    return None
                if zt.out_of_range(kind, col):
                    return None
        return t

    def _slow(self, data, start, stop, spec, present) -> pa.Table | None:
        """Line by line: skip lines with the wrong field count, then rows with a bad value."""
        nf, good, nums = len(self.fields), [], []
        texts = data[start:stop].split(b"\n")
        if texts[-1] == b"":
            texts.pop()
        for i, text in enumerate(texts, self.line):
            text = text.rstrip(b"\r")
            if not text:
                continue
            if b"\r" in text:  # Zeek escapes it (\x0d); raw, it would end the row for pyarrow
                self.skip(i, "carriage return inside a field")
                continue
            if (found := text.count(self.sep) + 1) != nf:
                self.skip(i, f"{found} fields, expected {nf}")
                continue
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                self.skip(i, "invalid UTF-8")
                continue
            good.append(text)
            nums.append(i)
        self.line += len(texts)
        if not good:
            return None
        types = {name: pa.string() for name in present}
        try:
            t = pcsv.read_csv(pa.BufferReader(b"\n".join(good)), **self._options(present, types, None))
        except pa.ArrowInvalid:  # a line pyarrow cannot take after all: find it line by line
            t, good, nums = self._each(good, nums, present, types)
            if t is None:
                return None
        ok, reasons = zt.check_strings(t, spec, lambda col: self._list(col))
        for i in np.flatnonzero(~ok):
            self.skip(nums[i], reasons[i])
        return zt.cast_checked(t.filter(pa.array(ok)), spec)

    def _each(self, good: list, nums: list, present: list, types: dict):
        parts, kept = [], []
        for text, i in zip(good, nums):
            try:
                parts.append(pcsv.read_csv(pa.BufferReader(text), **self._options(present, types, None)))
                kept.append(i)
            except pa.ArrowInvalid as e:
                self.skip(i, f"unparsable line ({str(e).splitlines()[0][:80]})")
        return (pa.concat_tables(parts) if parts else None), None, kept

    def _list(self, col, escaped: bool = True) -> pa.ListArray:
        return zt.tsv_list(col, self.set_sep, self.empty, escaped)

    def _columns(self, t: pa.Table, spec, escaped: bool) -> dict[str, pa.Array]:
        cols = {}
        for out, src, kind in spec:
            if src in t.column_names:
                col = t.column(src)
                if kind == zt.STR:
                    col = zt.tsv_strings(col, self.empty, escaped)
                elif kind in (zt.LIST_STR, zt.LIST_FLOAT):
                    col = self._list(col, escaped)
                    col = col.cast(pa.list_(pa.float64())) if kind == zt.LIST_FLOAT else col
                cols[out] = col
        return cols


def _separator(value: bytes) -> bytes | None:
    """The byte a ``#separator`` value (``\\x09`` or a literal byte) names; None if unusable."""
    sep = _SEP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), value) if value else b"\t"
    if len(sep) != 1 or sep[0] >= 0x80 or sep in _BAD_SEPARATORS:
        return None
    return sep


def _unique(fields: list[str]) -> list[str]:
    """Field names with repeats renamed (``ts``, ``ts~2``): the first of a name is the one read."""
    seen: dict[str, int] = {}
    out = []
    for f in fields:
        seen[f] = seen.get(f, 0) + 1
        out.append(f if seen[f] == 1 else f"{f}~{seen[f]}")
    return out


def _next_comment(data: bytes, pos: int, end: int) -> int:
    """Where the next line starting with '#' begins (``end`` if none)."""
    while (i := data.find(b"#", pos, end)) > 0 and data[i - 1] != 0x0A:
        pos = i + 1
    return end if i < 0 else i


class _Json(_Parser):
    def __init__(self, path: Path, report: ReadReport, head: bytes):
        super().__init__(path, report)
        for text in head.split(b"\n", 50)[:50]:
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                self.col_log = zt.log_from_columns(obj)
                break

    def feed(self, data: bytes, end: int) -> Iterator[tuple[str, pa.Table]]:
        groups = self._fast(data, end)
        if groups is None:
            groups = self._slow(data, end)
        else:
            self.line += self.lines(data, 0, end)
        for log, cols, n in groups:
            yield zt.MAPS[log][0], zt.finish(log, cols, n, log.startswith("open_"))

    def _fast(self, data: bytes, end: int) -> list | None:
        """All records parsed by pyarrow, grouped by log type; None if any record is bad."""
        first = data[: min(end, 1 << 16)].lstrip().split(b"\n", 1)[0]
        options = pjson.ParseOptions(explicit_schema=zt.json_schema(_ISO_TS.search(first) is not None),
                                     unexpected_field_behavior="ignore")
        try:
            t = pjson.read_json(pa.BufferReader(pa.py_buffer(data)[:end]),
                                read_options=pjson.ReadOptions(block_size=4 << 20), parse_options=options)
            t.validate(full=True)  # pyarrow.json passes invalid UTF-8 through into strings
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return None
        paths, groups = t.column("_path"), []
        for value in pc.unique(paths).to_pylist():
            log = self.target(value)
            if log not in zt.MAPS:
                self.other = True
                self.other_types.add(str(value or log))
                continue
            part = t.filter(pc.is_null(paths) if value is None else pc.equal(paths, value))
            spec = zt.fields_for(log)
            if part.column("ts").null_count or any(zt.out_of_range(k, part.column(s)) for _, s, k in spec):
                return None
            groups.append((log, {out: part.column(src) for out, src, _ in spec}, part.num_rows))
        return groups

    def _slow(self, data: bytes, end: int) -> list:
        """Record by record, skipping (with its line) any that is not valid."""
        rows: dict[str, list[tuple]] = {}
        texts = data[:end].split(b"\n")
        if texts[-1] == b"":
            texts.pop()
        for i, text in enumerate(texts, self.line):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except ValueError as e:
                self.skip(i, f"invalid JSON ({getattr(e, 'msg', e)})")
                continue
            except RecursionError:
                self.skip(i, "invalid JSON (nested too deep)")
                continue
            if not isinstance(obj, dict):
                self.skip(i, "not a JSON object")
                continue
            if not isinstance(obj.get("_path", ""), (str, type(None))):
                self.skip(i, "_path is not a string")
                continue
            log = self.target(obj.get("_path"))
            if log not in zt.MAPS:
                self.other = True
                self.other_types.add(str(obj.get("_path") or log))
            if log in zt.MAPS:
                try:
                    row = tuple(zt.coerce(kind, obj.get(src), src) for _, src, kind in zt.fields_for(log))
                    rows.setdefault(log, []).append(row)
                except ValueError as e:
                    self.skip(i, str(e))
        self.line += len(texts)
        return [(log, {out: pa.array([r[j] for r in values], zt.PY_TYPE[kind])
                       for j, (out, _, kind) in enumerate(zt.fields_for(log))}, len(values))
                for log, values in rows.items()]
