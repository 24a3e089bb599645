"""Findings as ArcSight CEF lines (also read by QRadar, Sentinel, Logstash).

Header fields escape ``\\`` and ``|``; extension values escape ``\\``, ``=`` and line breaks.
"""

from __future__ import annotations

from .. import __version__
from ..findings import Finding

_SEVERITY = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}


def header_escape(s: str) -> str:
    return str(s).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def ext_escape(s: object) -> str:
    return (str(s).replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n"))


def to_cef(f: Finding) -> str:
    ext: list[tuple[str, object]] = []
    if f.start:
        ext.append(("start", int(f.start.timestamp() * 1000)))
    if f.end:
        ext.append(("end", int(f.end.timestamp() * 1000)))
    if f.internal_hosts:
        ext.append(("src", f.internal_hosts[0]))
    if f.external_hosts:
        ext.append(("dst", f.external_hosts[0]))
    if f.external_names:
        ext.append(("dhost", f.external_names[0]))
    ext += [("out", f.bytes_out), ("app", f.channel or "unknown"),
            ("cs1Label", "findingId"), ("cs1", f.id),
            ("cs2Label", "attack"), ("cs2", ",".join(f.attack)),
            ("cs3Label", "severity"), ("cs3", f.severity),
            ("cn1Label", "score"), ("cn1", round(f.score)),
            ("msg", f.explanation)]
    head = "|".join(header_escape(x) for x in (
        "CEF:0", "abfluss", "abfluss", __version__, f.detection, f.detection, _SEVERITY[f.severity]))
    return head + "|" + " ".join(f"{k}={ext_escape(v)}" for k, v in ext)
