"""Pure functions from findings to the formats SIEMs read, and the sinks that deliver them.

``FORMATS`` maps a format name to a function ``Finding -> dict | str``: ``json`` (abfluss's
own JSON form), ``ecs`` (Elastic Common Schema), ``ocsf`` (OCSF Detection Finding 2004, and
Data Security Finding 2006 for cleartext sensitive data), ``cef`` (ArcSight CEF line).
"""

from __future__ import annotations

from typing import Callable

from ..findings import Finding
from . import cef, ecs, ocsf

FORMATS: dict[str, Callable[[Finding], dict | str]] = {
    "json": lambda f: f.to_dict(),
    "ecs": ecs.to_ecs,
    "ocsf": ocsf.to_ocsf,
    "cef": cef.to_cef,
}

#: Numeric severity most formats want, 1 (info) .. 5 (critical).
SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
