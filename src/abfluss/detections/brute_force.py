"""Password guessing on every protocol seen: one finding per (source, protocol, target) with the
evidence of each kind of telemetry that shows it.

Three kinds of evidence, each enough on its own, merged per source and server ``host:port``:

``connections``     many short, similar-sized connections to one login service (SSH, RDP, FTP,
                    SMTP, SMB, databases ...): what flow records show when nothing says how a login
                    ended (``brute_min_attempts``; failed logins look alike: ``brute_max_spread``);
``login_failures``  the server said no: SMTP AUTH refused (535, ``bad smtp-auth user``), FTP 530,
                    SSH as Zeek judged it, from the ``logins`` table (Zeek smtp/ftp/ssh.log). A handful counts
                    when faster than a person retypes (``login_min_failures`` at ``login_min_rate``),
                    more at the slower ``brute_min_rate``; a success after the failures adds points;
``http_denied``     a series of HTTP 401/403 answers from one server (``http_min_failures``, most
                    of the client's requests to it: ``http_min_share``).

Above ``max_targets`` servers on one port for one source, the targets fold into ``*:port``.
``internal_hosts``: the source if internal, else the internal servers it tried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ._probes import probe_flows, span_text
from ._stats import PORT_CHANNELS, attach_targets, first_per_group, keys_table, ramp, robust_baseline, rows, timed

META = Meta(
    id="brute_force",
    title="Password guessing (SSH, RDP, SMTP, FTP, HTTP and other logins)",
    attack=("T1110", "T1110.001", "T1110.003"),
    description="A source trying many logins at one service: many short connections of the same size "
                "to a login port, authentication failures the server answered (SMTP AUTH, FTP), or a "
                "series of HTTP 401/403 answers. From an internal host it is a compromised machine "
                "attacking others (or sending spam with stolen accounts); against an internal server, "
                "the attempt to get in.",
    runbook="1. Identify the source: an internal one is compromised unless a sanctioned tool explains "
            "it (a password auditor: confirm with its owner); an external one is attacking you. "
            "2. Read the target service's authentication log for the failures and, above all, any "
            "success from the source (the finding's login_successes, success_after_failures): a "
            "success after failures is a breach, reset that account and look for its sessions. "
            "3. Block the source, enable lockout or rate limits on the service; for an internal "
            "source isolate the host and look for the tool (hydra, ncrack, a spam bot).",
    inputs=("flows", "http", "logins"),
)

#: Per evidence kind: the settings giving the threshold and the full-breadth count.
LIMITS = {"connections": ("brute_min_attempts", "brute_high_attempts"),
          "login_failures": ("login_min_failures", "brute_high_attempts"),
          "http_denied": ("http_min_failures", "brute_high_attempts")}
#: Failures the server stated weigh more than connections that merely look like logins.
BASE_POINTS = {"connections": 10.0, "login_failures": 20.0, "http_denied": 10.0}


@dataclass(frozen=True)
class Settings:
    brute_ports: tuple = field(
        default=(21, 22, 23, 25, 110, 139, 143, 445, 465, 587, 993, 995, 1433, 3306, 3389, 5432, 5900,
                 5985, 5986), metadata={"help": "Ports of login services watched for connection-shaped "
                                                "password guessing."})
    brute_services: tuple = field(
        default=("ssh", "rdp", "ftp", "smtp", "telnet", "smb", "pop3", "imap", "vnc", "mysql", "mssql",
                 "postgres"), metadata={
            "help": "Application names (as the sensor names them; substring match) of login services "
                    "watched on any port, e.g. SSH on 2222."})
    brute_min_attempts: int = field(default=20, metadata={
        "help": "Short connections from one source to one login service that make password guessing "
                "(Zeek counts 30 failed SSH logins; its own test lowers that to 10)."})
    brute_high_attempts: int = field(default=1000, metadata={
        "help": "Attempts (connections, failures, denials) that give the full count part of the score."})
    brute_max_duration: float = field(default=30.0, metadata={
        "help": "Longest connection (s) counted as a login attempt; sessions of people last longer."})
    brute_max_bytes: int = field(default=10000, metadata={
        "help": "Most bytes the client sends in a connection counted as a login attempt."})
    brute_min_rate: float = field(default=3.0, metadata={
        "help": "Fewest attempts per minute over the attempts' span: a job polling git over SSH once a "
                "minute is not guessing. Slower guessing is left to the service's own lockout."})
    brute_max_spread: float = field(default=0.25, metadata={
        "help": "Largest median absolute deviation of the client bytes, as a share of their median: "
                "failed logins look alike, real sessions do not."})
    probe_max_packets: int = field(default=4, metadata={
        "help": "As scan_and_lateral's: a flow of at most this many header-sized packets exchanged no "
                "data (where a sensor gives no payload bytes) and is no login attempt."})
    probe_header_bytes: int = field(default=80, metadata={
        "help": "As scan_and_lateral's: largest IP bytes per packet that still means no payload."})
    login_min_failures: int = field(default=3, metadata={
        "help": "Authentication failures the server stated (SMTP, FTP) from one source to one service "
                "that make guessing when they come faster than login_min_rate (Slips: 3 SMTP logins "
                "in 10 s)."})
    login_min_rate: float = field(default=12.0, metadata={
        "help": "Failures per minute (over their own span, at least a second) above which a handful is "
                "a tool, not a person retyping a password (one every 5 s). Below it, brute_min_attempts "
                "failures at brute_min_rate are needed."})
    http_min_failures: int = field(default=20, metadata={
        "help": "HTTP 401/403 answers from one server to one client that make guessing (a browser "
                "gets one 401 before it sends credentials)."})
    http_min_share: float = field(default=0.5, metadata={
        "help": "Share of the client's requests to that server answered 401/403: a busy client of an "
                "API with some refusals is not guessing."})
    success_points: float = field(default=20.0, metadata={
        "help": "Points added when the server accepted a login from the source after its failures."})
    corroborated_points: float = field(default=10.0, metadata={
        "help": "Points added when two kinds of evidence (connections and the server's answers) agree."})
    max_targets: int = field(default=10, metadata={
        "help": "More servers than this on one port for one source fold into one finding for that port."})
    slow_rate: float = field(default=1.0, metadata={
        "help": "Attempts per minute at or below which speed adds nothing."})
    fast_rate: float = field(default=60.0, metadata={
        "help": "Attempts per minute that give the full speed part of the score (tools, not people)."})
    internal_source_points: float = field(default=20.0, metadata={
        "help": "Points added when the source is internal: one of our hosts is attacking."})
    max_listed: int = field(default=20, metadata={"help": "Servers listed in a finding's hosts and metrics."})
    max_evidence: int = field(default=10, metadata={"help": "Records (flows, logins, requests) listed as evidence."})


BY = ["orig_h", "resp_h", "resp_p"]


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    parts = _connections(tel, s) + _login_failures(tel, s) + _http_denied(tel, s)
    merged: dict[tuple, dict] = {}
    for c in parts:
        merged.setdefault(tuple(c[b] for b in BY), {"orig_h": c["orig_h"], "resp_h": c["resp_h"],
                                                    "resp_p": c["resp_p"], "kinds": {}})["kinds"][c["kind"]] = c
    cands = [_combine(m) for m in merged.values()]
    cands = [c for c in _fold(cands, s) if c["src_internal"] or c["listed_internal"]]
    cands.sort(key=lambda c: (c["src"], c["channel"], c["target"]))
    return [_finding(c, s) for c in cands]


# -- evidence ---------------------------------------------------------------------------------

def _connections(tel: Telemetry, s: Settings) -> list[dict]:
    """Many short, similar-sized connections to one login service (flow records)."""
    f = probe_flows(tel.flows, ("tcp",), s.probe_max_packets, s.probe_header_bytes)
    client = f.orig_bytes.coalesce(f.orig_ip_bytes).fill_null(0)
    svc = f.service.lower().fill_null("")
    named = ibis.or_(*[svc.contains(n) for n in s.brute_services]) if s.brute_services else ibis.literal(False)
    f = f.mutate(client_bytes=client, named_login=named)
    # A server port is a login service by its number, or when the sensor named it so on any flow:
    # the attempts the sensor could not name (reset after the banner) then count too.
    ports = list(s.brute_ports) or [-1]
    named_servers = f.filter(f.named_login).select("resp_h", "resp_p").distinct()
    t = f.filter(~f.probe & (f.duration.fill_null(0) <= s.brute_max_duration) & (client <= s.brute_max_bytes))
    other = t.filter(~t.resp_p.isin(ports)).semi_join(named_servers, ["resp_h", "resp_p"])
    t = t.filter(t.resp_p.isin(ports)).union(other)
    agg = (t.group_by(BY)
           .aggregate(n=_.count(), flows=_.count(), start=t.ts.min(), end=t.ts_end.max(),
                      bytes_out=t.bytes_out.fill_null(0).sum(), tenant=t.tenant.max(),
                      src_internal=t.orig_internal.any(), dst_internal=t.resp_internal.any(),
                      service=t.service.max())
           .filter(_.n >= s.brute_min_attempts))
    found = rows(agg.order_by(BY))
    if not found:  # the usual case: skip compiling the baseline
        return []
    # Failed logins look alike: a small spread of the client's bytes around their median.
    base = rows(robust_baseline(t.semi_join(keys_table(found, BY, t), BY), BY, "client_bytes").order_by(BY))
    out = []
    for r, b in zip(found, base):
        spread = (b["mad"] or 0) / b["median"] if b["median"] else 1.0
        c = timed(dict(r, kind="connections", spread=spread, median=b["median"]))
        if spread <= s.brute_max_spread and c["rate"] >= s.brute_min_rate:
            c["app"] = PORT_CHANNELS.get(r["resp_p"], f"tcp/{r['resp_p']}")
            out.append(c)
    attach_targets(out, t, BY, s.max_evidence, 1)
    return out


def _login_failures(tel: Telemetry, s: Settings) -> list[dict]:
    """Failures the server stated (the ``logins`` table), with any success that followed."""
    lg = tel.logins
    if lg is None:
        return []
    lg = lg.filter(lg.result.isin(["failure", "success"]) & lg.orig_h.notnull() & lg.resp_h.notnull())
    fail = lg.result == "failure"
    null_ts = ibis.null().cast(lg.ts.type())
    agg = (lg.group_by([*BY, "app"])
           .aggregate(n=ibis.ifelse(fail, lg.attempts.fill_null(1), 0).sum(),
                      successes=ibis.ifelse(fail, 0, 1).sum(), users=lg.user.nunique(),
                      start=ibis.ifelse(fail, lg.ts, null_ts).min(), end=ibis.ifelse(fail, lg.ts, null_ts).max(),
                      last_success=ibis.ifelse(fail, null_ts, lg.ts).max(), reply=ibis.ifelse(fail, lg.reply, ibis.null().cast("string")).max(),
                      tenant=lg.tenant.max(), src_internal=lg.orig_internal.any(), dst_internal=lg.resp_internal.any(),
                      allowlisted=lg.allowlisted.any())
           .filter(_.n >= s.login_min_failures))
    out = []
    for r in rows(agg.order_by([*BY, "app"])):
        if r["allowlisted"]:
            continue
        c = timed(dict(r, kind="login_failures", flows=0, bytes_out=0))
        burst = r["n"] / max(c["sec"], 1.0) * 60  # a person retypes a password in seconds, not less
        if not (burst >= s.login_min_rate or (r["n"] >= s.brute_min_attempts and c["rate"] >= s.brute_min_rate)):
            continue
        c["success_after"] = r["last_success"] is not None and r["last_success"] > r["start"]
        out.append(c)
    _evidence(out, lg.filter(fail), s)
    return out


def _http_denied(tel: Telemetry, s: Settings) -> list[dict]:
    """A series of 401/403 answers from one server to one client."""
    h = tel.http
    if h is None or "orig_internal" not in h.columns:
        return []
    h = h.filter(h.orig_h.notnull() & h.resp_h.notnull())
    denied = h.status_code.isin([401, 403]).fill_null(False)
    null_ts = ibis.null().cast(h.ts.type())
    agg = (h.group_by(BY)
           .aggregate(n=denied.sum(), requests=_.count(),
                      start=ibis.ifelse(denied, h.ts, null_ts).min(), end=ibis.ifelse(denied, h.ts, null_ts).max(),
                      unauthorized=(h.status_code == 401).fill_null(False).sum(),
                      tenant=h.tenant.max(), src_internal=h.orig_internal.any(), dst_internal=h.resp_internal.any())
           .filter(_.n >= s.http_min_failures))
    out = []
    for r in rows(agg.order_by(BY)):
        c = timed(dict(r, kind="http_denied", app="http", flows=0, bytes_out=0))
        if r["n"] >= s.http_min_share * r["requests"] and c["rate"] >= s.brute_min_rate:
            out.append(c)
    _evidence(out, h.filter(denied), s)
    return out


def _evidence(cands: list[dict], t, s: Settings) -> None:
    if not cands:
        return
    ev = first_per_group(t, keys_table(cands, BY, t), BY, ["uid", "ts"], ["ts", "uid"], s.max_evidence)
    for c in cands:
        c["ev"] = [dict(e, community_id=None) for e in ev.get(tuple(c[b] for b in BY), [])]


# -- one candidate per source and server ------------------------------------------------------

def _combine(m: dict) -> dict:
    kinds = m["kinds"]
    main = max(kinds.values(), key=lambda k: (BASE_POINTS[k["kind"]], k["n"]))
    conn = kinds.get("connections")
    login = kinds.get("login_failures")
    # the protocol: what the server's answers name, else the port's (or the sensor's) name
    app = (login or kinds.get("http_denied") or conn)["app"]
    c = dict(src=m["orig_h"], resp_h=m["resp_h"], resp_p=m["resp_p"], channel=app,
             target=f"{m['resp_h']}:{m['resp_p']}", kinds=kinds, main=main["kind"], n=main["n"],
             start=min(k["start"] for k in kinds.values()), end=max(k["end"] for k in kinds.values()),
             tenant=next((k["tenant"] for k in kinds.values() if k["tenant"]), None),
             src_internal=any(k["src_internal"] for k in kinds.values()),
             listed=[(m["resp_h"], any(k["dst_internal"] for k in kinds.values()))],
             flows=conn["flows"] if conn else 0, bytes_out=conn["bytes_out"] if conn else 0,
             ev=sorted((e for k in kinds.values() for e in k.get("ev", [])), key=lambda e: (e["ts"], e["uid"] or "")))
    c["listed_internal"] = c["listed"][0][1]
    return timed(c)


def _fold(cands: list[dict], s: Settings) -> list[dict]:
    """Guessing on more than ``max_targets`` servers on one port becomes one finding for that port."""
    groups: dict[tuple, list[dict]] = {}
    for c in cands:
        groups.setdefault((c["src"], c["resp_p"], c["channel"]), []).append(c)
    out = []
    for (src, port, app), cs in groups.items():
        if len(cs) <= s.max_targets:
            out.extend(cs)
            continue
        kinds: dict[str, dict] = {}
        for c in cs:
            for name, k in c["kinds"].items():
                acc = kinds.setdefault(name, dict(k, n=0, flows=0, bytes_out=0, successes=0, requests=0))
                for key in ("n", "flows", "bytes_out", "successes", "requests", "unauthorized"):
                    acc[key] = acc.get(key, 0) + (k.get(key) or 0)
                acc["spread"] = max(acc.get("spread") or 0, k.get("spread") or 0)
                acc["success_after"] = acc.get("success_after") or k.get("success_after")
        main = max(kinds.values(), key=lambda k: (BASE_POINTS[k["kind"]], k["n"]))
        listed = [h for c in cs for h in c["listed"]]
        out.append(timed(dict(
            cs[0], target=f"*:{port}", resp_h="*", kinds=kinds, main=main["kind"], n=main["n"],
            flows=sum(c["flows"] for c in cs), bytes_out=sum(c["bytes_out"] for c in cs),
            start=min(c["start"] for c in cs), end=max(c["end"] for c in cs),
            listed=listed[: s.max_listed], listed_internal=any(i for _h, i in listed),
            ev=sorted((e for c in cs for e in c["ev"]), key=lambda e: (e["ts"], e["uid"] or ""))[: s.max_evidence])))
    return out


# -- the finding ------------------------------------------------------------------------------

def _score(c: dict, s: Settings) -> dict[str, float]:
    kinds = c["kinds"]
    breadth = max(BASE_POINTS[k] + 30 * ramp(v["n"], *[getattr(s, x) for x in LIMITS[k]]) for k, v in kinds.items())
    rate = max(v["rate"] for v in kinds.values())
    parts = {"breadth": breadth, "speed": 20 * ramp(rate, s.slow_rate, s.fast_rate)}
    conn = kinds.get("connections")
    if conn:
        parts["alike"] = 10 * (1 - min(1.0, conn["spread"] / s.brute_max_spread)) if s.brute_max_spread else 0
    if len(kinds) > 1:
        parts["corroborated"] = s.corroborated_points
    if kinds.get("login_failures", {}).get("success_after"):
        parts["success_after_failures"] = s.success_points
    if c["src_internal"]:
        parts["internal_source"] = s.internal_source_points
    return parts


def _explain(c: dict) -> str:
    src, span = c["src"], span_text(c["sec"])
    where = f"{len(c['listed'])} servers on port {c['resp_p']}" if c["target"][0] == "*" else c["target"]
    said = []
    k = c["kinds"]
    if "login_failures" in k:
        lf = k["login_failures"]
        reply = f" (\"{lf['reply']}\")" if lf.get("reply") else ""
        ok = (f", then {lf['successes']} accepted" if lf.get("success_after") else "")
        said.append(f"{lf['n']} {c['channel'].upper()} logins refused{reply}{ok}")
    if "http_denied" in k:
        hd = k["http_denied"]
        said.append(f"{hd['n']} of {hd['requests']} HTTP requests answered 401/403")
    if "connections" in k:
        cn = k["connections"]
        said.append(f"{cn['n']} short login-sized connections (client bytes {cn['median']:.0f}, "
                    f"spread {100 * cn['spread']:.0f}%)")
    return f"{src} to {where} in {span} ({c['rate']:.0f} per minute): {'; '.join(said)}: password guessing."


def _metrics(c: dict) -> dict:
    k = c["kinds"]
    m = {"count": c["n"], "flows": c["flows"], "seconds": round(c["sec"], 1), "per_minute": round(c["rate"], 1),
         "bytes_out": c["bytes_out"], "hosts": [h for h, _inside in c["listed"]], "evidence": sorted(k)}
    if "connections" in k:
        m.update(connections=k["connections"]["n"], client_bytes_median=round(k["connections"]["median"], 3),
                 spread=round(k["connections"]["spread"], 3))
    if "login_failures" in k:
        lf = k["login_failures"]
        m.update(login_failures=lf["n"], login_successes=lf["successes"], users=lf.get("users") or 0,
                 success_after_failures=bool(lf.get("success_after")), reply=lf.get("reply"))
    if "http_denied" in k:
        m.update(http_denied=k["http_denied"]["n"], http_requests=k["http_denied"]["requests"])
    return m


def _finding(c: dict, s: Settings) -> Finding:
    if c["src_internal"]:
        internal, external = [c["src"]], [h for h, inside in c["listed"] if not inside]
    else:  # an external source: the finding belongs to the internal servers it tried
        internal, external = [h for h, inside in c["listed"] if inside], [c["src"]]
    compared = {x for k in c["kinds"] for x in LIMITS[k]} | {"slow_rate", "fast_rate"}
    compared |= {"brute_min_rate", "brute_max_spread"} if "connections" in c["kinds"] else set()
    compared |= {"login_min_rate"} if "login_failures" in c["kinds"] else set()
    compared |= {"http_min_share"} if "http_denied" in c["kinds"] else set()
    return Finding(
        detection=META.id,
        key=(c["src"], c["channel"], c["target"]),
        score_parts=_score(c, s),
        explanation=_explain(c),
        internal_hosts=internal, external_hosts=external,
        channel=c["channel"], start=c["start"], end=c["end"], bytes_out=c["bytes_out"],
        evidence={"flows": c["flows"], "top_flows": list(dict.fromkeys(e["uid"] for e in c["ev"] if e["uid"]))[: s.max_evidence],
                  "community_ids": sorted({e["community_id"] for e in c["ev"] if e["community_id"]})},
        metrics=_metrics(c),
        thresholds={name: getattr(s, name) for name in sorted(compared)},
        attack=["T1110", "T1110.001"],
        tenant=c["tenant"],
    )
