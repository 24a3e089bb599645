"""The watch's side of ``abfluss analyze`` handed over to it (the client side is resident.py).

A thread accepts connections on the workspace's ``run/watch.sock`` and reads each request; the
watch loop takes one waiting request between its steps (``Listener.serve``) and runs it in its
own thread, with the catalog it holds and the detections it keeps warm. So a request never runs
during a detection cycle or a poll, and two clients are served one after the other.

Only this process's user (and root) may connect: the folder is 0700 and the socket 0600, and the
peer's user id is checked (``SO_PEERCRED``) besides. A request answers what the command would
have printed: the analysis's result, or its error in the command's words and exit code.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import select
import socket
import stat
import struct
import threading
import traceback
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import AbflussError, WorkspaceError
from . import resident

if TYPE_CHECKING:
    from .loop import Watcher

#: Seconds a connected client has to send its request (it sends it at once).
REQUEST_WITHIN = 2.0
#: Largest request accepted (a request is a few hundred bytes).
REQUEST_LIMIT = 1 << 20


@dataclasses.dataclass
class Request:
    conn: socket.socket
    doc: dict

    def gone(self) -> bool:
        """Whether the client hung up (stopped with Ctrl-C or SIGTERM) meanwhile."""
        try:
            readable, _, _ = select.select([self.conn], [], [], 0)
            return bool(readable) and self.conn.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def answer(self, doc: dict) -> bool:
        try:
            resident.send(self.conn, doc)
            return True
        except OSError:  # the client is gone: nothing to tell
            return False

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass


class Listener:
    """Listens on the workspace's socket while the watch runs (``open`` ... ``close``)."""

    def __init__(self, root: Path):
        self.path = resident.socket_path(root)
        self.pending: collections.deque[Request] = collections.deque()
        self.wake = threading.Event()  # set when a request is waiting
        self.closed = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._ino: int | None = None

    def open(self) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            st = os.lstat(folder)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                raise WorkspaceError(f"{folder}: not a folder of this user; remove it (abfluss keeps its socket there)")
            os.chmod(folder, 0o700)
            # A socket left there by a watch that was killed: this process holds the writer's
            # lock, so no other watch can be listening on it.
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            addr, fd = resident.address(self.path)
            try:
                sock.bind(addr)
            finally:
                if fd is not None:
                    os.close(fd)
            os.chmod(self.path, 0o600)
            sock.listen(16)
        except PermissionError as e:
            raise WorkspaceError(f"{folder}: permission denied ({e.filename})") from None
        sock.settimeout(0.2)  # the accepting thread looks at ``closed`` this often
        self._sock, self._ino = sock, os.lstat(self.path).st_ino
        self._thread = threading.Thread(target=self._accept, name="abfluss-requests", daemon=True)
        self._thread.start()

    # -- the accepting thread ------------------------------------------------------------
    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.closed:
                    return
                continue
            try:
                self._take(conn)
            except Exception:  # noqa: BLE001 - one bad client must not end the listening
                conn.close()

    def _take(self, conn: socket.socket) -> None:
        req = Request(conn, {})
        conn.settimeout(REQUEST_WITHIN)
        pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                            struct.calcsize("3i")))
        if uid not in (os.getuid(), 0):
            req.answer({"status": "error", "exit": 2, "message": "the watch answers only its own user"})
            req.close()
            return
        try:
            doc = resident.Lines(conn, REQUEST_LIMIT).next()
        except (OSError, ValueError):
            doc = None
        if doc is None:
            req.close()
            return
        if doc.get("protocol") != resident.PROTOCOL or doc.get("command") != "analyze":
            req.answer({"status": "error", "exit": 2, "message": f"the watch on this workspace (pid {os.getpid()}) "
                        "runs another version of abfluss; restart it, or stop it and run the command"})
            req.close()
            return
        req.doc = doc
        with self._lock:
            if self.closed:
                req.answer({"status": "stopping", "pid": os.getpid()})
                req.close()
                return
            req.answer({"status": "queued", "pid": os.getpid()})
            self.pending.append(req)
            self.wake.set()

    # -- the watch loop's side -----------------------------------------------------------
    def waiting(self) -> bool:
        return bool(self.pending)

    def serve(self, handler: Callable[[Request], dict | None]) -> bool:
        """Run the oldest waiting request with ``handler`` (its result, or None when the client
        went away); whether there was one."""
        with self._lock:
            req = self.pending.popleft() if self.pending else None
            if not self.pending:
                self.wake.clear()
        if req is None:
            return False
        try:
            if req.gone() or not req.answer({"status": "running", "pid": os.getpid()}):
                return True
            req.conn.settimeout(10.0)  # sending the result to a client that stopped reading
            try:
                result = handler(req)
            except AbflussError as e:
                req.answer({"status": "error", "exit": 2, "message": str(e)})
            except Exception as e:  # noqa: BLE001 - reported to the client; the watch goes on
                req.answer(failure(e))
            else:
                if result is not None:
                    req.answer({"status": "done", "result": result})
        finally:
            req.close()
        return True

    def close(self) -> None:
        """Stop listening, remove the socket, tell waiting clients the watch stopped."""
        with self._lock:
            self.closed = True
            waiting, self.pending = list(self.pending), collections.deque()
        if self._thread is not None:
            self._thread.join(1.0)
        if self._sock is not None:
            self._sock.close()
            try:
                if os.lstat(self.path).st_ino == self._ino:
                    os.unlink(self.path)
            except OSError:
                pass
        for req in waiting:
            req.answer({"status": "stopping", "pid": os.getpid()})
            req.close()


def failure(e: BaseException) -> dict:
    """An error the command would have reported: a full disk in one line (as ``cli.main``), any
    other defect with its traceback and exit code 1."""
    from ..fsutil import disk_full_line, no_space

    if no_space(e):
        return {"status": "error", "exit": 2, "message": disk_full_line(e)}
    from ..analysis import error_line

    return {"status": "error", "exit": 1, "message": f"the watch's analysis failed: {error_line(e)}",
            "traceback": "".join(traceback.format_exception(e))}


def analyze(watcher: "Watcher", req: Request) -> dict | None:
    """``abfluss analyze`` with the request's options, as the command runs it (``cli.detect``):
    store the findings, queue the new ones for the request's sinks and deliver to them. New
    findings are queued for the watch's own sinks too, as they would have been had the watch's
    cycle found them first (the next cycle sends them). None when the client hung up before
    anything was stored."""
    from .. import analysis, ledger_store
    from ..outputs.delivery import deliver
    from ..outputs.sinks import Sink

    a = req.doc
    ws = watcher.ws
    sinks = [Sink(s, a.get("sink_format")) for s in a.get("sinks") or []]
    for s in sinks:  # a relative file is the client's, not this process's working folder's
        if s.kind == "ndjson" and not os.path.isabs(s.path):
            s.path = os.path.join(a["cwd"], s.path)
    same_config(ws, a.get("config"))
    only = tuple(a.get("only") or ())
    start, end = (datetime.fromisoformat(a[k]) if a.get(k) else None for k in ("start", "end"))
    ledger_store.update(ws)  # as api.analyze
    res = analysis.analyze(ws, start, end, only, "duckdb", store=False, resident=watcher.resident)
    if req.gone():  # stopped before anything was stored: as the command stopped, it stores nothing
        return None
    if res.start is not None:
        specs = tuple(dict.fromkeys(s.spec for s in sinks))
        own = tuple(s.spec for s in watcher.sinks if s.spec not in specs)
        res.new = analysis.save(ws, res.findings, specs + own, window=(res.start, res.end), engine="duckdb",
                                only=only)
        watcher.told(res.new)
    done = deliver(ws, sinks, watcher.cancel)
    return {"start": res.start, "end": res.end, "flows": res.flows, "findings": [f.to_dict() for f in res.findings],
            "new": [f.id for f in res.new], "seconds": res.seconds, "errors": res.errors,
            "sinks": [{"spec": spec, "sent": d.sent, "queued": d.queued, "error": d.error} for spec, d in done.items()]}


def same_config(ws, path: str | None) -> None:
    """The request's configuration must be the watch's: its enrichment views and detections'
    settings are built from it. Another one is refused with what to do."""
    from .. import config as _config

    cfg = _config.load(Path(path) if path else None, ws.root)
    if dataclasses.replace(cfg, source=ws.config.source) != ws.config:
        raise AbflussError(f"the watch on this workspace (pid {os.getpid()}) runs with another configuration "
                           f"({ws.config.source}) than this analyze would use ({cfg.source}); restart the watch "
                           "to use it, or stop the watch and run analyze")
