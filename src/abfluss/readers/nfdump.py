"""nfdump flow files (``nfcapd.*``, written by nfcapd/nfpcapd/sfcapd), read through Debian's ``nfdump``.

The file format is nfdump's own (compressed blocks, versioned records), so the reader does not parse it:
it runs ``nfdump -r FILE -o json`` with ``TZ=UTC`` and reads the records from the pipe as they come, a
batch of :data:`CHUNK` at a time, so a file of any size is streamed, never loaded whole. Recognised by its
magic number (``0xA50C``, layout version 1 or 2), never by name.

One ``flows`` row per record. NetFlow records are one direction of a connection each, so the
originator is decided per record: a TCP record with SYN and without ACK is the opening side; one
with SYN and ACK is the answer; otherwise (no SYN seen, UDP) a record from a service port (below
1024) to a higher port is the answer. An answer's source is ``resp_h`` and its ``in_bytes``/
``in_packets`` are ``resp_ip_bytes``/``resp_pkts`` — so a server's replies are not taken for the
server opening connections to its clients' ports (a "scan"). Otherwise source = orig and
``in_bytes``/``in_packets`` = ``orig_ip_bytes``/``orig_pkts`` (IP-level); ``out_bytes``/``out_packets``
(bidirectional NSEL/IPFIX biflows) are the other side's, else null. ``first``/``last`` are start and end (milliseconds). ``uid`` is
``<file name>:<record number>``. What ``nfdump`` reports on stderr (a corrupt block) is one skipped entry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from abfluss.errors import InputError
from abfluss.readers.base import ReadReport, flush_table

FORMAT = "nfdump"
CHUNK = 100_000
#: Bytes of nfdump's JSON output read in one go.
BLOCK = 8 << 20
MAGIC = b"\x0c\xa5"  # 0xA50C little-endian
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6", 47: "gre", 50: "esp"}
_COLUMNS = ("ts", "ts_end", "duration", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "orig_ip_bytes",
            "resp_ip_bytes", "orig_pkts", "resp_pkts", "history", "open", "uid")


def sniff(head: bytes, path: Path | None = None) -> bool:
    """nfdump's file header: magic 0xA50C, then layout version 1 or 2."""
    return len(head) >= 4 and head[:2] == MAGIC and int.from_bytes(head[2:4], "little") in (1, 2)


class _Bad(ValueError):
    pass


def _time(value) -> datetime:
    if not isinstance(value, str):
        raise _Bad(f"bad time {value!r}")
    try:
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    except ValueError:
        raise _Bad(f"bad time {value[:40]!r}") from None


def _count(value) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise _Bad(f"bad count {value!r}")
    return value


def _port(value) -> int | None:
    return value if isinstance(value, int) and 0 <= value <= 0xFFFF else None


def _row(rec: dict, uid: str, out: dict) -> None:
    ts, end = _time(rec.get("first")), _time(rec.get("last"))
    if end < ts:
        end = ts
    orig = rec.get("src4_addr") or rec.get("src6_addr")
    resp = rec.get("dst4_addr") or rec.get("dst6_addr")
    if not isinstance(orig, str) or not isinstance(resp, str):
        raise _Bad("record without source and destination address")
    proto = rec.get("proto")
    flags = rec.get("tcp_flags") if isinstance(rec.get("tcp_flags"), str) else None
    sport, dport = _port(rec.get("src_port")), _port(rec.get("dst_port"))
    sent = (_count(rec.get("in_bytes")), _count(rec.get("in_packets")))
    back = (_count(rec.get("out_bytes")), _count(rec.get("out_packets")))
    if _is_answer(proto, flags, sport, dport):
        orig, resp, sport, dport, sent, back = resp, orig, dport, sport, back, sent
    row = {
        "ts": ts, "ts_end": end, "duration": (end - ts).total_seconds(),
        "proto": PROTO_NAMES.get(proto, str(proto)) if isinstance(proto, int) else None,
        "orig_h": orig, "orig_p": sport, "resp_h": resp, "resp_p": dport,
        "orig_ip_bytes": sent[0], "resp_ip_bytes": back[0], "orig_pkts": sent[1], "resp_pkts": back[1],
        "history": flags, "open": False, "uid": uid,
    }
    for k, v in row.items():
        out[k].append(v)


def _is_answer(proto, flags: str | None, sport: int | None, dport: int | None) -> bool:
    """Whether a one-direction record is the answering side of its connection (see the module doc)."""
    if proto == 6 and flags and "S" in flags:
        return "A" in flags
    if proto in (6, 17) and sport is not None and dport is not None:
        return sport < 1024 <= dport
    return False


def read(path: Path, report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
    """Yield ``flows`` tables from an nfdump file, streamed from ``nfdump -o json``."""
    report.format = FORMAT
    exe = shutil.which("nfdump")
    if exe is None:
        raise InputError(f"{path}: reading nfdump files needs the nfdump program "
                         "(Debian package 'nfdump': apt-get install nfdump)")
    path = Path(path)
    env = dict(os.environ, TZ="UTC")
    errors = tempfile.TemporaryFile()  # a file, not a pipe: a chatty nfdump cannot block on it
    proc = subprocess.Popen([exe, "-r", str(path), "-o", "json"], stdout=subprocess.PIPE,
                            stderr=errors, env=env, stdin=subprocess.DEVNULL)
    out: dict[str, list] = {c: [] for c in _COLUMNS}
    n = 0
    try:
        for part in _parts(proc.stdout):
            bulk = _bulk(part, n, path.name)
            if bulk is not None:  # every record of the part plain: read in one go
                table, count = bulk
                n += count
                if out["ts"]:  # rows read one by one before it come first
                    yield "flows", flush_table("flows", out, report)
                for start in range(0, table.num_rows, CHUNK):
                    part_table = table.slice(start, CHUNK)
                    report.add("flows", part_table.num_rows)
                    yield "flows", part_table
                continue
            for text in _records(iter(part.splitlines(keepends=True))):
                n += 1
                try:
                    rec = json.loads(text)
                    if not isinstance(rec, dict):
                        raise _Bad("not a JSON object")
                    if rec.get("type", "FLOW") != "FLOW":
                        continue  # nfdump's statistics/exporter records
                    _row(rec, f"{path.name}:{n}", out)
                except (ValueError, RecursionError, _Bad) as e:
                    report.skip(f"record {n}", str(e) if isinstance(e, _Bad) else "nfdump printed invalid JSON")
                    continue
                if len(out["ts"]) >= CHUNK:
                    yield "flows", flush_table("flows", out, report)
        code = proc.wait()
        errors.seek(0)
        err = errors.read(1 << 16).decode("utf-8", "replace").strip()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        errors.close()
    if out["ts"]:
        yield "flows", flush_table("flows", out, report)
    if code != 0 or err:
        lines = [l for l in err.splitlines() if l.strip()]
        reason = f"nfdump: {lines[-1][:200]}" if lines else f"nfdump exited with status {code}"
        if report.total == 0:
            raise InputError(f"{path}: record {n + 1}: {reason}")
        report.skip(f"record {n + 1}", reason)


def _records(stream) -> Iterator[str]:
    """The text of each top-level JSON object nfdump prints (one key per line, ``{``/``}`` alone)."""
    buf: list[bytes] = []
    for line in stream:
        s = line.strip().lstrip(b"[")
        if s == b"{":
            buf = [s]
        elif buf:
            if s[:1] == b"}":  # "}", "}," or the last one's "}]"
                buf.append(b"}")
                yield b"".join(buf).decode("utf-8", "replace")
                buf = []
            else:
                buf.append(s)


def _parts(stream) -> Iterator[bytes]:
    """nfdump's output in parts of about :data:`BLOCK` bytes, each cut where a record starts."""
    rest = b""
    while True:
        chunk = stream.read(BLOCK)
        data = rest + chunk if rest else chunk
        if not chunk:
            if data:
                yield data
            return
        cut = data.rfind(b"\n{")
        if cut < 0:
            rest = data
            continue
        yield data[:cut + 1]
        rest = data[cut + 1:]


_I64, _STR = pa.int64(), pa.string()
#: The fields the reader uses, with the JSON type nfdump prints them as.
_SCHEMA = pa.schema([(k, _STR) for k in ("type", "first", "last", "src4_addr", "dst4_addr", "src6_addr",
                                         "dst6_addr", "tcp_flags")]
                    + [(k, _I64) for k in ("proto", "src_port", "dst_port", "in_bytes", "in_packets", "out_bytes",
                                           "out_packets")])
_TIME = r"^\d{4}-\d{2}-\d{2}T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?$"
_NULL = re.compile(rb":\s*null\b")


def _bulk(part: bytes, before: int, name: str) -> tuple[pa.Table, int] | None:
    """The ``flows`` rows of a part of nfdump's output and its number of records, all at once;
    None when a record is not plain (then each is read on its own, as ``_row`` says why)."""
    import pyarrow.compute as pc
    import pyarrow.json as pjson

    from ..schema import TS, conform

    body = part[1:] if part.startswith(b"[") else part
    body = body.rstrip()
    body = body[:-1].rstrip() if body.endswith(b"]") else body
    body = body[:-1] if body.endswith(b",") else body
    records = body.count(b"\n{\n") + body.startswith(b"{\n")
    # one opening bracket per record: no nesting, no bracket inside a value
    if body.count(b"{") + body.count(b"[") != records or (b"null" in body and _NULL.search(body)):
        return None
    if not records:
        return conform("flows", {}), 0
    try:
        t = pjson.read_json(pa.BufferReader(body.replace(b"\n},\n{", b"\n}\n{")),
                            read_options=pjson.ReadOptions(block_size=4 << 20),
                            parse_options=pjson.ParseOptions(explicit_schema=_SCHEMA, newlines_in_values=True,
                                                             unexpected_field_behavior="ignore"))
        t.validate(full=True)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if t.num_rows != records:
        return None
    number = pa.array(np.arange(before + 1, before + 1 + records))
    flow = pc.fill_null(pc.equal(t.column("type"), "FLOW"), True)  # others: statistics, exporters
    if not pc.all(flow).as_py():
        t, number = t.filter(flow), number.filter(flow)
    col = t.column
    for k in ("first", "last"):
        if col(k).null_count or not pc.all(pc.match_substring_regex(col(k), _TIME)).as_py():
            return None
    for k in ("in_bytes", "in_packets", "out_bytes", "out_packets"):
        if pc.any(pc.less(col(k), 0)).as_py():
            return None

    def address(v4, v6):  # rec.get(v4) or rec.get(v6)
        return pc.if_else(pc.fill_null(pc.not_equal(col(v4), ""), False), col(v4), col(v6))

    orig, resp = address("src4_addr", "src6_addr"), address("dst4_addr", "dst6_addr")
    if orig.null_count or resp.null_count:
        return None
    try:
        ts, end = pc.cast(col("first"), pa.timestamp("us")), pc.cast(col("last"), pa.timestamp("us"))
    except pa.ArrowInvalid:
        return None
    ts, end = ts.cast(_I64), end.cast(_I64)
    end = pc.max_element_wise(ts, end)  # a record ending before it starts ends when it starts
    proto, flags = col("proto"), col("tcp_flags")
    names = pc.unique(proto).to_pylist()
    proto_name = pa.array([None if p is None else PROTO_NAMES.get(p, str(p)) for p in names], _STR) \
        .take(pc.index_in(proto, pa.array(names, _I64)))

    def port(k):
        return pc.if_else(pc.and_(pc.greater_equal(col(k), 0), pc.less_equal(col(k), 0xFFFF)), col(k),
                          pa.scalar(None, _I64))

    sport, dport = port("src_port"), port("dst_port")
    # _is_answer: the SYN/ACK side of a TCP record, else a service port answering a higher one
    syn = pc.fill_null(pc.and_(pc.equal(proto, 6), pc.match_substring(flags, "S")), False)
    by_ports = pc.fill_null(pc.and_(pc.is_in(proto, pa.array([6, 17], _I64)),
                                    pc.and_(pc.less(sport, 1024), pc.greater_equal(dport, 1024))), False)
    answer = pc.if_else(syn, pc.fill_null(pc.match_substring(flags, "A"), False), by_ports)

    def pick(a, b):
        return pc.if_else(answer, b, a)

    cols = {"ts": ts.cast(TS), "ts_end": end.cast(TS),
            "duration": pc.divide(pc.cast(pc.subtract(end, ts), pa.float64()), 1e6),
            "proto": proto_name, "orig_h": pick(orig, resp), "orig_p": pick(sport, dport),
            "resp_h": pick(resp, orig), "resp_p": pick(dport, sport),
            "orig_ip_bytes": pick(col("in_bytes"), col("out_bytes")),
            "resp_ip_bytes": pick(col("out_bytes"), col("in_bytes")),
            "orig_pkts": pick(col("in_packets"), col("out_packets")),
            "resp_pkts": pick(col("out_packets"), col("in_packets")),
            "history": flags, "open": pa.repeat(pa.scalar(False), t.num_rows),
            "uid": pc.binary_join_element_wise(f"{name}:", pc.cast(number, _STR), "")}
    return conform("flows", cols), records
