"""make eval: how often each verdict is right, and whether its confidence means what it says.

The labelled set: every lab capture with its truth (examples/lab-truth.json, demo-truth.json),
public labelled captures from ../shared/data, and variants made from them (bench/_variants.py: a
telemetry gap, DNS removed, packets lost, the capture as sampled NetFlow, the window cut, the
internal networks left at their defaults). Each case says what
happened (``outflow``: data left; ``none``: benign) and whether its telemetry can support a
statement at all (``assessable``). A verdict is right when

- the telemetry is assessable: ``EXFIL_CONFIRMED``/``EXFIL_INDICATED`` for an outflow,
  ``NO_EXFIL_EVIDENCE`` for none;
- it is not: ``NOT_ASSESSABLE``, or an exfiltration verdict for a real outflow (positive
  evidence needs no complete telemetry).

It prints per verdict how often it was right, per case the verdict, its confidence and whether
it was right, and the reliability table: confidence in bins against the share right (the verdicts
that make a statement; ``NOT_ASSESSABLE`` makes none and has confidence 0).

Usage: python bench/eval.py [--only NAME,...] [--markdown]. Needs ../shared/data. Runs without
root too: the sampled-NetFlow variants (softflowd exporting inside a network namespace, which needs
CAP_SYS_ADMIN and CAP_NET_RAW) are then skipped and named; every other case runs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import abfluss
from abfluss.report.render import build

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _variants  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
DATA = ROOT.parent / "shared" / "data"
BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0001)


@dataclass
class Case:
    name: str
    inputs: tuple[str, ...]
    outflow: bool
    assessable: bool = True
    config: str | None = None
    # "no_dns": port-53 packets removed; "loss:<share>": that share of packets dropped at random;
    # "netflow:<N>": the capture as NetFlow v9 with 1-in-N packet sampling; "window:<start>,<end>"
    variant: str | None = None
    sensor: str | None = None   # one sensor name for all inputs (a gap between captures)
    why: str = ""
    extra: dict = field(default_factory=dict)


CASES = (
    Case("demo", (f"{EX}/demo.pcap",), True, why="two hosts upload 2 MB and 1 MB to a drop site (demo-truth.json)"),
    Case("lab-https-upload", (f"{EX}/lab-https-upload.pcap",), True, why="4 x 2 MB POSTs to a new site"),
    Case("lab-big-upload", (f"{EX}/lab-big-upload.pcap",), True,
         why="21 MB in one HTTPS connection to a destination no host contacted before"),
    Case("lab-dlp", (f"{EX}/lab-dlp.pcap",), True, why="insured-person CSV over HTTP, SMTP, FTP"),
    Case("lab-dlp-tls", (f"{EX}/lab-dlp-tls.pcap",), True, why="the same CSV (21 KB) over HTTPS"),
    Case("lab-dns-tunnel", (f"{EX}/lab-dns-tunnel.pcap",), True, why="180 KB in DNS query names"),
    Case("lab-beacon", (f"{EX}/lab-beacon.pcap",), True, why="C2 check-ins with 370-byte POSTs"),
    Case("lab-dlp-exports", (f"{EX}/lab-dlp-exports.pcap",), True, why="sqlite3 exports, zip and tar over HTTP, SMTP, FTP"),
    Case("iodine, via resolver", (f"{EX}/tunnels/iodine-default-resolver.pcap",), True,
         why="iodine defaults through the LAN resolver (tunnels-truth.json)"),
    Case("iodine, NetFlow view", (f"{EX}/tunnels/iodine-default-direct.netflow.pcap",), True,
         why="iodine straight to its server, as softflowd exports it"),
    Case("dns2tcp, via resolver", (f"{EX}/tunnels/dns2tcp-default-resolver.pcap",), True,
         why="dns2tcp defaults through the LAN resolver"),
    Case("ptunnel-ng", (f"{EX}/tunnels/ptunnel-ng-default.pcap",), True, why="TCP over ICMP echo"),
    Case("iodine, DoH", (f"{EX}/tunnels/iodine-doh.pcap",), True,
         why="iodine defaults through a DoH stub: one TLS connection to an unknown DoH server"),
    Case("iodine, DoH, NetFlow view", (f"{EX}/tunnels/iodine-doh.pcap",), True, variant="netflow:1",
         why="variant: the DoH tunnel as softflowd exports it (one record per direction)"),
    Case("lab-dns-tunnel, detection off", (f"{EX}/lab-dns-tunnel.pcap",), True,
         config="[detections.dns_tunnel]\nenabled = false\n", why="the tunnel without its detection"),
    Case("lab-https-upload, no DNS", (f"{EX}/lab-https-upload.pcap",), True, False, variant="no_dns",
         why="variant: port 53 removed"),
    Case("lab-beacon, first 4 min", (f"{EX}/lab-beacon.pcap",), True,
         variant="window:2026-11-29T14:59:49Z,2026-11-29T15:03:49Z", why="variant: window cut"),
    Case("lab-https-upload, 10 % lost", (f"{EX}/lab-https-upload.pcap",), True, variant="loss:0.1",
         why="variant: 10 % of packets dropped, unreported"),
    Case("lab-dns-tunnel, 10 % lost", (f"{EX}/lab-dns-tunnel.pcap",), True, variant="loss:0.1",
         why="variant: 10 % of packets dropped, unreported"),
    Case("lab-https-upload, NetFlow 1:10", (f"{EX}/lab-https-upload.pcap",), True, variant="netflow:10",
         why="variant: NetFlow v9, 1-in-10 packets sampled (softflowd)"),
    Case("lab-dns-tunnel, NetFlow 1:10", (f"{EX}/lab-dns-tunnel.pcap",), True, variant="netflow:10",
         why="variant: NetFlow v9, 1-in-10 packets sampled (softflowd)"),
    Case("demo, NetFlow 1:100", (f"{EX}/demo.pcap",), True, variant="netflow:100",
         why="variant: NetFlow v9, 1-in-100 packets sampled (softflowd)"),
    Case("dns2tcp", (f"{DATA}/dns-tunnel/netrack-dns2tcp",), True, False, why="dns2tcp tunnel, DNS only"),
    Case("test-cc, networks set", (f"{DATA}/slips/test-cc/test-cc-capture-1.pcap",), True,
         config='[networks]\ninternal = ["147.32.80.0/24"]\n', why="HTTPS beacon every 2 s"),
    Case("test-cc, default networks", (f"{DATA}/slips/test-cc/test-cc-capture-1.pcap",), True, False,
         why="variant: internal networks match nothing"),
    Case("wikipedia, networks set", (f"{DATA}/zeek-traces/wikipedia.pcap",), False,
         config='[networks]\ninternal = ["141.142.220.0/24"]\n', why="benign browsing with DNS"),
    Case("wikipedia, no DNS", (f"{DATA}/zeek-traces/wikipedia.pcap",), False, False, variant="no_dns",
         config='[networks]\ninternal = ["141.142.220.0/24"]\n', why="variant: port 53 removed"),
    Case("wikipedia, 10 % lost", (f"{DATA}/zeek-traces/wikipedia.pcap",), False, variant="loss:0.1",
         config='[networks]\ninternal = ["141.142.220.0/24"]\n', why="variant: 10 % of packets dropped, unreported"),
    Case("wikipedia, NetFlow 1:10", (f"{DATA}/zeek-traces/wikipedia.pcap",), False, variant="netflow:10",
         config='[networks]\ninternal = ["141.142.220.0/24"]\n',
         why="variant: NetFlow v9, 1-in-10 packets sampled (softflowd)"),
    Case("wikipedia, default networks", (f"{DATA}/zeek-traces/wikipedia.pcap",), False, False,
         why="variant: internal networks match nothing"),
    Case("bro.org", (f"{DATA}/zeek-traces/bro.org.pcap",), False, False, why="benign browsing, no DNS"),
    Case("bro.org + bruteforce, one sensor", (f"{DATA}/zeek-traces/bro.org.pcap", f"{DATA}/zeek-traces/bruteforce.pcap"),
         False, False, sensor="tap", why="variant: 33 min gap, 3.6 % covered"),
    Case("rita open_conns", (f"{DATA}/rita/open_conns/closed",), False,
         why="benign lab Zeek logs; DNS only as port-53 flows in conn.log (no dns.log)"),
    Case("wrccdc zeek-tsv", (f"{DATA}/wrccdc-zeek/zeek-tsv",), False, False, why="DNS/TLS logs, no flows"),
)


def run_case(c: Case, tmp: Path) -> dict:
    from datetime import datetime

    root = tmp / c.name.replace(" ", "_").replace(",", "").replace("/", "_")
    root.mkdir(parents=True)
    if c.config:
        (root / "abfluss.toml").write_text(c.config)
    inputs = [Path(p) for p in c.inputs]
    if c.variant and not c.variant.startswith("window:"):
        inputs = [_variant(c.variant, p, root) for p in inputs]
    ws = abfluss.open_workspace(root, write=True)
    try:
        for p in inputs:
            abfluss.ingest_paths(ws, [p], sensor=c.sensor)
        abfluss.refresh(ws)
    finally:
        ws.close()
    start = end = None
    if c.variant and c.variant.startswith("window:"):
        a, b = c.variant[7:].split(",")
        start, end = (datetime.fromisoformat(x.replace("Z", "+00:00")) for x in (a, b))
    ws = abfluss.open_workspace(root)
    try:
        rep = build(ws, start, end)
    finally:
        ws.close()
    v = rep["verdict"]
    exfil = v in ("EXFIL_CONFIRMED", "EXFIL_INDICATED")
    if c.assessable:
        right = exfil if c.outflow else v == "NO_EXFIL_EVIDENCE"
    else:
        right = v == "NOT_ASSESSABLE" or (c.outflow and exfil)
    return {"case": c.name, "truth": "outflow" if c.outflow else "none", "assessable": c.assessable,
            "verdict": v, "confidence": rep["confidence"], "right": right, "why": c.why,
            "missing": [m["reason"] for m in rep["assessment"]["missing"]], "assessment": rep["assessment"]}


def _variant(variant: str, p: Path, root: Path) -> Path:
    kind, _, arg = variant.partition(":")
    out = root / f"{kind}-{p.name}"
    if kind == "no_dns":
        _variants.without_dns(p, out)
    elif kind == "loss":
        _variants.lossy(p, out, float(arg))
    elif kind == "netflow":
        _variants.netflow_view(p, out, int(arg))
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return out


def needs_netns(c: Case) -> bool:
    """The variant is made in a network namespace (``_variants.netflow_view``): root, in effect."""
    return bool(c.variant and c.variant.startswith("netflow:"))


def runnable(cases: list[Case], netns: bool) -> tuple[list[Case], list[Case]]:
    """The cases this process can run, and those skipped (no namespaces: the NetFlow variants)."""
    skipped = [c for c in cases if not netns and needs_netns(c)]
    return [c for c in cases if c not in skipped], skipped


def reliability(rows: list[dict]) -> list[dict]:
    stated = [r for r in rows if r["verdict"] != "NOT_ASSESSABLE"]
    out = []
    for lo, hi in zip(BINS, BINS[1:]):
        inb = [r for r in stated if lo <= r["confidence"] < hi]
        out.append({"bin": f"{lo:.1f}–{min(hi, 1.0):.1f}", "n": len(inb),
                    "mean_confidence": round(sum(r["confidence"] for r in inb) / len(inb), 2) if inb else None,
                    "right": round(sum(r["right"] for r in inb) / len(inb), 2) if inb else None})
    return out


def per_verdict(rows: list[dict]) -> list[dict]:
    out = []
    for v in ("EXFIL_CONFIRMED", "EXFIL_INDICATED", "NO_EXFIL_EVIDENCE", "NOT_ASSESSABLE"):
        mine = [r for r in rows if r["verdict"] == v]
        out.append({"verdict": v, "n": len(mine), "right": sum(r["right"] for r in mine),
                    "accuracy": round(sum(r["right"] for r in mine) / len(mine), 2) if mine else None})
    return out


def _table(head: list[str], rows: list[list], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join("–" if x is None else str(x) for x in r) + " |" for r in rows]
        return "\n".join(lines)
    w = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(head)]
    fmt = lambda r: "  ".join(("–" if x is None else str(x)).ljust(w[i]) for i, x in enumerate(r))  # noqa: E731
    return "\n".join([fmt(head)] + [fmt(r) for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="case names separated by commas without a space")
    ap.add_argument("--markdown", action="store_true", help="tables as Markdown (for docs/report.md)")
    a = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"eval: the shared test data is missing at {DATA}")
    # names hold ", " themselves ("demo, NetFlow 1:100"): only a comma without a space separates
    only = set(re.split(r",(?! )", a.only)) if a.only else None
    lacking = _variants.netns_missing()
    cases, skipped = runnable([c for c in CASES if only is None or c.name in only], not lacking)
    if skipped:
        print(f"eval: skipping {len(skipped)} NetFlow variant(s): softflowd exports inside a network namespace, "
              f"and this process lacks {' and '.join(lacking)} to build one (run make eval as root for the "
              f"whole set): {'; '.join(c.name for c in skipped)}", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="abfluss-eval-"))
    rows = []
    try:
        for c in cases:
            t0 = time.perf_counter()
            r = run_case(c, tmp)
            rows.append(r)
            print(f"  {c.name}: {r['verdict']} {r['confidence']:.2f} {'right' if r['right'] else 'WRONG'} "
                  f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    md = a.markdown
    note = f" ({len(skipped)} NetFlow variants skipped, no network namespace: {'; '.join(c.name for c in skipped)})" if skipped else ""
    print(f"Labelled set: {len(rows)} cases, {sum(r['right'] for r in rows)} right{note}.\n")
    print(_table(["case", "truth", "assessable", "verdict", "confidence", "right", "what it is"],
                 [[r["case"], r["truth"], "yes" if r["assessable"] else "no", r["verdict"], f"{r['confidence']:.2f}",
                   "yes" if r["right"] else "**no**" if md else "NO", r["why"]] for r in rows], md))
    print("\nPer verdict: how often it was right\n")
    print(_table(["verdict", "cases", "right", "accuracy"],
                 [[v["verdict"], v["n"], v["right"], v["accuracy"]] for v in per_verdict(rows)], md))
    print("\nReliability (verdicts that make a statement): confidence bin, cases, mean confidence, share right\n")
    print(_table(["confidence", "cases", "mean confidence", "share right"],
                 [[b["bin"], b["n"], b["mean_confidence"], b["right"]] for b in reliability(rows)], md))


if __name__ == "__main__":
    main()
