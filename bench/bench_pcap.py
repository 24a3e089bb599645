"""Benchmark 1: pcap to store, against NFStream metering the same file alone in the same run.

Targets (issues 10, 12, 15), each printed beside the measured ratio:
- ingest with payload inspection, one job, at most 1.15x NFStream alone on an ordinary mix;
- the same on a DNS-heavy mix (every DNS message decoded), at most 1.30x; there, the DNS decoding
  itself (the DNS worker's CPU) at most 30 % of NFStream's (issue 10);
- ingest on 2 cores at least 1.8x as fast as the same work in one process; the scaling for
  ``--jobs`` 1, 2, 4 (processes: a capture is split into jobs // 2 parts, ``_split.capture_parts``,
  because one part already keeps a meter and an inspection worker busy beside the calling
  process and the DNS worker). "The same work in one process" is estimated by the run's CPU
  seconds: what it would take on one core, one piece after the other.
The machine may be shared: every ratio is taken within this run, baseline and candidate
interleaved (alternating which goes first), repeated ``--reps`` times, medians compared. Each run
is measured in wall time and in CPU seconds of this process and its children (NFStream's meter,
the DNS and inspection workers): wall time is what an idle machine with a core per process pays,
CPU time the work itself, which other load on the machine does not change.
Usage: python bench/bench_pcap.py [--packets N] [--reps R] [--jobs 1,2,4]
"""

from __future__ import annotations

import argparse
import functools
import inspect as inspect_mod
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gen import DNS_HEAVY, MIXED, mixed_pcap  # noqa: E402

import abfluss  # noqa: E402
from abfluss.readers import _dns_packets, _split, pcap  # noqa: E402
from abfluss.readers.base import ReadReport  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def nfstream_alone(path: Path) -> int:
    return sum(1 for _ in pcap._streamer(str(path)))


def ingest(path: Path, tmp: Path, jobs: int = 1, inspect: bool = True) -> dict:
    """The whole ingest into a fresh workspace with ``jobs`` processes per kind."""
    ws = abfluss.open_workspace(Path(tempfile.mkdtemp(dir=tmp)) / "ws", write=True)
    try:
        if "jobs" in inspect_mod.signature(abfluss.ingest_paths).parameters:
            (res,) = abfluss.ingest_paths(ws, [path], inspect=inspect, jobs=jobs)
        else:  # an ingest without the option: the reader gets it directly
            read = pcap.read
            pcap.read = functools.partial(read, jobs=jobs, job_bytes=0)
            try:
                res = abfluss.ingest_file(ws, path, inspect=inspect)
            finally:
                pcap.read = read
    finally:
        ws.close()
    assert res.status == "stored", res.error
    return res.records


def cpu() -> float:
    """CPU seconds of this process and of its children that have ended (they are all joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn()``."""
    t, c = time.perf_counter(), cpu()
    fn()
    return time.perf_counter() - t, cpu() - c


def interleaved(runs: dict, reps: int, cpu_too: bool = False):
    """Median wall time of each run (with ``cpu_too`` also the median CPU time); every repetition
    runs all of them, in rotating order."""
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(reps):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(timed(runs[name]))
    wall = {k: statistics.median(w for w, _c in v) for k, v in times.items()}
    return (wall, {k: statistics.median(c for _w, c in v) for k, v in times.items()}) if cpu_too else wall


def dns_scan_alone(path: Path) -> None:
    """The DNS scan of the whole capture in a forked process, as ingest's DNS worker runs it
    (its garbage collector set as the worker's)."""
    worker = multiprocessing.get_context("fork").Process(target=pcap._quiet_gc, args=(_scan, path))
    worker.start()
    worker.join()
    assert worker.exitcode == 0


def _scan(path: Path) -> None:
    _dns_packets.scan(path, ReadReport(str(path)))


def inspection_alone(path: Path) -> None:
    """The inspection pass over the whole capture in a forked process, as ingest's inspection
    worker runs it (with a key: payload inspection and the protocol records)."""
    worker = multiprocessing.get_context("fork").Process(target=pcap._quiet_gc, args=(_inspect, path))
    worker.start()
    worker.join()
    assert worker.exitcode == 0


def _inspect(path: Path) -> None:
    from abfluss.dlp.inspect import Settings, inspect_pcap

    inspect_pcap(path, b"k" * 32, Settings())


def head_of(path: Path, out: Path, packets: int = 50) -> Path:
    """The first ``packets`` packets of a capture: its ingest is the fixed cost of one ingest."""
    import dpkt

    with open(path, "rb") as f, open(out, "wb") as o:
        w = dpkt.pcap.Writer(o, snaplen=65535)
        for (ts, buf), _ in zip(dpkt.pcap.Reader(f), range(packets)):
            w.writepkt(buf, ts=ts)
    return out


def verdict(ratio: float, target: float, at_most: bool = True) -> str:
    met = ratio <= target if at_most else ratio >= target
    return f"target {'<=' if at_most else '>='} {target:.2f}: {'met' if met else 'NOT met'}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=300_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--jobs", default="1,2,4")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"machine: {_split.cores()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"{args.reps} interleaved repetitions, medians")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, sources, target in (("ordinary mix", MIXED, 1.15),
                                       ("DNS-heavy mix (a third DNS tunnel)", DNS_HEAVY, 1.30)):
            cap = tmp / "mixed.pcap"
            n = mixed_pcap(DATA, cap, args.packets, sources)
            mb = cap.stat().st_size / 1e6
            records = ingest(cap, tmp)
            tiny = head_of(cap, tmp / "head.pcap")
            print(f"\n{label}: {n:,} packets, {mb:.1f} MB; {records.get('flows', 0):,} flows, "
                  f"{records.get('dns', 0):,} dns rows")
            t, c = interleaved({"nfstream": lambda: nfstream_alone(cap),
                                "ingest": lambda: ingest(cap, tmp),
                                "ingest --no-inspect": lambda: ingest(cap, tmp, inspect=False),
                                "DNS scan alone": lambda: dns_scan_alone(cap),
                                "inspection alone": lambda: inspection_alone(cap),
                                "ingest of 50 packets": lambda: ingest(tiny, tmp, inspect=False)},
                               args.reps, cpu_too=True)
            for k, v in t.items():
                print(f"  {k:20s} {v:6.2f} s  {c[k]:6.2f} CPU s  {n / v:9,.0f} packets/s  {mb / v:6.1f} MB/s")
            ratio, ratio_cpu = t["ingest"] / t["nfstream"], c["ingest"] / c["nfstream"]
            print(f"  ingest (inspection on, 1 job) / NFStream alone: wall {ratio:.2f}, CPU {ratio_cpu:.2f}  "
                  f"({verdict(ratio_cpu, target)} in CPU, {'met' if ratio <= target else 'NOT met'} in wall)")
            print(f"  ingest --no-inspect / NFStream alone: wall {t['ingest --no-inspect'] / t['nfstream']:.2f}, "
                  f"CPU {c['ingest --no-inspect'] / c['nfstream']:.2f} (the inspection pass still makes the protocol records)")
            dns, share = records.get("dns", 0), c["DNS scan alone"] / c["nfstream"]
            print(f"  DNS decoding (the DNS worker alone, forked): {c['DNS scan alone']:.2f} CPU s, {share:.2f} of "
                  f"NFStream's CPU" + (f", {1e6 * c['DNS scan alone'] / dns:.1f} µs per DNS row" if dns else "")
                  + (f"  (issue 10, DNS decoding's cost on the DNS-heavy mix: {verdict(share, 0.30)})"
                     if sources is DNS_HEAVY else ""))
            print(f"  fixed cost of one ingest (50 packets into a fresh workspace): {c['ingest of 50 packets']:.2f} CPU s, "
                  f"{c['ingest of 50 packets'] / c['nfstream']:.2f} of NFStream's CPU on this capture")
            parts = c["nfstream"] + c["inspection alone"] + c["DNS scan alone"] + c["ingest of 50 packets"]
            print(f"  where ingest's CPU goes: NFStream {c['nfstream']:.2f} + inspection pass (its worker alone, forked) "
                  f"{c['inspection alone']:.2f} + DNS worker {c['DNS scan alone']:.2f} + fixed cost "
                  f"{c['ingest of 50 packets']:.2f} = {parts:.2f} CPU s; the rest, {c['ingest'] - parts:.2f} CPU s, is this "
                  "process's per-record work (hashing the input, flow rows, Parquet, catalog); medians of separate runs, "
                  "and the fixed cost includes starting a meter and workers, so the rest is approximate")
            ratio = t["ingest"] / t["ingest --no-inspect"]
            print(f"  inspection on / off: {ratio:.2f}  ({verdict(ratio, 2.0)})")
            if sources is MIXED:
                jobs = [int(j) for j in args.jobs.split(",")]
                s, sc = interleaved({j: functools.partial(ingest, cap, tmp, j) for j in jobs}, args.reps, cpu_too=True)
                print(f"  scaling (ingest with inspection; --jobs N is processes, a capture is split into N // "
                      f"{_split.PROCESSES_PER_PART} parts, at least one, each part a meter, a DNS and an inspection "
                      "worker beside this process; cores busy = CPU s / wall s, what the same work in one "
                      "process would take longer, on an idle machine):")
                for j in jobs:
                    line = (f"    --jobs {j}: {_split.capture_parts(j)} part{'s' if _split.capture_parts(j) > 1 else ' '}"
                            f" {s[j]:6.2f} s  {sc[j]:6.2f} CPU s  cores busy {sc[j] / s[j]:.2f}"
                            f"  speed-up over --jobs {jobs[0]} {s[jobs[0]] / s[j]:.2f}x")
                    if j == jobs[0]:
                        line += f"  (over one process, estimated: {verdict(sc[j] / s[j], 1.8, at_most=False)})"
                    print(line)

if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
