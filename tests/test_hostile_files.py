"""Hostile files and folders (issue 13, items 9-11 and the low list): gzip bombs and full disks,
files that grow while read, symlinks planted in the workspace and the report folder, killed
processes, odd names. Each test failed before its fix."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dpkt
import pytest

import abfluss
from abfluss import analysis
from abfluss.errors import WorkspaceError
from abfluss.ingest import ingest_file, ingest_paths
from abfluss.readers import pcap as pcap_reader
from abfluss.report.case import write_case
from conftest import EXAMPLES, data, run_cli

ABFLUSS = os.path.join(os.path.dirname(sys.executable), "abfluss")
ZEEK_HEAD = ("#separator \\x09\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\t"
             "proto\torig_bytes\tresp_bytes\n")


def _conn(i: int) -> str:
    return f"{1700000000 + i}.5\tC{i}\t10.0.0.1\t{40000 + i}\t198.51.100.7\t443\ttcp\t100\t50\n"


def _udp_pcap(path: Path, packets: int, payload: int, linktype: int = 1) -> None:
    """A capture of UDP datagrams of zeros (highly compressible)."""
    ip = dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([198, 51, 100, 7]), p=17,
                    data=dpkt.udp.UDP(sport=5000, dport=6000, data=b"\0" * payload))
    ip.data.ulen = 8 + payload
    ip.len = len(bytes(ip))
    frame = bytes(dpkt.ethernet.Ethernet(dst=b"\x02" * 6, src=b"\x04" * 6, data=ip)) if linktype == 1 else bytes(ip)
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=70000, linktype=linktype)
        for i in range(packets):
            w.writepkt(frame, ts=1700000000 + i / 100)


# -- item 10: a file that grows while it is read ------------------------------------------------

@pytest.mark.parametrize("kind", ["zeek", "eve", "pcap"])
def test_growing_file_is_stored_under_the_hash_of_what_was_read(ws, tmp_path, kind):
    """Before: stored under the hash of its first part, so ingesting the finished file again
    stored every row a second time."""
    path = tmp_path / {"zeek": "conn.log", "eve": "eve.json", "pcap": "capture.pcap"}[kind]
    if kind == "pcap":  # read by NFStream, not through abfluss: checked by size and time, read again
        first = data("slips/test8-malicious.pcap").read_bytes()
        more = first[24:]  # its packets once more
    elif kind == "zeek":
        first, more = ZEEK_HEAD + "".join(_conn(i) for i in range(50)), "".join(_conn(i) for i in range(50, 80))
    else:
        ev = lambda i: json.dumps({"timestamp": f"2024-02-08T15:00:{i % 60:02d}Z", "event_type": "flow",  # noqa: E731
                                   "flow_id": i, "src_ip": "10.0.0.1", "src_port": 40000 + i,
                                   "dest_ip": "198.51.100.7", "dest_port": 443, "proto": "TCP",
                                   "flow": {"bytes_toserver": 10, "bytes_toclient": 5}}) + "\n"
        first, more = "".join(ev(i) for i in range(50)), "".join(ev(i) for i in range(50, 80))
    path.write_bytes(first if isinstance(first, bytes) else first.encode())
    grown = []

    def progress(_shown, records):
        if records and not grown:  # the reader has seen the end of the first part: the file grows
            with open(path, "ab") as f:
                f.write(more if isinstance(more, bytes) else more.encode())
            grown.append(True)

    r = ingest_file(ws, path, progress=progress, inspect=False)
    assert grown and r.status == "stored"
    assert r.input_id == hashlib.sha256(path.read_bytes()).hexdigest()
    (row,) = ws.con.execute("SELECT size, records FROM inputs").fetchall()
    assert row[0] == path.stat().st_size
    flows = ws.con.execute("SELECT count(*) FROM flows_raw").fetchall()[0][0]
    if kind != "pcap":
        assert r.records == {"flows": 80} and row[1] == 80 and flows == 80
    assert ingest_file(ws, path, inspect=False).status == "duplicate"
    assert ws.con.execute("SELECT count(*) FROM flows_raw").fetchall()[0][0] == flows


# -- item 9: gzip-compressed captures -----------------------------------------------------------

def test_gzip_bomb_is_read_only_to_its_bound(ws, tmp_path, monkeypatch):
    """Before: decompressed in full to an unbounded temporary file (4 MB became 4 GiB)."""
    plain, bomb = tmp_path / "bomb.pcap", tmp_path / "bomb.pcap.gz"
    _udp_pcap(plain, 1100, 65000)  # 71.5 MB of zeros
    bomb.write_bytes(gzip.compress(plain.read_bytes(), 9))
    plain.unlink()
    limit = max(pcap_reader.GZIP_MAX_RATIO * bomb.stat().st_size, pcap_reader.GZIP_MIN_LIMIT)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    r = ingest_file(ws, bomb, inspect=False)
    assert r.status == "stored" and r.records.get("flows") == 1
    assert any(f"decompressed beyond {pcap_reader.GZIP_MAX_RATIO}x the compressed size" in m for m in r.messages)
    assert f"byte {limit} (decompressed)" in " ".join(r.messages)
    assert list(tmp.iterdir()) == []


def _gz_capture(tmp_path: Path) -> Path:
    gz = tmp_path / "capture.pcap.gz"
    gz.write_bytes(gzip.compress(data("slips/test-cc/test-cc-capture-1.pcap").read_bytes()))
    return gz


def test_sigterm_leaves_no_decompressed_copy(tmp_path):
    """Before: the decompressed copy sat in $TMPDIR under a name and stayed there after SIGTERM."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    gz = _gz_capture(tmp_path)
    p = subprocess.Popen([ABFLUSS, "--workspace", str(tmp_path / "ws"), "ingest", str(gz)],
                         env={**os.environ, "TMPDIR": str(tmp)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = None
    deadline = time.monotonic() + 60
    while seen is None and p.poll() is None and time.monotonic() < deadline:
        for fd in os.listdir(f"/proc/{p.pid}/fd") if os.path.isdir(f"/proc/{p.pid}/fd") else ():
            try:
                target = os.readlink(f"/proc/{p.pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(tmp / "abfluss-")):
                seen = target
        time.sleep(0.005)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert seen is not None, "the decompressed copy was never open"
    assert seen.endswith("(deleted)"), seen  # unlinked from the start: nothing to leave behind
    assert list(tmp.iterdir()) == []


def _limit_file_size(limit: int):
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def test_full_disk_stores_nothing_partial(tmp_path):
    """Before: a write error while decompressing was taken for a truncated gzip, the part was
    stored under the whole file's hash, and ingesting again said 'already present'."""
    ws = tmp_path / "ws"
    with abfluss.open_workspace(ws, write=True) as w:  # the catalog exists before the limit applies
        ingest_file(w, data("slips/port-scans/horizontal-portscan.conn.log"))
    plain = tmp_path / "big.pcap"
    _udp_pcap(plain, 5000, 1400)  # 7.2 MB
    gz = tmp_path / "big.pcap.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    p = subprocess.run([ABFLUSS, "--workspace", str(ws), "ingest", "--no-inspect", str(gz)], capture_output=True,
                       text=True, timeout=300, preexec_fn=_limit_file_size(4 << 20))
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"{gz}: disk full" in p.stderr
    with abfluss.open_workspace(ws, write=True) as w:
        assert ingest_file(w, gz, inspect=False).status == "stored"


def test_full_disk_is_one_line_on_the_command_line(tmp_path):
    """Before: a command whose write failed for lack of space ended in a traceback."""
    ws = tmp_path / "ws"
    with abfluss.open_workspace(ws, write=True) as w:
        ingest_file(w, data("slips/port-scans/vertical-portscan.conn.log"))
    p = subprocess.run([ABFLUSS, "--workspace", str(ws), "contain", "--host", "192.168.1.9", "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                       preexec_fn=_limit_file_size(16))
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith("abfluss: disk full: File too large") and len(p.stderr.splitlines()) == 1, p.stderr


# -- item 11: symlinks ---------------------------------------------------------------------------

def test_workspace_with_a_symlink_is_refused(tmp_path):
    """Before: with ``data`` a symlink, opening the workspace deleted every file in its target."""
    ws, victim = tmp_path / "ws", tmp_path / "victim"
    with abfluss.open_workspace(ws, write=True) as w:
        ingest_file(w, data("slips/port-scans/horizontal-portscan.conn.log"))
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    shutil.rmtree(ws / "data")
    (ws / "data").symlink_to(victim)
    with pytest.raises(WorkspaceError, match="data is a symbolic link"):
        abfluss.open_workspace(ws, write=True)
    p = run_cli("ingest", str(data("slips/port-scans/vertical-portscan.conn.log")), workspace=ws)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "symbolic link" in p.stderr
    assert (victim / "precious.txt").read_text() == "keep me"


@pytest.fixture(scope="module")
def case_ws(tmp_path_factory):
    """lab-dlp.pcap in a workspace whose one tenant is called '..' (closed: read-only users follow)."""
    root = tmp_path_factory.mktemp("case") / "ws"
    root.mkdir()
    (root / "abfluss.toml").write_text('[tenants.".."]\nnetworks = ["10.10.0.0/16"]\n')
    with abfluss.open_workspace(root, write=True) as w:
        assert ingest_file(w, EXAMPLES / "lab-dlp.pcap").status == "stored"
    with abfluss.open_workspace(root) as w:
        rep = write_case(w, root.parent / "out", pdf=False)
    return root, rep


def test_report_out_never_follows_planted_symlinks(tmp_path, case_ws):
    """Before: report.json, report.html and the drafts were written through links in --out."""
    w = abfluss.open_workspace(case_ws[0])
    out, victim = tmp_path / "case", tmp_path / "victim"
    out.mkdir()
    victim.mkdir()
    (victim / "passwd").write_text("root:x:0:0\n")
    (out / "report.json").symlink_to(victim / "passwd")
    (out / "report.html").symlink_to(victim / "passwd")
    (out / "notifications").symlink_to(victim)
    try:
        write_case(w, out, pdf=False)
    finally:
        w.close()
    assert sorted(os.listdir(victim)) == ["passwd"] and (victim / "passwd").read_text() == "root:x:0:0\n"
    assert not (out / "report.json").is_symlink() and json.loads((out / "report.json").read_text())["verdict"]
    assert not (out / "notifications").is_symlink() and list((out / "notifications").iterdir())


def test_tenant_named_dotdot_stays_inside_notifications(case_ws):
    """Before: the drafts of a tenant named '..' were written into the output folder itself."""
    root, rep = case_ws
    out = root.parent / "out"
    assert ".." in rep["notifications"]["tenants"]
    assert sorted(p.name for p in out.iterdir()) == ["notifications", "report.html", "report.json"]
    assert (out / "notifications" / "_.." / "register.md").is_file()


# -- low: killed processes -----------------------------------------------------------------------

#: Put on a child's PYTHONPATH, this kills it (SIGKILL, itself) at an exact point of ``report``,
#: seen through Python's audit events, so the test neither sleeps nor races the writer:
#: ``writing``: the first file created in the staged case (``.case-*/new/``), nothing complete yet;
#: ``installing``: moving report.json into place, the other entries of the case already moved.
KILL_HOOK = """
import os, signal, sys
AT = os.environ.get("ABFLUSS_TEST_KILL_AT")
def _kill(event, args):
    if event == "open" and AT == "writing":
        path = str(args[0])
        hit = "/.case-" in path and "/new/" in path.split("/.case-", 1)[1]
    elif event == "os.rename" and AT == "installing":
        dst = str(args[1])
        hit = os.path.basename(dst) == "report.json" and "/.case-" not in dst
    else:
        return
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
if AT:
    sys.addaudithook(_kill)
"""


@pytest.mark.parametrize("at", ["writing", "installing"])
def test_killed_report_leaves_the_previous_case_whole(tmp_path, case_ws, at):
    """Before: report.json was written before the PDF and the drafts, so a report killed in
    between left report.json and the drafts at different versions. Killed while its case is
    written, the previous case stays whole; killed while it is moved into place, the next
    report completes it first."""
    out = tmp_path / "case"
    shutil.copytree(case_ws[0].parent / "out", out)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_HOOK)

    def report() -> None:
        with abfluss.open_workspace(case_ws[0]) as w:
            write_case(w, out, pdf=False)

    def consistent() -> int:
        t = json.loads((out / "report.json").read_text())["notifications"]["tenants"][".."]
        for kind, d in t["drafts"].items():
            assert (out / "notifications" / "_.." / f"{kind}.md").read_text() == d["text"], kind
        return t["version"]

    def staged() -> list[Path]:
        return [x for x in out.iterdir() if x.name.startswith(".case-")]

    assert consistent() == 1
    env = {**os.environ, "ABFLUSS_TEST_KILL_AT": at,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}
    p = subprocess.run([ABFLUSS, "--workspace", str(case_ws[0]), "report", "--out", str(out)], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    assert p.returncode == -signal.SIGKILL, p.stderr  # killed at that point, not finished or failed
    [stage] = staged()
    if at == "writing":
        assert not (stage / "complete").exists() and (stage / "new").is_dir()
        assert consistent() == 1  # killed while the new case was being written: the old one is whole
        report()  # drops the incomplete case and writes its own
        assert consistent() == 2 and not staged()
    else:
        assert (stage / "complete").is_file() and sorted(os.listdir(stage / "new")) == ["report.json"]
        report()  # first finishes putting the killed report's case (version 2) into place
        assert consistent() == 3 and not staged()


# -- low: odd names, odd captures, unreadable folders --------------------------------------------

def test_quote_in_the_workspace_path_and_stale_scratch_folders(tmp_path):
    """Before: analyze failed with a SQL syntax error when the workspace path held a quote, and
    every killed analyze left its .analysis-* copy of the window forever."""
    with abfluss.open_workspace(tmp_path / "o'brien case", write=True) as w:
        ingest_file(w, data("slips/port-scans/vertical-portscan.conn.log"))
        abfluss.api.refresh(w)
        dead, old, live = (w.root / f".analysis-{n}" for n in ("dead", "old", "live"))
        for d in (dead, old, live):
            d.mkdir()
            (d / "flows.parquet").write_bytes(b"x" * 1000)
        (dead / ".owner").touch()  # its owner died: the lock is free
        os.utime(old, (time.time() - 3600, time.time() - 3600))  # from before the lock file existed
        (live / ".owner").touch()
        fd = os.open(live / ".owner", os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)  # another analyze, still running
        try:
            assert [f.detection for f in analysis.analyze(w).findings] == ["scan_and_lateral"]
        finally:
            os.close(fd)
        assert sorted(p.name for p in w.root.iterdir() if p.name.startswith(".analysis-")) == [".analysis-live"]


def test_captures_without_readable_packets_say_why(ws, tmp_path):
    """Before: link types 147 and 65535 (and captures without IP) gave 'stored, 0 records'."""
    paths = []
    for lt in (147, 65535):
        paths.append(tmp_path / f"lt{lt}.pcap")
        _udp_pcap(paths[-1], 5, 10, linktype=lt)
    paths.append(tmp_path / "lt0.pcap")
    with open(paths[-1], "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=0)
        for i in range(3):
            w.writepkt(struct.pack("<I", 99) + b"\x45" + b"\0" * 30, ts=1700000000 + i)
    res = ingest_paths(ws, paths, inspect=False)
    assert [r.status for r in res] == ["failed"] * 3
    assert "link type 147 is not one abfluss decodes" in res[0].error and res[0].skipped == 5
    assert "link type 65535 is not one abfluss decodes" in res[1].error
    assert "no IP flow in 3 packets of link type 0 (BSD loopback)" in res[2].error


def test_unreadable_subdirectory_is_reported(tmp_path):
    """Before: a subdirectory that could not be listed was skipped without a word."""
    logs = tmp_path / "logs"
    (logs / "locked").mkdir(parents=True)
    shutil.copy(data("slips/port-scans/horizontal-portscan.conn.log"), logs / "conn.log")
    shutil.copy(data("slips/port-scans/vertical-portscan.conn.log"), logs / "locked" / "conn.log")
    os.chmod(logs / "locked", 0)
    try:  # root reads everything: drop the capabilities that let it
        p = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", ABFLUSS,
                            "--workspace", str(tmp_path / "ws"), "ingest", str(logs)],
                           capture_output=True, text=True, timeout=300)
    finally:
        os.chmod(logs / "locked", 0o755)
    assert p.returncode == 0, p.stderr
    assert f"{logs / 'locked'}: cannot list directory (Permission denied): not read" in p.stderr
    assert "1 stored, 0 already present, 1 failed" in p.stdout
