"""A host announcing different versions of the same kind of software, per host and kind (SSH
client and SSH server by default).

The ``software`` table holds what hosts announced: Zeek's software.log (from SSH banners, HTTP
headers ...) and the SSH banners of packet captures. An SSH client whose version string changes
within the window is a second client on the host — an attack tool (libssh, paramiko, Go's
x/crypto/ssh: hydra, scanners) beside the system's OpenSSH — or several machines behind one
address; a server whose banner changes is a different service answering on the address.

Keyed by (host, kind, ``*``). A change between different programs (``name``) weighs more than a
version change of the same one; a change within ``fast_change_seconds`` more than an upgrade
weeks apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ._stats import first_per_group, keys_table, rows, utc

META = Meta(
    id="software_change",
    title="SSH client or server version changing on one host",
    attack=("T1036", "T1078", "T1588.002"),
    description="One internal host announcing different SSH client (or server) versions: a second SSH "
                "program on it, such as an attack tool's library next to the system client, or a "
                "different machine answering on its address.",
    runbook="1. List the versions and when each was first seen (the finding's metrics). "
            "2. For a client: which process on the host speaks SSH with that version string (a "
            "Python or Go program is a script or tool, not the admin's client); compare with the "
            "brute_force and scan findings of the host. "
            "3. For a server: check whether the address moved to another machine (DHCP, failover) "
            "or a rogue service answers on it.",
    channel="ssh",
    inputs=("software",),
)


@dataclass(frozen=True)
class Settings:
    kinds: tuple = field(default=("ssh-client", "ssh-server"), metadata={
        "help": "Software kinds watched (Zeek's software types in lower case with '-': ssh-client, "
                "ssh-server, http-browser, http-server ...)."})
    min_versions: int = field(default=2, metadata={
        "help": "Distinct version strings of one kind that make a change."})
    fast_change_seconds: float = field(default=3600.0, metadata={
        "help": "Versions changing within this many seconds add points: an upgrade does not happen "
                "twice an hour."})
    base_points: float = field(default=25.0, metadata={"help": "Points of any version change."})
    other_program_points: float = field(default=15.0, metadata={
        "help": "Points added when the versions belong to different programs (OpenSSH, libssh, paramiko)."})
    fast_points: float = field(default=10.0, metadata={
        "help": "Points added when the change came within fast_change_seconds."})
    internal_only: bool = field(default=True, metadata={
        "help": "Report internal hosts only (an external server's banner changes are its owner's affair)."})
    max_listed: int = field(default=10, metadata={"help": "Versions listed per finding."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    sw = tel.software
    if sw is None:
        return []
    sw = sw.filter(sw.kind.isin(list(s.kinds) or [""]) & sw.version.notnull() & sw.host.notnull())
    if s.internal_only:
        sw = sw.filter(sw.host_internal)
    by = ["host", "kind"]
    agg = (sw.group_by(by)
           .aggregate(n=sw.version.nunique(), names=sw.name.nunique(), records=_.count(), start=sw.ts.min(),
                      end=sw.ts.max(), tenant=sw.tenant.max())
           .filter(_.n >= s.min_versions))
    cands = rows(agg.order_by(by))
    if not cands:
        return []
    firsts = sw.group_by([*by, "version"]).aggregate(first=sw.ts.min(), name=sw.name.max(), seen=_.count())
    listed = first_per_group(firsts, keys_table(cands, by, sw), by, ["version", "name", "first", "seen"],
                             ["first", "version"], s.max_listed)
    return [_finding(c, listed.get((c["host"], c["kind"]), []), s) for c in cands]


def _finding(c: dict, versions: list[dict], s: Settings) -> Finding:
    firsts = [v["first"] for v in versions]
    gaps = [(b - a).total_seconds() for a, b in zip(firsts, firsts[1:])]
    fastest = min(gaps) if gaps else None
    parts = {"change": s.base_points}
    if c["names"] > 1:
        parts["other_program"] = s.other_program_points
    if fastest is not None and fastest <= s.fast_change_seconds:
        parts["fast"] = s.fast_points
    shown = " -> ".join(v["version"] for v in versions[:4])
    when = f" within {fastest:.0f} s" if fastest is not None and fastest < 7200 else ""
    return Finding(
        detection=META.id,
        key=(c["host"], c["kind"], "*"),
        score_parts=parts,
        explanation=f"{c['host']} announced {c['n']} {c['kind']} versions{when}: {shown}.",
        internal_hosts=[c["host"]],
        external_hosts=[],
        channel=c["kind"].split("-")[0], start=c["start"], end=c["end"], bytes_out=0,
        evidence={"flows": 0, "software_records": c["records"], "top_flows": [], "community_ids": []},
        metrics={"count": c["n"], "programs": c["names"],
                 "versions": [{"version": v["version"], "name": v["name"], "first_seen": utc(v["first"]).isoformat(),
                               "records": v["seen"]} for v in versions],
                 "fastest_change_seconds": round(fastest, 1) if fastest is not None else None},
        thresholds={"min_versions": s.min_versions, "fast_change_seconds": s.fast_change_seconds},
        attack=["T1036"] if c["names"] == 1 else ["T1036", "T1588.002"],
        tenant=c["tenant"],
    )
