"""NetFlow v5, v9 and IPFIX from a pcap/pcapng (gzip allowed) capture of exporters' UDP export packets.

One ``flows`` row per flow record: source = orig, destination = resp, octets/packets = ``orig_ip_bytes``/
``orig_pkts``; ``resp_*`` stay null (records are unidirectional) except in RFC 5103 biflows (reverse
elements, PEN 29305). ``uid`` = ``"<exporter>:<domain>:<sequence>:<index in packet>"``.

The ``netflow`` package parses v5 packets, v9/IPFIX headers and IPFIX (options) template records; sets and
records are cut here, as its record decoders fail on real exporters (variable-length elements, e.g. Cisco
sampler options, raise for the whole packet; enterprise elements overwrite IANA ones; its v9 templates lose
unknown element ids such as 153). Templates are kept per exporter address + source id / observation domain,
across packets; a data set whose template is unknown is skipped and counted once (its record count needs
the template); one preceding its template in the same packet is decoded after the packet's templates.
Templates in one file, data in another: :func:`read_many` (one :class:`NetflowDecoder` for all files).

Times: v5/v9 switched times via the header's sysUptime and unix_secs; IPFIX absolute elements (150-157) as
they are, sysUpTime ones (22/21) via systemInitTimeMilliseconds (160) or, without it, as ending at export
time; no time at all: event time (323), else export time. Sampling is renormalised as pmacct's nfacctd
does: packets and bytes times the announced rate (v5 header; 34/50 in the record; options data 34/50,
305+306 or 309+310, by sampler id 48/302 or, without one, for the whole domain).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dpkt
import pyarrow as pa
from netflow.ipfix import IPFIXHeader, IPFIXMalformedRecord, IPFIXOptionsTemplateRecord, IPFIXTemplateRecord
from netflow.v5 import V5ExportPacket
from netflow.v9 import V9Header

from abfluss.errors import InputError
from abfluss.readers.base import ReadReport, ip_layer, open_maybe_gzip, pcapng_reader
from abfluss.schema import conform

FORMAT = "netflow"
CHUNK = 200_000
SNIFF_PACKETS = 32
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}
REVERSE_PEN = 29305  # RFC 5103 reverse information elements
SCOPE = "scope"  # pseudo-PEN marking NetFlow v9 scope fields (their types are not IPFIX elements)
NTP_EPOCH = 2208988800
MAX_US = 253402300799 * 10**6  # 9999-12-31: later (or negative) times are corrupt records
COLUMNS = ("ts", "ts_end", "duration", "proto", "orig_h", "orig_p", "resp_h", "resp_p",
           "orig_ip_bytes", "resp_ip_bytes", "orig_pkts", "resp_pkts", "open", "uid")


def _sets_ok(data: bytes, offset: int, end: int, allowed: tuple[int, ...]) -> bool:
    while end - offset >= 4:
        sid, length = struct.unpack_from("!HH", data, offset)
        if length < 4 or offset + length > end or (sid not in allowed and sid < 256):
            return False
        offset += length
    return offset == end or (end - offset < 4 and not any(data[offset:end]))


def netflow_version(data: bytes) -> int | None:
    """5, 9 or 10 when ``data`` (a UDP payload) is a complete, well-formed NetFlow/IPFIX packet."""
    if len(data) < 16:
        return None
    version = int.from_bytes(data[:2], "big")
    if version == 5:
        count = int.from_bytes(data[2:4], "big")
        return 5 if 1 <= count <= 30 and 24 + 48 * count <= len(data) < 24 + 48 * (count + 1) else None
    if version == 9:
        return 9 if len(data) >= 24 and _sets_ok(data, 20, len(data), (0, 1)) else None
    length = int.from_bytes(data[2:4], "big")
    return 10 if version == 10 and 20 <= length <= len(data) and _sets_ok(data, 16, length, (2, 3)) else None


def _udp_packets(path: Path, limit: int = 0,
                 report: ReadReport | None = None) -> Iterator[tuple[int, str | None, int | None, bytes, str | None]]:
    """(packet number, source address, source port, UDP payload, problem) per UDP packet among the first
    ``limit`` packets (0: all); a problem (IP fragment, truncated capture) comes with an empty payload."""
    with open_maybe_gzip(path, report) as f:
        try:
            try:
                cap = dpkt.pcap.Reader(f)
            except (ValueError, dpkt.dpkt.NeedData):
                f.seek(0)
                cap = pcapng_reader(f)
        except (ValueError, dpkt.dpkt.UnpackError, EOFError, OSError) as e:
            raise InputError(f"{path}: not a pcap or pcapng capture ({e})") from None
        linktype, n = cap.datalink(), 0
        try:
            for n, (_ts, buf) in enumerate(cap, 1):
                if limit and n > limit:
                    return
                try:
                    ip = ip_layer(linktype, buf)
                except (dpkt.dpkt.UnpackError, struct.error, IndexError):
                    continue
                if isinstance(ip, dpkt.ip.IP) and ip.p == dpkt.ip.IP_PROTO_UDP:
                    src = socket.inet_ntop(socket.AF_INET, ip.src)
                    if ip.mf or ip.offset:
                        yield n, src, None, b"", "IP fragment of a UDP datagram (not reassembled)"
                        continue
                elif isinstance(ip, dpkt.ip6.IP6):
                    src = socket.inet_ntop(socket.AF_INET6, ip.src)
                else:
                    continue
                if isinstance(ip.data, dpkt.udp.UDP):
                    yield n, src, ip.data.sport, bytes(ip.data.data), None
        except (dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, struct.error, ValueError, EOFError, OSError):
            yield n + 1, None, None, b"", "capture truncated or corrupt; rest of the file not read"


def sniff_pcap(path: Path) -> bool:
    """True when the first packets of the capture are UDP datagrams carrying NetFlow v5/v9/IPFIX
    (at least one, and most of the UDP datagrams among the first packets)."""
    flows = udp = 0
    try:
        for _n, _src, _port, payload, problem in _udp_packets(Path(path), SNIFF_PACKETS):
            if problem is None:
                udp += 1
                flows += netflow_version(payload) is not None
    except (InputError, OSError):
        return False
    return flows > 0 and 2 * flows >= udp


def sniff(head: bytes, path: Path) -> bool:
    """Reader contract: a pcap/pcapng whose first packets are NetFlow export datagrams."""
    magics = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
              b"\x0a\x0d\x0d\x0a")  # head is decompressed already (base.read_head)
    return head[:4] in magics and sniff_pcap(path)


def _int(rec: dict, *keys) -> int | None:
    for k in keys:
        v = rec.get(k)
        if v is not None and 0 < len(v) <= 8:
            return int.from_bytes(v, "big")
    return None


def _addr(rec: dict, *keys) -> str | None:
    found = [rec[k] for k in keys if k in rec and len(rec[k]) in (4, 16)]
    for v in found:  # prefer a non-zero address (v9 templates often carry both families)
        if any(v):
            return str(ipaddress.ip_address(v))
    return str(ipaddress.ip_address(found[0])) if found else None


def _ntp_us(raw: bytes) -> int:
    sec, frac = struct.unpack("!II", raw)
    if sec >= NTP_EPOCH:  # RFC 7011 epoch 1900; some exporters (ipfixprobe) send Unix seconds
        sec -= NTP_EPOCH
    return sec * 1_000_000 + (frac * 1_000_000 >> 32)


def _rate(rec: dict) -> float | None:
    size, population = _int(rec, 309), _int(rec, 310)
    if size and population:
        return population / size
    interval, space = _int(rec, 305), _int(rec, 306)
    if interval and space:
        return (interval + space) / interval
    return _int(rec, 50, 34) or None


def _records(body: bytes, fields: list) -> Iterator[dict]:
    """Cut the data records of one set: {element id or (pen, id): raw bytes}; trailing padding ignored."""
    minlen = sum(1 if ln == 0xFFFF else ln for _ie, ln, _pen in fields)
    off, end = 0, len(body)
    while minlen and end - off >= minlen:
        rec: dict = {}
        for ie, ln, pen in fields:
            if ln == 0xFFFF:  # IPFIX variable length
                ln = body[off]
                off += 1
                if ln == 255:
                    ln = int.from_bytes(body[off:off + 2], "big")
                    off += 2
            if off + ln > end:
                raise ValueError("record runs past the end of its set")
            rec.setdefault((pen, ie) if pen else ie, body[off:off + ln])
            off += ln
        yield rec


def _v9_templates(body: bytes, options: bool) -> Iterator[tuple[int, list]]:
    off = 0
    while len(body) - off >= (6 if options else 4):
        if options:
            tid, scope_len, opt_len = struct.unpack_from("!HHH", body, off)
            off += 6
            pairs = list(struct.iter_unpack("!HH", body[off:off + scope_len + opt_len]))
            nscope, off = scope_len // 4, off + scope_len + opt_len
            fields = [(t, ln, SCOPE if i < nscope else None) for i, (t, ln) in enumerate(pairs)]
        else:
            tid, count = struct.unpack_from("!HH", body, off)
            off += 4
            fields = [(t, ln, None) for t, ln in struct.iter_unpack("!HH", body[off:off + 4 * count])]
            off += 4 * count
        if tid < 256:
            return  # padding
        if off > len(body):
            raise ValueError(f"template {tid} runs past the end of its set")
        yield tid, fields


def _ipfix_templates(body: bytes, options: bool) -> Iterator[tuple[int, list | None]]:
    off = 0
    while len(body) - off >= 4 and int.from_bytes(body[off:off + 2], "big") >= 256:
        rec = (IPFIXOptionsTemplateRecord if options else IPFIXTemplateRecord)(body[off:])
        off += rec.get_length()
        fields = list(getattr(rec, "scope_fields", [])) + list(rec.fields)
        yield rec.template_id, [(f.id, f.length, getattr(f, "enterprise_number", None))
                                for f in fields] or None  # no fields: withdrawal


@dataclass
class _Domain:
    """State of one exporter address + source id / observation domain."""

    templates: dict[int, tuple[list, bool]] = field(default_factory=dict)  # id -> (fields, options?)
    samplers: dict[int, float] = field(default_factory=dict)  # sampler / selector id -> rate
    default_rate: float | None = None
    sys_init_ms: int | None = None


class NetflowDecoder:
    """Template and sampling state across packets and files: feed it the captures in order."""

    def __init__(self) -> None:
        self.domains: dict[tuple, _Domain] = {}
        self.datagrams = 0  # NetFlow datagrams seen

    def read_pcap(self, path: Path, report: ReadReport, prefix: str = "") -> Iterator[tuple[str, pa.Table]]:
        """Yield ("flows", table) batches of at most :data:`CHUNK` rows; skips go to ``report``."""
        rows: list[tuple] = []
        senders: set = set()  # (address, port) that sent well-formed NetFlow
        exporters: set = set()
        for n, exporter, port, payload, problem in _udp_packets(Path(path), report=report):
            pos, sender = f"{prefix}packet {n}", (exporter, port)
            if problem is not None:
                if exporter is None or exporter in exporters:  # else: not NetFlow traffic
                    report.skip(pos, problem)
                continue
            version = netflow_version(payload)
            if version is None and sender in senders and payload[:2] in (b"\0\5", b"\0\x09", b"\0\x0a"):
                version = payload[1]  # malformed datagram of a known exporter: decode what is intact
            if version is None:
                continue  # not NetFlow
            senders.add(sender)
            exporters.add(exporter)
            self.datagrams += 1
            try:
                self._packet(version, payload, exporter, rows, report, pos)
            except (ValueError, struct.error, IndexError, KeyError, IPFIXMalformedRecord) as e:
                report.skip(pos, f"malformed NetFlow v{version} packet: {e or type(e).__name__}")
            if len(rows) >= CHUNK:
                yield from _batches(rows)
                rows = []
        yield from _batches(rows)

    def _packet(self, version: int, data: bytes, exporter: str, rows: list, report: ReadReport, pos: str) -> None:
        if version == 5:
            pkt = V5ExportPacket(data)
            h = pkt.header
            ctx = (exporter, (h.engine_type << 8) | h.engine_id, h.sequence,
                   h.timestamp * 10**6 + h.timestamp_nano // 1000, h.uptime, None)
            interval = h.sampling_interval & 0x3FFF  # top two bits: sampling mode
            for i, fl in enumerate(pkt.flows):
                rec = {8: fl.IPV4_SRC_ADDR, 12: fl.IPV4_DST_ADDR, 7: fl.SRC_PORT, 11: fl.DST_PORT,
                       4: fl.PROTO, 1: fl.IN_OCTETS, 2: fl.IN_PACKETS, 22: fl.FIRST_SWITCHED,
                       21: fl.LAST_SWITCHED}
                rows.append(_row({k: v.to_bytes(4, "big") for k, v in rec.items()}, ctx, i, interval))
            return
        if version == 9:
            h = V9Header(data)
            domain_id, seq, export_us, uptime = h.source_id, h.sequence, h.timestamp * 10**6, h.uptime
            off, end, tset, oset = 20, len(data), 0, 1
        else:
            h = IPFIXHeader(data[:16])
            domain_id, seq, export_us, uptime = h.obervation_domain_id, h.sequence_number, h.export_uptime * 10**6, None
            off, end, tset, oset = 16, min(h.length, len(data)), 2, 3
        dom = self.domains.setdefault((exporter, version, domain_id), _Domain())
        ctx = (exporter, domain_id, seq, export_us, uptime, dom)
        sets = []
        while end - off >= 4:
            sid, length = struct.unpack_from("!HH", data, off)
            if length < 4 or off + length > end:
                report.skip(pos, f"set {sid} at byte {off} overruns the packet (truncated or corrupt)")
                break
            sets.append((sid, data[off + 4:off + length]))
            off += length
        base, deferred, new = len(rows), [], set()

        def data_set(sid: int, body: bytes) -> None:
            try:
                self._data(dom, sid, body, ctx, base, rows)
            except (ValueError, struct.error, IndexError) as e:  # rows before the bad record stay
                report.skip(pos, f"data set for template {sid}: {e}")

        for sid, body in sets:
            if sid in (tset, oset):
                for tid, fields in (_v9_templates if version == 9 else _ipfix_templates)(body, sid == oset):
                    if fields is None:  # IPFIX withdrawal
                        dom.templates.pop(tid, None)
                        continue
                    if tid not in dom.templates:
                        new.add(tid)
                    dom.templates[tid] = (fields, sid == oset)
            elif sid >= 256 and sid in dom.templates:
                data_set(sid, body)
            elif sid >= 256:
                deferred.append((sid, body))
        for sid, body in deferred:  # data sets that came before their template in this packet
            if sid in new:
                data_set(sid, body)
            else:
                report.skip(pos, f"data set for template {sid} not seen yet "
                                 f"(exporter {exporter}, domain {domain_id}); set skipped")

    @staticmethod
    def _data(dom: _Domain, tid: int, body: bytes, ctx: tuple, base: int, rows: list) -> None:
        """Decode one data set: options data update ``dom``, flow records append rows (their index in
        the packet is ``len(rows) - base``)."""
        fields, is_options = dom.templates[tid]
        for rec in _records(body, fields):
            rate, sampler = _rate(rec), _int(rec, 48, 302)
            if is_options:
                if rate and sampler is not None:
                    dom.samplers[sampler] = rate
                elif rate:
                    dom.default_rate = rate
                if (init := _int(rec, 160)) is not None:
                    dom.sys_init_ms = init
            elif _addr(rec, 8, 27) is not None or _addr(rec, 12, 28) is not None:  # else: no flow (NAT pool event)
                rate = rate or (dom.samplers.get(sampler) if sampler is not None else None) or dom.default_rate
                rows.append(_row(rec, ctx, len(rows) - base, rate))


def _batches(rows: list[tuple]) -> Iterator[tuple[str, pa.Table]]:
    if rows:
        table = conform("flows", {c: list(v) for c, v in zip(COLUMNS, zip(*rows))})
        for i in range(0, table.num_rows, CHUNK):
            yield "flows", table.slice(i, CHUNK)


def _row(rec: dict, ctx: tuple, index: int, rate: float | None) -> tuple:
    """One flows row (in :data:`COLUMNS` order) from a record's raw elements."""
    exporter, domain_id, seq, export_us, uptime, dom = ctx
    sys_init_ms = dom.sys_init_ms if dom else None

    def when(ms, sec, us, ns, rel, delta):
        if (v := _int(rec, ms)) is not None:
            return v * 1000
        if (v := _int(rec, sec)) is not None:
            return v * 1_000_000
        for k in (us, ns):
            if k in rec and len(rec[k]) == 8:
                return _ntp_us(rec[k])
        if (v := _int(rec, delta)) is not None:
            return export_us - v
        if (v := _int(rec, rel)) is not None:
            if uptime is not None:  # signed 32-bit difference copes with sysUptime wrap-around
                return export_us - (((uptime - v + 2**31) % 2**32) - 2**31) * 1000
            if sys_init_ms is not None:
                return (sys_init_ms + v) * 1000
        return None

    start, end = when(152, 150, 154, 156, 22, 158), when(153, 151, 155, 157, 21, 159)
    if start is None and end is None and (last := _int(rec, 21)) is not None:
        end = export_us  # IPFIX sysUpTime without systemInitTime: assume it ended at export
        first = _int(rec, 22)
        start = None if first is None else end - (last - first) * 1000
    ts = start if start is not None else end
    if ts is None:
        event = _int(rec, 323)  # observationTimeMilliseconds (NAT / firewall events)
        ts = event * 1000 if event is not None else export_us

    if not (0 <= ts <= MAX_US and (end is None or 0 <= end <= MAX_US)):
        raise ValueError(f"implausible time in record {index} of the packet")

    def scaled(*keys):
        v = _int(rec, *keys)
        v = None if v is None else (round(v * rate) if rate and rate > 1 else v)
        if v is not None and v >= 2**63:
            raise ValueError(f"implausible counter {v} in record {index} of the packet")
        return v

    def port(key):
        v = _int(rec, key)
        return v if v is None or v <= 0xFFFF else None  # not a port (bad template)

    proto, rev = _int(rec, 4), REVERSE_PEN
    return (ts, end, None if end is None else (end - ts) / 1e6,
            None if proto is None else PROTO_NAMES.get(proto, str(proto)),
            _addr(rec, 8, 27), port(7), _addr(rec, 12, 28), port(11),
            scaled(1, 85, 23, 231), scaled((rev, 1), (rev, 85), 232),
            scaled(2, 86, 24, 298), scaled((rev, 2), (rev, 86), 299),
            False, f"{exporter}:{domain_id}:{seq}:{index}")


def read_many(paths: Iterable[Path], report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
    """Read several captures of the same exporters as one stream, in the order given, so templates
    (and sampling options) from an earlier file decode data in a later one. Skip positions name the file."""
    report.format = FORMAT
    decoder = NetflowDecoder()
    paths = [Path(p) for p in paths]
    for p in paths:
        prefix = f"{p.name} " if len(paths) > 1 else ""
        for table, batch in decoder.read_pcap(p, report, prefix):
            report.add(table, batch.num_rows)
            yield table, batch
    if decoder.datagrams == 0:
        raise InputError(f"{', '.join(map(str, paths))}: no NetFlow v5/v9/IPFIX export packets found")


def read(path: Path, report: ReadReport) -> Iterator[tuple[str, pa.Table]]:
    """Reader contract: one capture with its own template state (see :func:`read_many`)."""
    yield from read_many([path], report)
