"""The workspace store: idempotent ingest, crash safety (kill -9), private files, provenance."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time

import abfluss
from conftest import data, run_cli

CONN_FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes resp_bytes "
               "conn_state local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes resp_pkts "
               "resp_ip_bytes tunnel_parents").split()
CONN_TYPES = ("time string addr port addr port enum string interval count count string bool bool count "
              "string count count count count set[string]").split()


def write_conn_log(path, rows: int) -> int:
    """A Zeek conn.log with ``rows`` rows; returns the sum of orig_bytes."""
    head = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-",
            "#path\tconn", "#open\t2024-01-01-00-00-00",
            "#fields\t" + "\t".join(CONN_FIELDS), "#types\t" + "\t".join(CONN_TYPES)]
    total = 0
    with open(path, "w") as f:
        f.write("\n".join(head) + "\n")
        base = 1704067200.0
        for i in range(rows):
            ob = 100 + i % 5000
            total += ob
            f.write(f"{base + i * 0.01:.6f}\tC{i:x}\t10.0.{i % 250}.{i % 200 + 1}\t{40000 + i % 20000}\t"
                    f"203.0.113.{i % 254 + 1}\t443\ttcp\tssl\t1.5\t{ob}\t{2 * ob}\tSF\tT\tF\t0\tShADadFf\t"
                    f"10\t{ob + 400}\t10\t{2 * ob + 400}\t(empty)\n")
        f.write("#close\t2024-01-01-01-00-00\n")
    return total


def count(ws, table="flows_raw"):
    return ws.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def test_same_input_twice_adds_nothing(ws):
    cap = data("zeek-traces/wikipedia.pcap")
    first = abfluss.ingest_file(ws, cap)
    assert first.status == "stored" and first.records == {"arp": 6, "dns": 14, "flows": 34, "http": 15}
    again = abfluss.ingest_file(ws, cap)
    assert again.status == "duplicate"
    assert count(ws) == 34 and count(ws, "dns_raw") == 14
    [inp] = ws.inputs()
    assert inp["input_id"] == hashlib.sha256(cap.read_bytes()).hexdigest()
    assert (inp["records"], inp["skipped"], inp["format"], inp["size"]) == (69, 0, "pcap", cap.stat().st_size)
    assert inp["tables"] == {"arp": 6, "dns": 14, "flows": 34, "http": 15}


def test_workspace_files_are_private(tmp_path):
    run_cli("ingest", str(data("zeek-traces/wikipedia.pcap")), workspace=tmp_path / "ws", check=True)
    paths = list((tmp_path / "ws").rglob("*")) + [tmp_path / "ws"]
    assert len(paths) > 4
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, f"{p} is readable by others"


def test_unknown_files_are_removed_on_open(tmp_path):
    ws = abfluss.open_workspace(tmp_path / "ws", write=True)
    abfluss.ingest_file(ws, data("zeek-traces/wikipedia.pcap"))
    ws.close()
    stray = tmp_path / "ws" / "data" / "flows" / "day=2011-03-18" / "deadbeef-0000.parquet"
    stray.write_bytes(b"half a file")
    (tmp_path / "ws" / "data" / "flows" / "day=2011-03-18" / "x.parquet.tmp").write_bytes(b"partial")
    ws = abfluss.open_workspace(tmp_path / "ws", write=True)
    assert not stray.exists()
    assert count(ws) == 34
    ws.close()


def _kill_when_writing(exe, wsdir, extra_delay: float) -> bool:
    """Start an ingest, wait until it is writing Parquet, wait ``extra_delay`` more, kill -9 it.
    True if it was killed mid-write, False if it finished first."""
    proc = subprocess.Popen(exe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if list(wsdir.rglob("*.tmp")):
                time.sleep(extra_delay)
                break
            time.sleep(0.005)
        if proc.poll() is not None:
            return False
        os.kill(proc.pid, signal.SIGKILL)
        return True
    finally:
        proc.wait()


def test_kill_9_at_any_moment_leaves_no_partial_rows(tmp_path):
    log = tmp_path / "conn.log"
    rows = 1_200_000
    write_conn_log(log, rows)
    wsdir = tmp_path / "ws"
    exe = [sys.executable, "-m", "abfluss", "--workspace", str(wsdir), "ingest", str(log)]
    killed = 0
    for extra in (0.0, 0.05, 0.2, 0.4, 0.8):
        killed += _kill_when_writing(exe, wsdir, extra)
        ws = abfluss.open_workspace(wsdir, write=True)  # a writer's open removes what the catalog does not know
        n_inputs, n_rows = len(ws.inputs()), count(ws)
        assert (n_inputs, n_rows) in ((0, 0), (1, rows)), f"kill +{extra}s: {n_inputs} inputs, {n_rows} rows"
        assert not list(wsdir.rglob("*.tmp"))
        if n_inputs == 0:
            assert not list(wsdir.rglob("*.parquet"))
        ws.close()
        if n_inputs:
            break
    assert killed >= 1, "the ingest was never caught mid-write"
    proc = subprocess.run(exe, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    again = subprocess.run(exe, capture_output=True, text=True)
    assert "0 stored, 1 already present" in again.stdout
    ws = abfluss.open_workspace(wsdir)
    assert len(ws.inputs()) == 1 and count(ws) == rows
    assert ws.con.execute("SELECT count(DISTINCT uid) FROM flows_raw").fetchall()[0][0] == rows
    ws.close()


def test_ledger_answers_while_an_ingest_runs(tmp_path):
    wsdir = tmp_path / "ws"
    run_cli("ingest", str(data("zeek-traces/wikipedia.pcap")), workspace=wsdir, check=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    write_conn_log(logs / "conn.log", 1_000_000)
    for day in (2, 3):  # three inputs of distinct content: several seconds of ingest
        (logs / f"conn-{day}.log").write_bytes((logs / "conn.log").read_bytes() + f"#close\t{day}\n".encode())
    proc = subprocess.Popen([sys.executable, "-m", "abfluss", "--workspace", str(wsdir), "ingest", str(logs)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(wsdir.rglob("*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "the ingest ended before the test could look"
        inputs = run_cli("inputs", "--format", "json", workspace=wsdir)
        assert inputs.returncode == 0, inputs.stderr
        seen = [i["format"] for i in json.loads(inputs.stdout)]
        assert seen[0] == "pcap" and len(seen) < 4  # what is committed, nothing partial
        assert proc.poll() is None, "the ingest ended before the query: the test proves nothing"
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0, proc.stderr
    after = json.loads(run_cli("inputs", "--format", "json", workspace=wsdir, check=True).stdout)
    assert [i["format"] for i in after] == ["pcap", "zeek-tsv", "zeek-tsv", "zeek-tsv"]
