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


def test_window_limits_what_is_analyzed(tmp_path):
    ws = tmp_path / "ws"
    run_cli("ingest", DEMO, workspace=ws, check=True)
    r = json.loads(run_cli("analyze", "--from", "2001-01-01", "--to", "2001-01-02", "--format", "json",
                           workspace=ws, check=True).stdout)
    assert r["flows"] == 0 and r["findings"] == []


def test_empty_workspace(tmp_path):
    r = run_cli("analyze", workspace=tmp_path / "ws", check=True)
    assert "nothing to analyze" in r.stdout
