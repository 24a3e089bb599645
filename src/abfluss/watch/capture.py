"""Watch an interface: tcpdump writes short rotating capture files, each closed one is metered.

tcpdump (``-G ROTATE``) starts a new file every ``rotate`` seconds (at the first packet after
that). Every file but the newest is complete: it is ingested like any capture (NFStream with
its active timeout, DNS decoded per packet, payload inspected) and then deleted, so a flow
that runs across files is accounted file by file while it runs. The files live in a private
directory of the workspace (mode 0700) and no longer than it takes to meter them. After a
crash, the files left behind are complete (tcpdump dies with the watcher) and are ingested
at the next start; one already stored is recognised by its content hash and only removed.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
from pathlib import Path

from ..errors import AbflussError
from ..ingest import ingest_file
from ..store import Workspace
from .chunks import Stored

from .defaults import DEFAULT_ROTATE  # defined apart so --help need not import this module


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphaned tcpdump after kill -9


class InterfaceSource:
    def __init__(self, ws: Workspace, interface: str, sensor: str, rotate: int = DEFAULT_ROTATE,
                 inspect: bool = True):
        self.ws, self.interface, self.sensor, self.rotate, self.inspect = ws, interface, sensor, rotate, inspect
        self.dir = ws.root / ".watch" / f"iface-{interface}"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.proc: subprocess.Popen | None = None
        self.lost: list[str] = []

    def start(self) -> None:
        tcpdump = shutil.which("tcpdump")
        if tcpdump is None:
            raise AbflussError("--interface needs tcpdump (Debian package 'tcpdump'): apt-get install tcpdump")
        pattern = str(self.dir / "cap-%Y%m%d%H%M%S.pcap")
        self.proc = subprocess.Popen(
            [tcpdump, "-i", self.interface, "-s", "0", "-U", "-n", "-G", str(self.rotate), "-w", pattern,
             "-Z", "root"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def _check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            err = (self.proc.stderr.read() or b"").decode(errors="replace").strip().splitlines()
            raise AbflussError(f"interface {self.interface}: capture stopped: {err[-1] if err else 'tcpdump exited'}")

    def poll(self, final: bool = False) -> Stored:
        self._check()
        files = sorted(p for p in self.dir.glob("cap-*.pcap"))
        if not final and self.proc is not None:
            files = files[:-1]  # the newest file is still being written
        total = Stored()
        for p in files:
            if p.stat().st_size <= 24:  # pcap header only
                p.unlink()
                continue
            res = ingest_file(self.ws, p, self.sensor, label=f"interface:{self.interface}@{p.stem[4:]}",
                              inspect=self.inspect)
            if res.status == "failed":
                self.lost.append(f"{p.name}: {res.error}")
            for k, v in res.records.items():
                total.records[k] = total.records.get(k, 0) + v
            p.unlink()
        return total
