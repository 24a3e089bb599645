"""make eval, short: the labelled-set runner judges two cases right, one a variant it makes itself
(DNS removed from a benign capture: NOT_ASSESSABLE), and its tables add up."""

from __future__ import annotations

import importlib.util
import sys

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("abfluss_eval", ROOT / "bench" / "eval.py")
ev = importlib.util.module_from_spec(_spec)
sys.modules["abfluss_eval"] = ev  # its dataclasses look their module up there
_spec.loader.exec_module(ev)


def test_eval_short(tmp_path):
    cases = {c.name: c for c in ev.CASES}
    rows = [ev.run_case(cases[n], tmp_path) for n in ("wikipedia, networks set", "wikipedia, no DNS")]
    assert [(r["verdict"], r["right"]) for r in rows] == [("NO_EXFIL_EVIDENCE", True), ("NOT_ASSESSABLE", True)]
    assert rows[1]["missing"] == ["channel_unchecked"]
    per = {v["verdict"]: v for v in ev.per_verdict(rows)}
    assert (per["NO_EXFIL_EVIDENCE"]["n"], per["NOT_ASSESSABLE"]["accuracy"]) == (1, 1.0)
    rel = ev.reliability(rows)
    assert sum(b["n"] for b in rel) == 1  # NOT_ASSESSABLE makes no statement: not in the table


def test_loss_and_sampled_netflow_variants(tmp_path):
    """The variants the labelled set adds: packets dropped at random (seeded: the same each run),
    and the capture as softflowd exports it with 1-in-N packet sampling, read back as NetFlow."""
    import abfluss
    from conftest import EXAMPLES

    src = EXAMPLES / "lab-dlp-tls.pcap"
    n, kept = ev._variants.lossy(src, tmp_path / "lossy.pcap", 0.1)
    assert (n, kept) == ev._variants.lossy(src, tmp_path / "again.pcap", 0.1)
    assert 0.8 * n < kept < n and (tmp_path / "lossy.pcap").read_bytes() == (tmp_path / "again.pcap").read_bytes()
    stats = ev._variants.netflow_view(src, tmp_path / "nf.pcap", 2)
    assert stats["packets_sampled"] + stats["packets_not_sampled"] >= n - 2  # softflowd skips non-IP frames
    assert stats["flows_exported"] > 0
    ws = abfluss.open_workspace(tmp_path / "ws", write=True)
    try:
        (r,) = abfluss.ingest_paths(ws, [tmp_path / "nf.pcap"])
        assert (r.status, r.format) == ("stored", "netflow")
        assert ws.con.execute("SELECT count(*) FROM flows_raw").fetchall()[0][0] > 0
    finally:
        ws.close()


def test_without_namespaces_only_the_netflow_variants_are_skipped():
    """make eval runs without root: the process's capabilities decide, and only the variants that
    softflowd makes inside a network namespace are skipped (the pre-made NetFlow export runs)."""
    import subprocess

    run, skipped = ev.runnable(list(ev.CASES), netns=False)
    assert [c.variant for c in skipped] == ["netflow:1", "netflow:10", "netflow:10", "netflow:100", "netflow:10"]
    assert len(run) + len(skipped) == len(ev.CASES) and "iodine, NetFlow view" in {c.name for c in run}
    assert ev.runnable(list(ev.CASES), netns=True) == (list(ev.CASES), [])
    assert ev._variants.netns_missing() == []  # the suite runs as root (the namespace tests need it)
    code = "import sys; sys.path.insert(0, 'bench'); import _variants; print(_variants.netns_missing())"
    p = subprocess.run(["setpriv", "--bounding-set", "-sys_admin", sys.executable, "-c", code], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "['CAP_SYS_ADMIN']", p.stderr
