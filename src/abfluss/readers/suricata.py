"""Suricata eve.json (JSON lines, gzip allowed): flow, dns, http, tls and alert events.

``flow`` events become ``flows`` rows (src = orig, dest = resp, to-server counters = orig, IP-level bytes;
payload bytes are not in eve, so ``orig_bytes``/``resp_bytes`` stay null). ``conn_state`` maps Suricata's
flow state onto Zeek's vocabulary: closed -> SF; established -> S1 (TCP) or SF (other protocols, both
directions seen); new -> S0 without reply packets, REJ for a TCP reply with RST, OTH otherwise.

DNS. Suricata logs a DNS transaction as separate events: a query event (v1/v2 ``type: query``, v3
``type: request``) and an answer event (v2 ``type: answer`` with an ``answers`` list and/or ``grouped``
answers, v3 ``type: response``; v1 one ``answer`` event per resource record). The reader merges them into
one ``dns`` row per query, like Zeek's dns.log: the query event gives ts, client/server, query, qtype and
trans_id; the answer event(s) with the same flow_id and DNS id add rcode, answers and ttls (the first
pending query of the same name and type, else the first pending one of that id; further v1 answer
records append to the row already answered). An answer whose query was not logged becomes a row of its
own (query/qtype from the answer's question where it has one). Matching is done within a chunk of
:data:`CHUNK` events, so a query and answer on either side of a chunk boundary give two rows.

Other event types (fileinfo, anomaly, stats, ...) yield nothing and are not errors. Bad lines (invalid
JSON, missing fields, bad timestamps) are skipped and counted as ``line N``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from abfluss.errors import InputError
from abfluss.readers._eve_dns import EVENT as DNS_EVENT  # noqa: F401  (``_eve_fast`` builds its columns)
from abfluss.readers._eve_dns import Merger as _Dns
from abfluss.readers._zeek_source import Source
from abfluss.readers.base import ReadReport
from abfluss.schema import conform, reader_schema

if TYPE_CHECKING:
    from abfluss.readers import _eve_fast

FORMAT = "suricata-eve"
CHUNK = 200_000  # events per batch: every yielded table has at most this many rows
#: Bytes of decompressed text parsed at once (whole lines).
BLOCK = 8 << 20
TABLES = ("flows", "dns", "http", "tls", "alerts")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_US = timedelta(microseconds=1)
MAX_US = 253402214400 * 10**6  # 9999-12-31T00:00Z
PROTO_NUMBERS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmp6"}
PROTO_NAMES = {"ipv6-icmp": "icmp6", "icmpv6": "icmp6", "icmp6": "icmp6"}
DNS_PORTS = (53, 5353, 5355)
PORT_MAX, INT32_MAX = 0xFFFF, 2**31 - 1


class BadEvent(ValueError):
    """A line that is an event but cannot become a row: the message says why."""


def sniff(head: bytes, path: Path | None = None) -> bool:
    """The first non-empty line is a JSON object with ``event_type`` and ``timestamp``."""
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    line = head.split(b"\n", 1)[0]
    try:
        obj = json.loads(line)
    except RecursionError:
        return False
    except ValueError:  # a first line longer than the head (a big stats event) cannot be parsed
        return b"\n" not in head and line.startswith(b"{") and b'"event_type"' in line and b'"timestamp"' in line
    return isinstance(obj, dict) and "event_type" in obj and "timestamp" in obj


def _ts(value) -> int:
    if not isinstance(value, str):
        raise BadEvent(f"bad timestamp {value!r}")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise BadEvent(f"bad timestamp {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    us = (dt - EPOCH) // ONE_US
    if not 0 <= us <= MAX_US:  # before 1970 or in year 9999: not a sensor's clock
        raise BadEvent(f"bad timestamp {value!r}")
    return us


def _proto(value) -> str | None:
    if value is None:
        return None
    p = str(value).strip().lower()
    if p.isdigit():
        return PROTO_NUMBERS.get(str(int(p)), str(int(p)))
    return PROTO_NAMES.get(p, p)


def _int(value, hi: int = 2**63 - 1) -> int | None:
    """A non-negative integer up to ``hi`` (int, or digits in a string); anything else is null."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= hi:
        return value
    return None


def _str(value) -> str | None:
    return value if isinstance(value, str) else None


def _obj(event: dict, key: str) -> dict:
    value = event.get(key)
    if not isinstance(value, dict):
        raise BadEvent(f"{event.get('event_type')} event without a '{key}' object")
    return value


def _endpoints(e: dict, swap: bool = False) -> dict:
    src = (e.get("src_ip"), _int(e.get("src_port", e.get("icmp_type")), PORT_MAX))
    dst = (e.get("dest_ip"), _int(e.get("dest_port", e.get("icmp_code")), PORT_MAX))
    if swap:
        src, dst = dst, src
    return {"orig_h": _str(src[0]), "orig_p": src[1], "resp_h": _str(dst[0]), "resp_p": dst[1]}


def _uid(e: dict) -> str | None:
    return None if e.get("flow_id") is None else str(e["flow_id"])


def _conn_state(state, proto: str | None, f: dict, tcp: dict) -> str | None:
    back = _int(f.get("pkts_toclient")) or 0
    if state == "closed":
        return "SF"
    if state == "established":
        return "S1" if proto == "tcp" else "SF"
    if state == "new":
        if back == 0:
            return "S0"
        return "REJ" if proto == "tcp" and tcp.get("rst") else "OTH"
    return None


def _flow(e: dict, ts: int) -> dict:
    f = _obj(e, "flow")
    if "src_ip" not in e or "dest_ip" not in e:
        raise BadEvent("flow event without src_ip/dest_ip")
    start = _ts(f["start"]) if "start" in f else ts
    end = _ts(f["end"]) if "end" in f else None
    proto = _proto(e.get("proto"))
    app = _str(e.get("app_proto"))
    tcp = e.get("tcp") if isinstance(e.get("tcp"), dict) else {}
    return {
        "ts": start, "ts_end": end, "duration": None if end is None else (end - start) / 1e6,
        "proto": proto, **_endpoints(e),
        "orig_ip_bytes": _int(f.get("bytes_toserver")), "resp_ip_bytes": _int(f.get("bytes_toclient")),
        "orig_pkts": _int(f.get("pkts_toserver")), "resp_pkts": _int(f.get("pkts_toclient")),
        "service": _service(app),
        "conn_state": _conn_state(f.get("state"), proto, f, tcp),
        "open": False, "community_id": _str(e.get("community_id")), "uid": _uid(e),
        "orig_mac": _mac(e, "src"), "resp_mac": _mac(e, "dest"),
    }


def _mac(e: dict, side: str) -> str | None:
    """The side's MAC address where eve logs Ethernet (``ethernet: yes``): flows list every one seen
    (``src_macs``; the first is kept), packet events give one (``src_mac``)."""
    ether = e.get("ether")
    if not isinstance(ether, dict):
        return None
    macs = ether.get(f"{side}_macs")
    value = macs[0] if isinstance(macs, list) and macs else ether.get(f"{side}_mac")
    return value.lower() if isinstance(value, str) and value else None


def _service(app: str | None) -> str | None:
    # "failed": Suricata looked at the payload and identified nothing (empty, as nDPI's Unknown)
    return ("" if app == "failed" else app.lower()) if app else None


def _sha1(value: str | None) -> str | None:
    """A certificate fingerprint ``aa:bb:...`` as plain lower-case hex."""
    return value.replace(":", "").lower() if value else None


def _http(e: dict, ts: int) -> dict:
    h = _obj(e, "http")
    return {
        "ts": ts, "uid": _uid(e), **_endpoints(e), "method": _str(h.get("http_method")),
        "host": _str(h.get("hostname")), "uri": _str(h.get("url")),
        "user_agent": _str(h.get("http_user_agent")), "request_body_len": None,
        "response_body_len": _int(h.get("length")), "status_code": _int(h.get("status"), INT32_MAX),
    }


def _tls(e: dict, ts: int) -> dict:
    t = _obj(e, "tls")
    ja3 = t.get("ja3") if isinstance(t.get("ja3"), dict) else {}
    ja3s = t.get("ja3s") if isinstance(t.get("ja3s"), dict) else {}
    sha1 = _str(t.get("fingerprint"))  # "aa:bb:...": the leaf certificate's SHA-1
    return {
        "ts": ts, "uid": _uid(e), **_endpoints(e), "version": _str(t.get("version")),
        "server_name": _str(t.get("sni")), "ja3": _str(ja3.get("hash")),
        "ja4": _str(t.get("ja4")), "ja3s": _str(ja3s.get("hash")),
        "subject": _str(t.get("subject")), "issuer": _str(t.get("issuerdn")),
        "cert_sha1": _sha1(sha1),
        "not_before": _cert_time(t.get("notbefore")), "not_after": _cert_time(t.get("notafter")),
    }


def _cert_time(value) -> int | None:
    """A certificate validity bound (``2016-06-07T00:00:00``, UTC) in microseconds; null when bad:
    a broken date must not cost the handshake its row."""
    try:
        return _ts(value)
    except BadEvent:
        return None


def _alert(e: dict, ts: int) -> dict:
    a = _obj(e, "alert")
    return {
        "ts": ts, "uid": _uid(e), **_endpoints(e), "proto": _proto(e.get("proto")),
        "signature": _str(a.get("signature")), "signature_id": _int(a.get("signature_id")),
        "category": _str(a.get("category")), "severity": _int(a.get("severity"), INT32_MAX),
        "community_id": _str(e.get("community_id")),
    }


def _text(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def _answers(d: dict) -> tuple[list[str], list[str], list[float]]:
    """Answer data, their record types and TTLs of a v2/v3 answer (``answers`` list, else
    ``grouped``) or a v1 record."""
    if isinstance(d.get("answers"), list):
        recs = [a for a in d["answers"] if isinstance(a, dict)]
    elif "rdata" in d or "ttl" in d:
        recs = [d]  # v1: one resource record per event
    else:
        grouped = d.get("grouped") if isinstance(d.get("grouped"), dict) else {}
        flat = [(v, str(t)) for t, vs in grouped.items() if isinstance(vs, list) for v in vs]
        return [_text(v) for v, _t in flat], [t for _v, t in flat], []
    data = [_text(a["rdata"]) for a in recs if "rdata" in a]
    types = [_str(a.get("rrtype")) or "?" for a in recs if "rdata" in a]
    ttls = [float(a["ttl"]) for a in recs if isinstance(a.get("ttl"), (int, float))]
    return data, types, ttls


def _question(d: dict) -> tuple[str | None, str | None]:
    queries = d.get("queries")
    if isinstance(queries, list) and queries and isinstance(queries[0], dict):
        return _str(queries[0].get("rrname")), _str(queries[0].get("rrtype"))
    return _str(d.get("rrname")), _str(d.get("rrtype"))


def _dns_fields(e: dict) -> tuple:
    """What ``_Dns.add`` (``_eve_dns.Merger``) takes of a dns event: kind, matching key (flow id, DNS id), uid,
    endpoints, proto, transaction id, question name and type, rcode, answer data, types and TTLs
    (answers only), whether it is a v1 record, whether the server sent it (its source port is DNS's)."""
    d = _obj(e, "dns")
    kind = d.get("type")
    if kind not in ("query", "request", "answer", "response"):
        raise BadEvent(f"dns event of unknown type {kind!r}")
    query, qtype = _question(d)
    data, types, ttls = _answers(d) if kind in ("answer", "response") else (None, None, None)
    return (kind, (e.get("flow_id"), d.get("id")), _uid(e), _endpoints(e), _proto(e.get("proto")),
            _int(d.get("id"), PORT_MAX), query, qtype, _str(d.get("rcode")), data, types, ttls,
            "version" not in d and "answers" not in d and "queries" not in d,
            e.get("src_port") in DNS_PORTS and e.get("dest_port") not in DNS_PORTS)


HANDLERS = {"flow": ("flows", _flow), "http": ("http", _http), "tls": ("tls", _tls), "alert": ("alerts", _alert)}


def _table(name: str, rows: list[dict]) -> pa.Table:
    return conform(name, pa.Table.from_pylist(rows, schema=reader_schema(name)))


def read(path: Path, report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
    """Yield (table, rows) batches of at most :data:`CHUNK` rows per table."""
    from abfluss.readers import _eve_ahead, _eve_fast, _eve_json  # pyarrow.json: imported when an eve.json is read, not to sniff

    report.format = FORMAT
    path = Path(path)
    source = Source(path, _eve_ahead.HeldReport(report), BLOCK, _eve_json.newlines)
    r = _Reader(report)
    helpers = sys.modules[__name__]

    def parse(data: bytes, end: int, threads: bool) -> "_eve_fast.Block | None":
        return _eve_fast.parse(data, end, MAX_US, helpers, threads)

    try:
        for data, end, block in _eve_ahead.parsed(source, parse):
            yield from (r.fast(data, block) if block is not None else r.slow(data, end))
    except OSError as e:  # missing, unreadable, a directory
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if source.error:
        report.skip(f"line {r.line}", f"file truncated or corrupt, rest not read ({source.error})")
    if r.events == 0:
        raise InputError(f"{path}: no readable Suricata eve event in {r.line - 1} lines")
    yield from r.flush()


class _Reader:
    """The rows of the current chunk of :data:`CHUNK` events, from blocks read either way: in
    bulk (``_eve_fast``) or line by line. DNS events are merged per chunk either way."""

    def __init__(self, report: ReadReport):
        self.report = report
        self.parts: dict[str, list] = {name: [] for name in TABLES}  # Arrow tables and lists of row dicts
        self.dns = _Dns()
        self.events = self.chunk_events = 0
        self.line = 1  # the number of the next line

    def flush(self) -> Iterator[tuple[str, pa.Table]]:
        dns = self.dns.table()
        parts = {**self.parts, "dns": [dns] if dns is not None else []}
        for name in TABLES:
            tables = [p if isinstance(p, pa.Table) else _table(name, p) for p in parts[name] if len(p)]
            if tables:
                table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
                self.report.add(name, table.num_rows)
                yield name, table
        self.parts = {name: [] for name in TABLES}
        self.dns = _Dns()
        self.chunk_events = 0

    def _counted(self) -> Iterator[tuple[str, pa.Table]]:
        """One more event read; the chunk is full after :data:`CHUNK` of them."""
        self.events += 1
        self.chunk_events += 1
        if self.chunk_events >= CHUNK:
            yield from self.flush()

    def _row(self, table: str, row: dict) -> None:
        parts = self.parts[table]
        if not parts or isinstance(parts[-1], pa.Table):
            parts.append([])
        parts[-1].append(row)

    def slow(self, data: bytes, end: int) -> Iterator[tuple[str, pa.Table]]:
        """``data[:end]`` line by line, each bad line skipped with its number."""
        lines = data[:end].split(b"\n")
        last = lines.pop()  # after the final newline: empty, or the file's last line cut off
        lines = [x + b"\n" for x in lines] + ([last] if last else [])
        for n, line in enumerate(lines, self.line):
            if self._event(line, n):
                yield from self._counted()
        self.line += len(lines)

    def _event(self, line: bytes, n: int) -> bool:
        """Read one line into the chunk; whether it was an event (else it is skipped or blank)."""
        report = self.report
        if not line.strip():
            return False
        try:
            event = json.loads(line)
        except ValueError as e:
            cut = "" if line.endswith(b"\n") else " (line cut off)"
            report.skip(f"line {n}", f"invalid JSON{cut}: {e}")
            return False
        except RecursionError:
            report.skip(f"line {n}", "invalid JSON: nested too deep")
            return False
        if not isinstance(event, dict) or not isinstance(event.get("event_type"), str) \
                or "timestamp" not in event:
            report.skip(f"line {n}", "not an eve event (needs event_type and timestamp)")
            return False
        try:
            ts = _ts(event["timestamp"])
            kind = event["event_type"]
            if kind == "dns":
                self.dns.add(ts, _dns_fields(event))
            elif kind in HANDLERS:
                table, make = HANDLERS[kind]
                self._row(table, make(event, ts))
        except (BadEvent, KeyError, TypeError, AttributeError) as e:
            report.skip(f"line {n}", f"{event.get('event_type')} event: {e}")
            return False
        return True

    def fast(self, data: bytes, b: "_eve_fast.Block") -> Iterator[tuple[str, pa.Table]]:
        """A block parsed in bulk: its rows taken in runs between DNS events (merged here, in
        order), the chunk cut after exactly :data:`CHUNK` events as line by line."""
        if b.dns_match is not None:  # every event of the block counts: cut at chunk ends only
            cur = 0
            while cur < b.rows:
                stop = min(b.rows, cur + CHUNK - self.chunk_events)
                lo, hi = (int(x) for x in np.searchsorted(b.dns, [cur, stop]))
                self.dns.add_bulk(b.dns_events, lo, hi, b.dns_match[lo:hi])
                self.events += stop - cur
                self.chunk_events += stop - cur
                self._take(b, cur, stop)
                cur = stop
                if self.chunk_events >= CHUNK:
                    yield from self.flush()
            self.line += b.rows
            return
        cur = seg = di = 0
        while True:
            nxt = int(b.dns[di]) if di < len(b.dns) else b.rows
            left = CHUNK - self.chunk_events
            if nxt - cur >= left:  # the chunk fills inside this run of events without DNS
                cur += left
                self.events += left
                self.chunk_events = CHUNK
                self._take(b, seg, cur)
                seg = cur
                yield from self.flush()
                continue
            self.events += nxt - cur
            self.chunk_events += nxt - cur
            cur = nxt
            if cur >= b.rows:
                break
            ok = self._dns_line(data, b, cur, di)
            cur, di = cur + 1, di + 1
            if ok:
                self.events += 1
                self.chunk_events += 1
                if self.chunk_events >= CHUNK:
                    self._take(b, seg, cur)
                    seg = cur
                    yield from self.flush()
        self._take(b, seg, b.rows)
        self.line += b.rows

    def _dns_line(self, data: bytes, b: "_eve_fast.Block", i: int, k: int) -> bool:
        """The ``k``-th DNS event of the block, on its line ``i``."""
        try:
            self.dns.add(int(b.ts[i]), _dns_fields(json.loads(data[b.starts[i]:b.ends[i]])))
        except (BadEvent, KeyError, TypeError, AttributeError) as e:
            self.report.skip(f"line {self.line + i}", f"dns event: {e}")
            return False
        except ValueError as e:  # bytes that are not UTF-8 in a key no table keeps: as the line reader says
            self.report.skip(f"line {self.line + i}", f"invalid JSON: {e}")
            return False
        return True

    def _take(self, b: "_eve_fast.Block", start: int, stop: int) -> None:
        """The block's rows of lines ``start`` to ``stop`` (DNS aside) into the chunk."""
        for name, (cols, idx) in b.tables.items():
            lo, hi = np.searchsorted(idx, [start, stop])
            if hi > lo:
                self.parts[name].append(conform(name, {k: v.slice(lo, hi - lo) for k, v in cols.items()}))
