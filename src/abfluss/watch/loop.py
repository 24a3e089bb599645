"""The watch loop: poll every source, store what arrived, detect every ``every`` seconds.

Between polls the catalog is let go (``Workspace.released``), so read-only commands
(``ledger``, ``findings``) work while the watcher runs. SIGTERM and SIGINT end the loop after
the current step and cut a send in progress short (its finding stays queued for the sink, see
``outputs.delivery``), so the watcher is gone within seconds; a kill -9 at any moment loses
nothing: every stored piece is committed together with its position (see state.py). Between
its steps the loop also runs ``abfluss analyze`` for clients on the same workspace, which
cannot open it while the watcher holds the writer's lock (requests.py, resident.py).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from .. import analysis
from ..analysis_resident import Resident
from ..errors import AbflussError
from ..findings import Finding
from ..outputs.delivery import Delivery, deliver
from ..outputs.sinks import Sink
from ..store import Workspace
from . import requests, state
from .capture import DEFAULT_ROTATE, InterfaceSource
from .follow import FileFollower, ZeekDir
from .health import DEFAULT_LOSS_SHARE, SensorHealth
from .netflow import NetflowSource

from .defaults import DEFAULT_EVERY, DEFAULT_SILENT_AFTER, DEFAULT_WINDOW  # defined apart so --help need not import this module
#: Seconds between polls of the sources.
POLL = 1.0


@dataclass
class Options:
    every: float = DEFAULT_EVERY
    window: float = DEFAULT_WINDOW
    silent_after: float = DEFAULT_SILENT_AFTER
    loss_share: float = DEFAULT_LOSS_SHARE
    rotate: int = DEFAULT_ROTATE
    inspect: bool = True
    poll: float = POLL


@dataclass
class Source:
    name: str
    sensor: str
    impl: object
    health: SensorHealth = field(init=False)

    def __post_init__(self) -> None:
        self.health = SensorHealth(self.sensor)


class Watcher:
    """Run with ``Watcher(ws, opts).add_*(...)`` then ``run(emit)``; ``emit`` gets new findings."""

    def __init__(self, ws: Workspace, opts: Options | None = None, sinks: list[Sink] | None = None):
        self.ws, self.opts = ws, opts or Options()
        self.sinks = list(sinks or [])
        self.cancel = threading.Event()  # set on SIGTERM/SIGINT: aborts a send in progress
        self.deliveries: dict[str, Delivery] = {}
        state.ensure(ws)
        self.committed = state.committed_offsets(ws)
        self.saved = state.load(ws)
        self.sources: list[Source] = []
        self.stop = False
        self.stats = {"records": 0, "cycles": 0, "findings_sent": 0, "analyses": 0, "requests": 0}
        self._analysed = -1  # records stored when the detections last ran
        self._emit: Callable[[list[Finding]], None] = lambda _found: None
        #: ``abfluss analyze`` handed over by a client on this workspace (requests.py), while running
        self.listener: requests.Listener | None = None
        #: What the analyses keep from one to the next (the window's export while it is the same,
        #: the detections' built queries; analysis_resident.py), from ``run`` on
        self.resident: Resident | None = None

    def add_zeek_dir(self, directory: Path, sensor: str | None = None) -> None:
        d = Path(directory).resolve()
        self.sources.append(Source(f"zeek:{d}", sensor or "zeek", ZeekDir(self.ws, d, sensor or "zeek",
                                                                         self.committed, self.saved)))

    def add_eve(self, path: Path, sensor: str | None = None) -> None:
        p = Path(path).resolve()
        self.sources.append(Source(f"eve:{p}", sensor or "suricata",
                                   FileFollower(self.ws, f"eve:{p}", p, sensor or "suricata",
                                                self.committed, self.saved)))

    def add_interface(self, interface: str, sensor: str | None = None) -> None:
        s = sensor or f"live-{interface}"
        self.sources.append(Source(f"interface:{interface}", s,
                                   InterfaceSource(self.ws, interface, s, self.opts.rotate, self.opts.inspect)))

    def add_netflow(self, port: int, sensor: str | None = None) -> None:
        s = sensor or f"netflow-{port}"
        self.sources.append(Source(f"netflow:{port}", s, NetflowSource(self.ws, port, s)))

    # -- running -------------------------------------------------------------------------
    def _signal(self, *_a) -> None:
        self.stop = True
        self.cancel.set()

    def poll_sources(self, final: bool = False) -> int:
        n = 0
        for src in self.sources:
            impl = src.impl
            res = impl.poll(final) if isinstance(impl, (InterfaceSource, NetflowSource)) else impl.poll()
            src.health.add(res.total, res.bytes, res.missed)  # NetFlow reports lost datagrams as bytes
            n += res.total
        self.stats["records"] += n
        return n

    def detect(self) -> list[Finding]:
        """One detection run over the sliding window, plus sensor health; the new findings."""
        found: list[Finding] = []
        window = (None, None)
        specs = tuple(s.spec for s in self.sinks)
        # Only new records can change what the detections find: with nothing stored since the
        # last run, the window and so its findings are the same, and only sensor health is checked.
        if self.stats["records"] != self._analysed:
            self._analysed = self.stats["records"]
            _lo, hi = analysis.data_span(self.ws)
            if hi is not None:
                window = (hi - timedelta(seconds=self.opts.window), hi)
                found += analysis.analyze(self.ws, *window, store=False, resident=self.resident).findings
                self.stats["analyses"] += 1
        found += [f for s in self.sources for f in s.health.check(self.opts.silent_after, self.opts.loss_share)]
        # one save per cycle: stored findings only grow, and the cycle is one row in ``analyses``
        new = analysis.save(self.ws, found, specs, window=window, engine="watch")
        self.stats["cycles"] += 1
        return new

    def told(self, found: list[Finding]) -> None:
        """New findings a client's analysis stored (queued for this watch's sinks too): in the
        watch's output as those of its own cycles."""
        if found:
            self._emit(found)
            self.stats["findings_sent"] += len(found)

    def answer(self) -> bool:
        """Run the oldest ``abfluss analyze`` waiting on the socket, if any (between cycles)."""
        if self.listener is None or not self.listener.serve(lambda req: requests.analyze(self, req)):
            return False
        self.stats["requests"] += 1
        return True

    def deliver(self) -> dict[str, Delivery]:
        """Send every sink what it still has queued (this cycle's findings and earlier misses)."""
        self.deliveries = deliver(self.ws, self.sinks, self.cancel) if self.sinks else {}
        return self.deliveries

    def _unlisten(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def _unkeep(self) -> None:
        if self.resident is not None:
            self.resident.close()
            self.resident = None

    def _waiting(self) -> bool:
        return self.listener is not None and self.listener.waiting()

    def run(self, emit: Callable[[list[Finding]], None], duration: float | None = None,
            on_cycle: Callable[[dict], None] | None = None, on_note: Callable[[str], None] | None = None) -> None:
        """Poll, detect every ``every`` seconds and answer ``abfluss analyze`` requests between
        them; ``on_note`` gets a line to tell the operator (the socket could not be made)."""
        old = {s: signal.signal(s, self._signal) for s in (signal.SIGTERM, signal.SIGINT)}
        self._emit = emit
        # listening before warming up: a request made meanwhile waits for it instead of failing
        listener = requests.Listener(self.ws.root)
        try:
            listener.open()
            self.listener = listener
        except (AbflussError, OSError) as e:  # the watch's own work goes on without it
            if on_note:
                on_note(f"not answering abfluss analyze on this workspace: {e}")
        self.resident = Resident()
        try:
            # the first alert waits neither for imports nor for compiling queries
            analysis.warm(self.ws, self.resident)
        except BaseException:
            self._unlisten()
            self._unkeep()
            raise
        for src in self.sources:
            if hasattr(src.impl, "start"):
                src.impl.start()
        t0 = time.monotonic()
        next_detect = t0 + self.opts.every
        try:
            while not self.stop and (duration is None or time.monotonic() - t0 < duration):
                self.poll_sources()
                if time.monotonic() >= next_detect:
                    # every ``every`` seconds from the start of one run to the next: a run that
                    # took longer is followed at once by the next (with what arrived meanwhile),
                    # not after another full wait
                    next_detect = time.monotonic() + self.opts.every
                    found = self.detect()
                    if found:
                        emit(found)
                        self.stats["findings_sent"] += len(found)
                    self.deliver()
                    if on_cycle:
                        on_cycle(dict(self.stats))
                self.answer()
                with self.ws.released():
                    end = time.monotonic() + self.opts.poll
                    while not self.stop and time.monotonic() < end and not self._waiting():
                        time.sleep(0.1) if self.listener is None else self.listener.wake.wait(0.1)
        except BaseException:
            self._unkeep()
            raise
        finally:
            self._unlisten()  # waiting clients are told at once, the socket goes
            for src in self.sources:
                if hasattr(src.impl, "stop"):
                    src.impl.stop()
            for s, h in old.items():
                signal.signal(s, h)
        # a clean stop stores what the sources still hold (closed capture files, queued datagrams);
        # stopped by a signal, the detection of that last piece waits for the next start
        try:
            self.poll_sources(final=True)
            if not self.cancel.is_set():
                found = self.detect()
                if found:
                    emit(found)
                    self.stats["findings_sent"] += len(found)
                self.deliver()
        finally:
            self._unkeep()
