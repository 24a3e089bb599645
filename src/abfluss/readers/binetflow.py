"""Argus bidirectional flows as text ("binetflow": ``ra -c , -s ...``, the CTU-13/Stratosphere format).

A header line names the columns (comma- or tab-separated, as ``ra -c`` writes them):
``StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes[,SrcPkts][,Label]``.
Columns are found by name, so extra or reordered ones are fine. One ``flows`` row per IP record:
source = orig, destination = resp (Argus decides who started the transaction; the ``Dir`` arrow only says
in which directions packets were seen), ``SrcBytes``/``SrcPkts`` = ``orig_ip_bytes``/``orig_pkts`` and
the rest of ``TotBytes``/``TotPkts`` the responder's (without a ``SrcPkts`` column, a side that sent no
byte sent no packet). Bytes are IP-level, payload stays null. A TCP ``State`` of ``REQ`` (a request
without answer) is Zeek's ``S0``. Ports may be
hexadecimal (Argus writes ICMP type/code as ``0x0008``). ``StartTime`` carries no zone: it is read as UTC.

Records that are no IP flow (``arp``, ``llc``, Argus ``man`` status records, MAC addresses) and broken lines
are skipped and counted by line number; labels (``Label``) are ground truth of the data set, not telemetry.
"""

from __future__ import annotations

import csv
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa

from abfluss.errors import InputError
from abfluss.readers.base import MAX_LINE, ReadReport, flush_table, open_maybe_gzip

FORMAT = "argus-binetflow"
CHUNK = 100_000
#: Columns a file must name to be read as binetflow.
REQUIRED = ("StartTime", "Dur", "Proto", "SrcAddr", "DstAddr", "TotBytes", "SrcBytes")
PROTO_NAMES = {"ipv6-icmp": "icmp6", "icmpv6": "icmp6", "icmp6": "icmp6"}
#: Argus record kinds that are no IP flow (link layer, Argus' own management records).
NOT_IP = {"arp", "rarp", "llc", "man", "lldp", "stp", "ipx/spx"}
MAX_PORT = 0xFFFF


def _header(head: bytes) -> list[str] | None:
    line = head.lstrip(b"\xef\xbb\xbf \r\n").split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        return None
    sep = "\t" if "\t" in text else ","
    cols = [c.strip() for c in text.split(sep)]
    return cols if all(c in cols for c in REQUIRED) else None


def sniff(head: bytes, path: Path | None = None) -> bool:
    """The first line is a binetflow header naming at least the ``REQUIRED`` columns."""
    return _header(head) is not None


class _Bad(ValueError):
    pass


def _addr(value: str) -> str:
    v = value.strip()
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in v else socket.AF_INET, v)
    except (OSError, ValueError):  # ValueError: a NUL in the text (found by fuzzing)
        raise _Bad(f"not an IP address: {v[:40]!r}") from None
    return v


def _port(value: str) -> int | None:
    v = value.strip()
    if not v:
        return None
    try:
        p = int(v, 16) if v[:2].lower() == "0x" else int(v)
    except ValueError:
        raise _Bad(f"bad port {v[:20]!r}") from None
    if not 0 <= p <= MAX_PORT:
        raise _Bad(f"bad port {v[:20]!r}")
    return p


def _count(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        n = int(value)
    except ValueError:
        raise _Bad(f"bad count {value[:20]!r}") from None
    if n < 0:
        raise _Bad(f"negative count {value[:20]!r}")
    return n


def _time(value: str) -> datetime:
    try:
        t = datetime.fromisoformat(value.strip().replace("/", "-"))
    except ValueError:
        raise _Bad(f"bad StartTime {value[:40]!r}") from None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _row(rec: dict, out: dict) -> None:
    proto = (rec.get("Proto") or "").strip().lower()
    if proto in NOT_IP:
        raise _Bad(f"{proto} record: not an IP flow")
    ts = _time(rec["StartTime"])
    try:
        dur = float(rec["Dur"] or 0)
    except ValueError:
        raise _Bad(f"bad Dur {rec['Dur'][:20]!r}") from None
    if not 0 <= dur < 10 * 365 * 86400:
        raise _Bad(f"bad Dur {rec['Dur'][:20]!r}")
    orig_h, resp_h = _addr(rec["SrcAddr"]), _addr(rec["DstAddr"])
    tot_b, src_b = _count(rec["TotBytes"]), _count(rec["SrcBytes"])
    tot_p, src_p = _count(rec.get("TotPkts")), _count(rec.get("SrcPkts"))
    if tot_b is not None and src_b is not None and src_b > tot_b:
        raise _Bad("SrcBytes larger than TotBytes")
    resp_b = None if tot_b is None or src_b is None else tot_b - src_b
    resp_p = None if tot_p is None or src_p is None or src_p > tot_p else tot_p - src_p
    if resp_b == 0 and src_p is None:  # no SrcPkts column: a side without bytes sent no packet
        src_p, resp_p = tot_p, 0
    state = (rec.get("State") or "").strip().upper()
    row = {
        "ts": ts, "ts_end": ts + timedelta(seconds=dur), "duration": dur,
        "proto": PROTO_NAMES.get(proto, proto) or None,
        "orig_h": orig_h, "orig_p": _port(rec.get("Sport") or ""),
        "resp_h": resp_h, "resp_p": _port(rec.get("Dport") or ""),
        "orig_ip_bytes": src_b,
        "resp_ip_bytes": resp_b,
        "orig_pkts": src_p,
        "resp_pkts": resp_p,
        # Argus "REQ": the connection request got no answer, Zeek's S0; other states have no
        # exact counterpart and stay unknown
        "conn_state": "S0" if proto == "tcp" and state == "REQ" else None, "open": False,
    }
    for k, v in row.items():
        out[k].append(v)


_COLUMNS = ("ts", "ts_end", "duration", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "orig_ip_bytes",
            "resp_ip_bytes", "orig_pkts", "resp_pkts", "conn_state", "open")


def _lines(raw, report: ReadReport) -> Iterator[tuple[int, str]]:
    """Numbered text lines, each at most MAX_LINE bytes: an overlong line is skipped unread, so
    one forged line can neither exhaust memory nor end the file."""
    for n, b in enumerate(iter(lambda: raw.readline(MAX_LINE + 1), b""), start=1):
        if len(b) > MAX_LINE:
            while (more := raw.readline(1 << 20)) and not more.endswith(b"\n"):
                pass
            report.skip(f"line {n}", f"longer than {MAX_LINE} bytes: skipped")
            continue
        yield n, b.decode("utf-8", "replace").rstrip("\r\n")


def read(path: Path, report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
    """Yield ``flows`` tables from an Argus binetflow text file (plain or gzip)."""
    report.format = FORMAT
    out: dict[str, list] = {c: [] for c in _COLUMNS}
    with open_maybe_gzip(Path(path), report) as raw:
        lines = _lines(raw, report)
        try:
            n1, first = next(lines, (0, ""))
        except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError: a forged or broken gzip header
            raise InputError(f"{path}: line 1: unreadable: {e}") from None
        cols = _header(first.encode("utf-8", "replace")) if n1 == 1 else None
        if cols is None:
            raise InputError(f"{path}: line 1: not an Argus binetflow header")
        sep = "\t" if "\t" in first else ","
        line = 1
        try:
            for line, text in lines:
                try:  # one line at a time: a broken field (csv's size limit, a stray quote) costs its line only
                    fields = next(csv.reader([text], delimiter=sep), [])
                except csv.Error as e:
                    report.skip(f"line {line}", f"unreadable: {e}")
                    continue
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if len(fields) < len(cols) - 1:  # the trailing Label may be missing
                    report.skip(f"line {line}", f"{len(fields)} columns, the header names {len(cols)}")
                    continue
                try:
                    _row(dict(zip(cols, fields)), out)
                except _Bad as e:
                    report.skip(f"line {line}", str(e))
                    continue
                if len(out["ts"]) >= CHUNK:
                    yield "flows", flush_table("flows", out, report)
        except (OSError, EOFError) as e:
            report.skip(f"line {line + 1}", f"unreadable: {e}")
    if out["ts"]:
        yield "flows", flush_table("flows", out, report)
