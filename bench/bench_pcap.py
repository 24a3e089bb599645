"""Benchmark 1: pcap to store, against NFStream metering the same file alone in the same run.

Targets: at most 15 % overhead above NFStream on an ordinary mix; on a DNS-heavy mix, where
every DNS message is decoded (names with any bytes, TCP reassembled), at most 30 % (issue 10).
Usage: python bench/bench_pcap.py [--packets N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gen import DNS_HEAVY, MIXED, mixed_pcap  # noqa: E402

import abfluss  # noqa: E402
from abfluss.readers import pcap  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def nfstream_alone(path: Path) -> int:
    return sum(1 for _ in pcap._streamer(str(path)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=1_000_000)
    args = ap.parse_args()
    for label, sources, target in (("ordinary mix", MIXED, 1.15),
                                   ("DNS-heavy mix (a third DNS tunnel)", DNS_HEAVY, 1.30)):
        run(label, sources, args.packets, target)


def run(label: str, sources, packets: int, target: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cap = Path(tmp) / "mixed.pcap"
        n = mixed_pcap(DATA, cap, packets, sources)
        mb = cap.stat().st_size / 1e6
        print(f"{label}: {n:,} packets, {mb:.1f} MB")
        t = time.perf_counter()
        flows = nfstream_alone(cap)
        base = time.perf_counter() - t
        print(f"NFStream alone : {base:6.2f} s  {n / base:10,.0f} packets/s  {mb / base:6.1f} MB/s  {flows:,} flows")
        ws = abfluss.open_workspace(Path(tmp) / "ws", write=True)
        t = time.perf_counter()
        res = abfluss.ingest_file(ws, cap)
        ours = time.perf_counter() - t
        ws.close()
        print(f"abfluss ingest : {ours:6.2f} s  {n / ours:10,.0f} packets/s  {mb / ours:6.1f} MB/s  "
              f"{res.records.get('flows', 0):,} flows, {res.records.get('dns', 0):,} dns rows")
        ratio = ours / base
        print(f"ingest / NFStream alone: {ratio:.2f}  (target <= {target:.2f}: "
              f"{'met' if ratio <= target else 'NOT met'}; overhead {100 * (ratio - 1):+.1f} %)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
