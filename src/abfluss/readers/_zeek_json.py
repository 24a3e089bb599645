"""Zeek JSON lines: one object per line, the log type in ``_path`` (or the file name, or the keys)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pjson

from . import _zeek_maps as zm
from . import _zeek_types as zt
from ._zeek_parser import Parser
from .base import ReadReport

_ISO_TS = re.compile(rb'"ts"\s*:\s*"')


class Json(Parser):
    def __init__(self, path: Path, report: ReadReport, head: bytes):
        super().__init__(path, report)
        for text in head.split(b"\n", 50)[:50]:
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                self.col_log = zm.log_from_columns(obj)
                break

    def feed(self, data: bytes, end: int) -> Iterator[tuple[str, pa.Table]]:
        groups = self._fast(data, end)
        if groups is None:
            groups = self._slow(data, end)
        else:
            self.line += self.lines(data, 0, end)
        for log, cols, n in groups:
            yield zm.MAPS[log][0], zm.finish(log, cols, n, log.startswith("open_"))

    def _fast(self, data: bytes, end: int) -> list | None:
        """All records parsed by pyarrow, grouped by log type; None if any record is bad."""
        first = data[: min(end, 1 << 16)].lstrip().split(b"\n", 1)[0]
        options = pjson.ParseOptions(explicit_schema=zm.json_schema(_ISO_TS.search(first) is not None),
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
            if log not in zm.MAPS:
                self.other = True
                self.other_types.add(str(value or log))
                continue
            part = t.filter(pc.is_null(paths) if value is None else pc.equal(paths, value))
            spec = zm.fields_for(log)
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
            if log not in zm.MAPS:
                self.other = True
                self.other_types.add(str(obj.get("_path") or log))
            if log in zm.MAPS:
                try:
                    row = tuple(zt.coerce(kind, obj.get(src), src) for _, src, kind in zm.fields_for(log))
                    rows.setdefault(log, []).append(row)
                except ValueError as e:
                    self.skip(i, str(e))
        self.line += len(texts)
        return [(log, {out: pa.array([r[j] for r in values], zt.PY_TYPE[kind])
                       for j, (out, _, kind) in enumerate(zm.fields_for(log))}, len(values))
                for log, values in rows.items()]
