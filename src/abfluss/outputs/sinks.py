"""Deliver findings: an NDJSON file, or syslog (RFC 5424) over UDP or TCP.

A sink is named by a string, as on the command line:
``ndjson:PATH`` (append one document per line), ``udp://HOST:PORT``, ``tcp://HOST:PORT``
(TCP frames use octet counting, RFC 6587), ``http://…`` or ``https://…`` (a webhook: one JSON
POST per finding). The payload format defaults to ECS for NDJSON and webhooks, CEF for syslog.

Every send has a total deadline (``DEADLINE``), not a timeout per socket read: a receiver that
drips one byte every two seconds would otherwise hold the sender for ever. A watchdog thread
shuts the send's socket down when the deadline passes or the caller cancels (``watch`` on
SIGTERM). Which findings each sink still has to get is kept in the catalog (``delivery.py``).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

from .. import __version__
from ..errors import AbflussError
from ..findings import Finding
from . import FORMATS

#: Syslog facility local4 (20); severity from the finding (RFC 5424 numeric levels).
FACILITY = 20
_SYSLOG_SEVERITY = {"info": 6, "low": 5, "medium": 4, "high": 3, "critical": 2}
#: Seconds one send (one finding to one sink: connect, write, read the answer) may take in total.
DEADLINE = 5.0
TIMEOUT = DEADLINE  # the name before deadlines were total


class _Watchdog:
    """Shuts down the watched sockets when ``seconds`` have passed or ``cancel`` is set."""

    def __init__(self, seconds: float, cancel: threading.Event | None):
        self.end = time.monotonic() + seconds
        self.cancel = cancel
        self.fired = ""
        self._socks: list[socket.socket] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def remaining(self) -> float:
        return max(0.01, self.end - time.monotonic())

    def watch(self, sock: socket.socket | None) -> None:
        if sock is not None:
            self._socks.append(sock)
            if self.fired:
                self._shut()

    def _run(self) -> None:
        while not self._done.wait(0.05):
            if self.cancel is not None and self.cancel.is_set():
                self.fired = "cancelled"
            elif time.monotonic() >= self.end:
                self.fired = "deadline passed"
            if self.fired:
                self._shut()
                return

    def _shut(self) -> None:
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._done.set()


def render(f: Finding, fmt: str) -> str:
    out = FORMATS[fmt](f)
    return out if isinstance(out, str) else json.dumps(out, default=str, sort_keys=True, ensure_ascii=False)


def syslog_message(f: Finding, fmt: str, hostname: str | None = None) -> bytes:
    pri = FACILITY * 8 + _SYSLOG_SEVERITY[f.severity]
    ts = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = hostname or socket.gethostname() or "-"
    msg = f"<{pri}>1 {ts} {host} abfluss {os.getpid()} {f.detection} - {render(f, fmt)}"
    return msg.encode("utf-8")


class Sink:
    def __init__(self, spec: str, fmt: str | None = None):
        self.spec = spec
        if spec.startswith("ndjson:"):
            self.kind, self.path = "ndjson", spec[len("ndjson:"):]
            self.fmt = fmt or "ecs"
            if not self.path:
                raise AbflussError(f"sink {spec!r}: give a file, e.g. ndjson:/var/log/abfluss.ndjson")
        elif spec.startswith(("http://", "https://")):
            if not urlsplit(spec).hostname:
                raise AbflussError(f"sink {spec!r}: a webhook needs a host, e.g. https://siem.example/hook")
            self.kind, self.url = "webhook", spec
            self.fmt = fmt or "ecs"
        else:
            u = urlsplit(spec)
            if u.scheme not in ("udp", "tcp") or not u.hostname or not u.port:
                raise AbflussError(f"sink {spec!r}: use ndjson:PATH, udp://HOST:PORT, tcp://HOST:PORT or an "
                                   "http(s):// webhook")
            self.kind, self.host, self.port = u.scheme, u.hostname, u.port
            self.fmt = fmt or "cef"
        if self.fmt not in FORMATS:
            raise AbflussError(f"format {self.fmt!r}: one of {', '.join(FORMATS)}")

    def send(self, findings: list[Finding], cancel: threading.Event | None = None) -> int:
        """Send ``findings``, each within ``DEADLINE`` seconds; raise AbflussError on the first
        that fails (the caller keeps it queued). ``cancel`` aborts a send in progress."""
        for f in findings:
            dog = _Watchdog(DEADLINE, cancel)
            try:
                self._send_one(f, dog)
            except (OSError, http.client.HTTPException) as e:
                why = {"deadline passed": f"deadline passed ({DEADLINE:g} s)", "cancelled": "cancelled (stopping)"}.get(
                    dog.fired) or getattr(e, "strerror", None) or str(e) or type(e).__name__
                raise AbflussError(f"sink {self.spec}: {why}") from None
            finally:
                dog.close()
        return len(findings)

    def _send_one(self, f: Finding, dog: _Watchdog) -> None:
        if self.kind == "ndjson":
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(render(f, self.fmt) + "\n")
        elif self.kind == "webhook":
            self._post(render(f, self.fmt), dog)
        elif self.kind == "udp":
            with socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(syslog_message(f, self.fmt), (self.host, self.port))
        else:
            with socket.create_connection((self.host, self.port), timeout=dog.remaining()) as s:
                dog.watch(s)
                m = syslog_message(f, self.fmt)
                s.sendall(str(len(m)).encode() + b" " + m)
        if dog.fired:  # the watchdog cut the send short: it did not (all) arrive
            raise TimeoutError(dog.fired)

    def _post(self, body: str, dog: _Watchdog) -> None:
        u = urlsplit(self.url)
        if u.scheme == "https":
            conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=dog.remaining(),
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=dog.remaining())
        ctype = "text/plain" if self.fmt == "cef" else "application/json"
        try:
            conn.connect()
            dog.watch(conn.sock)
            conn.request("POST", (u.path or "/") + (f"?{u.query}" if u.query else ""), body=body.encode("utf-8"),
                         headers={"Content-Type": ctype, "User-Agent": f"abfluss/{__version__}"})
            r = conn.getresponse()
            r.read()
            if r.status >= 300:  # a redirect or an error: not accepted
                raise OSError(f"HTTP {r.status} {r.reason}")
        finally:
            conn.close()
