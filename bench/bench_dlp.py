"""Benchmark: payload inspection speed, and what it costs pcap ingestion.

On a capture dominated by cleartext HTTP (real HTTP captures replayed with shifted addresses, plus
synthetic uploads full of identifiers in the shapes exports have: CSV, gzipped Excel CSV, JSON,
FHIR XML, HL7 v2, SQL dumps, NDJSON, xlsx, zip, base64), prints:
- payload inspection alone on one core (CPU time): payload MB/s (all reassembled bytes), and the
  detectors' speed in MB/s of decoded text (the bytes they read, over the time spent in them),
  once reading every flow side and once reading only what internal hosts send (as ingest does:
  inbound sides are counted, not read);
- pcap ingestion with inspection off and on, and the slowdown.
Target: ingestion with inspection takes at most twice as long as without, in CPU seconds of
the process and its workers (wall time follows the machine's other load).
Usage: python bench/bench_dlp.py [--packets N] [--shapes all|kvnr-csv] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _gen import mixed_pcap  # noqa: E402

import abfluss  # noqa: E402
from abfluss.config import DEFAULT_INTERNAL  # noqa: E402
from abfluss.dlp.inspect import Settings, inspect_pcap  # noqa: E402
from abfluss.dlp.scanner import Scanner  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Real cleartext HTTP captures (pages, downloads, form and file uploads).
HTTP = ("zeek-traces/bro.org.pcap", "zeek-traces/wikipedia.pcap", "zeek-traces/206_example_b.pcap",
        "zeek-traces/m57-long-49583-80.pcap", "zeek-traces/http-post-large.pcap",
        "zeek-traces/putty-upload.pcap", "zeek-traces/multipart-form-data.pcap", "zeek-traces/pe.pcap")

#: Issue 12: ingest with inspection costs at most this many times ingest without (CPU seconds).
TARGET = 2.0
#: One synthetic CSV upload per this many replayed packets.
UPLOAD_EVERY = 3000


#: Upload shapes, in turn (tests/dlpgen.py): the structured decoders are on the measured path.
SHAPES = (("csv", "plain"), ("excel-de", "gzip"), ("json", "plain"), ("fhir-xml", "plain"), ("hl7v2", "plain"),
          ("sql-insert", "gzip"), ("ndjson", "plain"), ("xlsx", "plain"), ("semicolon", "zip"), ("csv", "base64"))


def uploads(out: Path, rounds: int) -> Path:
    """HTTP POSTs of lists of 400 insured persons (the traffic DLP is for) in the shapes exports
    have (CSV, Excel CSV gzipped, JSON, FHIR XML, HL7, SQL dump, NDJSON, xlsx, zipped CSV,
    base64), as a capture."""
    import dlpgen
    from test_dlp_streams import Capture, Conn

    rng = random.Random(7)
    cap = Capture()
    for r in range(rounds):
        layout, container = SHAPES[r % len(SHAPES)]
        recs = dlpgen.people(rng, 400)
        if layout == "kvnr-csv":  # the upload of this bench's earlier versions
            raw = ("kvnr;name;plz\n" + "".join(f"{p.kvnr};Name {rng.randrange(10**6)};{rng.randrange(10**5)}\n"
                                               for p in recs)).encode()
        else:
            raw = (dlpgen.FILE_LAYOUTS[layout](recs) if layout in dlpgen.FILE_LAYOUTS
                   else dlpgen.TEXT_LAYOUTS[layout](recs).encode("utf-8"))
        body = dlpgen.CONTAINERS[container](raw)
        c = Conn(cap, (f"10.1.{r % 250}.{r // 250 % 250}", 40000 + r % 20000), ("203.0.113.50", 80),
                 t0=1_700_000_000.0 + r)
        c.send(b"POST /up HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n%s"
               % (len(body), body))
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", from_client=False)
        c.close()
    return cap.write(out)


def merged(tmp: Path, packets: int) -> Path:
    """The real HTTP replay with synthetic uploads appended (one per 3 000 packets, 400 persons each)."""
    real = tmp / "http.pcap"
    mixed_pcap(DATA, real, packets, HTTP)
    up = uploads(tmp / "uploads.pcap", max(1, packets // UPLOAD_EVERY))
    out = tmp / "bench-http.pcap"
    with open(out, "wb") as f:
        f.write(real.read_bytes())
        f.write(up.read_bytes()[24:])  # same link type and snap length: records append
    return out


@contextmanager
def timed_scanner():
    """CPU seconds spent in Scanner.scan while the block runs (a one-element list)."""
    spent = [0.0]
    plain = Scanner.scan

    def scan(self, data):
        t = time.process_time()
        try:
            return plain(self, data)
        finally:
            spent[0] += time.process_time() - t

    Scanner.scan = scan
    try:
        yield spent
    finally:
        Scanner.scan = plain


def cpu() -> float:
    """CPU seconds of this process and its finished children (NFStream's meter, the DNS and
    inspection workers): what an ingest costs, whatever else runs on the machine."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def ingest(cap: Path, root: Path, inspect: bool) -> tuple[float, float, object]:
    ws = abfluss.open_workspace(root, write=True)
    t, c = time.perf_counter(), cpu()
    res = abfluss.ingest_file(ws, cap, inspect=inspect)
    took, used = time.perf_counter() - t, cpu() - c
    ws.close()
    return took, used, res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3, help="ingest runs (off, on) whose ratios' median is shown")
    ap.add_argument("--shapes", choices=("all", "kvnr-csv"), default="all",
                    help="uploads in all ten export shapes, or the earlier mix (kvnr;name;plz CSVs only)")
    args = ap.parse_args()
    global SHAPES
    if args.shapes == "kvnr-csv":
        SHAPES = (("kvnr-csv", "plain"),)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cap = merged(tmp, args.packets)
        mb = cap.stat().st_size / 1e6
        print(f"capture: {mb:.1f} MB, mostly cleartext HTTP ({args.packets:,} replayed packets + uploads)")
        for label, settings in (("every side read", Settings()),
                                ("outflow only, as ingest", Settings(internal_networks=DEFAULT_INTERNAL))):
            with timed_scanner() as scanning:
                t = time.process_time()
                result = inspect_pcap(cap, b"\x00" * 32, settings)
                alone = time.process_time() - t
            payload = sum(result.inspected["payload_bytes"].to_pylist()) / 1e6
            text = sum(result.inspected["scanned_bytes"].to_pylist()) / 1e6
            print(f"inspection alone ({label}): {alone:5.2f} CPU s, {payload / alone:6.1f} MB/s of payload per core "
                  f"({payload:.1f} MB); detectors {text / scanning[0]:5.1f} MB/s of decoded text ({text:.1f} MB "
                  f"in {scanning[0]:.2f} s); {result.dlp.num_rows:,} dlp rows")
        ratios = []
        for r in range(args.repeat):  # off and on interleaved, so both see the same load
            off, off_cpu, res_off = ingest(cap, tmp / f"ws-off-{r}", inspect=False)
            on, on_cpu, res_on = ingest(cap, tmp / f"ws-on-{r}", inspect=True)
            print(f"ingest, inspection off: {off:6.2f} s  {mb / off:6.1f} MB/s  {off_cpu:6.2f} CPU s  "
                  f"{res_off.records.get('flows', 0):,} flows")
            print(f"ingest, inspection on : {on:6.2f} s  {mb / on:6.1f} MB/s  {on_cpu:6.2f} CPU s  {res_on.derived}")
            ratios.append((on_cpu / off_cpu, on / off))
        cpu_ratio, wall_ratio = (statistics.median(x) for x in zip(*ratios))
        verdict = "met" if cpu_ratio <= TARGET else "not met"
        print(f"slowdown with inspection (median of {len(ratios)}): {cpu_ratio:.2f}x CPU time "
              f"(target <= {TARGET:.2f}x: {verdict}); {wall_ratio:.2f}x wall time (depends on the machine's other load)")

if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
