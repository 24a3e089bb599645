"""Zeek TSV logs: ``#fields``/``#types`` headers, which may start again anywhere (concatenated logs).

pyarrow parses a block of lines in one go; only a block holding a bad record is parsed again line
by line, so every skipped record is reported with its exact line number. A conn or dns log whose
header was cut off is read with Zeek's default fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from ..errors import InputError
from . import _zeek_maps as zm
from . import _zeek_types as zt
from ._zeek_parser import Parser
from .base import ReadReport

_LEAD = re.compile(rb"[ \t\r]*#")
_SEP_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
#: Bytes that cannot separate fields: line ends, the header mark, NUL (pyarrow's CSV parser
#: takes one ASCII delimiter other than these).
_BAD_SEPARATORS = b"\n\r#\x00"


class Tsv(Parser):
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
            self.col_log = zm.log_from_columns(self.fields)

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
        if log not in zm.MAPS:
            self.line += self.lines(data, start, stop)
            self.other = True
            self.other_types.add(str(self.log_path or log))
            return
        spec = zm.fields_for(log)
        present = [src for _, src, _ in spec if src in self.fields]
        t = self._fast(data, start, stop, spec, present)
        if t is None:
            t = self._slow(data, start, stop, spec, present)
        else:
            self.line += t.num_rows  # empty lines are not skipped on the fast path: rows == lines
        if t is not None and t.num_rows:
            cols = self._columns(t, spec, escaped=data.find(b"\\", start, stop) >= 0,
                                 has_empty=data.find(self.empty.encode("utf-8", "replace"), start, stop) >= 0)
            yield zm.MAPS[log][0], zm.finish(log, cols, t.num_rows, log.startswith("open_"))

    def _default_fields(self, data: bytes, start: int, stop: int) -> None:
        """Zeek's default field list for data without a header (a log whose top was cut off)."""
        nl = data.find(b"\n", start, stop)
        ncols = data.count(self.sep, start, stop if nl < 0 else nl) + 1
        fields = zm.DEFAULT_FIELDS.get((self.name_log, ncols))
        if fields is None:
            raise InputError(f"{self.path}: line {self.line}: Zeek TSV data without a #fields header")
        self.fields = list(fields)

    def _options(self, present: list[str], types: dict) -> dict:
        # No invalid-row handler: a bad row raises ArrowInvalid and the slow path finds it. A
        # handler gained nothing (any bad row sent the block there anyway) and printed a traceback
        # ("Exception ignored in: handler ... UnicodeDecodeError") for a row that is not UTF-8:
        # pyarrow decodes the row's text before calling it.
        return dict(
            read_options=pcsv.ReadOptions(column_names=self.fields, block_size=4 << 20),
            parse_options=pcsv.ParseOptions(
                delimiter=self.sep.decode("latin-1"), quote_char=False, ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(
                column_types=types, include_columns=present, null_values=[self.unset],
                true_values=["T"], false_values=["F"], strings_can_be_null=True))

    def _fast(self, data, start, stop, spec, present) -> pa.Table | None:
        """Every line typed by pyarrow, or None if any line is bad (the slow path then finds it)."""
        if "ts" not in present:
            return None
        try:
            types = {src: zt.READ_TYPE[kind] for _, src, kind in spec if src in present}
            src = pa.BufferReader(pa.py_buffer(data)[start:stop])
            t = pcsv.read_csv(src, **self._options(present, types))
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return None
        if t.column("ts").null_count:
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
            t = pcsv.read_csv(pa.BufferReader(b"\n".join(good)), **self._options(present, types))
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
                parts.append(pcsv.read_csv(pa.BufferReader(text), **self._options(present, types)))
                kept.append(i)
            except pa.ArrowInvalid as e:
                self.skip(i, f"unparsable line ({str(e).splitlines()[0][:80]})")
        return (pa.concat_tables(parts) if parts else None), None, kept

    def _list(self, col, escaped: bool = True) -> pa.ListArray:
        return zt.tsv_list(col, self.set_sep, self.empty, escaped)

    def _columns(self, t: pa.Table, spec, escaped: bool, has_empty: bool = True) -> dict[str, pa.Array]:
        cols = {}
        for out, src, kind in spec:
            if src in t.column_names:
                col = t.column(src)
                if kind == zt.STR:
                    col = zt.tsv_strings(col, self.empty, escaped, has_empty)
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

