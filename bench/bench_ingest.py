"""Benchmark: log ingest on every core (issue 15, items 1 and 3).

    python bench/bench_ingest.py [--runs 3] [--rows 2000000] [--jobs 1,2,4] [--only dir,zeek,eve,eve-200d,netflow]

1. A Zeek log directory as a sensor rotates it (3 days of hourly gzipped conn/dns/http/ssl/files
   logs, 360 files, 130,390 records, built from real RITA logs): `abfluss ingest DIR --jobs N` for
   each N, the rate in files/s and records/s, and the scaling against one job. The fixed cost per
   small file: 300 one-record logs against one, per file (target ≤ 10 ms).
2. Zeek conn.log (TSV), Suricata eve.json (a day's events; and the same spread over 200 days,
   the shape measured before, one Parquet file per table and day) and nfdump (NetFlow) files: `abfluss ingest FILE` against
   DuckDB converting the same file to zstd Parquet (`COPY … TO … (FORMAT parquet, COMPRESSION
   zstd)`), both as fresh processes, target ≤ 1.25×. DuckDB cannot read nfdump's binary files: it
   converts the CSV that `nfdump -o csv` writes of it, and that export's time is counted on its side.

Every comparison runs its sides interleaved in one run, several times, and prints the median
(the machine is shared).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "bench"))

import _gen  # noqa: E402
from bench_zeek import generate as zeek_conn  # noqa: E402

TARGET_RATIO = 1.25
TARGET_FIXED_MS = 10.0
ABFLUSS = [sys.executable, "-m", "abfluss"]


#: CPU seconds (user + system) of the last command ``timed`` ran, its worker processes included:
#: unlike wall time, hardly changed by other jobs on the machine.
CPU: dict[str, list[float]] = {}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], **kw) -> float:
    t, c = time.perf_counter(), _children_cpu()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    timed.cpu = _children_cpu() - c
    return time.perf_counter() - t


def ingest(path: Path, ws: Path, jobs: int | None = None) -> float:
    shutil.rmtree(ws, ignore_errors=True)
    return timed(ABFLUSS + ["--workspace", str(ws), "ingest", str(path)]
                 + (["--jobs", str(jobs)] if jobs else []))


def median_runs(runs: int, sides: dict) -> dict[str, float]:
    """Each side once per round, interleaved; the median per side."""
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(runs):
        for k, fn in sides.items():
            times[k].append(fn())
            CPU.setdefault(k, []).append(timed.cpu)
    return {k: statistics.median(v) for k, v in times.items()}


def cpu(side: str) -> float:
    return statistics.median(CPU[side])


def bench_directory(tmp: Path, runs: int, jobs: list[int]) -> None:
    logs = tmp / "zeek-hourly"
    records = _gen.zeek_hourly_dir(DATA, logs)
    files = sum(1 for p in logs.rglob("*") if p.is_file())
    used = _stored_records(logs, tmp / "ws-count")
    tiny = tmp / "tiny"
    _tiny_logs(tiny, 300)
    one = tmp / "tiny-one"
    _tiny_logs(one, 1)
    sides = {f"dir-{n}": (lambda n=n: ingest(logs, tmp / "ws", n)) for n in jobs}
    sides["tiny-300"] = lambda: ingest(tiny, tmp / "ws", 1)
    sides["tiny-1"] = lambda: ingest(one, tmp / "ws", 1)
    sides["tiny-300-all"] = lambda: ingest(tiny, tmp / "ws")
    m = median_runs(runs, sides)
    print(f"1. Zeek directory: {files} hourly gzipped logs, {records:,} records ({used:,} of kinds abfluss "
          f"stores), median of {runs}:")
    base = m[f"dir-{jobs[0]}"]
    for n in jobs:
        t = m[f"dir-{n}"]
        print(f"   --jobs {n}: {t:6.2f} s  {files / t:7.1f} files/s  {records / t:9,.0f} records/s  "
              f"CPU {cpu(f'dir-{n}'):5.2f} s  scaling {base / t:.2f}× of --jobs {jobs[0]}"
              + ("  (target ≥ 1.8× on 2 cores)" if n == 2 else ""))
    fixed = (m["tiny-300"] - m["tiny-1"]) / 299 * 1000
    fixed_all = (m["tiny-300-all"] - m["tiny-1"]) / 299 * 1000
    fixed_cpu = (cpu("tiny-300") - cpu("tiny-1")) / 299 * 1000
    verdict = "ok" if min(fixed, fixed_all) <= TARGET_FIXED_MS else \
        "ok in CPU (wall: other jobs)" if fixed_cpu <= TARGET_FIXED_MS else "OVER TARGET"
    print(f"   fixed cost per small file: {fixed:.1f} ms wall with --jobs 1 ({fixed_cpu:.1f} ms CPU), {fixed_all:.1f} ms "
          f"with every core (target ≤ {TARGET_FIXED_MS:.0f} ms): {verdict}")
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    if load > cores:
        print(f"   note: load average {load:.1f} on {cores} cores. The jobs' processes share the cores with "
              f"{load - 1:.0f} other runnable ones, so a second job finds no idle core and the scaling above says "
              "nothing about an idle machine; CPU seconds are the steadier figure. The scaling is measurable "
              "only with the load below the number of cores.")


def _stored_records(logs: Path, ws: Path) -> int:
    shutil.rmtree(ws, ignore_errors=True)
    subprocess.run(ABFLUSS + ["--workspace", str(ws), "ingest", str(logs)], check=True, capture_output=True)
    out = subprocess.run(ABFLUSS + ["--workspace", str(ws), "inputs", "--format", "json"], check=True,
                         capture_output=True, text=True).stdout
    shutil.rmtree(ws, ignore_errors=True)
    return sum(i["records"] for i in json.loads(out))


def _tiny_logs(folder: Path, n: int) -> None:
    """``n`` one-record conn.logs (distinct content), the smallest input a sensor rotates."""
    folder.mkdir(parents=True, exist_ok=True)
    src = (DATA / "rita" / "proxy" / "conn.log").read_text().splitlines()
    head = [x for x in src if x.startswith("#") and not x.startswith("#close")]
    row = next(x for x in src if x and not x.startswith("#")).split("\t", 1)[1]
    for i in range(n):
        text = "\n".join(head + [f"{1_714_521_600 + i * 3600}.000000\t{row}", "#close\tx"]) + "\n"
        (folder / f"conn.{i:04d}.log.gz").write_bytes(gzip.compress(text.encode(), 6, mtime=0))


#: How DuckDB reads each format for its side of the comparison.
READ = {"zeek": "read_csv(?, delim='\\t', comment='#', header=false, nullstr='-', auto_detect=true)",
        "eve": "read_json(?, format='newline_delimited', maximum_object_size=16777216)",
        "csv": "read_csv(?, header=true)"}
DUCKDB = f"""
import sys, duckdb
src, dst, how = sys.argv[1:4]
con = duckdb.connect()
read = {READ!r}[how]
con.execute(f"COPY (SELECT * FROM {{read}}) TO '{{dst}}' (FORMAT parquet, COMPRESSION zstd)", [src])
"""


def duckdb_convert(src: Path, dst: Path, how: str) -> float:
    dst.unlink(missing_ok=True)
    return timed([sys.executable, "-c", DUCKDB, str(src), str(dst), how])


def nfdump_then_duckdb(src: Path, tmp: Path) -> float:
    t, c = time.perf_counter(), _children_cpu()
    with open(tmp / "nf.csv", "wb") as f:
        subprocess.run(["nfdump", "-q", "-r", str(src), "-o", "csv"], check=True, stdout=f)
    duckdb_convert(tmp / "nf.csv", tmp / "nf.parquet", "csv")
    timed.cpu = _children_cpu() - c
    return time.perf_counter() - t


def bench_formats(tmp: Path, runs: int, rows: int, only: set[str]) -> None:
    inputs = {}
    if "zeek" in only:
        inputs["zeek"] = (tmp / "conn.log", lambda p: (zeek_conn(p, rows), rows)[1])
    if "eve" in only:  # a day's events, as a sensor's daily file
        inputs["eve"] = (tmp / "eve.json", lambda p: eve_json(p, rows))
    if "eve-200d" in only:  # the same events spread over 200 days (the shape measured before)
        inputs["eve-200d"] = (tmp / "eve-200d.json", lambda p: eve_json(p, rows, "200d"))
    if "netflow" in only:
        inputs["netflow"] = (tmp / "flows.nfcapd", lambda p: nfcapd(p, tmp, rows))
    print(f"2. Formats against DuckDB writing zstd Parquet (median of {runs}, target ≤ {TARGET_RATIO}×): 'fresh' "
          "runs each side as a new process (abfluss's start-up, about a CPU second of imports, included); "
          "'in-process' runs both sides in one process after the imports (the reader, Parquet and catalog "
          "against DuckDB's read and write)")
    for name, (path, make) in inputs.items():
        n = make(path)
        how = {"zeek": "zeek", "eve": "eve", "eve-200d": "eve"}.get(name, "nfdump")
        duck = (lambda: duckdb_convert(path, tmp / "out.parquet", how)) if how != "nfdump" else \
            (lambda: nfdump_then_duckdb(path, tmp))
        CPU.pop("abfluss", None), CPU.pop("duckdb", None)
        m = median_runs(runs, {"abfluss": lambda: ingest(path, tmp / "ws"), "duckdb": duck})
        ratio, cpu_ratio = m["abfluss"] / m["duckdb"], cpu("abfluss") / cpu("duckdb")
        print(f"   {name:9s} {path.stat().st_size / 1e6:7,.0f} MB, {n:,} records:")
        print(f"      fresh:      abfluss ingest {m['abfluss']:6.2f} s (CPU {cpu('abfluss'):6.2f} s, "
              f"{n / m['abfluss'] / 1e6:.2f} M records/s), DuckDB {m['duckdb']:6.2f} s (CPU {cpu('duckdb'):6.2f} s): "
              f"ratio {ratio:.2f} wall, {cpu_ratio:.2f} CPU (target ≤ {TARGET_RATIO}) {_verdict(ratio, cpu_ratio)}")
        out = subprocess.run([sys.executable, __file__, "--in-process", how, str(path), str(tmp), str(runs)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.splitlines()[-1])
        ratio, cpu_ratio = r["abfluss"] / r["duckdb"], r["abfluss_cpu"] / r["duckdb_cpu"]
        print(f"      in-process: abfluss ingest {r['abfluss']:6.2f} s (CPU {r['abfluss_cpu']:6.2f} s), DuckDB "
              f"{r['duckdb']:6.2f} s (CPU {r['duckdb_cpu']:6.2f} s): ratio {ratio:.2f} wall, {cpu_ratio:.2f} CPU "
              f"(target ≤ {TARGET_RATIO}) {_verdict(ratio, cpu_ratio)}")


def _verdict(wall: float, cpu: float) -> str:
    if wall <= TARGET_RATIO and cpu <= TARGET_RATIO:
        return "ok"
    return "ok in CPU (wall: other jobs)" if cpu <= TARGET_RATIO else "OVER TARGET"


def in_process(how: str, path: Path, tmp: Path, runs: int) -> None:
    """Both sides in this process, interleaved, after the imports: medians as one JSON line.
    CPU is this process's (all its threads) plus its children's (nfdump)."""
    import duckdb

    from abfluss.ingest import ingest_paths
    from abfluss.store import Workspace

    def cpu_now() -> float:
        return time.process_time() + _children_cpu()

    # Removing the previous run's output is not either side's work: done before the clock starts
    # (a 200-day workspace is about a thousand folders, 1.1 s of rmdir that counted as ingest).
    def clear_ours() -> None:
        shutil.rmtree(tmp / "ws-in", ignore_errors=True)

    def clear_theirs() -> None:
        (tmp / "out-in.parquet").unlink(missing_ok=True)

    def ours() -> None:
        with Workspace.open(tmp / "ws-in", write=True) as ws:
            res = ingest_paths(ws, [path], jobs=1)
        assert res[0].status == "stored", res[0]

    def theirs() -> None:
        src = path
        if how == "nfdump":
            src = tmp / "nf-in.csv"
            with open(src, "wb") as f:
                subprocess.run(["nfdump", "-q", "-r", str(path), "-o", "csv"], check=True, stdout=f)
        con = duckdb.connect()
        con.execute(f"COPY (SELECT * FROM {READ[how if how != 'nfdump' else 'csv']}) TO "
                    f"'{tmp / 'out-in.parquet'}' (FORMAT parquet, COMPRESSION zstd)", [str(src)])
        con.close()

    clear_ours(), ours(), clear_theirs(), theirs()  # warm: imports, first-use costs
    got: dict[str, list] = {}
    for _ in range(runs):
        for side, clear, fn in (("abfluss", clear_ours, ours), ("duckdb", clear_theirs, theirs)):
            clear()
            t, c = time.perf_counter(), cpu_now()
            fn()
            got.setdefault(side, []).append(time.perf_counter() - t)
            got.setdefault(side + "_cpu", []).append(cpu_now() - c)
    print(json.dumps({k: statistics.median(v) for k, v in got.items()}))


def eve_json(path: Path, events: int, spread: str = "day") -> int:
    """``events`` eve.json lines: the real events of a Slips capture again and again, times shifted.

    ``spread="day"``: the rounds spread over one local day (two UTC days, the capture's zone
    being +0200), as a sensor's daily eve.json; ``"200d"``: each round on a day of its own (1 M
    events span 200 days; the shape measured before 2026-12-07 12:00 UTC, kept as a second case).
    Flow events keep their own ``flow.start`` (2021-06-06) either way."""
    src = [json.loads(x) for x in (DATA / "slips" / "test6-malicious.suricata.json").read_text().splitlines() if x]
    rounds = -(-events // len(src))
    written = 0
    with open(path, "w") as f:
        rnd = 0
        while written < events:
            for e in src:
                if written >= events:
                    break
                e = dict(e)
                e["flow_id"] = (e.get("flow_id") or 0) + rnd
                ts = e.get("timestamp", "2018-01-01T00:00:00.000000+0000")
                e["timestamp"] = (f"2018-01-01T{rnd * 24 // rounds:02d}{ts[13:]}" if spread == "day" else
                                  f"2018-{1 + rnd // 28 % 12:02d}-{1 + rnd % 28:02d}{ts[10:]}")
                f.write(json.dumps(e, separators=(",", ":")) + "\n")
                written += 1
            rnd += 1
    return written


def nfcapd(path: Path, tmp: Path, flows: int) -> int:
    """An nfdump file of about ``flows`` flows: the real Slips file's flows written again and again."""
    src = DATA / "slips" / "test1-malicious.nfdump"
    per = 4593
    parts = tmp / "nfparts"
    parts.mkdir(exist_ok=True)
    for i in range(max(1, flows // per)):
        shutil.copy(src, parts / f"nfcapd.{201801010000 + i}")
    subprocess.run(["nfdump", "-R", str(parts), "-w", str(path)], check=True, capture_output=True)
    shutil.rmtree(parts)
    out = subprocess.run(["nfdump", "-r", str(path), "-I"], check=True, capture_output=True, text=True).stdout
    return int(next(x.split(":")[1] for x in out.splitlines() if x.startswith("Flows:")))


def main() -> None:
    if sys.argv[1:2] == ["--in-process"]:
        how, path, tmp, runs = sys.argv[2:6]
        return in_process(how, Path(path), Path(tmp), int(runs))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=2_000_000, help="records of each generated format file")
    ap.add_argument("--jobs", default="1,2,4")
    ap.add_argument("--only", default="dir,zeek,eve,eve-200d,netflow")
    a = ap.parse_args()
    only = set(a.only.split(","))
    os.environ.setdefault("PYTHONPATH", str(ROOT / "src"))
    print(f"abfluss log ingest on {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the start)")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as t:
        tmp = Path(t)
        if "dir" in only:
            bench_directory(tmp, a.runs, [int(x) for x in a.jobs.split(",")])
        if only - {"dir"}:
            bench_formats(tmp, a.runs, a.rows, only)


if __name__ == "__main__":
    main()
