"""Ingest on every core (issue 15): files read in worker processes, committed in batches, and
the workspace exactly what one process makes of the same directory."""

from __future__ import annotations

import json
import shutil

import pytest

import abfluss
from abfluss import parallel, schema

from conftest import data, run_cli

SOURCES = ("slips/test9-mixed-zeek", "rita/json_with_all_fields/conn.log", "rita/open_sni",
           "slips/test6-malicious.suricata.json", "netflow-pmacct/100-IPFIXv10-CISCO",
           "slips/binetflow/test3-mixed.binetflow", "slips/test12-icmp-portscan.pcap",
           "slips/test19-ssh-bruteforce/README.md")


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Real logs of every kind, a capture, a README, a broken log and one file twice."""
    d = tmp_path_factory.mktemp("logs")
    for rel in SOURCES:
        src = data(rel)
        if src.is_dir():
            shutil.copytree(src, d / src.name)
        else:
            shutil.copy(src, d / src.name)
    shutil.copy(data("slips/port-scans/vertical-portscan.conn.log"), d / "again-a.log")
    shutil.copy(data("slips/port-scans/vertical-portscan.conn.log"), d / "again-b.log")
    head = [x for x in data("slips/port-scans/vertical-portscan.conn.log").read_bytes().splitlines(True)
            if x.startswith(b"#")][:8]
    (d / "broken.log").write_bytes(b"".join(head) + b"not\ta\tconnection\n" * 3)
    return d


def _snapshot(root):
    with abfluss.open_workspace(root) as w:
        inputs = [{k: v for k, v in i.items() if k != "ingested_at"} for i in w.inputs()]
        tables = {}
        for t in schema.TABLES:
            cols = ", ".join(schema.TABLES[t].names)
            tables[t] = w.con.execute(f"SELECT {cols} FROM {t}_raw ORDER BY ALL").fetchall()
        addresses = w.con.execute("SELECT addr, a, id FROM addresses ORDER BY id").fetchall()
    return inputs, tables, addresses


@pytest.fixture(scope="module")
def both(logs, tmp_path_factory):
    out = {}
    key = None
    for jobs in (1, 2):
        root = tmp_path_factory.mktemp(f"jobs{jobs}") / "ws"
        if key:  # the same DLP key, so the keyed hashes of identifiers compare too
            (root / "secret").mkdir(mode=0o700, parents=True)
            shutil.copy(key, root / "secret" / "dlp.key")
        key = root / "secret" / "dlp.key"
        with abfluss.open_workspace(root, write=True) as w:
            res = abfluss.ingest_paths(w, [logs], jobs=jobs)
        out[jobs] = (res, root)
    return out


def test_two_processes_store_what_one_stores(both, logs):
    (one, root1), (two, root2) = both[1], both[2]
    strip = [(r.path, r.status, r.format, r.input_id, r.records, r.skipped, r.messages, r.error, r.derived)
             for r in one]
    assert strip == [(r.path, r.status, r.format, r.input_id, r.records, r.skipped, r.messages, r.error,
                      r.derived) for r in two]
    status = {r.path.removeprefix(f"{logs}/"): r.status for r in one}
    assert status["again-a.log"] == "stored" and status["again-b.log"] == "duplicate"
    assert status["README.md"] == "ignored" and status["broken.log"] == "failed"
    assert status["test12-icmp-portscan.pcap"] == "stored"  # metered by the calling process
    assert {r.format for r in one if r.status == "stored"} == {
        "zeek-tsv", "zeek-json", "suricata-eve", "netflow", "argus-binetflow", "pcap"}
    a, b = _snapshot(root1), _snapshot(root2)
    assert a[0] == b[0]  # inputs
    for t in schema.TABLES:
        assert a[1][t] == b[1][t], t
    assert a[2] == b[2]  # addresses, with the same ids
    assert sum(len(rows) for rows in a[1].values()) > 5000
    assert not list(root2.rglob("*.tmp"))


def test_again_is_all_present_and_batches_commit_separately(both, logs, monkeypatch):
    """A directory larger than a batch: several transactions, nothing stored twice."""
    monkeypatch.setattr(parallel, "BATCH_FILES", 3)
    _, root = both[2]
    with abfluss.open_workspace(root, write=True) as w:
        res = abfluss.ingest_paths(w, [logs], jobs=2)
    assert {r.status for r in res} == {"duplicate", "ignored", "failed"}
    fresh = root.parent / "batched"
    (fresh / "secret").mkdir(mode=0o700, parents=True)
    shutil.copy(root / "secret" / "dlp.key", fresh / "secret" / "dlp.key")
    with abfluss.open_workspace(fresh, write=True) as w:
        abfluss.ingest_paths(w, [logs], jobs=2)
    assert _snapshot(fresh)[1:] == _snapshot(root)[1:]


def test_jobs_on_the_command_line(logs, tmp_path):
    p = run_cli("ingest", "--jobs", "2", str(logs / "test9-mixed-zeek"), workspace=tmp_path / "ws", check=True)
    assert "0 failed" in p.stdout
    inputs = json.loads(run_cli("inputs", "--format", "json", workspace=tmp_path / "ws", check=True).stdout)
    assert {i["format"] for i in inputs} == {"zeek-json"} and len(inputs) >= 5  # conn dns http ssl files …
    assert f"{len(inputs)} stored" in p.stdout
    bad = run_cli("ingest", "--jobs", "0", str(logs), workspace=tmp_path / "ws")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
