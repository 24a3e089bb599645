"""Notification drafts per tenant (data controller): GDPR, NIS2/BSIG, SGB V and SGB X.

The drafts are pure functions of a small :class:`DraftInput` (one per tenant), so they can be
fed from the evidence report or, before one exists, from stored findings
(:func:`drafts_from_findings`). Deadlines run from each tenant's awareness time and are shown
with the time left relative to ``now`` (DOMAIN.md §1.7); a follow-up version carries what
changed since the previous one (Art. 33(4) GDPR). Only counts of sensitive values ever reach a
draft, never a value. Text blocks live in ``drafts_text``; docs/notifications.md documents
the output.
"""

from __future__ import annotations

import calendar
import ipaddress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from .. import units
from . import drafts_text, stix

VERDICTS = ("EXFIL_CONFIRMED", "EXFIL_INDICATED", "NO_EXFIL_EVIDENCE", "NOT_ASSESSABLE")
#: Drafts when the telemetry cannot support a statement: the supervisory authority is told, as
#: Art. 33(4) allows, that the extent cannot yet be determined (and § 83a SGB X gets its copy).
UNDETERMINED_DRAFTS = ["art33", "sgb10_83a", "register"]
#: Asset tags that name a telematics-infrastructure service (§ 329 SGB V) and how it is written.
TI_SERVICES = {"epa": "ePA", "kim": "KIM", "vsdm": "VSDM", "eau": "eAU", "erezept": "E-Rezept",
               "konnektor": "Konnektor/TI-Gateway"}
#: Identifier categories whose exposure makes the risk to data subjects high (Art. 9 GDPR health
#: data, unchangeable insurance and tax numbers, bank accounts).
HIGH_RISK_CATEGORIES = ("kvnr", "icd10", "rvnr", "idnr", "iban")
CATEGORIES = ("kvnr", "ik", "iban", "idnr", "rvnr", "icd10", "email", "phone")
#: Findings of these detections mean data (probably) left; others only support suspicion.
EXFIL_DETECTIONS = ("cleartext_sensitive_data", "bulk_outbound", "upload_heavy", "dns_tunnel",
                    "icmp_tunnel", "threat_intel", "beaconing", "long_connection")
_SEVERITIES = ("info", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class Host:
    """An affected internal system and its asset tags."""
    ip: str
    tags: tuple[str, ...] = ()
    bytes_out: int = 0


@dataclass(frozen=True)
class Transfer:
    """Outflow from one internal host to one destination (bytes: the largest single estimate)."""
    host: str
    destination: str  # IP address, or name when only a name is known (DNS tunnel)
    name: str = ""
    bytes_out: int = 0
    channel: str = ""


@dataclass(frozen=True)
class Indicator:
    """An external IP address or domain from the evidence, with how often it was seen."""
    value: str
    kind: str  # "ipv4-addr", "ipv6-addr" or "domain-name"
    first_seen: datetime
    last_seen: datetime
    count: int = 1
    detections: tuple[str, ...] = ()


@dataclass(frozen=True)
class DraftInput:
    """Everything one tenant's drafts are made of.

    ``counts`` maps each identifier category to ``(lower, upper)`` distinct values; ``records``
    and ``subjects`` are ``(lower, upper)`` as well (bounds: the same value sent to two
    destinations may be counted twice in the upper bound). ``previous`` is this tenant's entry
    of an earlier :func:`build_drafts` output; with it the drafts are a follow-up version.
    """
    tenant: str
    window: tuple[datetime, datetime]
    aware_at: datetime
    aware_at_assumed: bool = False  # no awareness time was given: the report time stands in for it
    verdict: str = "NO_EXFIL_EVIDENCE"
    confidence: str = "low"
    coverage: str = ""  # the coverage statement the verdict rests on (from the evidence report)
    gaps: tuple[str, ...] = ()
    first_evidence: datetime | None = None
    last_evidence: datetime | None = None
    hosts: tuple[Host, ...] = ()
    transfers: tuple[Transfer, ...] = ()
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    records: tuple[int, int] = (0, 0)
    subjects: tuple[int, int] = (0, 0)
    cleartext: bool = False  # sensitive data seen leaving unencrypted (Art. 34(3)(a) excluded)
    indicators: tuple[Indicator, ...] = ()
    detections: tuple[str, ...] = ()
    attack: tuple[str, ...] = ()
    severity: str = "info"
    suspected_malicious: bool | None = None
    cross_border: bool | None = None  # unknown without GeoIP: the destinations are listed
    measures_taken: tuple[str, ...] = ()
    measures_proposed: tuple[str, ...] = ()
    contact: str = ""
    ongoing: bool = True
    notified_at: datetime | None = None  # when the NIS2 incident notification (72 h) was sent
    previous: dict | None = None

    @property
    def ti_services(self) -> list[str]:
        return sorted({TI_SERVICES[t] for h in self.hosts for t in h.tags if t in TI_SERVICES})


# -- deadlines -------------------------------------------------------------------------------

def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def iso(t: datetime | None) -> str | None:
    return _utc(t).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def add_month(t: datetime) -> datetime:
    """Same day and time next month, or the month's last day when it has no such day (31 Jan →
    28/29 Feb), the earlier reading of a period "of one month"."""
    y, m = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=y, month=m, day=min(t.day, calendar.monthrange(y, m)[1]))


def deadlines(aware_at: datetime, notified_at: datetime | None = None) -> dict[str, datetime]:
    """Fixed deadlines: NIS2/§ 32 BSIG early warning 24 h and notification 72 h, GDPR Art. 33
    72 h (and § 83a SGB X with it), final report one month after the 72 h notification: after
    ``notified_at`` when it was sent, else after that notification's own deadline (provisional)."""
    a = _utc(aware_at)
    n2 = a + timedelta(hours=72)
    return {"early_warning": a + timedelta(hours=24), "notification": n2, "art33": n2,
            "final": add_month(_utc(notified_at) if notified_at else n2)}


# -- assessment and follow-up ---------------------------------------------------------------

def high_risk(inp: DraftInput) -> bool | None:
    """Art. 34: True when health, insurance, tax or bank identifiers left; None (undetermined)
    when outflow is indicated but its content unknown; False without evidence."""
    if any(inp.counts.get(c, (0, 0))[1] for c in HIGH_RISK_CATEGORIES):
        return True
    return None if inp.verdict != "NO_EXFIL_EVIDENCE" else False


def basis(inp: DraftInput) -> dict:
    """The numbers a follow-up is compared on (kept in the output as ``basis``)."""
    return {"verdict": inp.verdict, "confidence": inp.confidence,
            "counts": {c: list(v) for c, v in sorted(inp.counts.items()) if v[1]},
            "records": list(inp.records), "subjects": list(inp.subjects),
            "hosts": sorted(h.ip for h in inp.hosts), "ti_services": inp.ti_services,
            "transfers": {f"{t.host} -> {t.destination}": t.bytes_out for t in inp.transfers},
            "indicators": sorted(i.value for i in inp.indicators)}


def diff(old: dict, new: dict) -> dict:
    """What changed between two ``basis`` dicts: changed values as ``[old, new]``, added and
    removed list entries."""
    out: dict = {}
    for k in ("verdict", "confidence", "records", "subjects"):
        if old.get(k) != new.get(k):
            out[k] = [old.get(k), new.get(k)]
    counts = {c: [old.get("counts", {}).get(c, [0, 0]), new["counts"].get(c, [0, 0])]
              for c in sorted(set(old.get("counts", {})) | set(new["counts"]))}
    if changed := {c: v for c, v in counts.items() if v[0] != v[1]}:
        out["counts"] = changed
    for k in ("hosts", "ti_services", "indicators"):
        a, b = set(old.get(k, [])), set(new[k])
        if a != b:
            out[k] = {"added": sorted(b - a), "removed": sorted(a - b)}
    a, b = old.get("transfers", {}), new["transfers"]
    t = {"added": sorted(set(b) - set(a)), "removed": sorted(set(a) - set(b)),
         "changed": {k: [a[k], b[k]] for k in sorted(set(a) & set(b)) if a[k] != b[k]}}
    if any(t.values()):
        out["transfers"] = t
    return out


# -- drafts ------------------------------------------------------------------------------------

def _draft(kind: str, inp: DraftInput, ctx: dict, deadline: datetime | None, now: datetime, lang: str) -> dict:
    title, law, recipient, due = drafts_text.HEADS[kind][lang]
    d = {"title": title, "legal_basis": law, "recipient": recipient, "due": due,
         "deadline": iso(deadline),
         "time_left": None if deadline is None else int((deadline - now).total_seconds())}
    d["text"] = drafts_text.render(kind, inp, ctx, d, lang)
    return d


def build_drafts(inp: DraftInput, now: datetime, lang: str = "en", tlp: str = "amber") -> dict:
    """One tenant's drafts. A tenant without evidence gets only the Art. 33(5) register entry
    (the documented reasoning for not notifying); an affected one every duty that applies."""
    if lang not in ("de", "en"):
        raise ValueError(f"lang {lang!r}: one of de, en")
    now = _utc(now)
    dl = deadlines(inp.aware_at, inp.notified_at)
    b = basis(inp)
    prev = inp.previous
    changes = diff(prev["basis"], b) if prev else None
    ctx = {"deadlines": dl, "high_risk": high_risk(inp), "changes": changes,
           "version": (prev["version"] + 1) if prev else 1,
           "stage": "follow-up" if prev else "initial", "now": now}
    affected = inp.verdict not in ("NO_EXFIL_EVIDENCE", "NOT_ASSESSABLE")
    kinds = ["register"]
    if inp.verdict == "NOT_ASSESSABLE":
        kinds = list(UNDETERMINED_DRAFTS)
    elif affected:
        kinds = ["art33", "art34", "sgb10_83a", "nis2_early", "nis2_notification", "nis2_final", "register"]
        if inp.ti_services:
            kinds.insert(3, "sgb5_329")
    due = {"art33": dl["art33"], "sgb10_83a": dl["art33"], "nis2_early": dl["early_warning"],
           "nis2_notification": dl["notification"], "nis2_final": dl["final"]}
    drafts = {k: _draft(k, inp, ctx, due.get(k), now, lang) for k in kinds}
    if "art34" in drafts:
        drafts["art34"]["high_risk"] = ctx["high_risk"]
        drafts["art34"]["communicate"] = ctx["high_risk"]
    if "nis2_final" in drafts:
        drafts["nis2_final"]["provisional"] = inp.notified_at is None
    status = "undetermined" if inp.verdict == "NOT_ASSESSABLE" else "affected" if affected else "no_evidence"
    return {"tenant": inp.tenant, "status": status,
            "stage": ctx["stage"], "version": ctx["version"], "lang": lang,
            "aware_at": iso(inp.aware_at), "aware_at_source": "assumed" if inp.aware_at_assumed else "given",
            "now": iso(now), "verdict": inp.verdict,
            "confidence": inp.confidence, "basis": b, "changes": changes, "drafts": drafts,
            "stix": stix.bundle(inp.indicators, tenant=inp.tenant, now=now, tlp=tlp,
                                anomalous=inp.verdict != "EXFIL_CONFIRMED") if inp.indicators else None}


def build_all(inputs: list[DraftInput], now: datetime, lang: str = "en", tlp: str = "amber") -> dict:
    """Drafts of every tenant: ``{"tenants": {name: build_drafts(...)}}``."""
    return {"tenants": {i.tenant: build_drafts(i, now, lang, tlp) for i in inputs}}


def coverage_text(cov: dict, lang: str) -> str:
    """What the verdict rests on, in one line of the report's language ("" when the report dict
    does not carry the shares): time covered, content inspected, checks run. The verdict sentence
    of a draft says the rest, so the report's own statement is not repeated there."""
    if not all(k in cov for k in ("window_time_share", "cleartext_share", "checks_run")):
        return ""
    total = cov["checks_run"] + len(cov.get("checks_not_checkable", ()))
    if lang == "de":
        return (f"Abdeckung: {units.percent(cov['window_time_share'], lang)} des Zeitraums, Inhalt geprüft für "
                f"{units.percent(cov['cleartext_share'], lang)} des Abflusses, {units.number(cov['checks_run'], lang)} "
                f"von {units.count(total, 'check', lang)} durchgeführt")
    return (f"coverage: {units.percent(cov['window_time_share'], lang)} of the window, content inspected for "
            f"{units.percent(cov['cleartext_share'], lang)} of the outflow, {units.number(cov['checks_run'], lang)} "
            f"of {units.count(total, 'check', lang)} run")


def apply_report(inp: DraftInput, report: dict) -> DraftInput:
    """Take the verdict, confidence and coverage of an evidence report dict (the coverage as a
    summary of its shares where the report carries them, else its statement)."""
    cov = report.get("coverage")
    lang = report.get("lang") if report.get("lang") in units.LANGS else "en"
    text = cov if isinstance(cov, str) else (coverage_text(cov, lang) or cov.get("statement", "")) \
        if isinstance(cov, dict) else ""
    gaps = tuple(str(g) for g in (cov.get("gaps", ()) if isinstance(cov, dict) else ()))
    # what keeps the telemetry from a statement (NOT_ASSESSABLE) is the first gap the drafts name
    missing = tuple(str(m.get("text") or m.get("reason")) for m in (report.get("assessment") or {}).get("missing", ()))
    gaps = missing + gaps
    return replace(inp, verdict=report.get("verdict", inp.verdict),
                   confidence=report.get("confidence", inp.confidence),
                   coverage=text or inp.coverage, gaps=gaps or inp.gaps)


# -- from a workspace ------------------------------------------------------------------------

def _tags(ip: str, assets: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    a = ipaddress.ip_address(ip)
    return tuple(sorted(t for t, nets in assets.items()
                        if any(a in ipaddress.ip_network(n) for n in nets
                               if ipaddress.ip_network(n).version == a.version)))


def _kind(value: str) -> str:
    try:
        return f"ipv{ipaddress.ip_address(value).version}-addr"
    except ValueError:
        return "domain-name"


def input_for(tenant: str, findings: list, aware_at: datetime, window: tuple[datetime, datetime],
              assets: dict | None = None, min_severity: str = "medium", **kw) -> DraftInput:
    """A tenant's :class:`DraftInput` from its findings (``kw``: any further field).

    Verdict (provisional, until the evidence report's replaces it via :func:`apply_report`):
    sensitive identifiers seen leaving at high severity or more → ``EXFIL_CONFIRMED``; any other
    finding of ``min_severity`` or more → ``EXFIL_INDICATED``; else ``NO_EXFIL_EVIDENCE``.
    """
    floor = _SEVERITIES.index(min_severity)
    fs = [f for f in findings if (f.tenant or "default") == tenant and _SEVERITIES.index(f.severity) >= floor]
    dlp = [f for f in fs if f.detection == "cleartext_sensitive_data" and not f.metrics.get("destination_internal")]
    confirmed = any(f.severity in ("high", "critical") for f in dlp)
    verdict = "EXFIL_CONFIRMED" if confirmed else "EXFIL_INDICATED" if fs else "NO_EXFIL_EVIDENCE"
    out: dict[tuple, Transfer] = {}
    for f in fs:
        if f.detection not in EXFIL_DETECTIONS or not f.bytes_out:
            continue
        dest = (f.external_hosts or f.external_names or ["?"])[0]
        for h in f.internal_hosts:
            t = out.get((h, dest))
            if t is None or f.bytes_out > t.bytes_out:
                out[(h, dest)] = Transfer(h, dest, (f.external_names or [""])[0], f.bytes_out, f.channel)
    hosts = sorted({h for f in fs for h in f.internal_hosts})
    per_host = {h: max((t.bytes_out for t in out.values() if t.host == h), default=0) for h in hosts}
    cnt = {c: [f.metrics.get("counts", {}).get(c, 0) for f in dlp] for c in CATEGORIES}
    recs = [max(f.metrics.get("counts", {}).values(), default=0) for f in dlp]
    seen: dict[str, list] = {}
    for f in fs:
        for v in f.external_hosts + f.external_names:
            s = seen.setdefault(v, [f.start or window[0], f.end or f.start or window[1], 0, set()])
            s[0], s[1] = min(s[0], f.start or s[0]), max(s[1], f.end or s[1])
            s[2] += int(f.evidence.get("flows") or 1) if isinstance(f.evidence.get("flows"), int) else 1
            s[3].add(f.detection)
    inds = tuple(Indicator(v, _kind(v), s[0], s[1], s[2], tuple(sorted(s[3]))) for v, s in sorted(seen.items()))
    proposed = tuple([f"isolate {h}" for h in hosts] + [f"block {i.value}" for i in inds]) if fs else ()
    fields = dict(
        tenant=tenant, window=window, aware_at=aware_at, verdict=verdict,
        confidence={"EXFIL_CONFIRMED": "high", "EXFIL_INDICATED": "medium"}.get(verdict, "low"),
        first_evidence=min((f.start for f in fs if f.start), default=None),
        last_evidence=max((f.end or f.start for f in fs if f.start), default=None),
        hosts=tuple(Host(h, _tags(h, assets or {}), per_host[h]) for h in hosts),
        transfers=tuple(sorted(out.values(), key=lambda t: (t.host, -t.bytes_out, t.destination))),
        counts={c: (max(v, default=0), sum(v)) for c, v in cnt.items() if sum(v)},
        records=(max(recs, default=0), sum(recs)),
        subjects=(max((f.metrics.get("subjects_lower", 0) for f in dlp), default=0),
                  sum(f.metrics.get("subjects_upper", 0) for f in dlp)),
        cleartext=bool(dlp), indicators=inds, detections=tuple(sorted({f.detection for f in fs})),
        attack=tuple(sorted({a for f in fs for a in f.attack})),
        severity=max((f.severity for f in fs), key=_SEVERITIES.index, default="info"),
        suspected_malicious=True if fs else None, measures_proposed=proposed)
    fields.update(kw)
    return DraftInput(**fields)


def drafts_from_findings(ws, aware_at: datetime | dict[str, datetime], *, findings: list | None = None,
                         config=None, window: tuple[datetime, datetime] | None = None,
                         previous: dict | None = None, min_severity: str = "medium", **kw) -> list[DraftInput]:
    """One :class:`DraftInput` per tenant from a workspace's stored findings and configuration.

    ``aware_at`` may differ per tenant (``{tenant: time}``: each controller's clock starts when
    it learns of the breach). Every configured tenant gets an input, those without evidence
    too (they get the register entry); ``default`` only when it has findings or no tenant is
    configured. ``previous`` is an earlier :func:`build_all` output (its tenants' entries make
    these follow-ups); ``kw`` sets further fields (contact, coverage ...). Measures taken come
    from the workspace's case log (the entries of the tenant's incidents overlapping the window)
    unless ``kw`` gives ``measures_taken``; an empty log leaves them open ("to be completed").
    Sighting counts of indicators are the tenant's flow records (and DNS queries for names)
    naming them in the window.
    """
    from .. import analysis, caselog

    cfg = config or ws.config
    fs = analysis.load(ws) if findings is None else findings
    if window is None:
        lo, hi = analysis.data_span(ws)
        window = (lo or _utc(aware_at if isinstance(aware_at, datetime) else min(aware_at.values())), hi or lo)
    window = (_utc(window[0]), _utc(window[1]))
    names = list(cfg.tenants)
    if not names or any((f.tenant or "default") == "default" for f in fs):
        names.append("default")
    out = []
    for t in names:
        a = aware_at[t] if isinstance(aware_at, dict) else aware_at
        prev = (previous or {}).get("tenants", {}).get(t)
        own = dict(kw)
        if "measures_taken" not in own:
            own["measures_taken"] = caselog.measures(ws.root, t, window[0], window[1])
        inp = input_for(t, fs, _utc(a), window, cfg.assets, min_severity, previous=prev, **own)
        inp = replace(inp, indicators=tuple(_sighted(ws, inp, i) for i in inp.indicators))
        out.append(_distinct(ws, inp, fs, min_severity))
    return out


def _distinct(ws, inp: DraftInput, fs: list, min_severity: str) -> DraftInput:
    """Exact distinct values per category over all of the tenant's flagged transfers (the keyed
    hashes in the ``dlp`` table), replacing the per-destination bounds where the rows exist."""
    from ..detections.cleartext_sensitive_data import PERSON, STRONGEST

    floor = _SEVERITIES.index(min_severity)
    pairs = sorted({(h, d) for f in fs if f.detection == "cleartext_sensitive_data"
                    and (f.tenant or "default") == inp.tenant and _SEVERITIES.index(f.severity) >= floor
                    for h in f.internal_hosts for d in f.external_hosts})
    if not pairs:
        return inp
    src = "CASE sender WHEN 'orig' THEN orig_h ELSE resp_h END"
    dst = "CASE sender WHEN 'orig' THEN resp_h ELSE orig_h END"
    cond = " OR ".join([f"({src} = ? AND {dst} = ?)"] * len(pairs))
    got = dict(ws.con.execute(f"SELECT category, count(DISTINCT hmac) FROM dlp_raw WHERE ts >= ? AND ts <= ? "
                              f"AND ({cond}) GROUP BY category",
                              [inp.window[0], inp.window[1], *[x for p in pairs for x in p]]).fetchall())
    if not got:
        return inp
    n = {c: int(got.get(c, 0)) for c in CATEGORIES}
    lower = next((n[c] for c in STRONGEST if n[c]), 0)
    return replace(inp, counts={c: (v, v) for c, v in n.items() if v}, records=(max(n.values()),) * 2,
                   subjects=(lower, sum(n[c] for c in PERSON)))


def _sighted(ws, inp: DraftInput, ind: Indicator) -> Indicator:
    lo, hi = inp.window
    if ind.kind == "domain-name":
        q = ("SELECT count(*), min(ts), max(coalesce(ts_end, ts)) FROM flows WHERE tenant = ? AND ts >= ? "
             "AND ts <= ? AND (lower(external_name) = ? OR lower(external_name) LIKE ?)")
        args = [inp.tenant, lo, hi, ind.value.lower(), "%." + ind.value.lower()]
        hosts = [h.ip for h in inp.hosts]
        dq = ("SELECT count(*), min(ts), max(ts) FROM dns_raw WHERE ts >= ? AND ts <= ? AND orig_h IN "
              f"({','.join('?' * len(hosts))}) AND (lower(query) = ? OR lower(query) LIKE ?)") if hosts else None
    else:
        q = ("SELECT count(*), min(ts), max(coalesce(ts_end, ts)) FROM flows WHERE tenant = ? AND ts >= ? "
             "AND ts <= ? AND external_host = ?")
        args, dq = [inp.tenant, lo, hi, ind.value], None
    rows = [ws.con.execute(q, args).fetchone()]
    if dq:
        rows.append(ws.con.execute(dq, [lo, hi, *hosts, ind.value.lower(), "%." + ind.value.lower()]).fetchone())
    rows = [r for r in rows if r[0]]
    if not rows:
        return ind
    return replace(ind, count=sum(r[0] for r in rows), first_seen=_utc(min(r[1] for r in rows)),
                   last_seen=_utc(max(r[2] for r in rows)))
