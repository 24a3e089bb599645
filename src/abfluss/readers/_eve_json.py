"""A block of eve.json lines read into the reader's Arrow schema by C (``_eve_json.c``).

:func:`read` gives exactly what ``pyarrow.json.read_json`` gives of the block with that schema
(other keys ignored), or None when the block holds anything but plain JSON of the schema's types
(an escape in a key, a known key twice, a known value of another type or null, a number with an
exponent, NaN ...): the caller then lets pyarrow read it. pyarrow's JSON reader builds every
column from an untyped intermediate and was over half of the eve reader's CPU time; this scans
each line once and copies only the known values.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import _abfluss_eve as _c

_KINDS = {pa.string(): "s", pa.int64(): "i", pa.bool_(): "b"}


def _nodes(schema: pa.Schema) -> list[tuple[int, str, str]]:
    """The schema as the C parser takes it: (parent, name, kind) in pre-order, the root first."""
    out = [(-1, "", "o")]

    def add(parent: int, name: str, t: pa.DataType) -> None:
        me = len(out)
        if pa.types.is_struct(t):
            out.append((parent, name, "o"))
            for f in t:
                add(me, f.name, f.type)
        elif pa.types.is_list(t):
            out.append((parent, name, "l"))
            add(me, "", t.value_type)
        else:
            out.append((parent, name, _KINDS[t]))

    for f in schema:
        add(0, f.name, f.type)
    return out


def prepare(schema: pa.Schema) -> None:
    """Set the schema every :func:`read` parses into (once; the C parser keeps it)."""
    _c.set_schema(_nodes(schema))
    prepare.schema = schema


prepare.schema = None


def lines(data, end: int, max_openers: int) -> np.ndarray | None:
    """The newline positions of ``data[:end]`` when every line is one object (``{`` first, ``}``
    last), none holds a JSON null (``:\\s*null\\b``, the whole block searched as one text) or more
    than ``max_openers`` ``{`` or ``[`` bytes, and the block ends with a newline; else None."""
    got = _c.check(data, end, max_openers)
    return None if got is None else np.frombuffer(got, np.int64)


def read(data, end: int) -> pa.Table | None:
    """The lines of ``data[:end]`` (each ending in a newline) as a table of the prepared schema,
    or None: pyarrow's reader must decide."""
    got = _c.parse(data, end)
    if got is None:
        return None
    at = iter(range(1, len(got)))

    def array(t: pa.DataType) -> pa.Array:
        slots, valid, offsets, values = got[next(at)]
        bitmap = pa.py_buffer(valid)
        if pa.types.is_struct(t):
            children = [array(f.type) for f in t]
            return pa.Array.from_buffers(t, slots, [bitmap], children=children)
        if pa.types.is_list(t):
            child = array(t.value_type)
            return pa.Array.from_buffers(t, slots, [bitmap, pa.py_buffer(offsets)], children=[child])
        if t == pa.string():
            return pa.Array.from_buffers(t, slots, [bitmap, pa.py_buffer(offsets), pa.py_buffer(values)])
        return pa.Array.from_buffers(t, slots, [bitmap, pa.py_buffer(values)])

    schema = prepare.schema
    return pa.Table.from_arrays([array(f.type) for f in schema], schema=schema)


def times(col: pa.Array, max_us: int) -> np.ndarray | None:
    """Microseconds since 1970 (UTC) of a string column whose every value has Suricata's own form,
    ``2021-06-06T15:57:37.272281+0200`` (null slots 0), or None when a value has another form, an
    impossible date or time, or lies before 1970 or after ``max_us``."""
    validity, offsets, data = col.buffers()
    got = _c.times(offsets, data if data is not None else b"", len(col), col.offset,
                   validity if col.null_count else None, max_us)
    return None if got is None else np.frombuffer(got, np.int64)


def newlines(data, end: int) -> int:
    """``data.count(b"\\n", 0, end)``, vectorised (the block source counts every block's lines)."""
    return _c.newlines(data, end)
