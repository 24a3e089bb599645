"""Findings as Elastic Common Schema documents (``event.kind: alert``), one per line in NDJSON.

Fields abfluss has no ECS name for stay under the custom ``abfluss.*`` namespace; no raw
sensitive value is ever among them (findings hold hashes and counts only).
"""

from __future__ import annotations

from .. import __version__
from ..findings import Finding

ECS_VERSION = "8.11.0"
_SEVERITY = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


def to_ecs(f: Finding) -> dict:
    doc = {
        "@timestamp": f.start.isoformat() if f.start else None,
        "ecs": {"version": ECS_VERSION},
        "message": f.explanation,
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "action": f.detection,
            "dataset": "abfluss.findings",
            "id": f.id,
            "severity": _SEVERITY[f.severity],
            "risk_score": f.score,
            "start": f.start.isoformat() if f.start else None,
            "end": f.end.isoformat() if f.end else None,
        },
        "rule": {"id": f.detection, "name": f.detection, "ruleset": "abfluss"},
        "observer": {"product": "abfluss", "vendor": "abfluss", "version": __version__},
        "network": {"protocol": f.channel or None, "direction": "outbound" if f.external_hosts else "internal"},
        "labels": {"severity": f.severity},
        "abfluss": {
            "finding_id": f.id, "severity": f.severity, "score_parts": f.score_parts,
            "internal_hosts": f.internal_hosts, "external_hosts": f.external_hosts,
            "external_names": f.external_names, "bytes_out": f.bytes_out, "metrics": f.metrics,
            "evidence": f.evidence, "tenant": f.tenant,
        },
    }
    if f.attack:
        doc["threat"] = {"framework": "MITRE ATT&CK", "technique": {"id": list(f.attack)}}
    if f.internal_hosts:
        doc["source"] = {"ip": f.internal_hosts[0], "bytes": f.bytes_out}
        doc["host"] = {"ip": f.internal_hosts}
    if f.external_hosts or f.external_names:
        dest = {}
        if f.external_hosts:
            dest["ip"] = f.external_hosts[0]
        if f.external_names:
            dest["domain"] = f.external_names[0]
        doc["destination"] = dest
    return doc
