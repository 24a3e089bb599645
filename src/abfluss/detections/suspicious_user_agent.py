"""Suspicious HTTP User-Agents from internal hosts, per host and kind.

Four kinds, keyed by (host, kind, ``*``), each listing the User-Agents and servers behind it:

``injection``    an exploit in the header itself (``${jndi:ldap://...}``, Shellshock ``() { :; };``,
                 SQL/script injection, path traversal): the host attacks a server, or a scanner
                 runs on it;
``attack_tool``  a scanner or attack tool naming itself (sqlmap, nikto, Nmap Scripting Engine,
                 masscan, hydra, nuclei ...);
``scripting``    a scripting client or downloader (curl, Wget, python-requests, PowerShell,
                 certutil ...) from a *workstation*: a host that also browses with a browser in the
                 window. On servers and build machines such clients are normal and not reported;
``empty``        a User-Agent header sent empty (a header left out is not reported: many
                 system clients send none), from a workstation too;
``os_change``    browser User-Agents of one host naming ``min_os_families`` or more operating
                 systems: a spoofed User-Agent, or several machines behind one address.

The User-Agent lists live in ``_user_agents``; ``extra_tools`` and ``extra_scripting`` add to
them. Requests to allowlisted names are not seen (analysis removes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ._stats import first_per_group, keys_table, ramp, rows
from ._user_agents import ua_class, ua_os

META = Meta(
    id="suspicious_user_agent",
    title="Suspicious HTTP User-Agent from an internal host",
    attack=("T1071.001", "T1190", "T1595.002", "T1059", "T1036"),
    description="An internal host sending HTTP requests whose User-Agent carries an exploit (Log4Shell, "
                "Shellshock), names an attack tool, shows a scripting client or downloader on a machine "
                "people browse from, is empty, or changes operating system from request to request: the "
                "marks malware, droppers and attack tools leave in plain HTTP.",
    runbook="1. Read the listed User-Agents and the servers they went to. "
            "2. For injection or an attack tool: find the process on the host that sent them (EDR, "
            "the proxy's logs); unless a sanctioned scan explains it, the host is compromised or "
            "misused: isolate it. "
            "3. For a scripting client on a workstation: ask what the user ran; look at what was "
            "downloaded (the executable_download findings of the host) and at scheduled tasks. "
            "4. For operating-system changes: check whether the address is shared (NAT, VDI) before "
            "suspecting spoofing.",
    channel="http",
    inputs=("http",),
)

KIND_ATTACK = {"injection": ["T1190"], "attack_tool": ["T1595.002"], "scripting": ["T1059", "T1071.001"],
               "empty": ["T1071.001"], "os_change": ["T1036"]}
#: The first points of each kind: an exploit string says more than an odd client name.
KIND_POINTS = {"injection": 55.0, "attack_tool": 45.0, "scripting": 25.0, "empty": 20.0, "os_change": 20.0}


@dataclass(frozen=True)
class Settings:
    kinds: tuple = field(default=("injection", "attack_tool", "scripting", "empty", "os_change"), metadata={
        "help": "Kinds reported (drop one to turn it off)."})
    workstation_min_browser: int = field(default=5, metadata={
        "help": "Browser requests (Mozilla/...) that make a host a workstation, for the scripting and "
                "empty kinds: servers fetching with curl are normal."})
    min_os_families: int = field(default=2, metadata={
        "help": "Operating systems named by one host's browser User-Agents that make an os_change."})
    min_os_requests: int = field(default=3, metadata={
        "help": "Requests each of those operating systems needs (one odd request is a preview bot)."})
    high_requests: int = field(default=100, metadata={
        "help": "Requests with such User-Agents that give the full count part of the score."})
    extra_tools: tuple = field(default=(), metadata={
        "help": "More attack-tool names (case-insensitive substrings of the User-Agent)."})
    extra_scripting: tuple = field(default=(), metadata={
        "help": "More scripting-client names (case-insensitive substrings of the User-Agent)."})
    max_listed: int = field(default=10, metadata={"help": "User-Agents and servers listed per finding."})
    max_evidence: int = field(default=10, metadata={"help": "HTTP requests listed as evidence."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    h = tel.http
    if h is None or "orig_internal" not in h.columns:
        return []
    h = h.filter(h.orig_internal & h.orig_h.notnull())
    h = h.mutate(kind=ua_class(h.user_agent, s.extra_tools, s.extra_scripting), os=ua_os(h.user_agent))
    browsers = (h.filter(h.kind == "browser").group_by("orig_h").aggregate(browser=_.count())
                .filter(_.browser >= s.workstation_min_browser))
    odd = h.filter(h.kind.isin([k for k in s.kinds if k != "os_change"] or [""]))
    agg = (odd.group_by(["orig_h", "kind"])
           .aggregate(n=_.count(), agents=odd.user_agent.nunique(), servers=odd.resp_h.nunique(),
                      start=odd.ts.min(), end=odd.ts.max(), tenant=odd.tenant.max()))
    agg = agg.left_join(browsers, "orig_h").select(agg, browser=browsers.browser.fill_null(0))
    cands = [dict(r, target="*") for r in rows(agg.order_by(["orig_h", "kind"]))
             if r["kind"] in ("injection", "attack_tool") or r["browser"] >= s.workstation_min_browser]
    listed = _listed(odd, cands, ["orig_h", "kind"], s)
    if "os_change" in s.kinds:
        cands += _os_change(h, s)
    cands.sort(key=lambda c: (c["orig_h"], c["kind"]))
    return [_finding(c, listed.get((c["orig_h"], c["kind"]), {}), s) for c in cands]


def _listed(t, cands: list[dict], by: list[str], s: Settings) -> dict[tuple, dict]:
    if not cands:
        return {}
    keys = keys_table(cands, by, t)
    agents = first_per_group(t, keys, by, ["user_agent"], ["user_agent"], s.max_listed, True)
    servers = first_per_group(t, keys, by, ["resp_h", "host", "resp_internal"], ["resp_h", "host"], s.max_listed,
                              True)
    ev = first_per_group(t, keys, by, ["uid", "ts"], ["ts", "uid"], s.max_evidence)
    return {tuple(c[b] for b in by): {"agents": [a["user_agent"] for a in agents.get(tuple(c[b] for b in by), [])],
                                      "servers": servers.get(tuple(c[b] for b in by), []),
                                      "ev": ev.get(tuple(c[b] for b in by), [])} for c in cands}


def _os_change(h, s: Settings) -> list[dict]:
    b = h.filter((h.kind == "browser") & h.os.notnull())
    per_os = b.group_by(["orig_h", "os"]).aggregate(n=_.count(), start=b.ts.min(), end=b.ts.max(),
                                                     tenant=b.tenant.max())
    per_os = per_os.filter(_.n >= s.min_os_requests)
    agg = (per_os.group_by("orig_h")
           .aggregate(families=per_os.os.nunique(), n=per_os.n.sum(), start=per_os.start.min(),
                      end=per_os.end.max(), tenant=per_os.tenant.max())
           .filter(_.families >= s.min_os_families))
    cands = [dict(r, kind="os_change", target="*", servers=0, agents=0) for r in rows(agg.order_by("orig_h"))]
    if not cands:
        return []
    keys = keys_table(cands, ["orig_h"], b)
    oses = first_per_group(per_os, keys, ["orig_h"], ["os", "n"], ["os"], s.max_listed)
    for c in cands:
        c["oses"] = {o["os"]: o["n"] for o in oses.get((c["orig_h"],), [])}
    return cands


def _score(c: dict, s: Settings) -> dict[str, float]:
    parts = {"kind": KIND_POINTS[c["kind"]], "count": 10 * ramp(c["n"], 1, s.high_requests)}
    if c["kind"] in ("scripting", "empty") and c.get("servers", 0) > 1:
        parts["servers"] = 5.0  # the same odd client to several servers: a tool, not one test
    return parts


def _explain(c: dict, lst: dict) -> str:
    host, n = c["orig_h"], c["n"]
    shown = ", ".join(repr(a[:80]) for a in lst.get("agents", [])[:3])
    if c["kind"] == "os_change":
        oses = ", ".join(f"{o} ({k})" for o, k in sorted(c["oses"].items()))
        return f"{host} sent browser User-Agents of {c['families']} operating systems: {oses}."
    what = {"injection": "carrying an exploit", "attack_tool": "naming an attack tool",
            "scripting": "of a scripting client (the host also browses: a workstation)",
            "empty": "left empty (the host also browses: a workstation)"}[c["kind"]]
    return f"{host} sent {n} HTTP requests to {c['servers']} servers with User-Agents {what}: {shown}."


def _finding(c: dict, lst: dict, s: Settings) -> Finding:
    servers = lst.get("servers", [])
    return Finding(
        detection=META.id,
        key=(c["orig_h"], c["kind"], c["target"]),
        score_parts=_score(c, s),
        explanation=_explain(c, lst),
        internal_hosts=[c["orig_h"]],
        external_hosts=[x["resp_h"] for x in servers if x["resp_h"] and not x["resp_internal"]],
        external_names=list(dict.fromkeys(x["host"] for x in servers if x["host"])),
        channel="http", start=c["start"], end=c["end"], bytes_out=0,
        evidence={"flows": 0, "http_requests": c["n"], "top_flows": list(dict.fromkeys(e["uid"] for e in lst.get("ev", []) if e["uid"])),
                  "community_ids": []},
        metrics={"count": c["n"], "user_agents": lst.get("agents", []), "distinct_user_agents": c.get("agents", 0),
                 "servers": c.get("servers", 0), "browser_requests": c.get("browser", 0),
                 **({"operating_systems": c["oses"]} if c["kind"] == "os_change" else {})},
        thresholds={"workstation_min_browser": s.workstation_min_browser} if c["kind"] in ("scripting", "empty")
        else {"min_os_families": s.min_os_families, "min_os_requests": s.min_os_requests}
        if c["kind"] == "os_change" else {},
        attack=KIND_ATTACK[c["kind"]],
        tenant=c["tenant"],
    )
