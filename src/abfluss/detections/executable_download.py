"""Executables (PE, ELF, Mach-O) downloaded by internal hosts, per host and server.

What counts as an executable: a file the sensor typed so, by its magic bytes or MIME type (the
``files`` table: Zeek files.log and pe.log, PE/ELF bodies found in captures), or an HTTP response
whose MIME type is one (``http.resp_mime_types``: Zeek http.log). One download may show in
both; they are one download per connection. Keyed by (receiving host, server, ``*``).

A download of an installer from a named vendor is routine (low); points are added for what
droppers do:

``by_address``   the HTTP Host was a bare IP address (no name a proxy or DNS log would show);
``disguised``    the name's extension is not an executable's (``bin.sh``, ``invoice.pdf``,
                 ``logo.png`` served as a PE or ELF);
``tool_client``  fetched by a scripting client or downloader (curl, Wget, PowerShell, certutil);
``internal_server`` the file came from another internal host: tool transfer inside the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import ibis

from ..findings import Finding
from ..schema import EXECUTABLE_MIME
from . import Meta, Telemetry
from ._stats import keys_table, rows
from ._user_agents import SCRIPTING

META = Meta(
    id="executable_download",
    title="Executable downloaded by an internal host",
    attack=("T1105", "T1570", "T1036.008"),
    description="An internal host receiving a Windows or Linux executable over a cleartext protocol, "
                "typed by its magic bytes or MIME type. Most are installers and updates from named "
                "vendors; one fetched from a bare IP address, named like a document or script, or by a "
                "scripting client is how droppers bring their payload in.",
    runbook="1. Look up the file's hash (sha1/md5 in the finding) in your EDR and a reputation "
            "service; find it on the host. "
            "2. Check the server: a vendor's update host, or a bare address / fresh domain. "
            "3. If not explained, isolate the host before the file runs (or find what it started), "
            "and block the server.",
    channel="http",
    inputs=("files", "http"),
)

#: Extensions an executable may carry without being disguised (Linux ones often have none).
EXEC_EXT = {"exe", "dll", "msi", "msp", "msu", "scr", "com", "sys", "cpl", "ocx", "efi", "drv", "bin", "elf",
            "so", "out", "run", "appimage", "dylib", "app", "pkg", "dmg", "mui", "ax", "tmp", "dat"}
_IP_HOST = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\])(:\d+)?$")


@dataclass(frozen=True)
class Settings:
    base_points: float = field(default=25.0, metadata={
        "help": "Points of any executable download (low: installers and updates are routine)."})
    by_address_points: float = field(default=15.0, metadata={
        "help": "Points added when the HTTP Host was a bare IP address."})
    disguised_points: float = field(default=15.0, metadata={
        "help": "Points added when the file's name has an extension executables do not carry."})
    tool_client_points: float = field(default=10.0, metadata={
        "help": "Points added when a scripting client or downloader fetched it (curl, Wget, PowerShell ...)."})
    internal_server_points: float = field(default=10.0, metadata={
        "help": "Points added when the file came from another internal host (lateral tool transfer)."})
    max_listed: int = field(default=10, metadata={"help": "Downloads listed per finding."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    downloads = _from_files(tel) + _from_http(tel)
    if not downloads:
        return []
    _add_http_context(tel, downloads)
    merged: dict[tuple, dict] = {}  # one download per connection (and file), whichever table told it
    for d in downloads:
        key = (d["uid"] or d.get("fuid"), d["rx_h"], d["tx_h"])
        merged.setdefault(key, {}).update({k: v for k, v in d.items() if v is not None})
    groups: dict[tuple, list[dict]] = {}
    for d in merged.values():
        groups.setdefault((d["rx_h"], d["tx_h"]), []).append(d)
    return [_finding(rx, tx, sorted(ds, key=lambda d: (d["ts"], d.get("uid") or "")), s)
            for (rx, tx), ds in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or ""))]


def _from_files(tel: Telemetry) -> list[dict]:
    f = tel.files
    if f is None:
        return []
    # pe.log rows name only the file: take the hosts from the files.log row of the same fuid
    per = (f.group_by("fuid")
           .aggregate(ts=f.ts.min(), uid=f.uid.max(), tx_h=f.tx_h.max(), rx_h=f.rx_h.max(), source=f.source.max(),
                      mime_type=f.mime_type.max(), executable=f.executable.max(), filename=f.filename.max(),
                      size=f["size"].max(), sha1=f.sha1.max(), md5=f.md5.max(), tenant=f.tenant.max(),
                      rx_internal=ibis.ifelse(f.rx_h.notnull(), f.rx_internal, False).any(),
                      tx_internal=ibis.ifelse(f.tx_h.notnull(), f.tx_internal, False).any(),
                      allowlisted=f.allowlisted.any()))
    per = per.filter(per.executable.notnull() & per.rx_h.notnull() & per.rx_internal & ~per.allowlisted)
    return rows(per.order_by(["ts", "fuid"]))


def _from_http(tel: Telemetry) -> list[dict]:
    h = tel.http
    if h is None or "orig_internal" not in h.columns:
        return []
    mimes = list(EXECUTABLE_MIME)
    is_exe = ibis.or_(*[h.resp_mime_types.contains(m) for m in mimes])
    h = h.filter(h.orig_internal & h.resp_mime_types.notnull() & is_exe.fill_null(False))
    # the first executable MIME type of the response names the format
    kind = ibis.cases(*[(h.resp_mime_types.contains(m), m) for m in mimes], else_=ibis.null().cast("string"))
    t = h.select("ts", "uid", rx_h=h.orig_h, tx_h=h.resp_h, mime_type=kind, size=h.response_body_len,
                 host="host", uri="uri", user_agent="user_agent", tenant="tenant", tx_internal=h.resp_internal,
                 source=ibis.literal("http"))
    found = rows(t.order_by(["ts", "uid"]))
    for d in found:
        d["executable"] = EXECUTABLE_MIME.get(d["mime_type"])
    return found


def _add_http_context(tel: Telemetry, downloads: list[dict]) -> None:
    """Host, URI and User-Agent of the HTTP request that carried each file (by connection)."""
    h = tel.http
    need = [d for d in downloads if d.get("uid") and "uri" not in d]
    if h is None or not need or "uid" not in h.columns:
        return
    keys = keys_table([{"uid": u} for u in sorted({d["uid"] for d in need})], ["uid"], h)
    ctx = {}
    for r in rows(h.semi_join(keys, "uid").select("uid", "ts", "host", "uri", "user_agent").order_by(["uid", "ts"])):
        ctx.setdefault(r["uid"], r)
    for d in need:
        r = ctx.get(d["uid"])
        if r:
            d.update(host=r["host"], uri=r["uri"], user_agent=r["user_agent"])


def _name(d: dict) -> str:
    if d.get("filename"):
        return d["filename"]
    uri = (d.get("uri") or "").split("?", 1)[0].split("#", 1)[0]
    return uri.rsplit("/", 1)[-1]


def _flags(d: dict) -> dict[str, bool]:
    name = _name(d)
    ext = name.rsplit(".", 1)[1].lower() if "." in name.strip(".") else ""
    host = (d.get("host") or "").strip()
    ua = (d.get("user_agent") or "").lower()
    return {"by_address": bool(host) and _IP_HOST.match(host) is not None,
            "disguised": bool(ext) and ext not in EXEC_EXT,
            "tool_client": any(x in ua for x in SCRIPTING),
            "internal_server": bool(d.get("tx_internal"))}


def _finding(rx: str, tx: str | None, ds: list[dict], s: Settings) -> Finding:
    flags = [_flags(d) for d in ds]
    parts = {"executable": s.base_points}
    for name, pts in (("by_address", s.by_address_points), ("disguised", s.disguised_points),
                      ("tool_client", s.tool_client_points), ("internal_server", s.internal_server_points)):
        if any(f[name] for f in flags):
            parts[name] = pts
    listed = [{"name": _name(d) or None, "host": d.get("host"), "format": d.get("executable"),
               "mime_type": d.get("mime_type"), "bytes": d.get("size"), "sha1": d.get("sha1"), "md5": d.get("md5"),
               "user_agent": d.get("user_agent"), **{k: v for k, v in f.items() if v}}
              for d, f in zip(ds, flags)][: s.max_listed]
    names = ", ".join(f"{x['name'] or '?'} ({x['format']}{', from ' + x['host'] if x['host'] else ''})"
                      for x in listed[:3])
    why = [k.replace("_", " ") for k in ("by_address", "disguised", "tool_client", "internal_server") if k in parts]
    attack = ["T1570"] if "internal_server" in parts else ["T1105"]
    attack += ["T1036.008"] if "disguised" in parts else []
    return Finding(
        detection=META.id,
        key=(rx, tx or "*", "*"),
        score_parts=parts,
        explanation=(f"{rx} downloaded {len(ds)} executable{'s' if len(ds) > 1 else ''} from {tx or 'an unknown server'}"
                     f": {names}" + (f" ({'; '.join(why)})." if why else ".")),
        internal_hosts=[rx] + ([tx] if tx and "internal_server" in parts else []),
        external_hosts=[tx] if tx and "internal_server" not in parts else [],
        external_names=[d["host"] for d in ds if d.get("host") and not _IP_HOST.match(d["host"])],
        channel=(ds[0].get("source") or "http"), start=ds[0]["ts"], end=ds[-1]["ts"], bytes_out=0,
        evidence={"flows": 0, "files": len(ds), "top_flows": list(dict.fromkeys(d["uid"] for d in ds if d.get("uid"))),
                  "community_ids": []},
        metrics={"count": len(ds), "bytes_in": sum(d.get("size") or 0 for d in ds), "downloads": listed},
        thresholds={},
        attack=attack,
        tenant=next((d["tenant"] for d in ds if d.get("tenant")), None),
    )
