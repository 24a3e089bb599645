"""``abfluss analyze`` handed to the watch running on the workspace (watch/resident.py and
watch/requests.py): a real watch process on a workspace of real captures, real ``analyze``
clients, and the same output, exit codes, stored findings and sink files as an ``analyze`` run
by itself on a copy of the workspace; the fallback when no watch answers (a stale socket after
kill -9, a socket nobody answers on); the socket's permissions; two clients at once; a busy
watch; the exchange itself in one process (long paths, errors, a watch that stops)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ROOT, data

ABFLUSS = os.path.join(os.path.dirname(sys.executable), "abfluss")
CAPTURES = ("slips/test7-malicious.pcap", "slips/test12-icmp-portscan.pcap")
HEAVY = ("pyspark", "ibis", "duckdb", "pyarrow", "pandas", "abfluss.analysis", "abfluss.detections", "abfluss.store")
#: Runs ``abfluss`` as its script does, after ``PRELUDE``; names the heavy modules it loaded on stderr.
PROBE = ("import atexit, json, sys\n{prelude}\n"
         f"atexit.register(lambda: sys.stderr.write('HEAVY ' + json.dumps(sorted(m for m in {HEAVY!r} "
         "if m in sys.modules)) + '\\n'))\n"
         "import abfluss.cli\nsys.argv = ['abfluss', *sys.argv[1:]]\nabfluss.cli.main()\n")
#: A detection that fails in whichever process runs it (a defect in one check).
BROKEN = ("import abfluss.detections.icmp_scan as m\n"
          "def detect(tel, settings):\n    raise RuntimeError('injected failure\\nsecond line')\n"
          "m.detect = detect")


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    ws = tmp_path_factory.mktemp("resident") / "ws"
    proc = subprocess.run([ABFLUSS, "-w", str(ws), "ingest", *(str(data(c)) for c in CAPTURES)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return ws


@pytest.fixture
def pair(captured, tmp_path):
    """The captured workspace twice: one a watch runs on, one that ``analyze`` runs on by itself."""
    watched, local = tmp_path / "watched", tmp_path / "local"
    shutil.copytree(captured, watched)
    shutil.copytree(captured, local)
    return watched, local


def cli(ws: Path, *args: str, cwd: Path | None = None, prelude: str = "", env: dict | None = None,
        wait: bool = True):
    cmd = [sys.executable, "-c", PROBE.format(prelude=prelude), "-w", str(ws), *args]
    kw = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd or ROOT,
              env={**os.environ, "COLUMNS": "200", **(env or {})})
    if not wait:
        return subprocess.Popen(cmd, **kw)
    proc = subprocess.run(cmd, timeout=300, **kw)
    return _split(proc)


def _split(proc):
    """(returncode, stdout, stderr without the probe's line, heavy modules loaded)."""
    err, _, heavy = proc.stderr.rpartition("HEAVY ")
    return proc.returncode, proc.stdout, err, json.loads(heavy) if heavy else None


@contextmanager
def watching(ws: Path, tmp: Path, prelude: str = ""):
    """A real ``abfluss watch`` on ``ws`` (an empty Zeek folder as its source, no cycle of its own
    within the test), stopped with SIGTERM at the end."""
    logs = tmp / f"zeek-{ws.name}"
    logs.mkdir(exist_ok=True)
    sock = ws / "run" / "watch.sock"

    def listening() -> bool:  # its own socket, not one a killed watch left (refused)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            try:
                c.connect(str(sock))
                return True
            except OSError:
                return False
    w = subprocess.Popen([sys.executable, "-c", PROBE.format(prelude=prelude), "-w", str(ws), "watch",
                          "--zeek-dir", str(logs), "--every", "3600", "--silent-after", "86400"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not listening():
            assert w.poll() is None, w.communicate()
            assert time.monotonic() < deadline, "the watch made no socket"
            time.sleep(0.1)
        yield w
    finally:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
        w.communicate(timeout=120)


def without_seconds(text: str) -> dict:
    doc = json.loads(text)
    doc.pop("seconds")
    return doc


def test_analyze_answered_by_the_watch_is_the_local_analyze(pair, tmp_path):
    watched, local = pair
    here, there = tmp_path / "client-a", tmp_path / "client-b"
    here.mkdir()
    there.mkdir()
    with watching(watched, tmp_path) as w:
        # first run: every finding new, sent to a file named relative to the client's folder
        rc, out, err, heavy = cli(watched, "analyze", "--format", "json", "--sink", "ndjson:alerts.ndjson", cwd=here)
        lrc, lout, lerr, lheavy = cli(local, "analyze", "--format", "json", "--sink", "ndjson:alerts.ndjson",
                                      cwd=there)
        assert (rc, err) == (lrc, lerr) == (0, ""), (err, lerr)
        assert heavy == [] and "duckdb" in lheavy  # the watch ran it; the client loaded no engine
        assert without_seconds(out) == without_seconds(lout)
        doc = json.loads(out)
        assert len(doc["findings"]) >= 5 and len(doc["new"]) == len(doc["findings"]), doc["new"]
        assert doc["sent"] == {"ndjson:alerts.ndjson": len(doc["new"])}
        assert (here / "alerts.ndjson").read_text() == (there / "alerts.ndjson").read_text() != ""
        # a window, the table: nothing new now, the same lines
        window = ("--from", "2018-03-09T20:55:00Z", "--to", "2022-09-25T00:00:00Z")
        rc, out, err, heavy = cli(watched, "analyze", *window, "--only", "scan_and_lateral,icmp_scan")
        lrc, lout, lerr, _ = cli(local, "analyze", *window, "--only", "scan_and_lateral,icmp_scan")
        assert (rc, out, err, heavy) == (lrc, lout, lerr, []), (err, lerr)
        assert "(0 new or raised)" in out and "scan_and_lateral" in out
        # what either stored: read while the watch runs
        assert cli(watched, "findings", "--format", "json")[1] == cli(local, "findings", "--format", "json")[1]
        # an error the command reports in one line, exit 2, either way
        bad = cli(watched, "analyze", "--only", "no_such_detection")
        assert bad[:3] == cli(local, "analyze", "--only", "no_such_detection")[:3]
        assert bad[0] == 2 and bad[2].startswith("abfluss: unknown detection 'no_such_detection'")
        # another configuration than the watch's: refused in one line, the watch goes on
        other = tmp_path / "other.toml"
        other.write_text('[allowlist]\ndomains = ["example.org"]\n')
        rc, out, err, _ = cli(watched, "--config", str(other), "analyze")
        assert rc == 2 and "runs with another configuration" in err and len(err.splitlines()) == 1, err
        assert w.poll() is None
    assert w.returncode == 0
    assert not (watched / "run" / "watch.sock").exists()  # a clean stop removes its socket


def test_a_failed_detection_is_one_line_as_locally(pair, tmp_path):
    watched, local = pair
    with watching(watched, tmp_path, prelude=BROKEN):
        rc, out, err, heavy = cli(watched, "analyze")
    lrc, lout, lerr, _ = cli(local, "analyze", prelude=BROKEN)
    assert (rc, out, err) == (lrc, lout, lerr)
    assert rc == 0 and heavy == []
    assert err == "abfluss: detection icmp_scan failed and was not checked: RuntimeError: injected failure\n"
    assert "scan_and_lateral" in out  # the others' findings all the same


def test_a_client_stopped_while_the_watch_runs_its_analysis_stores_nothing(pair, tmp_path):
    """SIGTERM to ``analyze`` while the watch runs its request: the command stops as it would
    alone (143), the watch stores nothing of that run, and answers the next request."""
    watched, local = pair
    started = tmp_path / "started"
    slow = ("import pathlib, time\nimport abfluss.detections.icmp_scan as m\nslow_detect = m.detect\n"
            "def detect(tel, settings):\n"
            f"    if tel.start.year > 2000 and not pathlib.Path({str(started)!r}).exists():\n"
            f"        pathlib.Path({str(started)!r}).touch()\n        time.sleep(4)\n"
            "    return slow_detect(tel, settings)\nm.detect = detect")
    with watching(watched, tmp_path, prelude=slow) as w:
        client = cli(watched, "analyze", wait=False)
        deadline = time.monotonic() + 120
        while not started.exists():
            assert time.monotonic() < deadline and client.poll() is None, client.communicate()
            time.sleep(0.05)
        client.send_signal(signal.SIGTERM)
        assert client.wait(60) == 128 + signal.SIGTERM
        client.communicate()
        rc, out, err, heavy = cli(watched, "analyze", "--format", "json")
        assert w.poll() is None
    ref = json.loads(cli(local, "analyze", "--format", "json")[1])
    doc = json.loads(out)
    assert (rc, err, heavy) == (0, "", [])
    assert doc["new"] == ref["new"] and len(doc["new"]) >= 5  # the stopped run stored none of them


def test_two_clients_at_once(pair, tmp_path):
    watched, local = pair
    with watching(watched, tmp_path):
        procs = [cli(watched, "analyze", "--format", "json", wait=False) for _ in range(2)]
        results = [_split(subprocess.CompletedProcess(p.args, p.wait(120), *p.communicate(timeout=120)))
                   for p in procs]
    ref = json.loads(cli(local, "analyze", "--format", "json")[1])
    docs = [json.loads(r[1]) for r in results]
    assert [r[0] for r in results] == [0, 0] and [r[3] for r in results] == [[], []], results
    assert all(d["findings"] == ref["findings"] for d in docs)
    assert sorted(len(d["new"]) for d in docs) == [0, len(ref["new"])]  # one after the other, never both


def test_permissions_and_a_stale_socket_after_kill9(pair, tmp_path):
    watched, local = pair
    with watching(watched, tmp_path) as w:
        run, sock = watched / "run", watched / "run" / "watch.sock"
        assert stat.S_IMODE(run.stat().st_mode) == 0o700 and stat.S_IMODE(sock.lstat().st_mode) == 0o600
        assert stat.S_ISSOCK(sock.lstat().st_mode) and sock.lstat().st_uid == os.getuid()
        assert cli(watched, "analyze")[3] == []
        w.kill()
        w.wait(30)
    assert stat.S_ISSOCK(sock.lstat().st_mode)  # left behind by the killed watch
    rc, out, err, heavy = cli(watched, "analyze")
    lrc, lout, lerr, _ = cli(local, "analyze")
    lrc, lout, lerr, _ = cli(local, "analyze")  # the second run on the copy: the watched one ran once already
    assert (rc, out, err) == (lrc, lout, lerr) and rc == 0
    assert "duckdb" in heavy  # no watch answered: it ran the analysis itself
    with watching(watched, tmp_path):  # a new watch replaces the stale socket and answers
        assert cli(watched, "analyze")[3] == []


class FakeWatch:
    """Listens on a workspace's socket and answers as told: nothing at all, or ``queued`` and then
    nothing (a watch busy in a long cycle)."""

    def __init__(self, root: Path, answer: bool):
        (root / "run").mkdir(parents=True, mode=0o700)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(root / "run" / "watch.sock"))
        self.sock.listen(4)
        self.answer, self.conns = answer, []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.answer:
                conn.recv(65536)
                conn.sendall(b'{"status": "queued", "pid": 4242}\n')

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_a_busy_watch_and_one_that_does_not_answer(tmp_path):
    ws = tmp_path / "ws"
    fake = FakeWatch(ws, answer=True)
    try:
        t0 = time.monotonic()
        rc, out, err, heavy = cli(ws, "analyze", env={"ABFLUSS_WATCH_WAIT": "1.5"})
        assert time.monotonic() - t0 < 60
    finally:
        fake.close()
    assert rc == 2 and heavy == [] and out == ""
    assert err == ("abfluss: the watch on this workspace (pid 4242) is busy and did not take this analysis "
                   "within 1.5 s; try again (ABFLUSS_WATCH_WAIT sets the wait)\n")
    shutil.rmtree(ws / "run")
    fake = FakeWatch(ws, answer=False)  # connects, never answers: taken for no watch
    try:
        rc, out, err, heavy = cli(ws, "analyze")
    finally:
        fake.close()
    # it ran the command itself (on an empty workspace the catalog's engine alone, not DuckDB's package)
    assert (rc, err) == (0, "") and "nothing to analyze" in out and "abfluss.analysis" in heavy


# -- the exchange in one process -------------------------------------------------------------------
def _client(root: Path, request: dict, box: list) -> threading.Thread:
    from abfluss.watch import resident

    def run():
        try:
            box.append(resident.hand_over(root, request))
        except Exception as e:  # noqa: BLE001 - the test looks at it
            box.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _serve(listener, handler, box: list) -> None:
    deadline = time.monotonic() + 30
    while not listener.serve(handler):
        assert time.monotonic() < deadline, box
        listener.wake.wait(0.1)


def test_exchange_over_a_long_path_with_errors_and_a_stop(tmp_path):
    from abfluss.errors import AbflussError
    from abfluss.watch import resident
    from abfluss.watch.requests import Listener

    root = tmp_path / ("w" * 60) / ("x" * 60)  # the socket's path is longer than sun_path takes
    root.mkdir(parents=True)
    assert len(str(resident.socket_path(root))) > 108
    listener = Listener(root)
    listener.open()
    try:
        for handler, check in (
            (lambda req: {"echo": req.doc["only"]}, lambda r: r == {"echo": ["a"]}),
            (lambda req: (_ for _ in ()).throw(AbflussError("bad indicator file")),
             lambda r: isinstance(r, resident.Failed) and r.exit == 2 and str(r) == "bad indicator file"),
            (lambda req: 1 / 0,
             lambda r: isinstance(r, resident.Failed) and r.exit == 1 and "ZeroDivisionError" in str(r)
             and "Traceback" in r.detail),
        ):
            box: list = []
            t = _client(root, {"command": "analyze", "only": ["a"]}, box)
            _serve(listener, handler, box)
            t.join(30)
            assert box and check(box[0]), box
        # a request the watch has not taken when it stops: told so, in one line
        box = []
        t = _client(root, {"command": "analyze"}, box)
        deadline = time.monotonic() + 30
        while not listener.waiting():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        listener.close()
    t.join(30)
    assert isinstance(box[0], AbflussError) and "was stopping" in str(box[0]), box
    assert not resident.socket_path(root).exists()
    with pytest.raises(resident.NoWatch):
        resident.hand_over(root, {"command": "analyze"})


def test_a_client_that_hung_up_is_seen(tmp_path):
    from abfluss.watch.requests import Request

    a, b = socket.socketpair()
    req = Request(a, {})
    assert not req.gone()
    b.close()
    assert req.gone()
    a.close()


def test_the_workspace_the_client_asks_is_the_one_the_command_opens(tmp_path, monkeypatch):
    from abfluss import api
    from abfluss.watch import resident

    monkeypatch.chdir(tmp_path)
    for env in (None, str(tmp_path / "env-ws")):
        if env:
            monkeypatch.setenv("ABFLUSS_WORKSPACE", env)
        else:
            monkeypatch.delenv("ABFLUSS_WORKSPACE", raising=False)
        for given in (None, "rel/ws", str(tmp_path / "abs")):
            assert resident.workspace_root(given) == api.workspace_path(given).resolve()
