"""Findings as OCSF events: Detection Finding (class 2004) and, for cleartext sensitive data,
Data Security Finding (class 2006). ``type_uid`` = class_uid * 100 + activity_id (1: Create).
"""

from __future__ import annotations

from .. import __version__
from ..findings import Finding

OCSF_VERSION = "1.3.0"
DETECTION_FINDING = 2004
DATA_SECURITY_FINDING = 2006
_SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
DLP_DETECTIONS = ("cleartext_sensitive_data",)


def _ms(t) -> int | None:
    return int(t.timestamp() * 1000) if t else None


def to_ocsf(f: Finding) -> dict:
    cls = DATA_SECURITY_FINDING if f.detection in DLP_DETECTIONS else DETECTION_FINDING
    ev = {
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": cls,
        "class_name": "Data Security Finding" if cls == DATA_SECURITY_FINDING else "Detection Finding",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": cls * 100 + 1,
        "severity_id": _SEVERITY_ID[f.severity],
        "severity": f.severity.capitalize(),
        "status_id": 1,
        "time": _ms(f.start),
        "message": f.explanation,
        "risk_score": round(f.score),
        "metadata": {"version": OCSF_VERSION,
                     "product": {"name": "abfluss", "vendor_name": "abfluss", "version": __version__}},
        "finding_info": {
            "uid": f.id,
            "title": f.detection,
            "desc": f.explanation,
            "types": [f.detection],
            "first_seen_time": _ms(f.start),
            "last_seen_time": _ms(f.end),
            "analytic": {"name": f.detection, "type_id": 1, "type": "Rule"},
            "attacks": [{"technique": {"uid": t}} for t in f.attack],
        },
        "evidences": [{
            "src_endpoint": {"ip": h},
            **({"dst_endpoint": {"ip": f.external_hosts[0],
                                 **({"hostname": f.external_names[0]} if f.external_names else {})}}
               if f.external_hosts else {}),
        } for h in f.internal_hosts],
        "unmapped": {"abfluss": {"score_parts": f.score_parts, "bytes_out": f.bytes_out,
                                 "channel": f.channel, "metrics": f.metrics, "evidence": f.evidence}},
    }
    if cls == DATA_SECURITY_FINDING:
        counts = f.metrics.get("counts", {})
        ev["data_security"] = {"category": "Personal", "category_id": 1,
                               "data_lifecycle_state": "Data in Transit", "data_lifecycle_state_id": 2,
                               "detection_system": "abfluss", "pattern_match": ",".join(
                                   k for k, v in sorted(counts.items()) if v)}
    return ev
