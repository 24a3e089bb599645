"""``abfluss serve`` stops on SIGTERM within seconds, also while a browser holds the live view's
event stream open (systemd and container runtimes send SIGTERM, then SIGKILL after a grace
period: a console that waits for its clients to leave is killed instead of stopping).

Before: uvicorn waited for every request to end, and ``/live/events`` ends only when the browser
goes, so a console with one open live view never stopped on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import httpx

import webkit

ABFLUSS = [os.path.join(os.path.dirname(sys.executable), "abfluss")]
#: The most a stop may take with an open event stream: the stream ends at its next poll (1 s);
#: uvicorn cancels what still runs after ``STOP_GRACE`` (3 s).
STOP_WITHIN = 6.0


def test_sigterm_stops_serve_with_an_open_live_stream(tmp_path_factory, tmp_path):
    ws = webkit.workspace_copy(tmp_path_factory)
    webkit.add_users(ws)
    proc, base = webkit.start_serve(ws, tmp_path, ABFLUSS)
    try:
        with httpx.Client(base_url=base, verify=False, timeout=10) as c:
            assert webkit.login(c, "offa", follow_redirects=False).status_code == 303
            with c.stream("GET", "/live/events") as events:
                assert events.status_code == 200
                lines = events.iter_lines()
                assert next(lines).startswith("retry:")  # the stream is open
                # read on as a browser does (it also answers the TLS close when the server ends)
                reader = threading.Thread(target=lambda: [None for _ in lines], daemon=True)
                reader.start()
                t = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                errs = proc.communicate(timeout=30)[1]
                took = time.monotonic() - t
                reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(f"serve stopped {took:.1f} s after SIGTERM with an open event stream")
    assert took < STOP_WITHIN, f"serve took {took:.1f} s to stop"
    assert proc.returncode in (0, 128 + signal.SIGTERM), errs
    assert "Traceback" not in errs, errs
