"""Helpers for detection tests: literal tables, real-capture analysis, golden findings.

Literal rows get the exact column types of the enriched tables, taken from an export of an
empty workspace, so a literal test exercises the same query a real analysis runs.
Set ``ABFLUSS_UPDATE_GOLDEN=1`` to rewrite the golden files (then review the diff).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import dpkt
import socket
import pyarrow as pa
import pyarrow.parquet as pq

import abfluss
from abfluss import analysis
from abfluss.config import DEFAULT_INTERNAL

from conftest import ROOT, data

GOLDEN = ROOT / "tests" / "golden"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # a Monday, 09:00 UTC
_INTERNAL = [ipaddress.ip_network(n) for n in DEFAULT_INTERNAL]


def _internal(a: str) -> bool:
    ip = ipaddress.ip_address(a)
    return any(ip in n for n in _INTERNAL if n.version == ip.version)


@lru_cache(maxsize=1)
def _schemas() -> dict[str, pa.Schema]:
    tmp = Path(tempfile.mkdtemp())
    try:
        ws = abfluss.open_workspace(tmp / "ws", write=True)
        out = tmp / "x"
        out.mkdir()
        paths = analysis.export_window(ws, T0, T0 + timedelta(hours=1), out)
        ws.close()
        return {k: pq.read_schema(p) for k, p in paths.items()}
    finally:
        shutil.rmtree(tmp)


def flow(ts: datetime | float = 0, **kw) -> dict:
    """A flow row of the enriched ``flows`` table. ``ts`` may be seconds after ``T0``.

    Direction, internal/external host and bytes out/in follow from the addresses the way
    ``abfluss.enrich`` computes them.
    """
    if not isinstance(ts, datetime):
        ts = T0 + timedelta(seconds=ts)
    r = dict(ts=ts, duration=1.0, proto="tcp", orig_h="10.0.0.5", orig_p=50000, resp_h="203.0.113.9",
             resp_p=443, orig_bytes=500, resp_bytes=5000, orig_pkts=5, resp_pkts=6, service="tls",
             open=False, sensor="test", input_id="literal", tenant="default")
    r.update(kw)
    r["ts_end"] = r.get("ts_end") or r["ts"] + timedelta(seconds=r["duration"] or 0)
    r.setdefault("uid", f"L{int(r['ts'].timestamp() * 1e6):x}{r['orig_p']}")
    for side in ("orig", "resp"):  # IP bytes: payload plus 40 header bytes a packet, unless given
        if f"{side}_ip_bytes" not in r:
            b, p = r[f"{side}_bytes"], r[f"{side}_pkts"]
            r[f"{side}_ip_bytes"] = None if b is None else b + 40 * (p or 0)
    oi, ri = _internal(r["orig_h"]), _internal(r["resp_h"])
    r.setdefault("orig_internal", oi)
    r.setdefault("resp_internal", ri)
    r.setdefault("direction", {(True, False): "outbound", (False, True): "inbound",
                               (True, True): "internal", (False, False): "external"}[(oi, ri)])
    if oi != ri:
        r.setdefault("internal_host", r["orig_h"] if oi else r["resp_h"])
        r.setdefault("external_host", r["resp_h"] if oi else r["orig_h"])
        r.setdefault("bytes_out", r["orig_bytes"] if oi else r["resp_bytes"])
        r.setdefault("bytes_in", r["resp_bytes"] if oi else r["orig_bytes"])
    r.setdefault("external_name", r.get("server_name"))
    r.setdefault("dest_class", "internal" if oi and ri else "unknown")
    return r


def dns(ts: datetime | float = 0, **kw) -> dict:
    """A DNS transaction row (client 10.0.0.5 asking 10.0.0.53)."""
    if not isinstance(ts, datetime):
        ts = T0 + timedelta(seconds=ts)
    r = dict(ts=ts, orig_h="10.0.0.5", orig_p=53000, resp_h="10.0.0.53", resp_p=53, proto="udp",
             qtype="A", rcode="NOERROR", answers=[], sensor="test", input_id="literal")
    r.update(kw)
    r.setdefault("client_internal", _internal(r["orig_h"]))
    r.setdefault("server_internal", _internal(r["resp_h"]))
    r.setdefault("query_bytes", 12 + len(r.get("query") or "") + 6)
    return r


def alert(ts: datetime | float = 0, **kw) -> dict:
    """An IDS alert row as the detections see it (10.0.0.5 to 203.0.113.9, Suricata severity 1)."""
    if not isinstance(ts, datetime):
        ts = T0 + timedelta(seconds=ts)
    r = dict(ts=ts, uid=None, orig_h="10.0.0.5", orig_p=50000, resp_h="203.0.113.9", resp_p=443, proto="tcp",
             signature="ET MALWARE Test C2 Beacon", signature_id=2000001, category="A Network Trojan was detected",
             severity=1, sensor="test", input_id="literal", tenant="default", allowlisted=False)
    r.update(kw)
    r.setdefault("orig_internal", r["orig_h"] is not None and _internal(r["orig_h"]))
    r.setdefault("resp_internal", r["resp_h"] is not None and _internal(r["resp_h"]))
    return r


@contextmanager
def telemetry(flows=(), history=(), dns=(), http=(), tls=(), dlp=(), inspected=(), alerts=(), arp=(), logins=(),
              files=(), software=(), tunnels=(), certs=(), macs=(), backend="duckdb", extra=None,
              start: datetime | None = None, end: datetime | None = None):
    """A Telemetry over literal rows, on the given engine."""
    sch = _schemas()
    tmp = Path(tempfile.mkdtemp())
    try:
        paths = {}
        for name, rows_ in (("flows", flows), ("history", history), ("dns", dns), ("http", http), ("tls", tls),
                            ("dlp", dlp), ("inspected", inspected), ("alerts", alerts), ("arp", arp),
                            ("logins", logins), ("files", files), ("software", software), ("tunnels", tunnels),
                            ("certs", certs), ("macs", macs)):
            s = pa.schema([f.with_nullable(True) for f in sch[name]])  # literal rows may leave any column out
            cols = {f.name: [r.get(f.name) for r in rows_] for f in s}
            pq.write_table(pa.table(cols, schema=s), tmp / f"{name}.parquet")
            paths[name] = tmp / f"{name}.parquet"
        all_ts = [r["ts"] for t in (flows, dns, arp, logins, files, software, tunnels, tls, macs) for r in t] or [T0]
        start = start or min(all_ts)
        end = end or max(all_ts) + timedelta(seconds=1)
        with analysis.telemetry_from_parquet(paths, start, end, backend, extra) as tel:
            yield tel
    finally:
        shutil.rmtree(tmp)


def run(detection: str, settings=None, **tables):
    """Findings of one detection over literal tables (default settings unless given)."""
    from abfluss import detections

    mod = detections.module(detection)
    settings = settings or mod.Settings()
    with telemetry(**tables) as tel:
        if hasattr(mod, "prepare"):
            tel.extra[detection] = mod.prepare(settings)
        return mod.detect(tel, settings)


# -- real captures ------------------------------------------------------------------------

_cache: dict = {}


def workspace_for(rels: tuple[str, ...], tmp_root: Path, config: str | None = None):
    """A workspace with the shared-data inputs ``rels`` ingested (one per capture set and config)."""
    key = (rels, config)
    if key not in _cache:
        root = tmp_root / f"ws{len(_cache)}"
        root.mkdir(parents=True)
        if config:
            (root / "abfluss.toml").write_text(config)
        ws = abfluss.open_workspace(root, write=True)
        try:
            for rel in rels:
                src = Path(rel) if Path(rel).is_absolute() else data(rel)
                res = abfluss.ingest_paths(ws, [src], sensor=Path(rel).name)
                assert all(r.status in ("stored", "duplicate", "ignored") for r in res), res
            abfluss.refresh(ws)
        finally:
            ws.close()
        _cache[key] = root
    return _cache[key]


def analyze_capture(rels: tuple[str, ...] | str, tmp_root: Path, config: str | None = None,
                    only: tuple[str, ...] = (), backend: str = "duckdb", store: bool = False):
    """Findings of the detections on real shared-data inputs."""
    if isinstance(rels, str):
        rels = (rels,)
    root = workspace_for(rels, tmp_root, config)
    ws = abfluss.open_workspace(root, write=True)
    try:
        return analysis.analyze(ws, only=only, backend=backend, store=store).findings
    finally:
        ws.close()


def canonical(findings) -> list[dict]:
    """Findings as stable JSON-able dicts, sorted: what golden files hold."""
    out = []
    for f in sorted(findings, key=lambda f: (f.detection, f.id)):
        d = f.to_dict()
        out.append(d)
    return json.loads(json.dumps(out, default=str, sort_keys=True))


def assert_same_on_spark(rels, tmp_root: Path, detection: str) -> None:
    """``detection`` finds something on ``rels`` and the same on both engines."""
    duck = analyze_capture(rels, tmp_root, only=(detection,))
    spark = analyze_capture(rels, tmp_root, only=(detection,), backend="pyspark")
    assert duck and canonical(spark) == canonical(duck)


def assert_golden(name: str, findings) -> None:
    """Compare findings with ``tests/golden/<name>.json`` (rewrite with ABFLUSS_UPDATE_GOLDEN=1)."""
    path = GOLDEN / f"{name}.json"
    got = canonical(findings)
    if os.environ.get("ABFLUSS_UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert path.exists(), f"no golden file {path}: run with ABFLUSS_UPDATE_GOLDEN=1 and review it"
    want = json.loads(path.read_text())
    assert got == want, f"findings differ from {path.name}; rerun with ABFLUSS_UPDATE_GOLDEN=1 to review"


def split_loopback(src: Path, dst: Path, server: str = "127.0.0.2") -> list[int]:
    """Copy a loopback capture, moving the server side of each TCP connection to ``server``.

    Both ends of these Zeek traces are 127.0.0.1, so no address configuration can tell the
    uploading client from the server. Only the server's address is rewritten (payload, sizes,
    ports and times are untouched, checksums recomputed); returns the server ports.
    """
    addr = socket.inet_aton(server)
    ports: set[int] = set()
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        reader = dpkt.pcap.Reader(fi)
        writer = dpkt.pcap.Writer(fo, snaplen=reader.snaplen, linktype=reader.datalink())
        for ts, buf in reader:
            eth = dpkt.ethernet.Ethernet(buf)
            ip, tcp = eth.data, eth.data.data
            if tcp.flags & dpkt.tcp.TH_SYN and not tcp.flags & dpkt.tcp.TH_ACK:
                ports.add(tcp.dport)
            if tcp.dport in ports:
                ip.dst = addr
            elif tcp.sport in ports:
                ip.src = addr
            ip.sum = tcp.sum = 0  # dpkt recomputes both
            writer.writepkt(bytes(eth), ts)
    return sorted(ports)


# -- rows of the attack-chain tables (logins, http with address classes, files, software, tunnels) --

def _classes(row: dict, *pairs: tuple[str, str]) -> dict:
    for addr, flag in pairs:
        row.setdefault(flag, row.get(addr) is not None and _internal(row[addr]))
    return row


def _at(ts) -> datetime:
    return ts if isinstance(ts, datetime) else T0 + timedelta(seconds=ts)


def login(ts=0, result="failure", app="smtp", **kw) -> dict:
    """A row of the logins table (10.0.0.5 to the mail server 198.51.100.25:25)."""
    row = dict(ts=_at(ts), uid=f"C{ts}", orig_h="10.0.0.5", orig_p=50000, resp_h="198.51.100.25", resp_p=25, app=app,
               user=None, result=result, attempts=1,
               reply="535 5.7.8 Authentication credentials invalid" if result == "failure" else "235 2.7.0 OK",
               sensor="test", input_id="literal", tenant="default", allowlisted=False)
    row.update(kw)
    return _classes(row, ("orig_h", "orig_internal"), ("resp_h", "resp_internal"))


BROWSER_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0 Safari/537.36")


def http_req(ts=0, ua=BROWSER_UA, **kw) -> dict:
    """A row of the http table (workstation 10.0.0.5 to the web server 203.0.113.80:80)."""
    row = dict(ts=_at(ts), uid=f"H{ts}", orig_h="10.0.0.5", orig_p=40000, resp_h="203.0.113.80", resp_p=80,
               method="GET", host="www.example.com", uri="/", user_agent=ua, status_code=200,
               resp_mime_types=["text/html"], request_body_len=0, response_body_len=1000, sensor="test",
               input_id="literal", tenant="default", allowlisted=False)
    row.update(kw)
    return _classes(row, ("orig_h", "orig_internal"), ("resp_h", "resp_internal"))


def file_row(ts=0, **kw) -> dict:
    """A row of the files table: a PE downloaded by 10.0.0.5 from 203.0.113.80 over HTTP."""
    row = dict(ts=_at(ts), uid="CF1", fuid="F1", source="http", tx_h="203.0.113.80", rx_h="10.0.0.5",
               mime_type="application/x-dosexec", filename=None, size=45000, sha1="ab" * 20, executable="pe",
               sensor="test", input_id="literal", tenant="default", allowlisted=False)
    row.update(kw)
    return _classes(row, ("tx_h", "tx_internal"), ("rx_h", "rx_internal"))


def software(ts=0, version="OpenSSH_9.6", host="10.0.0.5", kind="ssh-client", name="OpenSSH", **kw) -> dict:
    row = dict(ts=_at(ts), host=host, host_p=None, kind=kind, name=name, version=version, sensor="test",
               input_id="literal", tenant="default")
    row.update(kw)
    return _classes(row, ("host", "host_internal"))


def tunnel(ts=0, kind="gre", **kw) -> dict:
    row = dict(ts=_at(ts), uid="CT1", orig_h="10.0.0.5", orig_p=0, resp_h="198.51.100.7", resp_p=0, tunnel_type=kind,
               action="discover", packets=None, sensor="test", input_id="literal", tenant="default", allowlisted=False)
    row.update(kw)
    return _classes(row, ("orig_h", "orig_internal"), ("resp_h", "resp_internal"))


def mac(addr: str, mac: str = "02:00:00:00:00:05", ts=0, last=None, flows=3, arp_frames=0, **kw) -> dict:
    """A row of the macs table: ``mac`` carried ``addr`` from ``ts`` to ``last`` (seconds after T0)."""
    row = dict(mac=mac, addr=addr, ts=_at(ts), ts_end=_at(ts if last is None else last), flows=flows,
               arp_frames=arp_frames, local=ipaddress.ip_address(addr).is_multicast or addr in ("0.0.0.0", "255.255.255.255")
               or addr.startswith("169.254.") or addr.startswith("fe80:"), tenant="default")
    row.update(kw)
    return _classes(row, ("addr", "internal"))
