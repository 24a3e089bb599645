#!/usr/bin/env python3
"""Build the lab's exfiltration scenarios, capture each, and write pcaps plus one ground-truth file.

    sudo python3 lab/scenarios.py --out examples/                 # all, about 19 min (real-time beacon)
    sudo python3 lab/scenarios.py --out examples/ --only dlp,dlp-tls

Writes <out>/lab-<scenario>.pcap and <out>/lab-truth.json (per scenario; a run with --only
replaces just those entries). Same namespaces, safety rules and teardown as make_demo.py
(it reuses labnet and make_demo's tools); the demo's own output is not touched.
See lab/README.md, section "Exfiltration scenarios".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True  # run as root: leave no root-owned __pycache__ in lab/

import labnet  # noqa: E402
import labruns  # noqa: E402
import pcapstats  # noqa: E402
from labnet import Lab  # noqa: E402
from labscen import add_content, extend_topology, start_services  # noqa: E402
from make_demo import LAB_DIR, WORK_PREFIX, Ctx, ensure_tools, make_cert, make_content  # noqa: E402
from truth import FIELD_DOC, Truth  # noqa: E402

SCENARIOS = ("dns-tunnel", "beacon", "https-upload", "dlp", "dlp-tls", "dlp-exports", "big-upload")
TRUTH_FILE = "lab-truth.json"
# Bulk TCP segments are cut in the committed upload capture (headers and counts stay exact)
SLIM = {"https-upload": (1000, 128), "big-upload": (1000, 80)}
SCHEMA_VERSION = 1
HOW = {
    "dns-tunnel": "ws1 runs labdns.py send: 180 000 seeded random bytes as base32 in query names under "
                  "t.exfil-tunnel.test, asked sequentially (~45 queries/s) at the LAN resolver (dnsmasq on srv), "
                  "which forwards the zone to labdns.py serve on 203.0.113.53; meanwhile dig and curl make "
                  "ordinary look-ups and page views. Both legs (ws1->srv and srv->203.0.113.53) are captured.",
    "beacon": "ws2 runs curl POST https://c2.update-check.test/api/v2/checkin (one new TLS connection each, "
              "~370 B request, 193 B response) on a real-time schedule: next = previous planned time + "
              "interval x uniform(1-jitter, 1+jitter); a second thread browses shop/cdn from ws2 at exponential "
              "gaps (mean 45 s). Captured with 'host 10.10.0.12', concurrently with ws1's scenarios.",
    "https-upload": "ws1 views 27 pages and downloads (curl, shop and cdn, HTTP and HTTPS, 0.3-1.5 s pauses) "
                    "and, at 4 random points among them, POSTs a 2 MB random part as multipart/form-data to "
                    "https://upload.files-drop.test/api/upload. The committed pcap is slimmed (capture.slimmed).",
    "big-upload": "ws1 views 6 pages (curl, shop and cdn), then POSTs a 21 MB random file as multipart/form-data "
                  "(curl --limit-rate 4M) "
                  "in one HTTPS connection to intake.data-collect.test, which no internal host contacted before. "
                  "The committed pcap is slimmed (capture.slimmed).",
    "dlp": "ws1 sends the seeded insured-person CSV (lab/dlpdata.py) three ways: curl -F multipart POST over "
           "HTTP to intake.data-collect.test, smtplib with the CSV as a base64 text/csv attachment to "
           "mx.mail-relay.test:25, ftplib passive STOR to ftp.files-archive.test; one page view before and after.",
    "dlp-tls": "ws1 sends the same CSV with curl -F multipart POST over HTTPS to intake.data-collect.test:443.",
    "dlp-exports": "the same CSV loaded into SQLite with the sqlite3 shell and exported by real tools: sqlite3 "
                   ".mode json as a curl -F multipart POST over HTTP to intake.data-collect.test; a zip -9 of the "
                   ".mode csv, .mode insert and .mode markdown exports as an application/zip attachment (smtplib) "
                   "to mx.mail-relay.test:25; a tar czf of .dump by ftplib passive STOR to ftp.files-archive.test.",
}


class BeaconThread(threading.Thread):
    """The real-time beacon of ws2, run beside ws1's scenarios (their captures filter each other out)."""

    def __init__(self, ctx: Ctx, rng: random.Random, a: argparse.Namespace, abort: threading.Event):
        super().__init__(daemon=True)
        self.args, self.result, self.error = (ctx, rng, a.beacon_duration, a.beacon_interval, a.beacon_jitter,
                                              abort), None, None

    def run(self) -> None:
        try:
            self.result = labruns.beacon(*self.args)
        except BaseException as e:  # re-raised in the main thread
            self.error = e


def run_all(ctx: Ctx, only: list[str], a: argparse.Namespace, states: dict, abort: threading.Event) -> dict:
    rng = random.Random(a.seed)
    rngs = {sid: random.Random(rng.random()) for sid in SCENARIOS}  # one stream each: --only keeps values
    csv_bytes, expected = labruns.dlp_expected(a.seed)
    csv_path = ctx.work / "export" / "versicherte-export-2024-q2.csv"
    csv_path.parent.mkdir()
    csv_path.write_bytes(csv_bytes)
    results = {}
    bt = None
    if "beacon" in only:
        bt = BeaconThread(ctx, rngs["beacon"], a, abort)
        bt.start()
    for sid in only:
        if sid != "beacon":
            print(f"== {sid}", flush=True)
        if sid == "dns-tunnel":
            results[sid] = labruns.dns_tunnel(ctx, rngs[sid], states["tdns"])
        elif sid == "https-upload":
            results[sid] = labruns.https_upload(ctx, rngs[sid])
        elif sid == "big-upload":
            results[sid] = labruns.big_upload(ctx, rngs[sid])
        elif sid == "dlp":
            results[sid] = labruns.dlp(ctx, csv_path, expected, states)
        elif sid == "dlp-tls":
            results[sid] = labruns.dlp_tls(ctx, csv_path, expected)
        elif sid == "dlp-exports":
            results[sid] = labruns.dlp_exports(ctx, csv_path, expected, states)
    if bt is not None:
        print("== waiting for the beacon to finish ...", flush=True)
        while bt.is_alive():
            bt.join(timeout=1)
        if bt.error:
            raise bt.error
        results["beacon"] = bt.result
    return results


def write_outputs(out: Path, results: dict, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / TRUTH_FILE
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc.update({"schema_version": SCHEMA_VERSION, "generated_by": "lab/scenarios.py", "seed": seed,
                "topology": Truth().topology(), "field_notes": FIELD_DOC})
    doc.setdefault("scenarios", {})
    for sid, r in results.items():
        pcap = out / f"lab-{sid}.pcap"
        if sid in SLIM:
            r["capture"]["slimmed"] = pcapstats.slim(r["pcap_full"], pcap, *SLIM[sid])
        else:
            shutil.copyfile(r["pcap_full"], pcap)
        doc["scenarios"][sid] = {"pcap": pcap.name, "generated_at": time.time(), "how": HOW[sid],
                                 "capture": r["capture"],
                                 "summary": r["summary"], "events": r["events"]}
        os.chmod(pcap, 0o644)
        print(f"wrote {pcap} ({pcap.stat().st_size} bytes)")
    doc["scenarios"] = {k: doc["scenarios"][k] for k in SCENARIOS if k in doc["scenarios"]}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    os.chmod(path, 0o644)
    labnet.give_to_sudo_user(path, *[out / f"lab-{sid}.pcap" for sid in results])


def run(a: argparse.Namespace, only: list[str]) -> None:
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
    os.chmod(work, 0o755)
    lab, abort = Lab(work), threading.Event()
    try:
        labnet.purge_scratch(work, WORK_PREFIX)
        extend_topology()
        make_content(work)
        add_content(work, random.Random(a.seed))
        ctx = Ctx(lab, Truth(), work, make_cert(work))
        print("building lab namespaces ...", flush=True)
        lab.setup()
        states = start_services(lab, work, ctx.cert)
        results = run_all(ctx, only, a, states, abort)
        write_outputs(a.out.resolve(), results, a.seed)
    finally:
        abort.set()
        labnet.tear_down(lab, work)
    labnet.assert_clean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=LAB_DIR.parent / "examples", help="output folder")
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help=f"comma-separated scenarios to build (default all: {','.join(SCENARIOS)})")
    ap.add_argument("--seed", type=int, default=20240611, help="seed of every generated value")
    ap.add_argument("--beacon-duration", type=float, default=1080.0, help="seconds of beaconing (real time)")
    ap.add_argument("--beacon-interval", type=float, default=20.0, help="mean seconds between beacons")
    ap.add_argument("--beacon-jitter", type=float, default=0.25, help="uniform jitter as a share of the interval")
    ap.add_argument("--cleanup-only", action="store_true", help="remove lab leftovers and exit")
    a = ap.parse_args()
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SCENARIOS]
    if bad:
        ap.error(f"unknown scenario(s) {', '.join(bad)}; choose from {', '.join(SCENARIOS)}")
    labnet.exit_on_signals()
    ensure_tools()
    if a.cleanup_only:
        print("removed:", labnet.purge_leftovers() or "nothing")
        return
    run(a, [s for s in SCENARIOS if s in only])


if __name__ == "__main__":
    main()
