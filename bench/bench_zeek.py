"""Benchmark: read a generated Zeek conn.log (TSV) through ``abfluss.readers.zeek``.

    python bench/bench_zeek.py [--rows N] [--keep DIR]

Generates a realistic conn.log of N rows (default 10 million) into a temporary directory, then
reads it in a fresh process (so generation does not count) and prints rows/s, MB/s and the
reading process's peak RSS. Target: >= 1 million rows/s and <= 2 GiB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

CHUNK = 1_000_000
FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes resp_bytes "
          "conn_state local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes resp_pkts "
          "resp_ip_bytes tunnel_parents").split()
TYPES = ("time string addr port addr port enum string interval count count string bool bool count "
         "string count count count count set[string]").split()
HEADER = "\n".join([
    "#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tconn",
    "#open\t2024-05-01-00-00-00", "#fields\t" + "\t".join(FIELDS), "#types\t" + "\t".join(TYPES)]) + "\n"
_ALNUM = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)


def _pick(rng, values, n, p=None) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(rng.choice(len(values), n, p=p)))


def _fixed6(us: np.ndarray) -> pa.Array:
    """Microseconds as Zeek writes seconds: ``1714521600.123456``."""
    sec = pa.array(us // 1_000_000).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(us % 1_000_000).cast(pa.string()), 6, "0")
    return pc.binary_join_element_wise(sec, frac, ".")


def _unset(arr: pa.Array, mask: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(mask), "-", arr.cast(pa.string()))


def _chunk(rng, n: int, t0: int, internal, external) -> pa.Table:
    ts = t0 + np.cumsum(rng.integers(0, 200, n))
    uid = rng.choice(_ALNUM, (n, 17)).view("S17").ravel()
    udp = rng.random(n) < 0.35
    proto = np.where(udp, "udp", np.where(rng.random(n) < 0.02, "icmp", "tcp")).astype(object)
    no_reply = rng.random(n) < 0.12
    dur = (rng.exponential(2.0, n) * 1e6).astype(np.int64)
    ob = rng.lognormal(6, 2.5, n).astype(np.int64)
    rb = rng.lognormal(7, 2.5, n).astype(np.int64)
    op = rng.integers(1, 400, n)
    rp = np.where(no_reply, 0, rng.integers(1, 600, n))
    cols = {
        "ts": _fixed6(ts),
        "uid": pc.binary_join_element_wise("C", pa.array(uid).cast(pa.string()), ""),
        "id.orig_h": internal.take(pa.array(rng.integers(0, len(internal), n))),
        "id.orig_p": pa.array(rng.integers(1024, 65536, n)),
        "id.resp_h": external.take(pa.array(rng.zipf(1.3, n) % len(external))),
        "id.resp_p": pa.array(rng.choice([443, 80, 53, 22, 123, 8080, 993, 3389], n)),
        "proto": pa.array(proto, pa.string()),
        "service": _pick(rng, ["-", "ssl", "http", "dns", "ssh", "ntp"], n, [.3, .35, .1, .2, .03, .02]),
        "duration": _unset(_fixed6(dur), no_reply),
        "orig_bytes": _unset(pa.array(ob), no_reply),
        "resp_bytes": _unset(pa.array(rb), no_reply),
        "conn_state": _pick(rng, ["SF", "S0", "REJ", "RSTO", "OTH", "SH"], n, [.7, .12, .08, .05, .03, .02]),
        "local_orig": _pick(rng, ["T", "F"], n, [.9, .1]),
        "local_resp": _pick(rng, ["T", "F"], n, [.2, .8]),
        "missed_bytes": pa.array(np.where(rng.random(n) < 0.01, rng.integers(1, 5000, n), 0)),
        "history": _pick(rng, ["ShADadFf", "S", "Sr", "Dd", "ShADadfF", "ShAdDaFf"], n),
        "orig_pkts": pa.array(op),
        "orig_ip_bytes": pa.array(ob + op * 40),
        "resp_pkts": pa.array(rp),
        "resp_ip_bytes": pa.array(np.where(no_reply, 0, rb + rp * 40)),
        "tunnel_parents": pa.array(np.full(n, "(empty)")),
    }
    return pa.table({k: v.cast(pa.string()) for k, v in cols.items()})


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    internal = pa.array([f"10.{i // 250 % 250}.{i % 250}.{rng.integers(1, 254)}" for i in range(3000)])
    external = pa.array([f"{rng.integers(1, 224)}.{rng.integers(0, 256)}.{rng.integers(0, 256)}."
                         f"{rng.integers(1, 255)}" for _ in range(40_000)]
                        + [f"2001:db8:{i:x}::{i % 97:x}" for i in range(2000)])
    opts = pcsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    t0 = 1_714_521_600_000_000
    with open(path, "wb") as f:
        f.write(HEADER.encode())
        done = 0
        while done < rows:
            n = min(CHUNK, rows - done)
            chunk = _chunk(rng, n, t0, internal, external)
            pcsv.write_csv(chunk, f, opts)
            t0 = int(chunk.column("ts")[-1].as_py().replace(".", "")) + 1
            done += n
        f.write(b"#close\t2024-05-01-23-59-59\n")


def read_only(path: Path) -> dict:
    """Run in the measuring process: read the file, count rows."""
    from abfluss.readers import zeek
    from abfluss.readers.base import ReadReport

    report = ReadReport(str(path))
    t, cpu = time.perf_counter(), _cpu()
    rows = batches = 0
    for _, table in zeek.read(path, report):
        rows += table.num_rows
        batches += 1
    secs, cpu = time.perf_counter() - t, _cpu() - cpu
    return {"rows": rows, "batches": batches, "seconds": secs, "cpu": cpu, "skipped": report.skipped, "rss": _peak_rss()}


def _peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM, which (unlike ru_maxrss on Linux) does not carry
    over the RSS of the parent that forked it (the generator)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--keep", type=Path, help="generate into (and keep) this directory")
    ap.add_argument("--read", type=Path, help=argparse.SUPPRESS)  # internal: the measuring process
    args = ap.parse_args()
    if args.read:
        print(json.dumps(read_only(args.read)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-zeek-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"conn-{args.rows}.log"
        if not path.exists():
            t = time.perf_counter()
            generate(path, args.rows)
            print(f"generated {args.rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB "
                  f"in {time.perf_counter() - t:.1f} s")
        load = os.getloadavg()[0]
        out = subprocess.run([sys.executable, __file__, "--read", str(path)], check=True,
                             capture_output=True, text=True, env=os.environ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        mb = path.stat().st_size / 1e6
        print(f"read {r['rows']:,} rows in {r['batches']} batches, {r['skipped']} skipped, "
              f"{r['seconds']:.2f} s: {r['rows'] / r['seconds'] / 1e6:.2f} M rows/s, "
              f"{mb / r['seconds']:.0f} MB/s, peak RSS {r['rss'] / 2**20:,.0f} MiB; "
              f"CPU {r['cpu']:.2f} s ({r['cpu'] / r['seconds']:.1f} cores busy of {os.cpu_count()}, "
              f"load average before {load:.1f})")
        ingest_to_store(path, folder, args.rows)


def ingest_to_store(path: Path, folder: Path, rows: int) -> None:
    """The whole ingest (reader, Parquet files, catalog) in a fresh `abfluss ingest` process."""
    import psutil

    ws = folder / "ws"
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "abfluss", "--workspace", str(ws), "ingest", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    dt = time.perf_counter() - t
    print(f"abfluss ingest into the store: {dt:.2f} s: {rows / dt / 1e6:.2f} M rows/s, "
          f"peak RSS {peak / 2**20:,.0f} MiB (exit {proc.returncode})")


if __name__ == "__main__":
    main()
