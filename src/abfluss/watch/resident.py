"""``abfluss analyze`` answered by the watch running on the same workspace (the client side).

While ``abfluss watch`` runs on a workspace it holds the writer's lock, so an ``analyze`` of its
own cannot open the workspace; the watch also has the detections warm. It therefore listens on
a Unix socket inside the workspace (``run/watch.sock``: the folder 0700, the socket 0600, never
a network port), and ``analyze`` hands its request over: the watch runs the analysis between
two of its cycles and sends back what ``analyze`` prints (``requests.py`` is that side).

This module is what the command loads before it knows whether a watch answers, so it imports
nothing beyond the standard library: no DuckDB, Arrow or Ibis for a request the watch runs.

The exchange, one JSON document per line: the client sends its request; the watch's listening
thread answers ``queued`` at once (a watch that does not is taken for none: the command runs
itself), ``running`` when its loop takes the request, then ``done`` with the result, or
``error`` (what the command would have printed as its error, and its exit code), or
``stopping`` (it was stopped before it took the request).
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

from ..errors import AbflussError
from ..units import json_default

#: The socket, relative to the workspace's root; the folder holds nothing else.
SOCKET = Path("run") / "watch.sock"
#: Version of the exchange; a watch refuses a request of another one with a clear error.
PROTOCOL = 1
#: Seconds to connect and get the watch's first answer (its listening thread answers at once).
ANSWER_WITHIN = 2.0
#: Seconds a request may wait for a busy watch (a long detection cycle) to take it;
#: ``ABFLUSS_WATCH_WAIT`` sets another. The analysis itself, once taken, has no limit (as when
#: ``analyze`` runs it itself).
WAIT = 120.0
#: Longest path ``bind``/``connect`` take (``sun_path`` holds 108 bytes with its final NUL).
_SUN_PATH = 107


class NoWatch(Exception):
    """No watch answered on this workspace: the command runs itself."""


class Failed(AbflussError):
    """The watch's analysis failed: ``exit`` is the command's exit code (2 for what it reports in
    one line, 1 for a defect), ``detail`` the traceback a defect printed in the watch."""

    def __init__(self, message: str, exit: int = 2, detail: str | None = None):
        super().__init__(message)
        self.exit, self.detail = exit, detail


def workspace_root(path: str | Path | None) -> Path:
    """The workspace a command opens (``api.workspace_path``, resolved as ``Workspace.open``
    does), without loading the store (and DuckDB) to learn its default."""
    return Path(path or os.environ.get("ABFLUSS_WORKSPACE") or "abfluss-data").resolve()


def socket_path(root: Path) -> Path:
    return Path(root) / SOCKET


def address(path: Path) -> tuple[str, int | None]:
    """The address to bind or connect to ``path``, and a folder descriptor to close afterwards.
    A path longer than ``sun_path`` takes is named through its folder's descriptor
    (``/proc/self/fd/N/watch.sock``), which the kernel resolves like the path itself."""
    text = os.fsdecode(path)
    if len(os.fsencode(text)) <= _SUN_PATH:
        return text, None
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


def wait_seconds() -> float:
    try:
        return max(0.1, float(os.environ.get("ABFLUSS_WATCH_WAIT", WAIT)))
    except ValueError:
        raise AbflussError(f"ABFLUSS_WATCH_WAIT={os.environ['ABFLUSS_WATCH_WAIT']!r}: give seconds") from None


def send(conn: socket.socket, doc: dict) -> None:
    conn.sendall(json.dumps(doc, default=json_default).encode("utf-8") + b"\n")


class Lines:
    """Reads one JSON document per line from a socket, each within the socket's timeout."""

    def __init__(self, conn: socket.socket, limit: int | None = None):
        self.conn, self.limit, self.buf = conn, limit, b""

    def next(self) -> dict | None:
        """The next document; None when the other side closed the connection."""
        while b"\n" not in self.buf:
            if self.limit is not None and len(self.buf) > self.limit:
                raise ValueError("line too long")
            chunk = self.conn.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        doc = json.loads(line)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        return doc


def connect(root: Path) -> socket.socket:
    """A connection to the watch of workspace ``root``; NoWatch when none listens (no socket,
    a stale one left by a watch that was killed, or one this user may not use)."""
    path = socket_path(root)
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise NoWatch(f"{path} is not a socket")
        addr, fd = address(path)
    except OSError as e:
        raise NoWatch(str(e)) from None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(ANSWER_WITHIN)
    try:
        conn.connect(addr)
    except OSError as e:  # refused (stale), vanished, permission denied, a backlog full for too long
        conn.close()
        raise NoWatch(str(e)) from None
    finally:
        if fd is not None:
            os.close(fd)
    return conn


def hand_over(root: Path, request: dict) -> dict:
    """Hand ``request`` to the watch on workspace ``root`` and return its result (``done``).

    Raises NoWatch when no watch answers at once; AbflussError with the command's own message
    when the analysis failed as the command would have failed (``exit`` in it gives the exit
    code) or the watch did not take the request within ``wait_seconds``."""
    conn = connect(root)
    with conn:
        try:
            send(conn, {"protocol": PROTOCOL, **request})
            lines = Lines(conn)
            first = lines.next()
        except (OSError, ValueError) as e:
            raise NoWatch(str(e)) from None
        if first is None or first.get("status") not in ("queued", "error", "stopping"):
            raise NoWatch("no answer")
        pid = first.get("pid", "?")
        doc = first
        if doc["status"] == "queued":
            wait = wait_seconds()
            conn.settimeout(wait)
            try:
                doc = lines.next()
            except TimeoutError:
                raise AbflussError(f"the watch on this workspace (pid {pid}) is busy and did not take this "
                                   f"analysis within {wait:g} s; try again (ABFLUSS_WATCH_WAIT sets the wait)") from None
            except (OSError, ValueError):
                doc = None
            if doc is not None and doc.get("status") == "running":
                conn.settimeout(None)  # as long as the analysis takes, as when the command runs it
                try:
                    doc = lines.next()
                except (OSError, ValueError):
                    doc = None
        if doc is None:
            raise AbflussError(f"the watch on this workspace (pid {pid}) ended before it answered; "
                               "its log says why. Run the command again")
        if doc.get("status") == "stopping":
            raise AbflussError(f"the watch on this workspace (pid {pid}) was stopping and did not run this "
                               "analysis; run the command again")
        if doc.get("status") == "error":
            raise Failed(doc.get("message") or "the watch's analysis failed", int(doc.get("exit", 2)),
                         doc.get("traceback"))
        if doc.get("status") != "done":
            raise AbflussError(f"the watch on this workspace (pid {pid}) answered {doc.get('status')!r}")
        return doc["result"]
