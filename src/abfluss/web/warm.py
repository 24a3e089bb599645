"""The console's warm-up: what the first requests need, computed in the background.

Over ten million flows the sensors' coverage (every overview), an accounting and the
payload-inspection shares take one to several seconds each, once per workspace state; later
requests are answered from what the library keeps per state (``abfluss.statecache``). So
``abfluss serve`` computes them ahead (``api.warm_tasks``: most wanted first) in one thread:

- when the server starts;
- when the workspace state changes (``api.workspace_state``: an ingest, a ``watch`` commit, an
  analysis, another configuration). The state is checked after requests (at most every
  ``CHECK_EVERY`` seconds), when the live view sees new findings, and every ``POLL`` seconds
  when nobody asks, so a server idle through a night's ingest is warm in the morning.

A request that needs a result while the warm-up computes it waits for that one computation
(single flight, ``statecache``) instead of starting a second; if the state changes during a
warm-up, the rest is computed for the new state. Each computation opens the workspace for itself
and closes it after, as a request does, so an ingest can commit in between.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Optional

from .. import api

log = logging.getLogger("abfluss.web")

#: Shortest time between two checks of the workspace state (s): a burst of requests makes one.
CHECK_EVERY = 2.0
#: Check at least this often while no request comes (s).
POLL = 30.0


class Warmer:
    """The background warm-up of one served workspace (``start``, ``nudge``, ``stop``)."""

    def __init__(self, workspace: Path, config: Optional[str | Path], account_limit: Optional[int],
                 check_every: float = CHECK_EVERY, poll: float = POLL):
        self.workspace, self.config, self.account_limit = workspace, config, account_limit
        self.check_every, self.poll = check_every, poll
        self.warm = threading.Event()  # set while the kept results match the state last seen
        self.state: Optional[tuple] = None  # the state they were computed for
        self.runs = 0  # complete warm-ups
        self.last: dict = {}  # the last complete one: seconds, process CPU seconds, per task
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._primed = False
        self._busy = None  # the workspace a warm-up task is computing over (``stop`` interrupts it)

    def start(self) -> None:
        """Start the thread (again after ``stop``: an app's lifespan may run more than once)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.warm.clear()  # until the first check
        self._thread = threading.Thread(target=self._run, name="abfluss-warm-up", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop now: the query in progress is interrupted (a daemon thread: never holds up an exit)."""
        self._stop.set()
        self._wake.set()
        busy = self._busy
        if busy is not None:  # a query of a warm-up in progress ends now, not in seconds
            try:
                busy.con.interrupt()
            except Exception:  # noqa: BLE001 - closed meanwhile: nothing left to end
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def nudge(self) -> None:
        """The workspace may have changed (a request came, the live view saw new findings)."""
        self._wake.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Until the kept results match the workspace's state (tests, the bench)."""
        return self.warm.wait(timeout)

    def _open(self, enrich: bool = True):
        return api.open_workspace(self.workspace, self.config, enrich=enrich)

    def _run(self) -> None:
        last_check = float("-inf")
        while not self._stop.is_set():
            # a burst of nudges makes one check
            if self._stop.wait(max(0.0, last_check + self.check_every - time.monotonic())):
                return
            self._wake.clear()
            last_check = time.monotonic()
            try:
                again = self._check()
            except Exception as e:  # a workspace being replaced, a full disk: the next check retries
                log.warning("abfluss warm-up: %s", e)
                again = False
            if not again:
                self._wake.wait(self.poll)

    def _check(self) -> bool:
        """Warm up if the state changed; True when it changed again meanwhile (check at once)."""
        with self._open(enrich=False) as ws:
            state = api.workspace_state(ws)
        if state == self.state:
            self.warm.set()
            return False
        self.warm.clear()
        t, cpu = time.perf_counter(), time.process_time()
        with self._open() as ws:
            tasks = api.warm_tasks(ws, self.account_limit)
        done = []
        for label, fn in tasks:
            if self._stop.is_set():
                return False
            t1 = time.perf_counter()
            with self._open() as ws:
                if api.workspace_state(ws) != state:
                    return True  # newer data: warm that instead
                self._busy = ws
                try:
                    fn(ws)
                except Exception as e:  # one bad piece (an officer's removed tenant) spoils no other
                    if self._stop.is_set():
                        return False  # interrupted by ``stop``
                    log.warning("abfluss warm-up: %s: %s", label, e)
                finally:
                    self._busy = None
            done.append((label, round(time.perf_counter() - t1, 3)))
        self._prime()
        self.last = {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - cpu, "tasks": done}
        self.state = state
        self.runs += 1
        self.warm.set()
        return False

    def _prime(self) -> None:
        """Once per process: compile the page templates and load plotly's figure template."""
        if self._primed:
            return
        from . import charts, pages
        for name in pages.templates.env.list_templates():
            pages.templates.env.get_template(name)
        charts.coverage_timeline([])
        self._primed = True
