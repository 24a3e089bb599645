"""Soak benchmark of ``abfluss watch``: steady Zeek conn.log input at a stated rate.

A writer appends ``--rate`` conn records per second to a Zeek log directory (rotating it every
``--rotate-every`` seconds) while ``watch --zeek-dir`` follows it; every ``--burst-every``
seconds an internal host uploads 20 MB to a new destination, and the time until its alert
appears in the NDJSON file is measured. Prints throughput (records stored per second), alert
latency and the watcher's resident memory at start, middle and end.

    python bench/bench_watch.py                 # 30 minutes, 500 records/s
    python bench/bench_watch.py --minutes 3 --rate 2000
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_watch import HEADER  # noqa: E402

WATCH = [sys.executable, "-c", "import abfluss.cli; abfluss.cli.main()"]


def line(i: int, t: float, out_bytes: int, host: int, dest: str) -> str:
    return (f"{t:.6f}\tB{i:011d}\t10.0.{host // 250}.{host % 250 + 1}\t{40000 + i % 20000}\t{dest}\t443\ttcp\tssl\t"
            f"0.8\t{out_bytes}\t{3000 + i % 500}\tSF\t-\t-\t0\tShADadFf\t10\t{out_bytes + 500}\t8\t3500\t-\n")


def rss_kb(pid: int) -> int:
    try:
        for row in open(f"/proc/{pid}/status"):
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    except OSError:
        pass
    return 0


def stored(ws: Path) -> int:
    import abfluss

    try:
        with abfluss.open_workspace(ws) as w:
            return w.con.execute("SELECT count(*) FROM flows_raw").fetchall()[0][0]
    except Exception:  # noqa: BLE001 - the catalog is busy: ask again next time
        return -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=int, default=500, help="conn records per second")
    ap.add_argument("--every", type=float, default=10, help="watch --every")
    ap.add_argument("--burst-every", type=float, default=120)
    ap.add_argument("--rotate-every", type=float, default=300)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="abfluss-soak-"))
    logs, ws, alerts = tmp / "logs", tmp / "ws", tmp / "alerts.ndjson"
    logs.mkdir()
    conn = logs / "conn.log"
    conn.write_text(HEADER.format(opened="soak"))
    w = subprocess.Popen(WATCH + ["--workspace", str(ws), "watch", "--zeek-dir", str(logs), "--every", str(a.every),
                                  "--ndjson", str(alerts), "--silent-after", "3600"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    end = t0 + a.minutes * 60
    i, bursts, latencies, rss, sent = 0, {}, [], {}, 0
    last_rot, last_burst, seen_lines = t0, t0, 0
    try:
        while time.time() < end:
            tick = time.time()
            with open(conn, "a") as f:
                f.write("".join(line(i + k, tick, 800 + k % 900, k % 400, f"198.51.100.{k % 50 + 1}")
                                for k in range(a.rate)))
                i += a.rate
                if tick - last_burst >= a.burst_every:
                    sent += 1
                    n = sent  # a fresh host and destination per upload (len(bursts) repeats once matched)
                    dest = f"203.0.{113 if n < 250 else 114}.{n % 250 + 1}"
                    f.write(line(i, tick, 20_000_000, 900 + n, dest))
                    i += 1
                    bursts[f"10.0.{(900 + n) // 250}.{(900 + n) % 250 + 1}"] = tick
                    last_burst = tick
            if tick - last_rot >= a.rotate_every:
                conn.rename(logs / f"conn.{int(tick)}.log")
                conn.write_text(HEADER.format(opened=int(tick)))
                last_rot = tick
            if alerts.exists():
                rows = alerts.read_text().splitlines()
                for r in rows[seen_lines:]:
                    d = json.loads(r)
                    for h in d.get("abfluss", {}).get("internal_hosts", []) or d.get("source", {}).get("ip", []) or []:
                        if h in bursts:
                            latencies.append(time.time() - bursts.pop(h))
                seen_lines = len(rows)
            frac = (tick - t0) / (end - t0)
            for mark, at in (("start", 0.02), ("middle", 0.5), ("end", 0.98)):
                if mark not in rss and frac >= at:
                    rss[mark] = rss_kb(w.pid)
            time.sleep(max(0.0, 1 - (time.time() - tick)))
        time.sleep(a.every * 2)
    finally:
        w.send_signal(signal.SIGTERM)
        w.communicate(timeout=300)
    n = stored(ws)
    secs = time.time() - t0
    print(f"soak {a.minutes:g} min at {a.rate} records/s, detections every {a.every:g} s")
    print(f"written {i:,} records, stored {n:,} ({n / secs:,.0f} records/s), equal: {n == i}")
    if latencies:
        latencies.sort()
        print(f"alert latency over {len(latencies)} of {sent} uploads: median "
              f"{latencies[len(latencies) // 2]:.1f} s, max {latencies[-1]:.1f} s; missed {len(bursts)}")
    else:
        print(f"no alert matched; missed {len(bursts)} uploads")
    print("watch RSS (MB): " + ", ".join(f"{k} {v / 1024:.0f}" for k, v in rss.items()))
    print(f"workspace kept at {tmp}")


if __name__ == "__main__":
    main()
