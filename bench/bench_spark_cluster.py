"""Benchmark 6: every detection on a real Spark standalone cluster, not local mode.

Usage: python bench/bench_spark_cluster.py [--flows 50000000] [--tenants 80] [--sample 1000000]
       [--workers 2] [--worker-memory 7g] [--executor-memory 6g] [--keep DIR]

Starts a standalone master and ``--workers`` workers on this machine with the pyspark
distribution's own ``spark-class`` launchers (everything bound to 127.0.0.1), then:

1. parity: a sample both engines can hold (``--sample`` flows of the same generator, same
   tenants, plus a planted beacon, upload and DNS tunnel) is analysed by
   ``abfluss analyze --engine duckdb`` and by ``--engine pyspark --spark-master spark://…``;
   the findings must be equal, field for field;
2. scale: ``--flows`` flows over ``--tenants`` tenants (host h belongs to 10.<1 + h % tenants>.0.0/16,
   one ``[tenants.tNN]`` table each) analysed on the cluster; prints the wall time and the peak
   memory (RSS of each worker's process tree: worker daemon, executor JVM, Python workers; and of
   the driver).

Every process it started is stopped at the end, also on failure or Ctrl-C. The generated
workspaces live in a temporary directory (``--keep DIR`` keeps and reuses them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

import abfluss
from abfluss.store import StoredInput

sys.path.insert(0, str(Path(__file__).parent))
from bench_detect import planted  # noqa: E402
from bench_ledger import CHUNK, batch  # noqa: E402

HOSTS_PER_TENANT = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


class PeakRSS(threading.Thread):
    """Samples the resident memory of a process tree (every 0.25 s) and keeps the peak; also the
    CPU seconds its processes used meanwhile (the steadier figure on a shared machine)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0, threading.Event()
        self._cpu: dict[int, tuple[float, float]] = {}  # pid -> (CPU seconds at first sight, last seen)

    @property
    def cpu(self) -> float:
        return sum(last - first for first, last in self._cpu.values())

    def run(self) -> None:
        import psutil

        while not self._done.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                return
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                    t = p.cpu_times()
                    used = t.user + t.system
                    self._cpu[p.pid] = (self._cpu.get(p.pid, (0.0 if p.pid != self.pid else used,))[0], used)
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._done.wait(0.25)

    def stop(self) -> int:
        self._done.set()
        self.join(timeout=5)
        return self.peak


class Cluster:
    """A Spark standalone master and workers, each in its own process group; ``stop`` ends them all."""

    def __init__(self, root: Path, workers: int, worker_memory: str):
        self.root, self.n, self.memory = root, workers, worker_memory
        self.procs: list[subprocess.Popen] = []
        self.port, self.ui = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
                    "SPARK_LOCAL_HOSTNAME": "localhost", "PYSPARK_PYTHON": sys.executable,
                    "SPARK_LOG_DIR": str(root / "logs"), "SPARK_WORKER_DIR": str(root / "work")}

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")
        p = subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], env=self.env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def start(self) -> "Cluster":
        (self.root / "work").mkdir(parents=True, exist_ok=True)
        self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.port), "--webui-port", str(self.ui))
        self.workers = [self._start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                    "--cores", "1", "--memory", self.memory, "--webui-port", str(free_port()),
                                    "--work-dir", str(self.root / "work" / f"w{i}"), self.url)
                        for i in range(self.n)]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a Spark daemon exited ({p.args[1]}); see {self.root}/*.log")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ui}/json/", timeout=5) as r:
                    alive = json.load(r).get("aliveworkers", 0)
                if alive == self.n:
                    return self
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError(f"the standalone cluster did not come up within 180 s; see {self.root}/*.log")

    def stop(self) -> None:
        for p in reversed(self.procs):  # workers first: each takes its executors with it
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # the process group: executors and Python workers it started
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def __enter__(self) -> "Cluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def build(root: Path, flows: int, tenants: int, seed: int = 1) -> Path:
    """A workspace with ``flows`` generated flows over ``tenants`` tenants and the planted cases."""
    if (root / "catalog.duckdb").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    (root / "abfluss.toml").write_text("".join(f'[tenants.t{t:02d}]\nnetworks = ["10.{1 + t}.0.0/16"]\n\n'
                                               for t in range(tenants)))
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    ws = abfluss.open_workspace(root, write=True)
    try:
        extra, dns = planted(max(1000, flows // 50))
        with ws.writer("bench") as w:
            for start in range(0, flows, CHUNK):
                w.write("flows", batch(rng, start, min(CHUNK, flows - start), flows,
                                       hosts=HOSTS_PER_TENANT * tenants, tenants=tenants), "bench")
            w.write("flows", abfluss.schema.conform("flows", extra), "bench")
            w.write("dns", abfluss.schema.conform("dns", dns), "bench")
            w.commit(StoredInput("bench", "generated", 0, "generated", "bench",
                                 {"flows": flows + extra.num_rows, "dns": dns.num_rows}, 0, [], None, None))
        abfluss.refresh(ws)
    finally:
        ws.close()
    print(f"  generated and stored {flows:,} flows over {tenants} tenants in {time.perf_counter() - t:.0f} s",
          flush=True)
    return root


def analyze(ws: Path, engine: str, master: str | None, env: dict) -> tuple[dict, float, int, float]:
    """``abfluss analyze`` as a user runs it: (its JSON, wall seconds, peak RSS and CPU seconds of
    the driver's process tree: abfluss, and its JVM on Spark)."""
    exe = shutil.which("abfluss", path=str(Path(sys.executable).parent)) or "abfluss"
    cmd = [exe, "--workspace", str(ws), "analyze", "--engine", engine, "--format", "json"]
    if master:
        cmd += ["--spark-master", master]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    mem = PeakRSS(p.pid)
    mem.start()
    try:
        out, err = p.communicate()
    except BaseException:  # interrupted: the driver and its JVM go too, not only the cluster
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise
    dt, peak = time.perf_counter() - t, mem.stop()
    if p.returncode != 0:
        raise RuntimeError(f"abfluss analyze --engine {engine} failed ({p.returncode}): {err.strip()[-2000:]}")
    return json.loads(out), dt, peak, mem.cpu


def parity(sample: Path, master: str, env: dict) -> bool:
    """DuckDB and the cluster on the same sample: are the findings equal, field for field?"""
    duck, dt_duck, _, cpu_duck = analyze(sample, "duckdb", None, env)
    spark, dt_spark, _, cpu_spark = analyze(sample, "pyspark", master, env)
    same = canonical(duck["findings"]) == canonical(spark["findings"])
    print(f"parity on {duck['flows']:,} flows: DuckDB {dt_duck:.1f} s ({cpu_duck:.0f} CPU s), "
          f"cluster {dt_spark:.1f} s (driver {cpu_spark:.0f} CPU s), "
          f"{len(duck['findings'])} findings; {'equal' if same else 'DIFFERENT'}", flush=True)
    if not same:
        a, b = set(canonical(duck["findings"])), set(canonical(spark["findings"]))
        for line in sorted(a - b)[:5]:
            print("  only DuckDB:", line[:300])
        for line in sorted(b - a)[:5]:
            print("  only Spark: ", line[:300])
    return same


def canonical(findings: list[dict]) -> list[str]:
    return sorted(json.dumps(f, sort_keys=True, default=str) for f in findings)


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _interrupt(*_) -> None:
    """SIGTERM (a timeout, kill) ends the run like Ctrl-C: the finally blocks stop the cluster."""
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=50_000_000, help="flows for the scale run (default 50 million)")
    ap.add_argument("--tenants", type=int, default=80)
    ap.add_argument("--sample", type=int, default=1_000_000, help="flows for the DuckDB-vs-cluster parity check (0: no parity check, the scale run only)")
    ap.add_argument("--workers", type=int, default=2)
    # 50 million flows with 3g executors and 2 partitions per million: both executors ran out of
    # heap in a window over a kept shared part (docs/scale.md); with these they did not.
    ap.add_argument("--worker-memory", default="7g")
    ap.add_argument("--executor-memory", default="6g")
    ap.add_argument("--driver-memory", default="3g")
    ap.add_argument("--partitions", type=int, default=0, help="shuffle partitions (default: 4 per million flows, at least 4)")
    ap.add_argument("--keep", help="keep the generated workspaces in this directory (and reuse them)")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, _interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="abfluss-cluster-"))
    data = Path(args.keep) if args.keep else tmp / "data"
    try:
        print(f"bench_spark_cluster: {args.workers} workers x 1 core, {args.worker_memory} each; "
              f"{args.flows:,} flows over {args.tenants} tenants; parity sample {args.sample:,} flows", flush=True)
        sample = build(data / f"sample-{args.sample}-{args.tenants}", args.sample, args.tenants) if args.sample else None
        full = build(data / f"full-{args.flows}-{args.tenants}", args.flows, args.tenants)
        with Cluster(tmp / "cluster", args.workers, args.worker_memory) as cl:
            print(f"  cluster up: {cl.url} ({args.workers} workers)", flush=True)

            def env_for(flows: int) -> dict:
                parts = args.partitions or max(4, 4 * flows // 1_000_000)
                # the window's Parquet goes where every executor reads it (here: the same disk)
                return {**cl.env, "ABFLUSS_SPARK_SCRATCH": str(tmp / "shared-scratch"),
                        "ABFLUSS_SPARK_MEMORY": args.driver_memory, "ABFLUSS_SPARK_PARTITIONS": str(parts),
                        "PYSPARK_SUBMIT_ARGS": f"--conf spark.executor.memory={args.executor_memory} "
                                               f"--conf spark.executor.cores=1 pyspark-shell"}

            same = parity(sample, cl.url, env_for(args.sample)) if sample is not None else True

            meters = [PeakRSS(w.pid) for w in cl.workers]
            for m in meters:
                m.start()
            res, dt, driver, driver_cpu = analyze(full, "pyspark", cl.url, env_for(args.flows))
            peaks = [m.stop() for m in meters]
            print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
            print(f"cluster run: {res['flows']:,} flows, {args.tenants} tenants: {dt:.1f} s "
                  f"({res['flows'] / dt:,.0f} flows/s), {len(res['findings'])} findings, "
                  f"{len(res['errors'])} detection errors", flush=True)
            for i, (p, m) in enumerate(zip(peaks, meters)):
                print(f"  worker {i}: peak RSS {mib(p)}, {m.cpu:,.0f} CPU s (worker daemon, executor JVM, "
                      f"Python workers)")
            print(f"  driver (abfluss analyze and its JVM): peak RSS {mib(driver)}, {driver_cpu:,.0f} CPU s")
            for det, s in sorted(res["seconds"].items(), key=lambda kv: -kv[1])[:8]:
                print(f"  {det:26s} {s:7.1f} s")
            for det, why in res["errors"].items():
                print(f"  error in {det}: {why}")
            tenants = {t for f in res["findings"] for t in ([f.get("tenant")] if f.get("tenant") else [])}
            print(f"  findings name {len(tenants)} tenants")
        return 0 if same and not res["errors"] else 1
    except KeyboardInterrupt:
        print("interrupted: cluster stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
