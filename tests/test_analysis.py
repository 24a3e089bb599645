"""analyze as a whole: allowlists for every detection, config errors, re-analysis, windows."""

from __future__ import annotations

import json

import pytest

import abfluss
from abfluss import analysis
from abfluss.errors import ConfigError

from conftest import EXAMPLES, data, run_cli
from detkit import analyze_capture

DEMO = str(EXAMPLES / "demo.pcap")
UPLOAD = ("203.0.113.50", "upload.files-drop.test")


def _names(fs):
    return {x for f in fs for x in f.external_hosts + f.external_names}


def test_demo_upload_is_found_and_allowlists_silence_every_detection(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("allow")
    plain = analyze_capture(DEMO, tmp)
    assert set(UPLOAD) <= _names(plain), "the demo's upload must be found before allowlisting it"
    for cfg in ('[allowlist]\ndomains = ["*.files-drop.test"]\n', '[allowlist]\nnetworks = ["203.0.113.48/28"]\n'):
        allowed = analyze_capture(DEMO, tmp, cfg)
        assert not (set(UPLOAD) & _names(allowed)), cfg
        others = [f.to_dict() for f in plain if not set(UPLOAD) & set(f.external_hosts + f.external_names)]
        assert [f.to_dict() for f in allowed if f.detection != "rare_destination"] == \
               [f for f in others if f["detection"] != "rare_destination"]


def test_unknown_detection_setting_is_a_one_line_error(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "abfluss.toml").write_text("[detections.beaconing]\nno_such_threshold = 3\n")
    r = run_cli("analyze", workspace=ws)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "no_such_threshold" in r.stderr
    (ws / "abfluss.toml").write_text("[detections.beaconing]\nmin_connections = \"many\"\n")
    with pytest.raises(ConfigError):
        abfluss.detections.settings_for("beaconing", {"min_connections": "many"})


def test_reanalysis_updates_instead_of_duplicating(tmp_path):
    ws = tmp_path / "ws"
    run_cli("ingest", DEMO, workspace=ws, check=True)
    first = json.loads(run_cli("analyze", "--format", "json", workspace=ws, check=True).stdout)
    again = json.loads(run_cli("analyze", "--format", "json", workspace=ws, check=True).stdout)
    assert first["findings"] and again["new"] == []
    stored = json.loads(run_cli("findings", "--format", "json", workspace=ws, check=True).stdout)
    assert sorted(f["id"] for f in stored) == sorted(f["id"] for f in first["findings"])
    # the live view's cursor: a run that changed nothing moves no finding's ``updated``
    with abfluss.open_workspace(ws) as w:
        since = analysis.last_update(w)
        assert since is not None and analysis.load(w, updated_after=since) == []
    run_cli("analyze", workspace=ws, check=True)
    with abfluss.open_workspace(ws) as w:
        assert analysis.last_update(w) == since and analysis.load(w, updated_after=since) == []


def test_window_limits_what_is_analyzed(tmp_path):
    ws = tmp_path / "ws"
    run_cli("ingest", DEMO, workspace=ws, check=True)
    r = json.loads(run_cli("analyze", "--from", "2001-01-01", "--to", "2001-01-02", "--format", "json",
                           workspace=ws, check=True).stdout)
    assert r["flows"] == 0 and r["findings"] == []


def test_empty_workspace(tmp_path):
    r = run_cli("analyze", workspace=tmp_path / "ws", check=True)
    assert "nothing to analyze" in r.stdout


def test_a_narrower_window_never_shrinks_a_stored_finding(tmp_path):
    """Issue 11 item 6: the beacon of test-cc analysed in full, then from 15:26 only: the stored
    finding keeps its full span and bytes, and each run is one row in ``analyses``."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "abfluss.toml").write_text('[networks]\ninternal = ["147.32.80.37/32"]\n')
    run_cli("ingest", str(data("slips/test-cc/test-cc-capture-1.pcap")), workspace=ws, check=True)
    full = json.loads(run_cli("analyze", "--format", "json", workspace=ws, check=True).stdout)
    part = json.loads(run_cli("analyze", "--from", "2024-02-08T15:26Z", "--format", "json",
                              workspace=ws, check=True).stdout)
    whole = {f["id"]: f for f in full["findings"]}
    later = {f["id"]: f for f in part["findings"]}
    stored = {f["id"]: f for f in json.loads(run_cli("findings", "--format", "json", workspace=ws,
                                                     check=True).stdout)}
    (bid,) = [i for i, f in whole.items() if f["detection"] == "beaconing"]
    assert later[bid]["bytes_out"] < whole[bid]["bytes_out"] and later[bid]["start"] > whole[bid]["start"]
    for i, f in whole.items():  # nothing stored shrank: span and bytes of the full run are kept
        assert stored[i]["bytes_out"] == max(f["bytes_out"], later.get(i, f)["bytes_out"])
        assert stored[i]["start"] == min(f["start"], later.get(i, f)["start"])
        assert stored[i]["end"] == max(f["end"], later.get(i, f)["end"])
    w = abfluss.open_workspace(ws)
    try:
        runs = analysis.runs(w)
    finally:
        w.close()
    assert [(r["engine"], r["findings"], r["new"], r["raised"]) for r in runs] == [
        ("duckdb", len(whole), len(whole), 0), ("duckdb", len(later), 0, 0)]
    assert runs[1]["window_start"].isoformat().startswith("2024-02-08T15:26:00")
    assert runs[1]["unchanged"] + runs[1]["grown"] == len(later) and runs[0]["version"] == abfluss.__version__
