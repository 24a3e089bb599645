"""Benchmark 8: the web console and API over a 10-million-flow workspace. Target: every page and
API call answers within 1 s at the 95th percentile.

Usage: python bench/bench_web.py [--flows N] [--runs R] [--cache DIR] [--build-only]. The flows are bench_ledger's
(2,000 internal hosts in two tenants, 50,000 destinations, one week), stored through the real store
and analysed (upload_heavy, bulk_outbound, rare_destination) so there are findings; the console runs
under uvicorn on loopback and each page or call is requested R times (after one first request) by an
analyst and by tenant A's officer, with their session cookie or API token.

First requests: the server starts with its warm-up (``abfluss.web.warm``: what the first requests
need, computed in the background); the analyst's overview is requested the moment the server
listens (it waits for the warm-up's sensor coverage instead of computing its own), then the bench
waits until the warm-up is done and prints how long it took from the start (wall and CPU
seconds of this process), and each call's first request after it. Then (``--no-cold`` skips it)
the *cold* figure: the results kept per workspace state emptied (``statecache.clear_all``), a
server without warm-up, each call's first request once; in the same process, so imports,
templates and the operating system's file cache are warm (the one-off imports and templates
cost ≈ 0.1–0.2 CPU s, and the warm-up does them too).

Building 10 million flows takes long on a loaded machine, so the workspace is kept in
``--cache`` (default ``$TMPDIR/abfluss-bench-web-<flows>``) and reused by the next run (its
stored ledger is brought up to date through the library like after any ingest).
``ABFLUSS_BENCH_FLOWS`` sets the default size, e.g. ``ABFLUSS_BENCH_FLOWS=1000000`` for a quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ledger import CHUNK, batch  # noqa: E402  the same generated flows

import abfluss  # noqa: E402
from abfluss.accounting import EXFIL_DETECTIONS, INDICATOR_DETECTIONS, stored_findings  # noqa: E402
from abfluss.store import StoredInput  # noqa: E402

TARGET = 1.0
PASSWORD = "bench password 0123456789"
CONFIG = ('[tenants.kasse_a]\nnetworks = ["10.1.0.0/22"]\n[tenants.kasse_b]\nnetworks = ["10.1.4.0/22"]\n')
#: The detections whose findings flag bytes in the accounting: analysed once over all data, so
#: ``account`` reads stored findings (``accounting.stored_findings``) as it does after ``analyze``.
DETECTIONS = EXFIL_DETECTIONS + INDICATOR_DETECTIONS


def build(root: Path, flows: int) -> dict:
    """The workspace of ``flows`` flows in ``root`` (built once; ``root/bench.json`` marks it done)."""
    done = root / "bench.json"
    if done.exists():
        b = json.loads(done.read_text())
        print(f"reusing the workspace of {flows:,} flows in {root}", flush=True)
        return {**b, "ws": root / "ws"}
    shutil.rmtree(root, ignore_errors=True)
    ws_dir = root / "ws"
    ws_dir.mkdir(parents=True)
    (ws_dir / "abfluss.toml").write_text(CONFIG)
    rng = np.random.default_rng(1)
    t = time.perf_counter()
    with abfluss.open_workspace(ws_dir, write=True) as ws:
        with ws.writer("bench") as w:
            for start in range(0, flows, CHUNK):
                w.write("flows", batch(rng, start, min(CHUNK, flows - start), flows), "bench")
            w.commit(StoredInput("bench", "generated", 0, "generated", "bench", {"flows": flows}, 0, [], None, None))
        abfluss.api.refresh(ws)
        print(f"stored {flows:,} flows in {time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        res = abfluss.analysis.analyze(ws, only=DETECTIONS)
        print(f"analysed ({', '.join(DETECTIONS)}): {len(res.findings)} findings in {time.perf_counter() - t:.1f} s",
              flush=True)
        tokens = {}
        for name, role, tenant in (("ana", "analyst", None), ("offa", "officer", "kasse_a")):
            abfluss.api.add_user(ws, None, name, role, PASSWORD, tenant)
            tokens[name] = abfluss.api.create_token(ws, None, name)[1]
        a_finding = next((f.id for f in res.findings if f.tenant == "kasse_a"), None)
        a_host = next((f.internal_hosts[0] for f in res.findings if f.tenant == "kasse_a"), "10.1.3.7")
    b = {"tokens": tokens, "finding": a_finding, "host": a_host}
    done.write_text(json.dumps(b))
    return {**b, "ws": ws_dir}


def prepare(ws_dir: Path) -> None:
    """Bring the workspace's derived tables (the stored hourly ledger) up to date, as an ingest
    or analyze does, and analyse with the detections a cached workspace was not analysed with:
    a workspace cached by an older version gets them here, timed."""
    t, c = time.perf_counter(), time.process_time()
    with abfluss.open_workspace(ws_dir, write=True) as ws:
        abfluss.api.refresh(ws)
        lo, hi = abfluss.analysis.data_span(ws)
        if stored_findings(ws, lo, hi) is None:
            abfluss.analysis.analyze(ws, only=DETECTIONS)
    print(f"workspace ready in {time.perf_counter() - t:.1f} s ({time.process_time() - c:.1f} CPU s)", flush=True)


def serve(ws: Path, warm: bool = True) -> tuple[str, object, object]:
    import socket

    import uvicorn

    from abfluss.web import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ws, warm=warm)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    srv.thread = threading.Thread(target=srv.run, daemon=True)
    srv.thread.start()
    while not srv.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", srv, app


def shutdown(srv) -> None:
    """Stop the server and its warm-up (its lifespan's end)."""
    srv.should_exit = True
    srv.thread.join(60)


def clients(base: str, b: dict, user: str, timeout: float) -> tuple[httpx.Client, httpx.Client]:
    """The user's API client (Bearer token) and browser client (logged in)."""
    api = httpx.Client(base_url=base, timeout=timeout, headers={"Authorization": f"Bearer {b['tokens'][user]}"})
    page = httpx.Client(base_url=base, timeout=timeout)
    csrf = page.get("/login").text.split('name="csrf" value="')[1].split('"')[0]  # the form's token and cookie
    page.post("/login", data={"name": user, "password": PASSWORD, "csrf": csrf})
    return api, page


def calls_of(b: dict, api: httpx.Client, page: httpx.Client) -> list[tuple[str, httpx.Client, str]]:
    calls = [("page", page, p) for p in ("/", "/incidents", "/findings", f"/findings/{b['finding']}",
                                         "/ledger", f"/hosts/{b['host']}", "/coverage", "/reports", "/live")]
    calls += [("api", api, p) for p in ("/api/v1/findings", f"/api/v1/findings/{b['finding']}",
                                        "/api/v1/incidents", "/api/v1/ledger?limit=100",
                                        f"/api/v1/ledger?host={b['host']}", "/api/v1/coverage",
                                        "/api/v1/reports")]
    return calls + [("api", api, "/api/v1/account?from=2024-01-07T00:00Z&to=2024-01-08T00:00Z")]


def once(client: httpx.Client, path: str) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    r = client.get(path)
    if r.status_code != 200:
        raise SystemExit(f"{path}: HTTP {r.status_code} {r.text[:200]}")
    return time.perf_counter() - t, time.process_time() - c


def timed(client: httpx.Client, path: str, runs: int) -> tuple[list[float], list[float], tuple[float, float]]:
    """Wall seconds per request, and CPU seconds of this process (the server runs in a thread of
    it; the client's share is small) per request: the steadier figure on a loaded machine; and
    the first request's (after the server's warm-up: what a page computes once per workspace
    state, such as the accounting, is then already kept)."""
    wall, cpu = [], []
    t, c = time.perf_counter(), time.process_time()
    try:
        client.get(path)
    except httpx.TimeoutException:  # reported as no answer, the other calls still measured
        return [float("inf")], [float("nan")], (float("inf"), float("nan"))
    first = (time.perf_counter() - t, time.process_time() - c)
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        try:
            r = client.get(path)
        except httpx.TimeoutException:
            return wall + [float("inf")], cpu + [float("nan")], first
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        if r.status_code != 200:
            raise SystemExit(f"{path}: HTTP {r.status_code} {r.text[:200]}")
    return wall, cpu, first


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=int(os.environ.get("ABFLUSS_BENCH_FLOWS", 10_000_000)))
    ap.add_argument("--cache", type=Path, help="folder of the generated workspace (kept for the next run)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--slow-runs", type=int, default=3, help="runs of the calls that re-analyse (account)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds a call may take before it counts as no answer")
    ap.add_argument("--build-only", action="store_true", help="generate (or reuse) the workspace, measure nothing")
    ap.add_argument("--cold", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure each call's first request without warm-up and with nothing kept")
    args = ap.parse_args()
    cache = args.cache or Path(tempfile.gettempdir()) / f"abfluss-bench-web-{args.flows}"
    b = build(cache, args.flows)
    if args.build_only:
        return
    prepare(b["ws"])
    from datetime import datetime, timezone
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}", flush=True)
    from abfluss import statecache
    statecache.clear_all()
    t0, c0 = time.perf_counter(), time.process_time()
    base, srv, app = serve(b["ws"])
    listening = time.perf_counter() - t0
    api, page = clients(base, b, "ana", args.timeout)
    fw, fc = once(page, "/")
    print(f"server listening {listening:.2f} s after start; the analyst's first overview, sent then (it joins "
          f"the warm-up): {fw:.2f} s, {fc:.2f} CPU s of this process", flush=True)
    warmer = app.state.warmer
    if not warmer.wait(args.timeout):
        raise SystemExit(f"warm-up not done within {args.timeout:.0f} s")
    print(f"warm {time.perf_counter() - t0:.2f} s after the start, {time.process_time() - c0:.2f} CPU s of this "
          f"process (the warm-up itself: {warmer.last['seconds']:.2f} s, {warmer.last['cpu_seconds']:.2f} CPU s; "
          + ", ".join(f"{label} {sec:.2f} s" for label, sec in warmer.last["tasks"]) + ")", flush=True)
    rows = []
    try:
        for user in ("ana", "offa"):
            api, page = clients(base, b, user, args.timeout)
            for kind, client, path in calls_of(b, api, page):
                runs = args.slow_runs if "account" in path else args.runs
                xs, cs, (fw, fc) = timed(client, path, runs)
                rows.append((user, kind, path, statistics.median(xs), p95(xs), runs))
                print(f"{user:5s} {kind:4s} {path:58s} p50 {statistics.median(xs):6.2f} s  p95 {p95(xs):6.2f} s "
                      f"(target {TARGET:.0f} s: {'ok' if p95(xs) <= TARGET else 'OVER'})  CPU p50 "
                      f"{statistics.median(cs):5.2f} s  p95 {p95(cs):5.2f} s  first {fw:6.2f} s {fc:5.2f} CPU s",
                      flush=True)
    finally:
        shutdown(srv)
    if args.cold:
        statecache.clear_all()
        base, srv, _ = serve(b["ws"], warm=False)
        print("\ncold: the first request of each call, nothing kept per workspace state, no warm-up", flush=True)
        try:
            for user in ("ana", "offa"):
                api, page = clients(base, b, user, args.timeout)
                for kind, client, path in calls_of(b, api, page):
                    w, c = once(client, path)
                    print(f"{user:5s} {kind:4s} {path:58s} cold {w:6.2f} s {c:5.2f} CPU s", flush=True)
        finally:
            shutdown(srv)
    over = [r for r in rows if r[4] > TARGET]
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores while measuring "
          "(other jobs on the machine stretch wall time; CPU seconds are the steadier figure)")
    print(f"{len(rows) - len(over)} of {len(rows)} pages and calls within {TARGET:.0f} s at p95 over "
          f"{args.flows:,} flows" + (f"; over: {', '.join(sorted({r[2] for r in over}))}" if over else ""))


if __name__ == "__main__":
    main()
