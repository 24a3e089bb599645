"""Field maps and value conversions shared by the Zeek TSV and JSON paths of ``zeek.py``.

Which Zeek field fills which column of the common tables is data (the ``MAPS`` below); the
functions turn parsed columns into tables of the reader schema, whatever format they came from.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema

# Value kinds: how a field is parsed, checked and converted.
TIME, FLOAT, COUNT, INT32, BOOL, STR, ADDR, LIST_STR, LIST_FLOAT = (
    "time", "float", "count", "int32", "bool", "str", "addr", "list_str", "list_float")

_IDS = [("uid", "uid", STR), ("orig_h", "id.orig_h", ADDR), ("orig_p", "id.orig_p", INT32),
        ("resp_h", "id.resp_h", ADDR), ("resp_p", "id.resp_p", INT32)]

#: Per Zeek log type: (table, [(column, Zeek field, kind)]).
_FLOWS = [("ts", "ts", TIME), *_IDS, ("proto", "proto", STR), ("service", "service", STR),
          ("duration", "duration", FLOAT), ("orig_bytes", "orig_bytes", COUNT),
          ("resp_bytes", "resp_bytes", COUNT), ("conn_state", "conn_state", STR),
          ("missed_bytes", "missed_bytes", COUNT), ("history", "history", STR),
          ("orig_pkts", "orig_pkts", COUNT), ("orig_ip_bytes", "orig_ip_bytes", COUNT),
          ("resp_pkts", "resp_pkts", COUNT), ("resp_ip_bytes", "resp_ip_bytes", COUNT),
          ("community_id", "community_id", STR)]
_DNS = [("ts", "ts", TIME), *_IDS, ("proto", "proto", STR), ("trans_id", "trans_id", INT32),
        ("query", "query", STR), ("qtype", "qtype_name", STR), ("rcode", "rcode_name", STR),
        ("answers", "answers", LIST_STR), ("ttls", "TTLs", LIST_FLOAT)]
_HTTP = [("ts", "ts", TIME), *_IDS, ("method", "method", STR), ("host", "host", STR),
         ("uri", "uri", STR), ("user_agent", "user_agent", STR),
         ("request_body_len", "request_body_len", COUNT),
         ("response_body_len", "response_body_len", COUNT), ("status_code", "status_code", INT32)]
_TLS = [("ts", "ts", TIME), *_IDS, ("version", "version", STR),
        ("server_name", "server_name", STR), ("ja3", "ja3", STR), ("ja4", "ja4", STR),
        ("subject", "subject", STR), ("issuer", "issuer", STR), ("established", "established", BOOL)]
MAPS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "conn": ("flows", _FLOWS), "open_conn": ("flows", _FLOWS),
    "dns": ("dns", _DNS),
    "http": ("http", _HTTP), "open_http": ("http", _HTTP),
    "ssl": ("tls", _TLS), "open_ssl": ("tls", _TLS),
}

#: Field lists of Zeek's default logs, for TSV files whose header was cut off; keyed by (path, fields).
_CONN20 = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes resp_bytes "
           "conn_state local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes resp_pkts "
           "resp_ip_bytes").split()
_DNS24 = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto trans_id rtt query qclass qclass_name "
          "qtype qtype_name rcode rcode_name AA TC RD RA Z answers TTLs rejected").split()
DEFAULT_FIELDS = {("conn", 20): _CONN20, ("conn", 21): [*_CONN20, "tunnel_parents"], ("dns", 24): _DNS24}

#: Arrow type a kind is read as (by pyarrow.csv for TSV; by pyarrow.json for JSON, lists as lists).
_READ_TYPE = {TIME: pa.float64(), FLOAT: pa.float64(), COUNT: pa.int64(), INT32: pa.int64(),
              BOOL: pa.bool_(), STR: pa.string(), ADDR: pa.string(), LIST_STR: pa.string(),
              LIST_FLOAT: pa.string()}
_JSON_TYPE = {**_READ_TYPE, LIST_STR: pa.list_(pa.string()), LIST_FLOAT: pa.list_(pa.float64())}

NUM = r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"
#: What a valid TSV value of a kind looks like (unset values are checked apart).
PATTERNS = {TIME: NUM, FLOAT: NUM, COUNT: r"\d{1,18}", INT32: r"\d{1,9}", BOOL: "[TF]"}
_INT32_MAX = 2**31 - 1
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_NAME = re.compile(r"(?:^|[^a-z])(open_conn|open_http|open_ssl|conn|dns|http|ssl)(?![a-z])")


def fields_for(log: str) -> list[tuple[str, str, str]]:
    return MAPS[log][1]


def csv_types(log: str, present: list[str]) -> dict[str, pa.DataType]:
    return {src: _READ_TYPE[kind] for _, src, kind in fields_for(log) if src in present}


def json_schema(iso_ts: bool) -> pa.Schema:
    """What pyarrow.json parses: ``_path`` and every mapped field of every log type."""
    fields = {"_path": pa.string()}
    for _, spec in MAPS.values():
        for _, src, kind in spec:
            fields[src] = schema.TS if kind == TIME and iso_ts else _JSON_TYPE[kind]
    return pa.schema(list(fields.items()))


def log_from_name(name: str) -> str | None:
    m = _NAME.search(name.lower())
    return m.group(1) if m else None


def log_from_columns(cols) -> str | None:
    """The log type a set of field names belongs to, for logs that name no path."""
    cols = set(cols)
    if "conn_state" in cols or {"orig_bytes", "history"} <= cols:
        return "conn"
    if "query" in cols and ("qtype_name" in cols or "trans_id" in cols):
        return "dns"
    if {"method", "host"} <= cols:
        return "http"
    if "cipher" in cols or "established" in cols:
        return "ssl"
    return None


def bad_int32(arr: pa.Array) -> bool:
    """True when an integer column holds a value the int32 columns cannot take."""
    if arr.null_count == len(arr):
        return False
    lo, hi = pc.min_max(arr).values()
    return lo.as_py() < 0 or hi.as_py() > _INT32_MAX


def unescape(s: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), s)


def tsv_strings(arr: pa.Array, empty: str) -> pa.Array:
    """A TSV string column: the empty marker is the empty string, ``\\xHH`` escapes decoded."""
    if pc.any(pc.equal(arr, empty)).as_py():
        arr = pc.if_else(pc.equal(arr, empty), "", arr)
    return _unescape_array(arr)


def _unescape_array(arr: pa.Array) -> pa.Array:
    has = pc.match_substring(arr, "\\x")
    if not pc.any(has).as_py():
        return arr
    return pa.array([unescape(v) if v is not None else None for v in arr.to_pylist()], pa.string())


def tsv_list(arr: pa.Array, set_sep: str, empty: str) -> pa.ListArray:
    """A TSV set/vector column as a list of strings (``(empty)`` is an empty list)."""
    split = pc.split_pattern(arr, set_sep)
    split = pc.if_else(pc.equal(arr, empty), pa.scalar([], split.type), split)
    if pc.any(pc.match_substring(arr, "\\x")).as_py():
        values = _unescape_array(pc.list_flatten(split))
        split = pa.ListArray.from_arrays(split.offsets, values, mask=split.is_null())
    return split


def to_ts(arr: pa.Array) -> pa.Array:
    """Epoch seconds (float) as UTC microseconds; a timestamp column passes through."""
    if pa.types.is_timestamp(arr.type):
        return arr.cast(schema.TS)
    us = pc.round(pc.multiply(arr, 1e6)).cast(pa.int64())
    return us.cast(schema.TS)


def finish(log: str, cols: dict[str, pa.Array], n: int, open_: bool) -> pa.Table:
    """Columns (named as in the table, already of their kind's type) as a reader-schema table."""
    table = MAPS[log][0]
    cols["ts"] = to_ts(cols["ts"])
    if table == "flows":
        dur = cols.get("duration")
        ts_us = cols["ts"].cast(pa.int64())
        if dur is not None:
            dur_us = pc.round(pc.multiply(pc.fill_null(dur, 0.0), 1e6)).cast(pa.int64())
            ts_us = pc.add(ts_us, dur_us)
        cols["ts_end"] = ts_us.cast(schema.TS)
        cols["open"] = pa.array(np.full(n, open_), pa.bool_())
    return schema.conform(table, cols)
