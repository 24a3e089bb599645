"""A command stopped by SIGTERM (a service manager, ``timeout``) or Ctrl-C while DuckDB runs a
query ends quietly with 128 + the signal's number, as it does between queries.

Found in the live-replay test: ``watch`` got a second SIGTERM during its last detection run and
printed a traceback ending in ``RuntimeError: Query interrupted``. DuckDB checks for signals
while it executes; the exception our handler raises (``SystemExit`` for SIGTERM,
``KeyboardInterrupt`` for SIGINT) is replaced by its own ``RuntimeError``, so ``main`` saw a
defect where the user had asked for a stop.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

# A command of the real app that runs DuckDB queries of ~0.1 s each for a minute (as the detections
# run many short ones: DuckDB looks for signals between its tasks, so one endless query may not see
# a signal for a long time), then the real main.
PROGRAM = """
import sys, time, duckdb
from abfluss.cli import app, main

@app.command("long-query")
def long_query() -> None:
    con = duckdb.connect()
    print("started", flush=True)
    t = time.monotonic()
    while time.monotonic() - t < 60:
        con.execute("SELECT sum(hash(i)) FROM range(20000000) t(i)").fetchall()

sys.argv = ["abfluss", "long-query"]
main()
"""


@pytest.mark.parametrize("attempt", range(3))
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_query_ends_quietly(signum, attempt):
    p = subprocess.Popen([sys.executable, "-c", PROGRAM], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "started", p.stderr.read()
        time.sleep(0.3 + 0.1 * attempt)  # almost always inside a query
        t = time.monotonic()
        p.send_signal(signum)
        out, errs = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert time.monotonic() - t < 10, "the query was not interrupted"
    assert p.returncode == 128 + signum, errs
    assert "Traceback" not in errs and "Query interrupted" not in errs, errs


# A signal that arrives while the process forks (a meter or scan worker starting) must still end
# the command. Python runs hooks around fork() (``logging`` releases its lock in one) and drops an
# exception raised in them with "Exception ignored in: ..." and a traceback; the command then ran
# on. Seen in CI: SIGTERM to ``watch`` landed in ``logging._releaseLock``. This hook, registered
# before ``main`` registers its own, runs inside the fork as ``logging``'s does and sends the
# signal from there, on the first fork only.
FORKING = """
import os, signal, sys, time
from abfluss.cli import app, main

sent = []
def hook():
    if not sent:
        sent.append(1)
        os.kill(os.getpid(), {signum})
os.register_at_fork({when}=hook)

@app.command("fork-a-worker")
def fork_a_worker() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    print("forked", flush=True)
    time.sleep(20)  # a command that runs on: the signal must have ended it before
    print("ran on", flush=True)

sys.argv = ["abfluss", "fork-a-worker"]
main()
"""


@pytest.mark.parametrize("when", ["before", "after_in_parent"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_fork_ends_the_command(signum, when):
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-c", FORKING.format(signum=int(signum), when=when)],
                       capture_output=True, text=True, timeout=60)
    assert "Exception ignored" not in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert "ran on" not in p.stdout, "the signal was lost"
    assert p.returncode == 128 + signum, (p.returncode, p.stderr)
    assert time.monotonic() - t < 15
