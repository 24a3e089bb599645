"""Squid ``access.log``: the native format and the ``common``/``combined`` formats (plain or gzip).

A forward proxy's log names what the client really asked for, so each request becomes a flow from
the client to the real destination, never to the proxy:

* native: ``time elapsed client code/status bytes method URL ident hierarchy/peer type``;
* common: ``client ident user [dd/Mon/yyyy:hh:mm:ss +zone] "METHOD URL HTTP/x" status bytes code:hier``;
* combined: the same with ``"referer" "user-agent"`` before ``code:hier``.

Only logs whose requests carry absolute URLs (``http://host/…``) or CONNECT authorities
(``host:443``) are claimed: an origin web server's access log in the common format is not a proxy's.

One ``flows`` row per request: ``orig_h`` the client; ``resp_h`` the server address Squid went to
(native ``HIER_DIRECT/<address>``), else the URL's host (a name when no address is logged, e.g. in the
common formats, through a parent proxy or for a refused request); ``resp_p`` the URL's port (scheme
default otherwise); ``server_name`` the URL's host; ``resp_bytes`` the reply size Squid logs (headers
included). Squid's built-in formats do not log the request size, so ``orig_bytes`` stays null: the
upload through a proxy is counted from a sensor's flows, the destination from this log. Native times are
the end of the request (start = end - elapsed); the common formats have whole seconds. Requests other
than CONNECT also give an ``http`` row (origin-form URI, status, user agent) with the same ``uid``
(``<file name>:<line>``). Lines that are not requests (``error:transaction-end-before-headers``) and
broken lines are skipped and counted by line number.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa

from abfluss.readers.base import MAX_LINE, ReadReport, open_maybe_gzip
from abfluss.schema import conform

FORMAT = "squid"
CHUNK = 100_000
SNIFF_LINES = 20
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}
#: Hierarchy codes whose peer is the origin server itself (others name a parent or sibling proxy).
DIRECT = {"HIER_DIRECT", "DIRECT", "ORIGINAL_DST", "PINNED", "HIER_NONE"}

_NATIVE = re.compile(
    rb"^(\d{9,11}(?:\.\d+)?)\s+(-?\d+)\s+(\S+)\s+([A-Z_]+)/(\d{3})\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+"
    rb"([A-Z_]+)/(\S+)(?:\s+(\S+))?\s*$")
_COMMON = re.compile(
    rb'^(\S+) (\S+) (\S+) \[([^\]]+)\] "([^"]*)" (\d{1,3}) (\d+)(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?'
    rb"(?: ([A-Z_]+):([A-Z_]+))?\s*$")
_ABSOLUTE = re.compile(rb"^[A-Za-z][A-Za-z0-9+.-]*://")
_AUTHORITY = re.compile(rb"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")


def _target_of(line: bytes) -> bytes | None:
    """The request target of a log line in either format, None if the line is neither."""
    m = _NATIVE.match(line)
    if m:
        return m.group(8)
    m = _COMMON.match(line)
    if m:
        parts = m.group(5).split(b" ")
        return parts[1] if len(parts) == 3 else b"-"
    return None


def sniff(head: bytes, path: Path | None = None) -> bool:
    """Nearly all of the first lines (a broken one may be among them) are Squid log lines, and one at
    least requests an absolute URL or a CONNECT authority (what only a forward proxy is asked)."""
    lines = [l for l in head.split(b"\n")[:SNIFF_LINES] if l.strip()]
    if len(head) >= 65536 and len(lines) > 1:
        lines = lines[:-1]  # the head may end inside a line
    if not lines:
        return False
    targets = [_target_of(l.rstrip(b"\r")) for l in lines]
    good = [t for t in targets if t is not None]
    return len(good) >= 0.8 * len(targets) and any(
        _ABSOLUTE.match(t) or _AUTHORITY.match(t) for t in good)


class _Bad(ValueError):
    pass


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


def _split_target(method: str, target: str) -> tuple[str, int | None, str | None]:
    """(host, port, origin-form URI) of a request target; CONNECT targets have no URI."""
    if method == "CONNECT":
        host, sep, port = target.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise _Bad(f"bad CONNECT target {target[:80]!r}")
        return host.strip("[]").lower(), int(port), None
    try:
        u = urlsplit(target)
        port = u.port
    except ValueError:
        raise _Bad(f"bad URL {target[:80]!r}") from None
    if not u.scheme or not u.hostname:
        raise _Bad(f"not a proxy request: {target[:80]!r}")
    uri = (u.path or "/") + (f"?{u.query}" if u.query else "")
    return u.hostname.lower(), port or DEFAULT_PORTS.get(u.scheme.lower()), uri


def _parse(line: bytes) -> dict:
    m = _NATIVE.match(line)
    if m:
        end = datetime.fromtimestamp(float(m.group(1)), timezone.utc)
        elapsed = max(int(m.group(2)), 0) / 1000
        method, target = m.group(7).decode("latin-1"), m.group(8).decode("latin-1")
        hier, peer = m.group(10).decode(), m.group(11).decode("latin-1")
        return dict(end=end, elapsed=elapsed, client=m.group(3).decode("latin-1"), status=int(m.group(5)),
                    bytes=int(m.group(6)), method=method, target=target, agent=None,
                    server=_address(peer) if hier in DIRECT else None)
    m = _COMMON.match(line)
    if not m:
        raise _Bad("not a Squid access.log line")
    try:
        end = datetime.strptime(m.group(4).decode("ascii"), "%d/%b/%Y:%H:%M:%S %z").astimezone(timezone.utc)
    except (ValueError, UnicodeDecodeError):
        raise _Bad(f"bad time {m.group(4)[:40]!r}") from None
    parts = m.group(5).decode("latin-1").split(" ")
    if len(parts) != 3:
        raise _Bad(f"no request ({m.group(5)[:60].decode('latin-1')})")
    agent = m.group(9).decode("utf-8", "replace") if m.group(9) not in (None, b"-") else None
    return dict(end=end, elapsed=0.0, client=m.group(1).decode("latin-1"), status=int(m.group(6)),
                bytes=int(m.group(7)), method=parts[0], target=parts[1], agent=agent, server=None)


_FLOW_COLS = ("ts", "ts_end", "duration", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "resp_bytes",
              "service", "server_name", "user_agent", "open", "uid")
_HTTP_COLS = ("ts", "uid", "orig_h", "resp_h", "resp_p", "method", "host", "uri", "user_agent",
              "response_body_len", "status_code")


def _add(rec: dict, uid: str, flows: dict, http: dict) -> None:
    if rec["method"] == "-" or rec["target"] in ("-", "") or rec["target"].startswith("error:"):
        raise _Bad(f"no request ({rec['target'][:60]})")
    client = _address(rec["client"])
    if client is None:
        raise _Bad(f"client {rec['client'][:60]!r} is not an address")
    host, port, uri = _split_target(rec["method"], rec["target"])
    # Arrow's int64/int32 columns would raise on a forged number: such a line is a counted skip.
    if not 0 <= rec["bytes"] < 1 << 62:
        raise _Bad(f"byte count {str(rec['bytes'])[:30]} out of range")
    if port is not None and not 0 <= port <= 65535:
        raise _Bad(f"port {str(port)[:30]} out of range")
    if not 0 <= rec["status"] <= 999:
        raise _Bad(f"status {str(rec['status'])[:30]} out of range")
    ts = rec["end"] - timedelta(seconds=rec["elapsed"])
    named = _address(host) is None
    row = dict(ts=ts, ts_end=rec["end"], duration=rec["elapsed"], proto="tcp", orig_h=client, orig_p=None,
               resp_h=rec["server"] or _address(host) or host, resp_p=port, resp_bytes=rec["bytes"],
               service=None if rec["method"] == "CONNECT" else "http",
               server_name=host if named else None, user_agent=rec["agent"], open=False, uid=uid)
    for k in _FLOW_COLS:
        flows[k].append(row[k])
    if uri is not None:
        h = dict(ts=ts, uid=uid, orig_h=client, resp_h=row["resp_h"], resp_p=port, method=rec["method"],
                 host=host, uri=uri, user_agent=rec["agent"], response_body_len=rec["bytes"],
                 status_code=rec["status"] or None)
        for k in _HTTP_COLS:
            http[k].append(h[k])


def read(path: Path, report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
    """Yield ``flows`` and ``http`` tables from a Squid access.log."""
    report.format = FORMAT
    path = Path(path)
    flows: dict[str, list] = {c: [] for c in _FLOW_COLS}
    http: dict[str, list] = {c: [] for c in _HTTP_COLS}
    n = 0
    try:
        with open_maybe_gzip(path, report) as f:
            for n, line in enumerate(iter(lambda: f.readline(MAX_LINE + 1), b""), start=1):
                if len(line) > MAX_LINE:  # drop the rest of an overlong line unread
                    while (more := f.readline(1 << 20)) and not more.endswith(b"\n"):
                        pass
                    report.skip(f"line {n}", f"longer than {MAX_LINE} bytes: skipped")
                    continue
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                try:
                    _add(_parse(line), f"{path.name}:{n}", flows, http)
                except (_Bad, ValueError, OverflowError) as e:
                    report.skip(f"line {n}", str(e) if isinstance(e, _Bad) else f"bad value ({e})")
                    continue
                if len(flows["ts"]) >= CHUNK:
                    yield from _tables(flows, http, report)
    except (OSError, EOFError) as e:
        report.skip(f"line {n + 1}", f"unreadable: {e}")
    yield from _tables(flows, http, report)


def _tables(flows: dict, http: dict, report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
    for name, cols in (("flows", flows), ("http", http)):
        if cols["ts"]:
            t = conform(name, cols)
            report.add(name, t.num_rows)
            for v in cols.values():
                v.clear()
            yield name, t
