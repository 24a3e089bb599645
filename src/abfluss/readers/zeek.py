"""Zeek logs: TSV (``#fields``/``#types`` headers) and JSON lines, plain or gzip-compressed.

conn and open_conn fill ``flows``, dns ``dns``, http and open_http ``http``, ssl and open_ssl
``tls``; other logs (files, x509, weird, ...) yield nothing. The log type is the ``#path`` /
``_path``, else the file name, else the columns. A file whose name says ``open_conn`` (or
open_http, open_ssl) is an open log even when its path says ``conn``, as RITA writes them.

The file is read in blocks of whole lines. Each block is parsed by pyarrow in one go; only a
block holding a bad record is parsed again line by line, so every skipped record is reported
with its exact line number in the decompressed file.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from ..errors import InputError
from . import _zeek_types as zt
from .base import ReadReport, open_maybe_gzip

FORMAT_TSV = "zeek-tsv"
FORMAT_JSON = "zeek-json"
FORMAT = FORMAT_TSV
#: Bytes of decompressed text parsed at once: well under a million rows of any mapped log.
BLOCK = 32 << 20
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_KEY = re.compile(rb'"([^"\\]+)"\s*:')
_LEAD = re.compile(rb"[ \t\r]*#")
_ISO_TS = re.compile(rb'"ts"\s*:\s*"')
_TARGET = re.compile(r"(open_)?(conn|dns|http|ssl)(?![a-z])")


def sniff_tsv(head: bytes, path: Path | None = None) -> bool:
    return head.lstrip(b" \t\r\n").startswith(b"#separator")


def sniff_json(head: bytes, path: Path | None = None) -> bool:
    """A JSON object with ``_path``, or with ``ts`` and ``uid``/``id.orig_h`` (not Suricata's eve)."""
    line = head.lstrip(b" \t\r\n").split(b"\n", 1)[0]
    if not line.startswith(b"{"):
        return False
    try:
        obj = json.loads(line)
        keys = set(obj) if isinstance(obj, dict) else set()
    except ValueError:  # a line longer than the head: judge by the keys it shows
        keys = {k.decode("utf-8", "replace") for k in _KEY.findall(line)}
    if "event_type" in keys:
        return False
    return "_path" in keys or ("ts" in keys and ("uid" in keys or "id.orig_h" in keys))


def sniff(head: bytes, path: Path | None = None) -> bool:
    return sniff_tsv(head, path) or sniff_json(head, path)


def read(path: Path, report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
    """Yield (table, rows) from a Zeek TSV or JSON log, detected by content."""
    path = Path(path)
    blocks = _blocks(path, report)
    first = next(blocks, None)
    if first is None:
        raise InputError(f"{path}: empty or unreadable file")
    head = first[1][: min(first[2], 1 << 16)].lstrip(b" \t\r\n")
    if head.startswith(b"{"):
        report.format, parser = FORMAT_JSON, _Json(path, report, head)
    elif head.startswith(b"#") or b"\t" in head.split(b"\n", 1)[0]:
        report.format, parser = FORMAT_TSV, _Tsv(path, report)
    else:
        raise InputError(f"{path}: not a Zeek TSV or JSON log")
    rows = 0
    for block in _chain(first, blocks):
        for table, t in parser.feed(*block):
            if t.num_rows:
                report.add(table, t.num_rows)
                rows += t.num_rows
                yield table, t
    if rows == 0 and parser.bad:
        raise InputError(f"{path}: no readable Zeek record ({parser.bad} bad)")


#: The two formats as reader objects (one module handles both).
TSV = SimpleNamespace(FORMAT=FORMAT_TSV, sniff=sniff_tsv, read=read)
JSON = SimpleNamespace(FORMAT=FORMAT_JSON, sniff=sniff_json, read=read)


def _chain(first, rest):
    yield first
    yield from rest


def _blocks(path: Path, report: ReadReport) -> Iterator[tuple[int, bytes, int]]:
    """(first line number, data, end): ``data[:end]`` is whole lines (the last may lack its newline).

    A truncated or corrupt gzip stream ends the blocks after the last whole line, reported once.
    """
    line, rest, error = 1, b"", None
    with open_maybe_gzip(path) as f:
        gz = isinstance(f, gzip.GzipFile)
        while True:
            chunk, error = _read_chunk(f, gz)
            data = rest + chunk if rest else chunk
            if error or not chunk:
                break
            end = data.rfind(b"\n") + 1
            if end == 0:
                rest = data
                continue
            yield line, data, end
            line += data.count(b"\n", 0, end)
            rest = data[end:]
    if error:
        end = data.rfind(b"\n") + 1
        if end:
            yield line, data, end
            line += data.count(b"\n", 0, end)
        report.skip(f"line {line}", error)
    elif data:
        yield line, data, len(data)


def _read_chunk(f, gz: bool) -> tuple[bytes, str | None]:
    if not gz:
        return f.read(BLOCK), None
    parts, size = [], 0
    try:
        while size < BLOCK:
            part = f.read1(1 << 20)
            if not part:
                break
            parts.append(part)
            size += len(part)
    except EOFError:
        return b"".join(parts), "truncated gzip stream"
    except (OSError, zlib.error) as e:
        return b"".join(parts), f"corrupt gzip stream ({e})"
    return b"".join(parts), None


class _Parser:
    """What both formats share: the log type of a path, skip reporting."""

    def __init__(self, path: Path, report: ReadReport):
        self.path, self.report, self.bad = path, report, 0
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


class _Tsv(_Parser):
    def __init__(self, path: Path, report: ReadReport):
        super().__init__(path, report)
        self.sep, self.set_sep, self.empty, self.unset = b"\t", ",", "(empty)", "-"
        self.log_path: str | None = None
        self.fields: list[str] | None = None

    def feed(self, line: int, data: bytes, end: int) -> Iterator[tuple[str, pa.Table]]:
        pos = 0
        if line == 1:  # tolerate whitespace before the first header line
            m = _LEAD.match(data)
            pos = m.end() - 1 if m else 0
        while pos < end:
            if data[pos] == 0x23:  # '#': a header or #close line
                nl = data.find(b"\n", pos, end)
                nl = end if nl < 0 else nl
                self._directive(data[pos:nl].rstrip(b"\r"))
                line, pos = line + 1, nl + 1
                continue
            nxt = data.find(b"\n#", pos, end)
            stop = end if nxt < 0 else nxt + 1
            yield from self._run(data, pos, stop, line)
            line += data.count(b"\n", pos, stop)
            pos = stop

    def _directive(self, text: bytes) -> None:
        key, _, value = text.partition(b" " if text.startswith(b"#separator") else self.sep)
        value_s = value.decode("utf-8", "replace")
        if key == b"#separator":
            self.sep = value.decode("unicode_escape").encode("latin-1") or b"\t"
            self.fields, self.log_path = None, None
        elif key == b"#set_separator":
            self.set_sep = zt.unescape(value_s)
        elif key == b"#empty_field":
            self.empty = value_s
        elif key == b"#unset_field":
            self.unset = value_s
        elif key == b"#path":
            self.log_path = value_s
        elif key == b"#fields":
            self.fields = value_s.split(self.sep.decode("latin-1"))
            self.col_log = zt.log_from_columns(self.fields)

    def _run(self, data: bytes, start: int, stop: int, line: int) -> Iterator[tuple[str, pa.Table]]:
        if self.fields is None:
            self._default_fields(data, start, stop, line)
        log = self.target(self.log_path)
        if log not in zt.MAPS:
            return
        spec = zt.fields_for(log)
        present = [src for _, src, _ in spec if src in self.fields]
        t = self._fast(data, start, stop, log, present)
        if t is None:
            t = self._slow(data, start, stop, line, present)
        if t is not None and t.num_rows:
            cols = self._columns(t, spec)
            yield zt.MAPS[log][0], zt.finish(log, cols, t.num_rows, log.startswith("open_"))

    def _default_fields(self, data: bytes, start: int, stop: int, line: int) -> None:
        """Zeek's default field list for data without a header (a log whose top was cut off)."""
        nl = data.find(b"\n", start, stop)
        ncols = data.count(self.sep, start, stop if nl < 0 else nl) + 1
        self.col_log = None
        fields = zt.DEFAULT_FIELDS.get((self.name_log, ncols))
        if fields is None:
            raise InputError(f"{self.path}: line {line}: Zeek TSV data without a #fields header")
        self.fields = list(fields)

    def _options(self, present: list[str], types: dict, bad: list | None):
        def handler(row):
            bad.append(row)
            return "skip"

        return dict(
            read_options=pcsv.ReadOptions(column_names=self.fields, block_size=4 << 20),
            parse_options=pcsv.ParseOptions(delimiter=self.sep.decode("latin-1"), quote_char=False,
                                            invalid_row_handler=handler if bad is not None else None),
            convert_options=pcsv.ConvertOptions(
                column_types=types, include_columns=present, null_values=[self.unset],
                true_values=["T"], false_values=["F"], strings_can_be_null=True))

    def _fast(self, data, start, stop, log, present) -> pa.Table | None:
        """All rows typed by pyarrow, or None when any row is bad (then the slow path finds it)."""
        if "ts" not in present:
            return None
        bad: list = []
        try:
            src = pa.BufferReader(pa.py_buffer(data)[start:stop])
            t = pcsv.read_csv(src, **self._options(present, zt.csv_types(log, present), bad))
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return None
        if bad or t.column("ts").null_count:
            return None
        for _, src_name, kind in zt.fields_for(log):
            if src_name in present and kind == zt.INT32 and zt.bad_int32(t.column(src_name)):
                return None
            if src_name in present and kind == zt.LIST_FLOAT:
                try:
                    self._list(t.column(src_name)).cast(pa.list_(pa.float64()))
                except pa.ArrowInvalid:
                    return None
        return t

    def _slow(self, data, start, stop, line, present) -> pa.Table | None:
        """Line by line: skip lines with the wrong field count, then rows with a bad value."""
        nf, good, nums = len(self.fields), [], []
        for i, text in enumerate(data[start:stop].split(b"\n")):
            if not text:
                continue
            found = text.count(self.sep) + 1
            if found != nf:
                self.skip(line + i, f"{found} fields, expected {nf}")
                continue
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                self.skip(line + i, "invalid UTF-8")
                continue
            good.append(text)
            nums.append(line + i)
        if not good:
            return None
        types = {name: pa.string() for name in present}
        t = pcsv.read_csv(pa.BufferReader(b"\n".join(good)), **self._options(present, types, None))
        ok, reasons = self._validate(t)
        for i in np.flatnonzero(~ok):
            self.skip(nums[i], reasons[i])
        t = t.filter(pa.array(ok))
        return self._cast(t)

    def _validate(self, t: pa.Table) -> tuple[np.ndarray, dict[int, str]]:
        ok, reasons = np.ones(t.num_rows, bool), {}
        log = self.target(self.log_path)
        for _, src, kind in zt.fields_for(log):
            if src not in t.column_names:
                if kind == zt.TIME:
                    self._mark(ok, reasons, np.ones(t.num_rows, bool), lambda i: "no ts field")
                continue
            col = t.column(src)
            if kind == zt.LIST_FLOAT:
                lists = self._list(col)
                flat = pc.list_flatten(lists)
                wrong = pc.invert(pc.match_substring_regex(flat, f"^(?:{zt.PATTERNS[zt.FLOAT]})$"))
                bad = np.zeros(t.num_rows, bool)
                bad[pc.list_parent_indices(lists).to_numpy()[wrong.to_numpy(zero_copy_only=False)]] = True
            elif kind in zt.PATTERNS:
                match = pc.match_substring_regex(col, f"^(?:{zt.PATTERNS[kind]})$")
                bad = pc.invert(pc.fill_null(match, kind != zt.TIME)).to_numpy(zero_copy_only=False)
            else:
                continue
            self._mark(ok, reasons, bad, lambda i, c=col, s=src: _bad_value(s, c[int(i)].as_py()))
        return ok, reasons

    @staticmethod
    def _mark(ok, reasons, bad, why) -> None:
        for i in np.flatnonzero(bad & ok):
            reasons[i] = why(i)
        ok &= ~bad

    def _cast(self, t: pa.Table) -> pa.Table:
        log = self.target(self.log_path)
        for _, src, kind in zt.fields_for(log):
            if src in t.column_names and kind in (zt.TIME, zt.FLOAT, zt.COUNT, zt.INT32, zt.BOOL):
                col = t.column(src)
                new = pc.equal(col, "T") if kind == zt.BOOL else col.cast(zt.csv_types(log, [src])[src])
                t = t.set_column(t.column_names.index(src), src, new)
        return t

    def _list(self, col) -> pa.ListArray:
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        return zt.tsv_list(col, self.set_sep, self.empty)

    def _columns(self, t: pa.Table, spec) -> dict[str, pa.Array]:
        cols = {}
        for out, src, kind in spec:
            if src not in t.column_names:
                continue
            col = t.column(src)
            if kind == zt.STR:
                col = zt.tsv_strings(col, self.empty)
            elif kind in (zt.LIST_STR, zt.LIST_FLOAT):
                col = self._list(col)
                if kind == zt.LIST_FLOAT:
                    col = col.cast(pa.list_(pa.float64()))
            cols[out] = col
        return cols


class _Json(_Parser):
    def __init__(self, path: Path, report: ReadReport, head: bytes):
        super().__init__(path, report)
        for text in head.split(b"\n", 50)[:50]:
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            if isinstance(obj, dict):
                self.col_log = zt.log_from_columns(obj)
                break

    def feed(self, line: int, data: bytes, end: int) -> Iterator[tuple[str, pa.Table]]:
        groups = self._fast(data, end)
        if groups is None:
            groups = self._slow(data, end, line)
        for log, (cols, n) in groups.items():
            yield zt.MAPS[log][0], zt.finish(log, cols, n, log.startswith("open_"))

    def _fast(self, data: bytes, end: int) -> dict | None:
        first = data[: min(end, 1 << 16)].lstrip().split(b"\n", 1)[0]
        schema = zt.json_schema(iso_ts=_ISO_TS.search(first) is not None)
        try:
            t = pjson.read_json(pa.BufferReader(pa.py_buffer(data)[:end]),
                                read_options=pjson.ReadOptions(block_size=4 << 20),
                                parse_options=pjson.ParseOptions(explicit_schema=schema,
                                                                 unexpected_field_behavior="ignore"))
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return None
        paths = t.column("_path")
        groups = {}
        for value in pc.unique(paths).to_pylist():
            log = self.target(value)
            if log not in zt.MAPS:
                continue
            part = t.filter(pc.is_null(paths) if value is None else pc.equal(paths, value))
            if part.column("ts").null_count:
                return None
            cols = {out: part.column(src) for out, src, _ in zt.fields_for(log)}
            if any(k == zt.INT32 and zt.bad_int32(cols[o]) for o, _, k in zt.fields_for(log)):
                return None
            _merge(groups, log, cols, part.num_rows)
        return groups

    def _slow(self, data: bytes, end: int, line: int) -> dict:
        rows: dict[str, list[tuple]] = {}
        for i, text in enumerate(data[:end].split(b"\n")):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except ValueError as e:
                self.skip(line + i, f"invalid JSON ({getattr(e, 'msg', e)})")
                continue
            if not isinstance(obj, dict):
                self.skip(line + i, "not a JSON object")
                continue
            log = self.target(obj.get("_path"))
            if log not in zt.MAPS:
                continue
            try:
                rows.setdefault(log, []).append(
                    tuple(_coerce(kind, obj.get(src), src) for _, src, kind in zt.fields_for(log)))
            except ValueError as e:
                self.skip(line + i, str(e))
        groups = {}
        for log, values in rows.items():
            spec = zt.fields_for(log)
            cols = {out: pa.array([r[j] for r in values], _SLOW_TYPE[kind])
                    for j, (out, _, kind) in enumerate(spec)}
            _merge(groups, log, cols, len(values))
        return groups


def _merge(groups: dict, log: str, cols: dict, n: int) -> None:
    """Add one path's rows (open_conn and conn rows of one block stay apart)."""
    if log in groups:
        old, m = groups[log]
        cols = {k: pa.chunked_array([old[k], cols[k]]) for k in cols}
        n += m
    groups[log] = (cols, n)


_SLOW_TYPE = {zt.TIME: pa.timestamp("us", tz="UTC"), zt.FLOAT: pa.float64(), zt.COUNT: pa.int64(), zt.INT32: pa.int64(),
              zt.BOOL: pa.bool_(), zt.STR: pa.string(), zt.ADDR: pa.string(),
              zt.LIST_STR: pa.list_(pa.string()), zt.LIST_FLOAT: pa.list_(pa.float64())}


def _coerce(kind: str, v, src: str):
    """One JSON value as its kind's Python value (ts as epoch microseconds); ValueError if wrong."""
    if v is None:
        if kind == zt.TIME:
            raise ValueError("missing ts")
        return None
    try:
        if kind == zt.TIME:
            if isinstance(v, str) and not _is_number(v):
                dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
                dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
                return (dt - _EPOCH) // _US
            return round(_number(v) * 1e6)
        if kind == zt.FLOAT:
            return _number(v)
        if kind in (zt.COUNT, zt.INT32):
            n = _number(v)
            if n != int(n) or n < 0 or (kind == zt.INT32 and n > 2**31 - 1):
                raise ValueError
            return int(n)
        if kind == zt.BOOL:
            if isinstance(v, bool) or v in ("T", "F"):
                return v is True or v == "T"
            raise ValueError
        if kind in (zt.LIST_STR, zt.LIST_FLOAT):
            if not isinstance(v, list):
                raise ValueError
            return [str(x) for x in v] if kind == zt.LIST_STR else [_number(x) for x in v]
        return v if isinstance(v, str) else json.dumps(v)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(_bad_value(src, v)) from None


_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc) - _EPOCH


def _bad_value(src: str, v) -> str:
    return f"missing {src}" if v is None else f"bad {src} value {v!r:.60}"


def _is_number(s: str) -> bool:
    return re.fullmatch(zt.NUM, s) is not None


def _number(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError
    if isinstance(v, str) and not _is_number(v):
        raise ValueError
    return float(v) if not isinstance(v, int) else v
