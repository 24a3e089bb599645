"""Shared statistics and helpers for detections, written once in Ibis so every engine runs them.

Ibis exposes neither MAD nor skewness, and Spark has no MAD: they are composed from medians
here (ARCHITECTURE.md, "Scale-out"). This is the one place for such escape hatches.
"""

from __future__ import annotations

import math

import ibis
from ibis import _

#: Scale that makes the MAD a consistent estimate of the standard deviation for normal data.
MAD_SCALE = 1.4826

#: Well-known ports, for naming a channel when the sensor named no application.
PORT_CHANNELS = {
    20: "ftp-data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 80: "http",
    110: "pop3", 135: "msrpc", 139: "smb", 143: "imap", 443: "https", 445: "smb", 465: "smtps",
    587: "smtp", 853: "dot", 993: "imaps", 995: "pop3s", 1194: "openvpn", 3389: "rdp",
    5985: "winrm", 5986: "winrm", 8080: "http", 8443: "https",
}


def robust_baseline(t, by: list[str], value: str):
    """Per group of ``by``: ``n``, ``median`` and ``mad`` (median absolute deviation) of ``value``."""
    med = t.group_by(by).aggregate(n=_.count(), median=t[value].median())
    j = t.join(med, by).select(*by, "median", dev=(t[value] - med["median"]).abs())
    mad = j.group_by(by).aggregate(mad=j["dev"].median())
    return med.join(mad, by).select(*by, "n", "median", "mad")


def channel(service, proto, port):
    """A channel name from the sensor's application name, else the protocol and port.

    ``service`` of the sensor wins ("tls" from nDPI is reported as https on 443).
    """
    svc = service.lower()
    known = ibis.cases(*[(port == p, name) for p, name in PORT_CHANNELS.items()], else_=None)
    by_port = known.coalesce(proto.lower() + "/" + port.cast("string"))
    named = ibis.cases(
        (svc.isin(["tls", "ssl"]) & (port == 443), "https"),
        (svc.isin(["tls", "ssl"]), "tls"),
        else_=svc,
    )
    return ibis.ifelse(svc.isnull() | (svc == "") | (svc == "unknown"), by_port, named)


def clip01(x: float) -> float:
    return max(0.0, min(1.0, x))


def ramp(value: float, low: float, high: float) -> float:
    """0 at or below ``low``, 1 at or above ``high``, linear between (log scale if both > 0)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0.0
    if high <= low:
        return 1.0 if value >= high else 0.0
    if low > 0 and value > 0:
        return clip01((math.log(value) - math.log(low)) / (math.log(high) - math.log(low)))
    return clip01((value - low) / (high - low))


def human_bytes(n: float | int | None) -> str:
    """Bytes as a person reads them in a sentence: 312 KB, 1.2 MB (decimal units, like ledgers)."""
    n = float(n or 0)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("bytes", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def rows(expr) -> list[dict]:
    """Execute an Ibis expression on its backend and return plain Python rows."""
    tbl = expr.to_pyarrow()
    return tbl.to_pylist()


def evidence_uids(flows, predicate, limit: int = 10, order: str = "bytes_out") -> list[dict]:
    """The top flows matching ``predicate`` (largest ``order`` first) as evidence references."""
    t = flows.filter(predicate).order_by([ibis.desc(order), "ts", "uid"]).limit(limit)
    return rows(t.select("uid", "community_id", "ts", "orig_h", "orig_p", "resp_h", "resp_p",
                         "bytes_out", "bytes_in"))
