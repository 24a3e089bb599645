"""Benchmark 3: the outflow ledger over 10 million flows. Target: under 5 s.

Usage: python bench/bench_ledger.py [--flows N]. Flows are generated with numpy and stored
through the real store (Parquet + catalog), 2,000 internal hosts and 50,000 destinations over a week.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

import abfluss
from abfluss.store import StoredInput

CHUNK = 1_000_000


def batch(rng, start: int, n: int, total: int, hosts: int = 2000, tenants: int = 1) -> pa.Table:
    """``n`` flows of ``total`` over a week; host ``h`` is in tenant ``h % tenants``, i.e. 10.<1 + tenant>.0.0/16."""
    ts = (1_704_067_200_000_000 + (start + np.arange(n)) * (7 * 86400 * 1_000_000 // total)).astype("int64")
    h = rng.integers(0, hosts, n)
    d = np.minimum(rng.zipf(1.3, n), 50_000)  # a few destinations are popular, most are rare
    net, k = 1 + h % tenants, h // tenants
    orig = np.char.add(np.char.add("10.", net.astype(str)),
                       np.char.add(".", np.char.add((k >> 8).astype(str), np.char.add(".", (k & 255).astype(str)))))
    # 203.<hi>.<lo>.9 (these once had five octets, "203.0.<hi>.<lo>.9", and were no addresses at all)
    resp = np.char.add("203.", np.char.add(((d >> 8) & 255).astype(str),
                                           np.char.add(".", np.char.add((d & 255).astype(str), ".9"))))
    inbound = rng.random(n) < 0.1  # a tenth opened from outside (exposed servers)
    o = np.where(inbound, resp, orig)
    r = np.where(inbound, orig, resp)
    return pa.table({
        "ts": pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
        "ts_end": pa.array(ts + 2_000_000).cast(pa.timestamp("us", tz="UTC")),
        "duration": np.full(n, 2.0), "proto": pa.array(["tcp"] * n),
        "orig_h": o, "orig_p": rng.integers(1024, 65535, n).astype("int32"),
        "resp_h": r, "resp_p": np.full(n, 443, dtype="int32"),
        "orig_bytes": rng.lognormal(7, 2, n).astype("int64"), "resp_bytes": rng.lognormal(9, 2, n).astype("int64"),
        "open": np.zeros(n, dtype=bool), "uid": pa.array([f"C{start + i:x}" for i in range(n)]),
    })


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=10_000_000)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        ws = abfluss.open_workspace(Path(tmp) / "ws", write=True)
        t = time.perf_counter()
        with ws.writer("bench") as w:
            for start in range(0, args.flows, CHUNK):
                w.write("flows", batch(rng, start, min(CHUNK, args.flows - start), args.flows), "bench")
            w.commit(StoredInput("bench", "generated", 0, "generated", "bench", {"flows": args.flows}, 0, [], None, None))
        print(f"generated and stored {args.flows:,} flows in {time.perf_counter() - t:.1f} s")
        for label, q in (("full ledger", abfluss.LedgerQuery()),
                         ("one host", abfluss.LedgerQuery(host="10.1.3.7")),
                         ("top 100", abfluss.LedgerQuery(limit=100))):
            t = time.perf_counter()
            table, tot = abfluss.ledger_with_totals(ws, q)
            rows = table.num_rows
            dt = time.perf_counter() - t
            print(f"{label:18s}: {dt:5.2f} s  ({rows:,} ledger rows, {tot['flows']:,} flows, "
                  f"{args.flows / dt / 1e6:.1f} M flows/s)  target < 5 s")
        ws.close()


if __name__ == "__main__":
    main()
