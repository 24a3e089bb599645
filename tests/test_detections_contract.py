"""The contract every registered detection meets (river's check_estimator, Zeek's test-all-policy).

Each ``tests/test_det_<id>.py`` provides ``positive_tables()``: literal tables on which the
detection fires with its default settings. The checks here run on all of them.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from abfluss import detections
from abfluss.findings import SEVERITIES

from conftest import ROOT
from detkit import canonical, flow, dns, run

IDS = detections.MODULES
OPTIONAL = ("server_name", "external_name", "community_id", "service", "user_agent", "history",
            "conn_state", "missed_bytes", "uid", "tenant")


def positive(det_id: str) -> dict:
    return importlib.import_module(f"test_det_{det_id}").positive_tables()


def test_every_module_is_registered():
    files = {p.stem for p in (ROOT / "src/abfluss/detections").glob("*.py") if not p.stem.startswith("_")}
    assert files == set(IDS)
    tests = {p.stem[len("test_det_"):] for p in (ROOT / "tests").glob("test_det_*.py")}
    assert set(IDS) <= tests, f"detections without a test module: {set(IDS) - tests}"


@pytest.mark.parametrize("det_id", IDS)
def test_metadata_and_settings_are_complete(det_id):
    mod = detections.module(det_id)
    assert mod.__doc__ and mod.__doc__.strip().splitlines()[0].strip()
    m = mod.META
    assert m.id == det_id and m.title and m.description and m.runbook
    assert m.attack and all(re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in m.attack)
    s = mod.Settings()
    assert dataclasses.is_dataclass(s) and mod.Settings.__dataclass_params__.frozen
    for f in dataclasses.fields(s):
        assert f.metadata.get("help"), f"{det_id}.{f.name} has no help text"


@pytest.mark.parametrize("det_id", IDS)
def test_settings_are_documented(det_id):
    index = (ROOT / "docs/detections.md").read_text()
    assert f"(detections/{det_id}.md)" in index, f"docs/detections.md does not link {det_id}"
    section = (ROOT / f"docs/detections/{det_id}.md").read_text()
    assert f"`{det_id}`" in section
    for t in detections.module(det_id).META.attack:
        assert t in section, f"docs/detections/{det_id}.md: ATT&CK {t} missing"
    for name, default, _ in detections.settings_help(det_id):
        assert f"`{name}`" in section, f"docs/detections/{det_id}.md: setting {name} missing"


@pytest.mark.parametrize("det_id", IDS)
def test_empty_input_gives_nothing(det_id):
    assert run(det_id) == []


@pytest.mark.parametrize("det_id", IDS)
def test_positive_example_fires_and_is_well_formed(det_id):
    fs = run(det_id, **positive(det_id))
    assert fs, f"{det_id}: positive_tables() gives no finding"
    for f in fs:
        assert f.detection == det_id and f.severity in SEVERITIES and 0 <= f.score <= 100
        assert f.internal_hosts and f.explanation and f.start and f.end and f.start <= f.end
        assert abs(sum(f.score_parts.values()) - f.score) < 0.2 or f.score in (0, 100)
        assert f.bytes_out >= 0 and len(f.id) == 16


@pytest.mark.parametrize("det_id", IDS)
def test_same_input_twice_gives_the_same_findings(det_id):
    tables = positive(det_id)
    assert canonical(run(det_id, **tables)) == canonical(run(det_id, **tables))


@pytest.mark.parametrize("det_id", IDS)
def test_unrelated_host_changes_nothing(det_id):
    tables = positive(det_id)
    quiet = [flow(i * 600, orig_h="10.99.99.99", resp_h="198.51.100.77", orig_p=40000 + i,
                  orig_bytes=300, resp_bytes=4000) for i in range(3)]
    asks = [dns(i * 600, orig_h="10.99.99.99", query="www.example.org", answers=["198.51.100.77"])
            for i in range(3)]
    more = dict(tables)
    more["flows"] = list(tables.get("flows", ())) + quiet
    more["dns"] = list(tables.get("dns", ())) + asks
    before = [f for f in canonical(run(det_id, **tables))]
    after = [f for f in canonical(run(det_id, **more)) if "10.99.99.99" not in f["internal_hosts"]]
    assert after == before


@pytest.mark.parametrize("det_id", IDS)
def test_missing_optional_columns_do_not_break_it(det_id):
    tables = positive(det_id)
    stripped = {k: [{c: (None if c in OPTIONAL else v) for c, v in r.items()} for r in rows]
                for k, rows in tables.items() if k in ("flows", "history", "dns", "http", "tls", "dlp", "inspected")}
    stripped.update({k: v for k, v in tables.items() if k not in stripped})
    run(det_id, **stripped)  # must not raise


_TABLES = {f.name for f in dataclasses.fields(detections.Telemetry)} - {"start", "end", "backend", "extra", "rows"}


@pytest.mark.parametrize("det_id", IDS)
def test_inputs_name_every_table_it_reads(det_id):
    """``analyze`` skips a detection when every table of ``META.inputs`` is empty (issue 15): so
    they must be all the tables it reads, in its module and the shared helpers it uses."""
    import inspect
    import types

    mod = detections.module(det_id)
    helpers = {v if isinstance(v, types.ModuleType) else importlib.import_module(v.__module__)
               for v in vars(mod).values()
               if (isinstance(v, types.ModuleType) and v.__name__.startswith("abfluss.detections._"))
               or (callable(v) and getattr(v, "__module__", "").startswith("abfluss.detections._"))}
    src = "\n".join(inspect.getsource(m) for m in {mod, *helpers})
    read = set(re.findall(r"\btel\.(\w+)", src)) | set(re.findall(r"getattr\(tel, \"(\w+)\"", src))
    assert read & _TABLES <= set(mod.META.inputs), f"{det_id} reads {sorted(read & _TABLES)}"
    assert mod.META.inputs and set(mod.META.inputs) <= _TABLES
