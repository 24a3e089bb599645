"""Value kinds and conversions shared by the Zeek TSV and JSON paths of ``zeek.py``.

Each Zeek field is read as a kind (time, count, address, list ...): parsed by pyarrow in bulk,
checked, and converted the same way from TSV and JSON. Which field fills which column is in
``_zeek_maps``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema

# Value kinds: how a field is parsed, checked and converted.
TIME, FLOAT, COUNT, INT32, BOOL, STR, ADDR, LIST_STR, LIST_FLOAT = (
    "time", "float", "count", "int32", "bool", "str", "addr", "list_str", "list_float")
#: A time field other than ``ts`` (a certificate's validity): written like ``ts`` (epoch seconds,
#: or ISO 8601 when Zeek logs JSON with ISO times), but may be unset.
OPT_TIME = "opt_time"

#: Arrow type a kind is read as (by pyarrow.csv for TSV; by pyarrow.json for JSON, lists as lists).
READ_TYPE = {TIME: pa.float64(), OPT_TIME: pa.float64(), FLOAT: pa.float64(), COUNT: pa.int64(), INT32: pa.int64(),
             BOOL: pa.bool_(), STR: pa.string(), ADDR: pa.string(), LIST_STR: pa.string(),
             LIST_FLOAT: pa.string()}
_JSON_TYPE = {**READ_TYPE, LIST_STR: pa.list_(pa.string()), LIST_FLOAT: pa.list_(pa.float64())}

NUM = r"-?(\d{1,12}(\.\d*)?|\.\d+)"  # as Zeek writes time and interval: no exponent
#: What a valid TSV value of a kind looks like (unset values are checked apart).
PATTERNS = {TIME: NUM, OPT_TIME: NUM, FLOAT: NUM, COUNT: r"\d{1,18}", INT32: r"\d{1,9}", BOOL: "[TF]"}
_INT32_MAX, _INT64_MAX = 2**31 - 1, 2**63 - 1
#: Seconds beyond this (year 33658) cannot be a time or a duration: the value is garbage.
FLOAT_MAX = 1e12
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def bad_int(arr: pa.Array, top: int) -> bool:
    """True when an integer column holds a negative value or one above ``top``."""
    if arr.null_count == len(arr):
        return False
    lo, hi = pc.min_max(arr).values()
    return lo.as_py() < 0 or hi.as_py() > top


def out_of_range(kind: str, col: pa.Array) -> bool:
    """True when a parsed column holds a value its kind's column cannot take."""
    if kind in (INT32, COUNT):
        return bad_int(col, _INT32_MAX if kind == INT32 else _INT64_MAX)
    if kind in (TIME, OPT_TIME, FLOAT):
        return bad_float(col)
    return kind == LIST_FLOAT and bad_float(pc.list_flatten(col))


def bad_float(arr: pa.Array) -> bool:
    """True when a float column holds NaN, infinity or a value too large for microseconds."""
    if arr.null_count == len(arr) or pa.types.is_timestamp(arr.type):
        return False
    # one Arrow call and NumPy: a small log's columns cost the calls' overhead, not the values
    values = (arr.fill_null(0.0) if arr.null_count else arr).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        return not bool((np.abs(values) < FLOAT_MAX).all())  # NaN compares false


def unescape(s: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), s)


def tsv_strings(arr: pa.Array, empty: str, escaped: bool, has_empty: bool = True) -> pa.Array:
    """A TSV string column: the empty marker is the empty string, ``\\xHH`` escapes decoded
    (``escaped``: the text holds a backslash at all; ``has_empty``: the empty marker at all)."""
    if has_empty:
        is_empty = pc.equal(arr, empty)
        if pc.any(is_empty).as_py():
            arr = pc.if_else(is_empty, "", arr)
    return _unescape_array(arr) if escaped else arr


def _unescape_array(arr: pa.Array) -> pa.Array:
    has = pc.match_substring(arr, "\\x")
    if not pc.any(has).as_py():
        return arr
    return pa.array([unescape(v) if v is not None else None for v in arr.to_pylist()], pa.string())


def tsv_list(arr: pa.Array, set_sep: str, empty: str, escaped: bool = True) -> pa.ListArray:
    """A TSV set/vector column as a list of strings (``(empty)`` is an empty list)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    split = pc.split_pattern(arr, set_sep)
    split = pc.if_else(pc.equal(arr, empty), pa.scalar([], split.type), split)
    if escaped and pc.any(pc.match_substring(arr, "\\x")).as_py():
        values = _unescape_array(pc.list_flatten(split))
        split = pa.ListArray.from_arrays(split.offsets, values, mask=split.is_null())
    return split


def check_strings(t: pa.Table, spec, as_list) -> tuple[np.ndarray, dict[int, str]]:
    """Which rows of an all-string TSV table hold only valid values, and why the others do not.
    ``as_list`` splits a set/vector column."""
    ok, reasons = np.ones(t.num_rows, bool), {}

    def mark(bad: np.ndarray, why) -> None:
        for i in np.flatnonzero(bad & ok):
            reasons[i] = why(int(i))
        ok[bad] = False

    for _, src, kind in spec:
        if src not in t.column_names:
            if kind == TIME:
                mark(np.ones(t.num_rows, bool), lambda i: "no ts field")
            continue
        col = t.column(src)
        if kind == LIST_FLOAT:
            lists = as_list(col)
            good = pc.match_substring_regex(pc.list_flatten(lists), f"^(?:{NUM})$")
            bad = np.zeros(t.num_rows, bool)
            bad[pc.list_parent_indices(lists).to_numpy()[~good.to_numpy(zero_copy_only=False)]] = True
        elif kind in PATTERNS:
            good = pc.match_substring_regex(col, f"^(?:{PATTERNS[kind]})$")
            bad = ~pc.fill_null(good, kind != TIME).to_numpy(zero_copy_only=False)
        else:
            continue
        mark(bad, lambda i, c=col, s=src: bad_value(s, c[i].as_py()))
    return ok, reasons


def cast_checked(t: pa.Table, spec) -> pa.Table:
    """Checked string columns as the types pyarrow would have read them as."""
    for _, name, kind in spec:
        if name in t.column_names and kind in PATTERNS:
            col = t.column(name)
            col = pc.equal(col, "T") if kind == BOOL else col.cast(READ_TYPE[kind])
            t = t.set_column(t.column_names.index(name), name, col)
    return t


def to_ts(arr: pa.Array) -> pa.Array:
    """Epoch seconds (float) as UTC microseconds; a timestamp column passes through."""
    if pa.types.is_timestamp(arr.type):
        return arr.cast(schema.TS)
    us = pc.round(pc.multiply(arr, 1e6)).cast(pa.int64())
    return us.cast(schema.TS)


#: Arrow type of a kind's Python values from ``coerce`` (JSON records parsed one by one).
PY_TYPE = {TIME: schema.TS, OPT_TIME: schema.TS, FLOAT: pa.float64(), COUNT: pa.int64(), INT32: pa.int64(),
           BOOL: pa.bool_(), STR: pa.string(), ADDR: pa.string(),
           LIST_STR: pa.list_(pa.string()), LIST_FLOAT: pa.list_(pa.float64())}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc) - _EPOCH


def coerce(kind: str, v, src: str):
    """One JSON value as its kind's Python value (ts: epoch microseconds); ValueError if wrong."""
    if v is None:
        if kind == TIME:
            raise ValueError(bad_value(src, v))
        return None
    try:
        if kind in (TIME, OPT_TIME):
            if isinstance(v, str) and not _is_number(v):
                dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
                dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
                return (dt - _EPOCH) // _US
            return round(_float(v) * 1e6)
        if kind == FLOAT:
            return _float(v)
        if kind in (COUNT, INT32):
            n = _number(v)
            if n != int(n) or n < 0 or n > (_INT32_MAX if kind == INT32 else _INT64_MAX):
                raise ValueError
            return int(n)
        if kind == BOOL:
            if isinstance(v, bool) or v in ("T", "F"):
                return v is True or v == "T"
            raise ValueError
        if kind in (LIST_STR, LIST_FLOAT):
            if not isinstance(v, list):
                raise ValueError
            return [str(x) for x in v] if kind == LIST_STR else [_float(x) for x in v]
        return v if isinstance(v, str) else json.dumps(v)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(bad_value(src, v)) from None


def bad_value(src: str, v) -> str:
    return f"missing {src}" if v is None else f"bad {src} value {v!r:.60}"


def _is_number(s: str) -> bool:
    return re.fullmatch(NUM, s) is not None


def _float(v) -> float:
    f = float(_number(v))
    if not abs(f) < FLOAT_MAX:
        raise ValueError
    return f


def _number(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError
    if isinstance(v, str) and not _is_number(v):
        raise ValueError
    return v if isinstance(v, int) else float(v)
