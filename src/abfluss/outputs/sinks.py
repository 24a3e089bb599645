"""Deliver findings: an NDJSON file, or syslog (RFC 5424) over UDP or TCP.

A sink is named by a string, as on the command line:
``ndjson:PATH`` (append one document per line), ``udp://HOST:PORT``, ``tcp://HOST:PORT``
(TCP frames use octet counting, RFC 6587), ``http://…`` or ``https://…`` (a webhook: one JSON
POST per finding). The payload format defaults to ECS for NDJSON and webhooks, CEF for syslog.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from urllib.parse import urlsplit

from .. import __version__
from ..errors import AbflussError
from ..findings import Finding
from . import FORMATS

#: Syslog facility local4 (20); severity from the finding (RFC 5424 numeric levels).
FACILITY = 20
_SYSLOG_SEVERITY = {"info": 6, "low": 5, "medium": 4, "high": 3, "critical": 2}
TIMEOUT = 5.0


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

    def send(self, findings: list[Finding]) -> int:
        if not findings:
            return 0
        try:
            if self.kind == "ndjson":
                with open(self.path, "a", encoding="utf-8") as out:
                    for f in findings:
                        out.write(render(f, self.fmt) + "\n")
            elif self.kind == "webhook":
                for f in findings:
                    self._post(render(f, self.fmt))
            elif self.kind == "udp":
                with socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM) as s:
                    for f in findings:
                        s.sendto(syslog_message(f, self.fmt), (self.host, self.port))
            else:
                with socket.create_connection((self.host, self.port), timeout=TIMEOUT) as s:
                    for f in findings:
                        m = syslog_message(f, self.fmt)
                        s.sendall(str(len(m)).encode() + b" " + m)
        except OSError as e:
            raise AbflussError(f"sink {self.spec}: {getattr(e, 'strerror', None) or e}") from None
        return len(findings)

    def _post(self, body: str) -> None:
        import urllib.request

        ctype = "text/plain" if self.fmt == "cef" else "application/json"
        req = urllib.request.Request(self.url, data=body.encode("utf-8"), method="POST",
                                     headers={"Content-Type": ctype, "User-Agent": f"abfluss/{__version__}"})
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:  # raises for 4xx/5xx (an OSError)
            r.read()
