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
