"""pcap / pcapng files (also gzip-compressed): flows metered by NFStream, DNS decoded per query.

NFStream (nDPI inside) turns packets into bidirectional flows with per-direction payload
bytes, application, TLS SNI, JA4 and HTTP host / user agent. ``service`` is what nDPI saw in
the payload: empty when it identified nothing, also when it only guessed from the port or the
address (a cleartext protocol on port 443 is not ``tls``). It gives one DNS name per flow,
so a second pass with dpkt decodes every DNS message on port 53 into the ``dns`` table; the
same pass finds where a truncated capture stops and when the capture ends. A third pass, payload
inspection's stream reassembly (``abfluss.dlp.inspect``), writes the protocol records Zeek's logs
give: ``http`` (one row per request: method, Host, URI, User-Agent, status, MIME type by magic
bytes), ``files`` (executables), ``logins`` (SMTP AUTH, FTP) and ``software`` (SSH banners); it
runs also when payload inspection is off, then reading nothing but those.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import re
from zlib import crc32
from collections.abc import Iterator
from pathlib import Path

import nfstream
import pyarrow as pa

from ..errors import InputError
from ..schema import TS, conform
from . import _dns_packets
from ._community_id import community_id
from ._inbox import EOF, Inbox
from ._plain_copy import GZIP_MAX_RATIO, GZIP_MIN_LIMIT, TMP_RESERVE, _plain_copy  # noqa: F401
from ._split import capture_parts, cores
from .base import MAX_MESSAGES, ReadReport

FORMAT = "pcap"
PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

#: NFStream's idle timeout (s): a flow silent this long is complete. Zeek uses 300 s for TCP.
IDLE_TIMEOUT = 120
#: Long flows are exported in pieces of at most this length (s), so a long transfer shows per hour.
ACTIVE_TIMEOUT = 1800
#: Rows per yielded batch.
BATCH_ROWS = 100_000
#: Allocations between two young-generation collections in the DNS and inspection workers.
GC_THRESHOLD = 50_000
#: Added to the DNS and inspection workers' nice value. With NFStream's meter (nice 0) they are
#: three busy processes on two cores: at equal priority the scheduler spreads them, and the
#: meter, the longest of the three and what an ingest waits for, ran a fifth slower than alone.
#: At this weight the two workers together weigh less than the meter, so it keeps a core and
#: they share the other, which they need only about two thirds of (when other programs load
#: the machine too, they get less of it than those).
WORKER_NICE = 6
#: Capture bytes per parallel job at least (see ``parallel_jobs``).
JOB_BYTES = 16 << 20
#: Latest packet time taken as real (ms; 9999-12-31): a later one is a corrupt record.
MAX_MS = 253402300799_000
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp", 47: "gre", 50: "esp"}
#: Link types whose frames abfluss decodes (Ethernet, BSD loopback, Linux cooked v1/v2, raw IP):
#: a capture of another kind is reported as not readable rather than stored with 0 records.
LINK_TYPES = {0: "BSD loopback", 1: "Ethernet", 12: "raw IP", 14: "raw IP", 101: "raw IP", 108: "OpenBSD loopback",
              113: "Linux cooked", 228: "raw IPv4", 229: "raw IPv6", 276: "Linux cooked v2"}
# nDPI names whose requested_server_name is a DNS/NetBIOS query, not the peer's own name.
_NAME_IS_QUERY = ("DNS", "MDNS", "LLMNR", "NetBIOS")


def sniff(head: bytes, path: Path | None = None) -> bool:
    return head[:4] in PCAP_MAGICS or head[:4] == PCAPNG_MAGIC


def read(path: Path, report: ReadReport, inspect_key: bytes | None = None,
         inspect_settings=None, jobs: int | None = None,
         job_bytes: int | None = None) -> Iterator[tuple[str, pa.Table]]:
    """Flows, DNS, TLS, HTTP, login, file and software records; with ``inspect_key`` (the
    workspace's DLP key) also the ``dlp`` and ``inspected`` tables of payload inspection
    (``abfluss.dlp.inspect``).

    Up to ``jobs`` processes of each kind share the work (``parallel_jobs``): NFStream meters
    the flows whose symmetric hash falls to each (its own fan-out, the other packets only
    advance its clock), and the DNS and inspection workers each read the host pairs of their
    part (``_split``). The merged tables equal one process's, row for row."""
    report.format = FORMAT
    with _plain_copy(path, report) as plain:
        n = parallel_jobs(os.path.getsize(plain), jobs, JOB_BYTES if job_bytes is None else job_bytes)
        # The DNS scan and payload inspection run in processes of their own beside NFStream's
        # meter processes, so on several cores they cost little wall time and never compete for
        # this process's GIL. They are forked before NFStream starts its own threads and processes.
        ctx = multiprocessing.get_context("fork")
        workers = []
        dns = [_fork(ctx, workers, _scan_worker, plain, str(path), k, n) for k in range(n)]
        inspection = [_fork(ctx, workers, _inspect_worker, plain, inspect_key, inspect_settings, k, n)
                      for k in range(n)]
        inbox = Inbox(dns, inspection)
        content = report.content
        # NFStream reads the file itself, not through ``content``: its hash is computed beside the
        # meter, not after it
        aside = content is not None and plain == path and content.path == Path(path)

        def started() -> None:  # at the first flow: NFStream's processes are forked by then
            inbox.start()
            if aside:
                content.hash_aside()

        try:
            yield from _flows(plain, report, lambda: _scan_results(inbox.dns(), report), shown=path, jobs=n,
                              started=started)
            yield from _inspection_result(inbox.inspection(), report)
        finally:
            inbox.stop(workers)
            for receiver, worker in workers:
                receiver.close()
                worker.join(timeout=5)
                if worker.is_alive():
                    worker.kill()


def parallel_jobs(size: int, jobs: int | None = None, job_bytes: int = JOB_BYTES) -> int:
    """Parts (processes per kind) for a capture of ``size`` bytes: ``jobs`` (default: one per
    two cores, ``_split.capture_parts``), but no more than one per ``job_bytes`` of capture:
    starting a process costs more than it saves on a small capture (0: no such limit)."""
    n = max(1, jobs or capture_parts(cores()))
    return max(1, min(n, size // job_bytes)) if job_bytes else n


def _fork(ctx, workers: list, target, *args):
    """Start ``target(*args, sender)`` in a forked process; return the receiving end."""
    receiver, sender = ctx.Pipe(duplex=False)
    worker = ctx.Process(target=_yielding, args=(target, *args, sender), daemon=True)
    worker.start()
    sender.close()
    workers.append((receiver, worker))
    return receiver


def _yielding(target, *args) -> None:
    """Run a worker at a lower priority (``WORKER_NICE``), see ``_quiet_gc``."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    _quiet_gc(target, *args)


def _quiet_gc(target, *args) -> None:
    """Run a worker with the garbage collector off the parent's objects (frozen: never scanned,
    never copied on write) and collecting young objects less often: the packet passes make
    millions of short-lived objects, and collections took about a tenth of their time."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 100)
    target(*args)


def _inspect_worker(plain: Path, key: bytes | None, settings, part: int, parts: int, conn) -> None:
    """Payload inspection of one part (without ``key``: the protocol records only); sends
    (table name, Arrow IPC bytes) batches, then ("done",)."""
    try:
        from ..dlp.inspect import Settings, inspect_pcap

        result = inspect_pcap(plain, key, settings or Settings(), part, parts)
        tables = [("dlp", result.dlp), ("inspected", result.inspected)] if key is not None else []
        for name, table in [*tables, *result.records.items()]:
            for batch in table.to_batches(BATCH_ROWS):
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, table.schema) as w:
                    w.write_batch(batch)
                conn.send((name, sink.getvalue().to_pybytes()))
        conn.send(("done",))
    except BaseException as e:  # noqa: BLE001 - the type only: a message could quote payload
        conn.send(("error", type(e).__name__))
    finally:
        conn.close()


def _inspection_result(received: list[list], report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
    """The inspection workers' tables (``received``: their messages, ``Inbox.inspection``).
    ``dlp`` and ``inspected`` are derived rows, not records read from the input, so they are not
    added to the report's record counts; the protocol records are. A failure leaves the flows
    stored (and drops the inspection of every part: a partial inspection would read as complete)."""
    tables: dict[str, list[pa.Table]] = {}
    for messages in received:
        for msg in messages:
            if msg is EOF:
                msg = ("error", "stopped")
            if msg[0] == "done":
                break
            if msg[0] == "error":
                report.skip("payload inspection", f"failed ({msg[1]}); flows are stored without it and "
                            "without the HTTP, login, file and software records", count=0)
                return
            tables.setdefault(msg[0], []).append(pa.ipc.open_stream(msg[1]).read_all())
    for name, parts in tables.items():
        table = _concat(parts, sort=len(parts) > 1 and name not in ("dlp", "inspected"))
        if name not in ("dlp", "inspected"):
            report.add(name, table.num_rows)
        yield name, table


def _scan_worker(plain: Path, shown: str, part: int, parts: int, conn) -> None:
    try:
        sub = ReadReport(shown)
        scan = _dns_packets.scan(plain, sub, part, parts)
        ipc = []
        for table in (scan.dns, scan.arp):
            sink = pa.BufferOutputStream()
            if table is not None:
                with pa.ipc.new_stream(sink, table.schema) as w:
                    w.write_table(table)
            ipc.append(sink.getvalue().to_pybytes())
        conn.send((scan.packets, scan.last_ts, sub.skipped, sub.messages, *ipc))
    except Exception as e:  # noqa: BLE001 - reported by the parent as one line
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def _scan_results(received: list, report: ReadReport) -> _dns_packets.Scan | None:
    """The DNS workers' parts (``received``: their messages, ``Inbox.dns``) merged: rows in time
    order, messages in packet order."""
    parts, messages = [], []
    for msg in received:
        if msg is EOF:
            return None
        if msg[0] == "error":
            report.skip("scan", f"DNS decoding failed: {msg[1]}")
            return None
        parts.append(msg)
    packets, last_ts = parts[0][0], parts[0][1]
    dns, arp = [], []
    for _packets, _last, skipped, msgs, ipc, arp_ipc in parts:
        report.skipped += skipped
        messages.extend(msgs)
        if ipc:
            dns.append(pa.ipc.open_stream(ipc).read_all())
        if arp_ipc:
            arp.append(pa.ipc.open_stream(arp_ipc).read_all())
    if len(parts) > 1:
        messages.sort(key=_message_order)
    report.messages.extend(messages[: max(0, MAX_MESSAGES - len(report.messages))])
    dns_table = _concat(dns, sort=len(parts) > 1)
    if dns_table is not None:
        report.add("dns", dns_table.num_rows)
    arp_table = _concat(arp)
    if arp_table is not None:
        report.add("arp", arp_table.num_rows)
    return _dns_packets.Scan(packets, last_ts, dns_table, arp_table)


def _concat(tables: list[pa.Table], sort: bool = False) -> pa.Table | None:
    if not tables:
        return None
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    return table.sort_by("ts") if sort else table


def _message_order(message: str) -> tuple[int, int]:
    """Where a skip message points: its packet number, capture-wide problems first, the end last."""
    m = _POSITION.search(message)
    if m is None:
        return (1, 0) if "end of capture" in message else (0, 0)
    return (0, int(m.group(1)))


_POSITION = re.compile(r": packet (\d+)")


def _streamer(source: str, jobs: int = 1) -> nfstream.NFStreamer:
    streamer = nfstream.NFStreamer(
        source=source,
        idle_timeout=IDLE_TIMEOUT,
        active_timeout=ACTIVE_TIMEOUT,
        accounting_mode=3,  # payload bytes, as Zeek's orig_bytes/resp_bytes
        statistical_analysis=True,  # FIN/RST counts tell a closed TCP connection from an open one
        n_dissections=20,
        n_meters=1,
    )
    # NFStream meters a file in n_meters processes, each the flows whose 6-tuple hash falls to
    # it, every other packet only advancing its clock, so flows expire as in one meter. Its
    # setter caps n_meters at cores - 1 (a live capture keeps a core for the kernel), which on
    # two cores means one meter; for a file every core may meter.
    streamer._n_meters = jobs
    return streamer


def _flows(path: Path, report: ReadReport, scan_result, shown: Path, jobs: int = 1,
           started=None) -> Iterator[tuple[str, pa.Table]]:
    """The flows NFStream meters, then the DNS scan's tables; ``started()`` is called at the
    first flow (NFStream has started its meter processes then)."""
    cols, pending = _Columns(), []
    latest = 0  # the latest packet time metered so far (ms)
    error = None
    try:
        for f in _streamer(str(path), jobs):
            if started is not None:
                started()
                started = None
            if not (0 <= f.bidirectional_first_seen_ms <= f.bidirectional_last_seen_ms <= MAX_MS):
                # a crafted packet time (found by fuzzing: NFStream passes it on, Arrow overflows)
                report.skip(f"flow {_uid(f)}", f"packet time out of range ({f.bidirectional_first_seen_ms} ms)")
                continue
            latest = max(latest, f.bidirectional_last_seen_ms)
            # A flow is interim only if it may still be running at the capture's end; flows that
            # were silent for an idle timeout before a later packet are complete. The rest waits.
            if f.protocol == 6 and latest - f.bidirectional_last_seen_ms < IDLE_TIMEOUT * 1000 \
                    and not (f.bidirectional_fin_packets or f.bidirectional_rst_packets):
                pending.append(f)
            else:
                cols.add(f, False)
            if cols.n >= BATCH_ROWS:
                yield from cols.flush(report)
    except ValueError as e:  # NFStream's error for an unreadable capture
        error = str(e)
    scan = scan_result()
    end_ms = max(latest, (scan.last_ts or 0) // 1000 if scan else 0)
    for f in pending:
        cols.add(f, end_ms - f.bidirectional_last_seen_ms < IDLE_TIMEOUT * 1000)
    if scan is None or (scan.packets == 0 and cols.n == 0):
        raise InputError(f"{shown}: no packet could be read" + (f" ({error})" if error else ""))
    if error:
        report.skip("end", f"NFStream stopped: {error}")
    if scan.packets and cols.n == 0 and not report.records.get("flows"):  # say why nothing came out
        link = _link_type(path)
        why = (f"no IP flow in {scan.packets} packets of link type {link} ({LINK_TYPES[link]})"
               if link in LINK_TYPES else
               f"link type {link} is not one abfluss decodes ({', '.join(sorted(set(LINK_TYPES.values())))})"
               f": {scan.packets} packets not read")
        report.skip("packet 1", why, count=scan.packets)
    if scan.dns is not None and scan.dns.num_rows:
        yield "dns", scan.dns
    if scan.arp is not None and scan.arp.num_rows:
        yield "arp", scan.arp
    yield from cols.flush(report)


def _link_type(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            return _dns_packets._reader(f).datalink()
    except Exception:  # noqa: BLE001 - unreadable header: the scan has reported it
        return None


class _Columns:
    """Column lists filled flow by flow, turned into Arrow tables per batch."""

    FLOW = ("ts", "ts_end", "duration", "proto", "orig_h", "orig_p", "resp_h", "resp_p",
            "orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts", "service", "server_name",
            "user_agent", "conn_state", "open", "community_id", "uid", "orig_mac", "resp_mac")
    # nDPI's client fingerprint is JA4, its server fingerprint JA3S (MD5); it computes no JA3.
    # HTTP rows come from the inspection pass (one per request, with status and body type).
    TLS = ("ts", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "server_name", "ja4", "ja3s")

    def __init__(self):
        self._reset()

    def _reset(self):
        self.flow = {c: [] for c in self.FLOW}
        self.tls = {c: [] for c in self.TLS}
        self.n = 0

    def add(self, f, is_open: bool) -> None:
        ts, end = f.bidirectional_first_seen_ms * 1000, f.bidirectional_last_seen_ms * 1000
        uid = _uid(f)
        app = f.application_name or ""
        if f.application_is_guessed or app.split(".")[0] == "Unknown":
            app = ""  # nDPI saw no protocol; its guess from port or address is not what was seen
        master = app.split(".")[0]
        name = f.requested_server_name or None
        if master in _NAME_IS_QUERY:
            name = None
        proto = PROTO_NAMES.get(f.protocol, str(f.protocol))
        closed = f.bidirectional_fin_packets > 0 or f.bidirectional_rst_packets > 0
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
        row["service"].append(app.lower())
        row["server_name"].append(name.lower() if name else None)
        row["user_agent"].append(f.user_agent or None)
        row["conn_state"].append(_conn_state(f, closed))
        row["open"].append(is_open)
        row["community_id"].append(_community_id(f))
        row["uid"].append(uid)
        row["orig_mac"].append(_mac(f.src_mac))
        row["resp_mac"].append(_mac(f.dst_mac))
        if master in ("TLS", "QUIC") and (name or f.client_fingerprint or f.server_fingerprint):
            for k, v in zip(self.TLS, (ts, uid, f.src_ip, f.src_port, f.dst_ip, f.dst_port, name,
                                       f.client_fingerprint or None, f.server_fingerprint or None)):
                self.tls[k].append(v)
        self.n += 1

    def flush(self, report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
        if self.n == 0:
            return
        for table, cols in (("flows", self.flow), ("tls", self.tls)):
            if cols["ts"]:
                data = dict(cols)
                for c in ("ts", "ts_end"):
                    if c in data:
                        data[c] = pa.array(data[c], pa.int64()).cast(TS)
                t = conform(table, data)
                report.add(table, t.num_rows)
                yield table, t
        self._reset()


def _uid(f) -> str:
    """The flow's id: its start and a hash of its key, the same however many meters ran (NFStream
    numbers flows in the order its meters finish them); unique across captures in practice."""
    key = f"{f.protocol} {f.src_ip} {f.src_port} {f.dst_ip} {f.dst_port} {f.vlan_id} {f.tunnel_id}"
    return f"N{f.bidirectional_first_seen_ms:x}{crc32(key.encode()):08x}"


def _mac(value: str | None) -> str | None:
    """A frame's MAC address; None where the link type has none (NFStream gives all zeros)."""
    return None if not value or value == "00:00:00:00:00:00" else value.lower()


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
    return community_id(f.protocol, f.src_ip, f.dst_ip, f.src_port, f.dst_port)
