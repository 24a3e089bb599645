"""eve.json in bulk: a block of lines parsed (C, ``_eve_json``, else pyarrow) and turned into rows
column by column.

Only a block whose every line is plain (one JSON object per line, no JSON ``null``, every value of
the JSON type the reader expects, timestamps in Suricata's own ISO form) is taken here; for any
other block :func:`parse` returns None and ``suricata.read`` reads it line by line in Python,
which reports each bad line with its number. So both ways give the same rows: this module only
takes inputs on which it gives what the line-by-line reader gives.

Without JSON nulls an absent key and a null column value are the same, which is what lets the
``key in event`` tests of the line reader be written as null tests here. DNS events are merged
per query in ``_eve_dns.Merger``: their columns are returned with what matching needs of each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pjson

from ..schema import TS
from . import _eve_json

_STR, _INT = pa.string(), pa.int64()
#: What the line reader looks at, with the JSON type it expects; everything else is ignored.
SCHEMA = pa.schema([
    ("timestamp", _STR), ("event_type", _STR), ("flow_id", _INT), ("src_ip", _STR), ("dest_ip", _STR),
    ("src_port", _INT), ("dest_port", _INT), ("icmp_type", _INT), ("icmp_code", _INT), ("proto", _STR),
    ("app_proto", _STR), ("community_id", _STR),
    ("flow", pa.struct([("start", _STR), ("end", _STR), ("bytes_toserver", _INT), ("bytes_toclient", _INT),
                        ("pkts_toserver", _INT), ("pkts_toclient", _INT), ("state", _STR)])),
    ("tcp", pa.struct([("rst", pa.bool_())])),
    ("ether", pa.struct([("src_macs", pa.list_(_STR)), ("dest_macs", pa.list_(_STR)), ("src_mac", _STR),
                         ("dest_mac", _STR)])),
    ("http", pa.struct([("http_method", _STR), ("hostname", _STR), ("url", _STR), ("http_user_agent", _STR),
                        ("length", _INT), ("status", _INT)])),
    ("tls", pa.struct([("version", _STR), ("sni", _STR), ("ja4", _STR), ("subject", _STR), ("issuerdn", _STR),
                       ("fingerprint", _STR), ("notbefore", _STR), ("notafter", _STR),
                       ("ja3", pa.struct([("hash", _STR)])), ("ja3s", pa.struct([("hash", _STR)]))])),
    ("alert", pa.struct([("signature", _STR), ("category", _STR), ("signature_id", _INT), ("severity", _INT)])),
    ("dns", pa.struct([("type", _STR), ("id", _INT), ("version", _INT), ("rrname", _STR), ("rrtype", _STR),
                       ("rcode", _STR), ("rdata", _STR), ("ttl", _INT),
                       ("queries", pa.list_(pa.struct([("rrname", _STR), ("rrtype", _STR)]))),
                       ("answers", pa.list_(pa.struct([("rrtype", _STR), ("ttl", _INT), ("rdata", _STR)])))])),
])
_OPTIONS = pjson.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
_eve_json.prepare(SCHEMA)
_READ = pjson.ReadOptions(block_size=1 << 20)
#: For a block parsed while others are (``_eve_ahead``): those keep the cores busy, and Arrow's
#: own threads on top cost CPU time (≈ 5 %) and gained nothing in wall time.
_READ_ALONE = pjson.ReadOptions(block_size=1 << 20, use_threads=False)
#: Suricata's timestamps (``2021-06-06T15:57:37.272281+0200``): a form Python's ``fromisoformat``
#: and Arrow's cast read alike. Certificate validity bounds may lack the zone (UTC then).
_TIME = r"\d{4}-\d{2}-\d{2}T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
_ZONE = r"(Z|[+-]([01]\d|2[0-3]):?[0-5]\d)"
_TS_RE, _CERT_RE = f"^{_TIME}{_ZONE}$", f"^{_TIME}{_ZONE}?$"
#: A line with more opening brackets than this may nest deeper than Python's parser takes (the
#: line reader then skips it as "nested too deep"): its block is left to the line reader.
_MAX_OPENERS = 400
#: Event types with a table of their own here (dns is merged by the caller).
TABLES = {"flow": "flows", "http": "http", "tls": "tls", "alert": "alerts"}
_COMMON = ["flow_id", "src_ip", "dest_ip", "src_port", "dest_port", "icmp_type", "icmp_code", "proto",
           "community_id"]
_COLUMNS = {"flows": _COMMON + ["flow", "tcp", "app_proto", "ether"], "http": _COMMON + ["http"],
            "tls": _COMMON + ["tls"], "alerts": _COMMON + ["alert"]}
_DNS_COLUMNS = _COMMON + ["dns"]


@dataclass
class Block:
    """A parsed block: per table the rows' columns and their line indices (ascending), the DNS
    events' line indices, each line's timestamp (µs) and span in the block."""
    rows: int
    tables: dict  # table -> (dict of columns, np.ndarray of line indices)
    dns: np.ndarray
    #: the DNS events' columns (``suricata.DNS_EVENT``) and per event what matching needs (kind,
    #: key, question name and type, v1 record, sent by the server); None: decode their lines with ``json``
    dns_events: pa.Table | None
    dns_match: list | None
    ts: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


def parse(data: bytes, end: int, max_us: int, helpers, threads: bool = True) -> Block | None:
    """The block ``data[:end]`` (whole lines) parsed, or None if the line reader must read it.
    ``helpers`` is the line reader's module: its value conversions are reused per distinct value.
    ``threads``: whether Arrow's JSON reader (for a block the C reader leaves to it) may parse the
    block's parts on its threads."""
    # every line one object ('{' first, '}' last: no blank or padded line), no JSON null (exactly
    # ``:\s*null\b`` anywhere), at most _MAX_OPENERS '{' or '[' bytes per line, the last line complete
    # (else maybe cut off): in C (``_eve_json.lines``; it was NumPy and a regular expression, the
    # reference in tests/test_eve_json_c.py), the newline positions or None
    ends = _eve_json.lines(data, end, _MAX_OPENERS)
    if ends is None:
        return None
    starts = np.concatenate(([0], ends[:-1] + 1))
    try:
        # the C reader where it can (the same table), else pyarrow's
        t = _eve_json.read(data, end)
        if t is None:
            t = pjson.read_json(pa.BufferReader(pa.py_buffer(data)[:end]),
                                read_options=_READ if threads else _READ_ALONE, parse_options=_OPTIONS)
        t.validate(full=True)  # both pass invalid UTF-8 through into strings
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if t.num_rows != len(starts) or t.column("event_type").null_count or t.column("timestamp").null_count:
        return None
    ts = _times(t.column("timestamp"), _TS_RE, max_us)
    if ts is None:
        return None
    # one kind's rows by a boolean filter: a take by indices cost four times as much on the
    # chunked struct columns (a second per million events)
    kinds = pc.dictionary_encode(t.column("event_type").combine_chunks())
    names = kinds.dictionary.to_pylist()
    codes = kinds.indices.to_numpy(zero_copy_only=False)
    tables = {}
    for kind, name in TABLES.items():
        if kind not in names:
            continue
        mask = codes == names.index(kind)
        part = t.select(_COLUMNS[name]).filter(mask)
        cols = _build(name, part, ts.filter(mask), max_us, helpers)
        if cols is None:
            return None
        tables[name] = (cols, np.flatnonzero(mask))
    mask = codes == names.index("dns") if "dns" in names else None
    dns = np.flatnonzero(mask) if mask is not None else np.zeros(0, np.int64)
    events, match = (_dns_fields(t.select(_DNS_COLUMNS).filter(mask), ts.filter(mask), helpers)
                     if len(dns) else (None, []))
    return Block(t.num_rows, tables, dns, events, match, ts.cast(pa.int64()).to_numpy(zero_copy_only=False),
                 starts, ends)


def _times(col, pattern: str, max_us: int, bad_is_null: bool = False) -> pa.Array | None:
    """Parsed times (µs, UTC); None when a value is outside the form both parsers read alike,
    or (unless ``bad_is_null``: then it is null) outside 1970 … 9999."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if col.null_count == len(col):
        return pa.nulls(len(col), TS)
    if pattern == _TS_RE and (fixed := _suricata_times(col, max_us)) is not None:
        return fixed
    if not pc.all(pc.match_substring_regex(col, pattern)).as_py():
        return None
    naive = pc.invert(pc.match_substring_regex(col, _ZONE + "$"))
    if pc.any(naive).as_py():
        col = pc.if_else(naive, pc.binary_join_element_wise(col, "+00:00", ""), col)
    try:
        ts = pc.cast(col, TS)
    except pa.ArrowInvalid:
        return None
    us = ts.cast(pa.int64())
    ok = pc.and_(pc.greater_equal(us, 0), pc.less_equal(us, max_us))
    if pc.all(ok).as_py() is False:
        if not bad_is_null:
            return None
        ts = pc.if_else(ok, ts, pa.scalar(None, TS))
    return ts


def _suricata_times(col: pa.Array, max_us: int) -> pa.Array | None:
    """``_times`` of a column whose every value has Suricata's own form
    (``2021-06-06T15:57:37.272281+0200``, 31 bytes), read from the strings' bytes in C
    (``_eve_json.times``): the regular expression and Arrow's timestamp parser cost a tenth of the
    reader's time, and NumPy on the bytes still 0.6 CPU s per million events. None when a value
    has another form, an impossible date or time, or lies outside 1970 … 9999: ``_times`` then
    decides the usual way."""
    us = _eve_json.times(col, max_us)
    if us is None:
        return None
    mask = None if col.null_count == 0 else pc.is_null(col).to_numpy(zero_copy_only=False)
    return pa.array(us, pa.int64(), mask=mask).cast(TS)


def _int(col, hi: int):
    """``suricata._int``: a value from 0 to ``hi``, else null."""
    ok = pc.and_(pc.greater_equal(col, 0), pc.less_equal(col, hi))
    return pc.if_else(ok, col, pa.scalar(None, col.type))


def _each(col, fn) -> pa.Array:
    """``fn`` applied to each distinct value once (the line reader's own conversion)."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    enc = col.dictionary_encode()
    values = pa.array([fn(v) for v in enc.dictionary.to_pylist()], _STR)
    return values.take(enc.indices)


def _endpoints(t: pa.Table, h) -> dict:
    def port(a, b):  # e.get(a, e.get(b)): without JSON nulls, null is absent
        return _int(pc.coalesce(t.column(a), t.column(b)), h.PORT_MAX)

    return {"orig_h": t.column("src_ip"), "orig_p": port("src_port", "icmp_type"),
            "resp_h": t.column("dest_ip"), "resp_p": port("dest_port", "icmp_code")}


def _build(name: str, t: pa.Table, ts: pa.Array, max_us: int, h) -> dict | None:
    """The columns of ``name``'s rows (as ``suricata._flow``, ``_http``, ``_tls``, ``_alert``)."""
    obj = t.column({"flows": "flow", "alerts": "alert"}.get(name, name))
    if obj.null_count:  # "<kind> event without a '<kind>' object": the line reader says so
        return None
    uid = pc.cast(t.column("flow_id"), _STR)
    ends = _endpoints(t, h)
    if name == "flows":
        if t.column("src_ip").null_count or t.column("dest_ip").null_count:
            return None
        f = pc.struct_field
        start = _times(f(obj, "start"), _TS_RE, max_us)
        end = _times(f(obj, "end"), _TS_RE, max_us)
        if start is None or end is None:
            return None
        start = pc.coalesce(start, ts)
        duration = pc.divide(pc.cast(pc.subtract(end.cast(_INT), start.cast(_INT)), pa.float64()), 1e6)
        proto = _each(t.column("proto"), h._proto)
        back = pc.fill_null(_int(f(obj, "pkts_toclient"), 2**63 - 1), 0)
        macs = _macs(t.column("ether"))
        if macs is None:
            return None
        return {"ts": start, "ts_end": end, "duration": duration, "proto": proto, **ends,
                "orig_ip_bytes": _int(f(obj, "bytes_toserver"), 2**63 - 1),
                "resp_ip_bytes": _int(f(obj, "bytes_toclient"), 2**63 - 1),
                "orig_pkts": _int(f(obj, "pkts_toserver"), 2**63 - 1),
                "resp_pkts": _int(f(obj, "pkts_toclient"), 2**63 - 1),
                "service": _each(t.column("app_proto"), h._service),
                "conn_state": _conn_state(f(obj, "state"), proto, back, pc.struct_field(t.column("tcp"), "rst")),
                "open": pa.repeat(pa.scalar(False), t.num_rows), "community_id": t.column("community_id"),
                "uid": uid, **macs}
    if name == "http":
        f = pc.struct_field
        return {"ts": ts, "uid": uid, **ends, "method": f(obj, "http_method"), "host": f(obj, "hostname"),
                "uri": f(obj, "url"), "user_agent": f(obj, "http_user_agent"),
                "response_body_len": _int(f(obj, "length"), 2**63 - 1),
                "status_code": _int(f(obj, "status"), h.INT32_MAX)}
    if name == "tls":
        f = pc.struct_field
        not_before = _times(f(obj, "notbefore"), _CERT_RE, max_us, bad_is_null=True)
        not_after = _times(f(obj, "notafter"), _CERT_RE, max_us, bad_is_null=True)
        if not_before is None or not_after is None:
            return None
        return {"ts": ts, "uid": uid, **ends, "version": f(obj, "version"), "server_name": f(obj, "sni"),
                "ja3": f(f(obj, "ja3"), "hash"), "ja4": f(obj, "ja4"), "ja3s": f(f(obj, "ja3s"), "hash"),
                "subject": f(obj, "subject"), "issuer": f(obj, "issuerdn"),
                "cert_sha1": _each(f(obj, "fingerprint"), h._sha1),
                "not_before": not_before, "not_after": not_after}
    f = pc.struct_field
    return {"ts": ts, "uid": uid, **ends, "proto": _each(t.column("proto"), h._proto),
            "signature": f(obj, "signature"), "signature_id": _int(f(obj, "signature_id"), 2**63 - 1),
            "category": f(obj, "category"), "severity": _int(f(obj, "severity"), h.INT32_MAX),
            "community_id": t.column("community_id")}


def _macs(ether) -> dict | None:
    """``orig_mac``/``resp_mac`` as ``suricata._mac`` gives them: a flow's first listed MAC, else a
    packet event's own, lower case; empty ones null. None (the line reader decides) for an empty list."""
    ether = ether.combine_chunks() if isinstance(ether, pa.ChunkedArray) else ether
    out = {}
    for side, col in (("src", "orig_mac"), ("dest", "resp_mac")):
        listed = pc.struct_field(ether, f"{side}_macs")
        if pc.any(pc.equal(pc.list_value_length(listed), 0)).as_py():
            return None
        first = pc.list_element(listed, 0)  # null for a null list (no empty one here)
        value = pc.utf8_lower(pc.coalesce(first, pc.struct_field(ether, f"{side}_mac")))
        out[col] = pc.if_else(pc.equal(value, ""), pa.scalar(None, _STR), value)
    return out


def _conn_state(state, proto, back, rst) -> pa.Array:
    """``suricata._conn_state`` column-wise."""
    tcp = pc.fill_null(pc.equal(proto, "tcp"), False)
    rst = pc.fill_null(rst, False)
    is_ = lambda v: pc.fill_null(pc.equal(state, v), False)  # noqa: E731
    new = is_("new")
    conds = [is_("closed"), pc.and_(is_("established"), tcp), is_("established"),
             pc.and_(new, pc.equal(back, 0)), pc.and_(new, pc.and_(tcp, rst)), new]
    return pc.case_when(pc.make_struct(*conds, field_names=[str(i) for i in range(len(conds))]),
                        "SF", "S1", "SF", "S0", "REJ", "OTH")


def _dns_fields(t: pa.Table, ts: pa.Array, h) -> tuple[pa.Table | None, list | None]:
    """``suricata._dns_fields`` of each dns event, column-wise: the events' columns and what
    matching needs of each; (None, None) when an event needs the line reader (no ``dns``
    object, an unknown type, or answers only in the ``grouped`` form)."""
    d = t.column("dns")
    if d.null_count:
        return None, None
    f = lambda name: pc.struct_field(d, name)  # noqa: E731
    kind = f("type")
    if not pc.all(pc.fill_null(pc.is_in(kind, pa.array(["query", "request", "answer", "response"])), False)).as_py():
        return None, None
    answer = pc.is_in(kind, pa.array(["answer", "response"]))
    v1_record = pc.or_(pc.is_valid(f("rdata")), pc.is_valid(f("ttl")))
    grouped = pc.and_(answer, pc.and_(pc.is_null(f("answers")), pc.invert(v1_record)))
    if pc.any(grouped).as_py():
        return None, None
    ends = _endpoints(t, h)
    data, types, ttls = _answer_lists(f("answers"), f("rdata"), f("rrtype"), f("ttl"))
    # the question: the first of ``queries`` (v3), else the event's own rrname/rrtype
    queries = _chunk(f("queries"))
    asked = pc.fill_null(pc.greater(pc.list_value_length(queries), 0), False).to_numpy(zero_copy_only=False)
    first = pa.array(np.where(asked, queries.offsets.to_numpy()[:-1], 0), mask=~asked)
    query = pc.if_else(asked, pc.struct_field(queries.values, "rrname").take(first), f("rrname"))
    qtype = pc.if_else(asked, pc.struct_field(queries.values, "rrtype").take(first), f("rrtype"))
    # (a query's answer lists are never taken: only answers fill a row)
    events = pa.table({
        "ts": ts.cast(pa.int64()), "uid": pc.cast(t.column("flow_id"), _STR), **ends,
        "proto": _each(t.column("proto"), h._proto), "trans_id": _int(f("id"), h.PORT_MAX), "query": query,
        "qtype": qtype, "rcode": f("rcode"), "answers": data, "answer_types": types, "ttls": ttls,
    }).cast(h.DNS_EVENT)
    cols = [kind, t.column("flow_id"), f("id"), query, qtype,
            pc.and_(pc.is_null(f("version")), pc.and_(pc.is_null(f("answers")), pc.is_null(f("queries")))),
            pc.and_(pc.fill_null(pc.is_in(t.column("src_port"), pa.array(h.DNS_PORTS)), False),
                    pc.invert(pc.fill_null(pc.is_in(t.column("dest_port"), pa.array(h.DNS_PORTS)), False)))]
    match = [(kind, (flow_id, dns_id), query, qtype, v1, swap)
             for kind, flow_id, dns_id, query, qtype, v1, swap in zip(*(c.to_pylist() for c in cols))]
    return events, match


def _answer_lists(answers, rdata, rrtype, ttl):
    """``suricata._answers`` column-wise: per event the answer data, their types and the TTLs,
    from the ``answers`` list, else from a v1 record's own fields (queries: not used)."""
    n = len(answers)
    answers = answers.combine_chunks() if isinstance(answers, pa.ChunkedArray) else answers
    flat = pc.list_flatten(answers)
    parent = pc.list_parent_indices(answers).to_numpy(zero_copy_only=False)
    listed = pc.is_valid(answers).to_numpy(zero_copy_only=False)
    # a v1 record is a list of itself
    own = np.flatnonzero(~listed)
    rows = np.concatenate([parent, own])
    order = np.argsort(rows, kind="stable")
    rows = rows[order]

    def values(name, own_values):
        col = pa.concat_arrays([pc.struct_field(flat, name), own_values.take(pa.array(own))])
        return col.take(pa.array(order))

    data, kinds, ttls = values("rdata", _chunk(rdata)), values("rrtype", _chunk(rrtype)), values("ttl", _chunk(ttl))
    has = pc.is_valid(data).to_numpy(zero_copy_only=False)
    timed = pc.is_valid(ttls).to_numpy(zero_copy_only=False)
    kinds = pc.if_else(pc.fill_null(pc.equal(kinds, ""), True), "?", kinds)

    def lists(col, keep):
        offsets = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=n))]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), col.filter(pa.array(keep)))

    return lists(data, has), lists(kinds, has), lists(pc.cast(ttls, pa.float64()), timed)


def _chunk(col):
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
