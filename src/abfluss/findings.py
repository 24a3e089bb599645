"""Findings: plain, scored, explained records with a stable id; per-host risk and incidents.

A finding's id hashes its detection and its key (e.g. internal host and destination), never
the analysis window, so analysing the same data again updates a finding instead of adding
a second one (Zeek's notice ``$identifier``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

#: Severity names, lowest first, and the score each one starts at.
SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_FLOOR = {"info": 0, "low": 20, "medium": 40, "high": 60, "critical": 80}

#: Findings of one host closer together than this form one incident.
INCIDENT_GAP = timedelta(hours=6)
#: Each further finding of a host adds this share of its score to the host's risk.
RISK_SPILL = 0.1
#: Detections that corroborate an outflow to one destination (issue 11): a rare or first-seen
#: destination and an upload-heavy exchange with it (both name the destination), off-hours
#: activity and volume far above the host's baseline (both of the host as a whole).
CORROBORATE_ON_DESTINATION = ("rare_destination", "upload_heavy")
CORROBORATE_ON_HOST = ("off_hours", "bulk_outbound")


def severity_of(score: float) -> str:
    """The severity band a 0-100 score falls in."""
    for name in reversed(SEVERITIES):
        if score >= SEVERITY_FLOOR[name]:
            return name
    return "info"


def stable_id(detection: str, key: tuple) -> str:
    raw = json.dumps([detection, [str(k) for k in key]], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _utc(t) -> datetime | None:
    if t is None:
        return None
    if hasattr(t, "to_pydatetime"):
        t = t.to_pydatetime()
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


@dataclass
class Finding:
    """One detected behaviour.

    ``score_parts`` are the named points that add up to ``score`` (clipped to 0-100);
    ``metrics`` the measured numbers and ``thresholds`` the settings they were compared
    with, which is what ``abfluss explain`` prints. ``evidence`` holds references (flow uids,
    community ids) and counts, never payload.
    """

    detection: str
    key: tuple
    score_parts: dict[str, float]
    explanation: str
    internal_hosts: list[str]
    external_hosts: list[str] = field(default_factory=list)
    external_names: list[str] = field(default_factory=list)
    channel: str = ""
    start: datetime | None = None
    end: datetime | None = None
    bytes_out: int = 0
    evidence: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)
    severity: str | None = None  # None: from the score
    attack: list[str] = field(default_factory=list)
    tenant: str | None = None
    id: str = ""
    score: float = 0.0

    def __post_init__(self) -> None:
        self.key = tuple(str(k) for k in self.key)
        self.id = self.id or stable_id(self.detection, self.key)
        self.score_parts = {k: round(float(v), 1) for k, v in self.score_parts.items()}
        self.score = round(max(0.0, min(100.0, sum(self.score_parts.values()))), 1)
        self.severity = self.severity or severity_of(self.score)
        self.start, self.end = _utc(self.start), _utc(self.end)
        self.bytes_out = int(self.bytes_out or 0)
        self.internal_hosts = sorted(set(self.internal_hosts))
        self.external_hosts = sorted({h for h in self.external_hosts if h})
        self.external_names = sorted({n for n in self.external_names if n})

    def to_dict(self) -> dict:
        """The JSON form; field names are a contract (README, ``abfluss findings --format json``)."""
        d = asdict(self)
        d["key"] = list(self.key)
        d["start"] = self.start.isoformat() if self.start else None
        d["end"] = self.end.isoformat() if self.end else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Finding":
        d = dict(d)
        d["key"] = tuple(d["key"])
        for k in ("start", "end"):
            d[k] = datetime.fromisoformat(d[k]) if d.get(k) else None
        score, sev = d.pop("score", None), d.get("severity")
        f = cls(**d)
        f.severity = sev or f.severity
        return f


@dataclass
class Incident:
    """A host's related findings close together in time."""

    id: str
    internal_host: str
    start: datetime
    end: datetime
    score: float
    severity: str
    bytes_out: int
    detections: list[str]
    finding_ids: list[str]
    #: the destination and detections that corroborate each other (None: no corroboration)
    corroborated: dict | None = None


def combine(scores: list[float]) -> float:
    """Risk of several findings: the strongest, plus a share of each further one (capped at 100)."""
    if not scores:
        return 0.0
    s = sorted(scores, reverse=True)
    return round(min(100.0, s[0] + RISK_SPILL * sum(s[1:])), 1)


def host_risk(findings: list[Finding]) -> dict[str, float]:
    """Per internal host, the combined score of the findings that name it."""
    per: dict[str, list[float]] = {}
    for f in findings:
        for h in f.internal_hosts:
            per.setdefault(h, []).append(f.score)
    return {h: combine(s) for h, s in sorted(per.items())}


def incidents(findings: list[Finding]) -> list[Incident]:
    """Group each host's findings whose time windows lie within ``INCIDENT_GAP`` of each other.

    Bytes out of an incident is the largest single estimate, not the sum: two detections
    looking at the same transfer must not double it.
    """
    out: list[Incident] = []
    per: dict[str, list[Finding]] = {}
    for f in findings:
        if f.start is None:
            continue
        for h in f.internal_hosts:
            per.setdefault(h, []).append(f)
    for host, fs in sorted(per.items()):
        fs.sort(key=lambda f: (f.start, f.id))
        group: list[Finding] = []
        end = None
        for f in fs:
            if group and f.start > end + INCIDENT_GAP:
                out.append(_incident(host, group))
                group = []
            group.append(f)
            end = max(end, f.end or f.start) if end and len(group) > 1 else (f.end or f.start)
        if group:
            out.append(_incident(host, group))
    return out


def corroboration(group: list[Finding]) -> dict | None:
    """The destination on which the most corroborating detections of one host's findings agree.

    An upload-heavy finding to a destination must be one of them; a rare-destination finding
    counts when it names the same destination, off-hours and bulk-outbound findings of the host
    always count. None when fewer than two detections corroborate.
    """
    host_wide = sorted({f.detection for f in group if f.detection in CORROBORATE_ON_HOST})
    best = None
    for up in (f for f in group if f.detection == "upload_heavy"):
        for dest in up.external_hosts:
            names = {n.lower() for n in up.external_names}
            on_dest = {f.detection for f in group if f.detection in CORROBORATE_ON_DESTINATION and (
                dest in f.external_hosts or names & {n.lower() for n in f.external_names})}
            dets = sorted(on_dest) + host_wide
            if len(dets) >= 2 and (best is None or len(dets) > len(best["detections"])):
                best = {"destination": dest, "names": sorted(names), "detections": dets}
    return best


def _incident(host: str, group: list[Finding]) -> Incident:
    score = combine([f.score for f in group])
    ids = sorted(f.id for f in group)
    # a detection's own rule (e.g. 100 distinct insured ids: critical) is never diluted
    severity = max([severity_of(score)] + [f.severity for f in group], key=SEVERITIES.index)
    corr = corroboration(group)
    if corr:
        # findings that corroborate each other on one destination raise the incident one step per
        # further corroborating detection above the strongest of them (upload-heavy + first-seen
        # destination: at least high; with off-hours or volume above baseline: critical)
        strongest = max((f.severity for f in group if f.detection in corr["detections"]), key=SEVERITIES.index)
        raised = SEVERITIES[min(len(SEVERITIES) - 1, SEVERITIES.index(strongest) + len(corr["detections"]) - 1)]
        severity = max(severity, raised, key=SEVERITIES.index)
    start = min(f.start for f in group)
    return Incident(
        # named by its host and its first moment, not by its members: findings that join it later
        # (a longer window, the next watch cycle, a merge with a later incident) keep its id; only a
        # finding that starts before it does gives it a new one (caselog.of_incident follows that)
        id=stable_id("incident", (host, start.astimezone(timezone.utc).isoformat())),
        internal_host=host,
        start=start,
        end=max(f.end or f.start for f in group),
        score=score,
        severity=severity,
        bytes_out=max(f.bytes_out for f in group),
        detections=sorted({f.detection for f in group}),
        finding_ids=ids,
        corroborated=corr,
    )
