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
