"""Benchmark: how fast the command line answers (issue 15, "answers in a second"). Targets: 0.5 s
(``--help``, ``findings``, ``ledger``), 1 s (``analyze``).

Builds the demo workspace (examples/demo.pcap ingested and analysed), then times ``abfluss --help``,
``abfluss findings``, ``abfluss ledger`` and ``abfluss analyze`` as a user runs them (a fresh
interpreter each time; best and median of ``--runs``), wall and CPU seconds (user + system of the
process: on a shared machine the steadier figure), each beside its target, and lists the heavy
modules each one imported. ``analyze`` is measured twice: with the detections' compiled SQL kept
from an earlier run (the workspace's ``cache/sql``, the usual case) and with an empty cache (the
first run on a new workspace or after an upgrade), and a third time handed to a warm ``abfluss watch``
on a copy of the workspace (``watch/resident.py``): its CPU is the client's plus the watch process's
for the request (from /proc).

    python bench/bench_cli.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.5
HEAVY = ("pyspark", "weasyprint", "ibis", "pandas", "duckdb", "pyarrow", "abfluss.report", "abfluss.analysis",
         "abfluss.detections", "abfluss.watch.loop")
# Runs one command like the `abfluss` script does, then names the heavy modules it had loaded.
PROBE = ("import atexit, json, sys\n"
         f"atexit.register(lambda: sys.stderr.write('HEAVY ' + json.dumps(sorted(m for m in {HEAVY!r} "
         "if m in sys.modules)) + '\\n'))\n"
         "import abfluss.cli\nsys.argv = ['abfluss', *sys.argv[1:]]\nabfluss.cli.main()\n")
COMMANDS = (("--help",), ("findings",), ("ledger",), ("analyze",))
TARGETS = {"analyze": 1.0}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True,
                          env={**os.environ, **(env or {})})


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_watch(ws: Path, tmp: Path) -> subprocess.Popen:
    """``abfluss watch`` on ``ws`` with no cycle of its own during the bench; returns once it
    answered an ``analyze`` (warm)."""
    logs = tmp / "zeek-empty"
    logs.mkdir(exist_ok=True)
    w = subprocess.Popen([sys.executable, "-m", "abfluss", "-w", str(ws), "watch", "--zeek-dir", str(logs),
                          "--every", "86400", "--silent-after", "86400"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (ws / "run" / "watch.sock").exists():
        if w.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the watch did not start: {w.stderr.read() if w.stderr else ''}")
        time.sleep(0.1)
    cli("-w", str(ws), "analyze")
    return w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="abfluss-bench-cli-"))
    try:
        ws = str(tmp / "ws")
        cli("-w", ws, "ingest", str(ROOT / "examples" / "demo.pcap"))
        cli("-w", ws, "analyze")  # keeps the detections' SQL in the workspace
        print(f"abfluss CLI response time on the demo workspace ({a.runs} runs each; wall, and CPU of the process; "
              f"load average {os.getloadavg()[0]:.1f})")
        runs = [(cmd, cmd[0], {}) for cmd in COMMANDS]
        runs.append((("analyze",), "analyze, empty SQL cache", None))
        runs.append((("analyze",), "analyze, by a warm watch", "watch"))
        watch = None
        for cmd, label, env in runs:
            times, cpus = [], []
            target_ws = ws
            if env == "watch":  # the workspace as it is, a watch running on it
                target_ws = str(tmp / "watched")
                shutil.copytree(ws, target_ws)
                watch = start_watch(Path(target_ws), tmp)
            for i in range(a.runs):
                if env is None:  # a fresh cache directory each run: every expression is compiled
                    env_i = {"ABFLUSS_SQL_CACHE": str(tmp / f"cold{i}")}
                else:
                    env_i = env if isinstance(env, dict) else {}
                w0 = _process_cpu(watch.pid) if watch else 0.0
                t0, c0 = time.perf_counter(), _children_cpu()
                proc = cli("-w", target_ws, *cmd, env=env_i)
                times.append(time.perf_counter() - t0)
                cpus.append(_children_cpu() - c0 + (_process_cpu(watch.pid) - w0 if watch else 0.0))
            heavy = json.loads(proc.stderr.rsplit("HEAVY ", 1)[1])
            best, med, cpu = min(times), statistics.median(times), statistics.median(cpus)
            target = TARGETS.get(cmd[0], TARGET)
            verdict = "ok" if med <= target else ("CPU within target" if cpu <= target else "OVER TARGET")
            print(f"  {label:26s} wall best {best:.2f} s  median {med:.2f} s  CPU {cpu:.2f} s  target {target} s: "
                  f"{verdict}  heavy modules: {', '.join(heavy) or 'none'}"
                  + ("  (CPU: the client's and the watch's)" if watch else ""))
    finally:
        if watch is not None and watch.poll() is None:
            watch.send_signal(signal.SIGTERM)
            watch.wait(120)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT / "src"))
    main()
