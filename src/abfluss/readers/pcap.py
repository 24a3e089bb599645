"""pcap / pcapng files (also gzip-compressed): flows metered by NFStream, DNS decoded per query.

NFStream (nDPI inside) turns packets into bidirectional flows with per-direction payload
bytes, application, TLS SNI, JA4 and HTTP host / user agent. It gives one DNS name per flow,
so a second pass with dpkt decodes every DNS message on port 53 into the ``dns`` table; the
same pass finds where a truncated capture stops and when the capture ends.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import communityid
import nfstream
import pyarrow as pa

from ..errors import InputError
from ..schema import TS, conform
from . import _dns_packets
from .base import GZIP_MAGIC, ReadReport

FORMAT = "pcap"
PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

#: NFStream's idle timeout (s): a flow silent this long is complete. Zeek uses 300 s for TCP.
IDLE_TIMEOUT = 120
#: Long flows are exported in pieces of at most this length (s), so a long transfer shows per hour.
ACTIVE_TIMEOUT = 1800
#: Rows per yielded batch.
BATCH_ROWS = 100_000

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp", 47: "gre", 50: "esp"}
# nDPI names whose requested_server_name is a DNS/NetBIOS query, not the peer's own name.
_NAME_IS_QUERY = ("DNS", "MDNS", "LLMNR", "NetBIOS")
_CID = communityid.CommunityID()


def sniff(head: bytes, path: Path | None = None) -> bool:
    return head[:4] in PCAP_MAGICS or head[:4] == PCAPNG_MAGIC


def read(path: Path, report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
    report.format = FORMAT
    with _plain_copy(path) as plain:
        scan = _dns_packets.scan(plain, report)  # dns rows, capture end, truncation
        if scan.packets == 0:
            raise InputError(f"{path}: no packet could be read")
        if scan.dns is not None and scan.dns.num_rows:
            yield "dns", scan.dns
        yield from _flows(plain, report, scan.last_ts)


class _plain_copy:
    """The path of an uncompressed version of the capture (a private temporary copy for .gz)."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp: str | None = None

    def __enter__(self) -> Path:
        with open(self.path, "rb") as f:
            if f.read(2) != GZIP_MAGIC:
                return self.path
        fd, self.tmp = tempfile.mkstemp(suffix=".pcap", prefix="abfluss-")
        with os.fdopen(fd, "wb") as out, gzip.open(self.path, "rb") as src:
            try:
                shutil.copyfileobj(src, out, 1 << 20)
            except (EOFError, OSError):
                pass  # truncated gzip: keep what decompressed; the packet scan reports the cut
        return Path(self.tmp)

    def __exit__(self, *exc) -> None:
        if self.tmp:
            os.unlink(self.tmp)


def _streamer(source: str) -> nfstream.NFStreamer:
    return nfstream.NFStreamer(
        source=source,
        idle_timeout=IDLE_TIMEOUT,
        active_timeout=ACTIVE_TIMEOUT,
        accounting_mode=3,  # payload bytes, as Zeek's orig_bytes/resp_bytes
        statistical_analysis=True,  # FIN/RST counts tell a closed TCP connection from an open one
        n_dissections=20,
        n_meters=1,
    )


def _flows(path: Path, report: ReadReport, last_ts_us: int | None) -> Iterator[tuple[str, pa.Table]]:
    cols = _Columns()
    try:
        for f in _streamer(str(path)):
            cols.add(f, last_ts_us)
            if cols.n >= BATCH_ROWS:
                yield from cols.flush(report)
    except ValueError as e:  # NFStream's error for an unreadable capture
        if cols.n == 0 and report.total == 0:
            raise InputError(f"{path}: {e}") from None
        report.skip("end", f"NFStream stopped: {e}")
    yield from cols.flush(report)


class _Columns:
    """Column lists filled flow by flow, turned into Arrow tables per batch."""

    FLOW = ("ts", "ts_end", "duration", "proto", "orig_h", "orig_p", "resp_h", "resp_p",
            "orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts", "service", "server_name",
            "user_agent", "conn_state", "open", "community_id", "uid")
    TLS = ("ts", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "server_name", "ja4", "ja3")
    HTTP = ("ts", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "host", "user_agent")

    def __init__(self):
        self._reset()

    def _reset(self):
        self.flow = {c: [] for c in self.FLOW}
        self.tls = {c: [] for c in self.TLS}
        self.http = {c: [] for c in self.HTTP}
        self.n = 0

    def add(self, f, last_ts_us: int | None) -> None:
        ts, end = f.bidirectional_first_seen_ms * 1000, f.bidirectional_last_seen_ms * 1000
        uid = f"N{f.bidirectional_first_seen_ms:x}{f.id:04x}"  # unique across captures in practice
        app = f.application_name or ""
        master = app.split(".")[0]
        name = f.requested_server_name or None
        if master in _NAME_IS_QUERY:
            name = None
        proto = PROTO_NAMES.get(f.protocol, str(f.protocol))
        closed = f.bidirectional_fin_packets > 0 or f.bidirectional_rst_packets > 0
        # A flow still active at the end of the capture is an interim record, not a finished one.
        is_open = (last_ts_us is not None and last_ts_us - end < IDLE_TIMEOUT * 1_000_000
                   and f.protocol == 6 and not closed)
        row = self.flow
        row["ts"].append(ts)
        row["ts_end"].append(end)
        row["duration"].append(f.bidirectional_duration_ms / 1000)
        row["proto"].append(proto)
        row["orig_h"].append(f.src_ip)
        row["orig_p"].append(f.src_port)
        row["resp_h"].append(f.dst_ip)
        row["resp_p"].append(f.dst_port)
        row["orig_bytes"].append(f.src2dst_bytes)
        row["resp_bytes"].append(f.dst2src_bytes)
        row["orig_pkts"].append(f.src2dst_packets)
        row["resp_pkts"].append(f.dst2src_packets)
        row["service"].append(app.lower() or None)
        row["server_name"].append(name.lower() if name else None)
        row["user_agent"].append(f.user_agent or None)
        row["conn_state"].append(_conn_state(f, closed))
        row["open"].append(is_open)
        row["community_id"].append(_community_id(f))
        row["uid"].append(uid)
        if master in ("TLS", "QUIC") and (name or f.client_fingerprint):
            for k, v in zip(self.TLS, (ts, uid, f.src_ip, f.src_port, f.dst_ip, f.dst_port,
                                       name, f.client_fingerprint or None, None)):
                self.tls[k].append(v)
        if master == "HTTP" and (name or f.user_agent):
            for k, v in zip(self.HTTP, (ts, uid, f.src_ip, f.src_port, f.dst_ip, f.dst_port,
                                        name, f.user_agent or None)):
                self.http[k].append(v)
        self.n += 1

    def flush(self, report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
        if self.n == 0:
            return
        for table, cols in (("flows", self.flow), ("tls", self.tls), ("http", self.http)):
            if cols["ts"]:
                data = dict(cols)
                for c in ("ts", "ts_end"):
                    if c in data:
                        data[c] = pa.array(data[c], pa.int64()).cast(TS)
                t = conform(table, data)
                report.add(table, t.num_rows)
                yield table, t
        self._reset()


def _conn_state(f, closed: bool) -> str | None:
    """A coarse Zeek conn_state from packet counts and flags (TCP only)."""
    if f.protocol != 6:
        return None
    if f.dst2src_packets == 0:
        return "S0"
    if f.bidirectional_rst_packets > 0:
        return "REJ" if f.dst2src_syn_packets == 0 else "RST"
    return "SF" if closed else "S1"


def _community_id(f) -> str | None:
    try:
        if f.protocol in (6, 17, 132):
            tpl = communityid.FlowTuple.make_tcp(f.src_ip, f.dst_ip, f.src_port, f.dst_port) \
                if f.protocol == 6 else (
                communityid.FlowTuple.make_udp(f.src_ip, f.dst_ip, f.src_port, f.dst_port)
                if f.protocol == 17 else
                communityid.FlowTuple.make_sctp(f.src_ip, f.dst_ip, f.src_port, f.dst_port))
        elif f.protocol in (1, 58):
            return None  # the ICMP hash needs type and code, which NFStream does not export
        else:
            tpl = communityid.FlowTuple(f.protocol, f.src_ip, f.dst_ip)
        return _CID.calc(tpl)
    except Exception:  # noqa: BLE001 - a tuple communityid cannot hash (odd protocol) stays null
        return None
