"""The command line as a user meets it: commands, help, exit codes, one-line errors on bad input."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, data, run_cli

COMMANDS = ("ingest", "ledger", "inputs", "coverage", "demo", "analyze", "findings", "explain", "incidents",
            "detections", "contain", "report", "watch")


def no_traceback(proc):
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    proc = run_cli(command, "--help", check=True)
    assert "Example:" in proc.stdout


def test_commands_are_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for command in COMMANDS:
        assert f"abfluss {command}" in readme or f"] {command}" in readme, command


def test_ingest_then_ledger_json_contract(tmp_path):
    ws = tmp_path / "ws"
    (tmp_path / "ws").mkdir()
    (ws / "abfluss.toml").write_text('[networks]\ninternal = ["147.32.0.0/16"]\n')
    proc = run_cli("ingest", str(data("slips/test-cc/test-cc-capture-1.pcap")), "--sensor", "ctu", workspace=ws)
    assert proc.returncode == 0, proc.stderr
    assert "1 stored, 0 already present, 0 failed; 596 records read, 0 skipped" in proc.stdout
    rows = json.loads(run_cli("ledger", "--format", "json", workspace=ws, check=True).stdout)
    assert {"internal_host", "external_host", "external_name", "hour", "bytes_out", "bytes_in", "flows",
            "first_seen", "last_seen"} <= set(rows[0])
    assert [(r["external_host"], r["bytes_out"], r["hour"]) for r in rows] == [
        ("141.193.213.21", 249895, "2024-02-08T15:00:00Z"), ("141.193.213.20", 1682, "2024-02-08T15:00:00Z")]
    csv_out = run_cli("ledger", "--format", "csv", "--host", "147.32.80.37", workspace=ws, check=True).stdout
    assert csv_out.splitlines()[0].startswith("internal_host,external_host,external_name,hour,bytes_out")
    assert len(csv_out.splitlines()) == 3
    again = run_cli("ingest", str(data("slips/test-cc/test-cc-capture-1.pcap")), workspace=ws)
    assert again.returncode == 0 and "0 stored, 1 already present" in again.stdout
    inputs = json.loads(run_cli("inputs", "--format", "json", workspace=ws, check=True).stdout)
    assert [(i["sensor"], i["records"], i["skipped"]) for i in inputs] == [("ctu", 596, 0)]
    cov = json.loads(run_cli("coverage", "--format", "json", workspace=ws, check=True).stdout)
    assert [(c["sensor"], c["records"], c["gap_minutes"], c["interim_flows"]) for c in cov] == [("ctu", 596, 0, 0)]


def test_bad_time_and_bad_config_are_one_line(tmp_path):
    for args in (("ledger", "--from", "yesterday-ish"), ("--config", str(tmp_path / "none.toml"), "ledger")):
        proc = run_cli(*args, workspace=tmp_path / "ws")
        assert proc.returncode == 2
        no_traceback(proc)
        assert len(proc.stderr.strip().splitlines()) == 1


def test_truncated_pcap_stores_the_good_part(tmp_path):
    raw = data("slips/test-cc/test-cc-capture-1.pcap").read_bytes()
    cut = tmp_path / "half.pcap"
    cut.write_bytes(raw[: len(raw) // 2])
    proc = run_cli("ingest", str(cut), workspace=tmp_path / "ws")
    no_traceback(proc)
    assert proc.returncode == 0
    assert f"{cut}: packet 3960 (byte 1034756 of 1036423): capture is truncated" in proc.stderr
    [inp] = json.loads(run_cli("inputs", "--format", "json", workspace=tmp_path / "ws").stdout)
    assert inp["skipped"] == 1 and inp["records"] > 200


def test_text_empty_and_junk_files_each_get_one_line(tmp_path):
    junk = tmp_path / "junk"
    (junk / "sub").mkdir(parents=True)
    (junk / "notes.pcap").write_text("not a capture at all\n")
    (junk / "empty.log").write_bytes(b"")
    (junk / "random.bin").write_bytes(os.urandom(4096))
    (junk / "broken.gz").write_bytes(gzip.compress(b"x" * 1000)[:20])
    shutil.copy(data("zeek-traces/wikipedia.pcap"), junk / "sub" / "good.pcap")
    proc = run_cli("ingest", str(junk), workspace=tmp_path / "ws")
    no_traceback(proc)
    assert proc.returncode == 0  # something was readable
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 4, proc.stderr
    assert any("notes.pcap: byte 0: not a recognised format" in e for e in errors)
    assert any("empty.log: empty file" in e for e in errors)
    assert "1 stored, 0 already present, 4 failed; 69 records read" in proc.stdout  # http: one row per request (15)
    only_junk = run_cli("ingest", str(junk / "notes.pcap"), str(junk / "empty.log"), workspace=tmp_path / "ws2")
    assert only_junk.returncode == 1
    no_traceback(only_junk)


def test_missing_file(tmp_path):
    proc = run_cli("ingest", str(tmp_path / "nope.pcap"), workspace=tmp_path / "ws")
    assert proc.returncode == 1
    assert f"error: {tmp_path / 'nope.pcap'}: no such file" in proc.stderr
    no_traceback(proc)


def test_unreadable_file(tmp_path):
    """Root reads anything, so the command runs without the capabilities that bypass file modes."""
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed for this test"
    secret = tmp_path / "secret.pcap"
    shutil.copy(data("zeek-traces/wikipedia.pcap"), secret)
    secret.chmod(0o000)
    exe = os.path.join(os.path.dirname(sys.executable), "abfluss")
    cmd = [exe, "--workspace", str(tmp_path / "ws"), "ingest", str(secret)]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"error: {secret}: permission denied" in proc.stderr
    no_traceback(proc)


def ingest_expecting_skips(path, ws, positions: list[str]) -> dict:
    """Ingest ``path``; the skip lines must name it and exactly ``positions``; returns its inputs row."""
    proc = run_cli("ingest", str(path), workspace=ws)
    no_traceback(proc)
    assert proc.returncode == 0
    skips = [l for l in proc.stderr.splitlines() if l.startswith("skipped:")]
    assert [s.split(": ")[2] for s in skips] == positions, proc.stderr
    assert all(str(path) in s for s in skips)
    [inp] = json.loads(run_cli("inputs", "--format", "json", workspace=ws).stdout)
    return inp


def test_zeek_log_with_broken_lines(tmp_path):
    lines = data("rita/open_conns/closed/conn.log").read_text().splitlines(keepends=True)
    bad = tmp_path / "conn.log"
    # line 10 (1-based): garbage; line 21: too few columns; the 57 other records are fine
    lines.insert(9, "this is not a zeek record\n")
    lines.insert(20, "1517336042.1\tCshort\t10.0.0.1\n")
    bad.write_text("".join(lines))
    inp = ingest_expecting_skips(bad, tmp_path / "ws", ["line 10", "line 21"])
    assert (inp["records"], inp["skipped"], inp["format"]) == (59, 2, "zeek-tsv")


def test_eve_json_with_invalid_lines(tmp_path):
    lines = data("slips/test6-malicious.suricata.json").read_text().splitlines(keepends=True)[:200]
    lines.insert(49, '{"event_type": "flow", "timestamp": \n')
    lines.insert(99, "garbage\n")
    bad = tmp_path / "eve.json"
    bad.write_text("".join(lines))
    inp = ingest_expecting_skips(bad, tmp_path / "ws", ["line 50", "line 100"])
    assert inp["skipped"] == 2 and inp["format"] == "suricata-eve" and inp["records"] > 100


def test_whole_zeek_directory_open_and_closed(tmp_path):
    """rita/open_conns: open_conn snapshots and the finished conn.log of the same connections."""
    proc = run_cli("ingest", str(data("rita/open_conns")), workspace=tmp_path / "ws", check=True)
    assert "10 stored, 0 already present, 0 failed; 281 records read, 0 skipped" in proc.stdout
    tot = run_cli("ledger", "--limit", "1", workspace=tmp_path / "ws", check=True).stdout
    # 59 finished connections replace their 59 open snapshots; 29 more come from open/conn.log, 2 internal-only
    assert "86 flows (0 still open, interim), 12 internal hosts, 37 external destinations" in tot


def test_zeek_logs_abfluss_does_not_use_are_ignored_not_errors(tmp_path):
    proc = run_cli("ingest", str(data("rita/proxy")), workspace=tmp_path / "ws")
    assert proc.returncode == 0
    assert "error:" not in proc.stderr
    # conn, dns, http, ssl, files, software, tunnel, x509 read; dhcp, weird, stats ... ignored
    assert ("8 stored, 0 already present, 9 ignored (kinds abfluss does not use), 0 failed; "
            "2,591 records read, 0 skipped") in proc.stdout


def test_header_only_zeek_log_is_stored_as_read(tmp_path):
    head = data("rita/open_conns/closed/conn.log").read_text().splitlines(keepends=True)[:8]
    quiet = tmp_path / "conn.log"
    quiet.write_text("".join(head) + "#close\t2018-01-30-19-00-00\n")
    proc = run_cli("ingest", str(quiet), workspace=tmp_path / "ws", check=True)
    assert "1 stored, 0 already present, 0 failed; 0 records read, 0 skipped" in proc.stdout
    [inp] = json.loads(run_cli("inputs", "--format", "json", workspace=tmp_path / "ws").stdout)
    assert (inp["records"], inp["format"]) == (0, "zeek-tsv")


def test_zeek_json_logs_without_path_field(tmp_path):
    """Slips' Zeek JSON logs carry no _path: told by their columns (conn/dns/http/ssl/notice, arp, files,
    pe, smtp, software, x509); dhcp is ignored."""
    proc = run_cli("ingest", str(data("slips/test9-mixed-zeek")), workspace=tmp_path / "ws", check=True)
    assert ("11 stored, 0 already present, 1 ignored (kinds abfluss does not use), 0 failed; "
            "2,655 records read, 0 skipped") in proc.stdout
