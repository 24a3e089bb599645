"""STIX 2.1 bundle of a tenant's indicators of compromise (NIS2 Art. 23(4)(b) / § 32 BSIG Nr. 2).

One ``indicator`` per external IP address or domain, with a STIX pattern, and one ``sighting``
of it at the tenant (count, first and last seen), all marked with a TLP statement and created
by an ``identity`` for the tenant. Ids are derived from tenant and value (UUIDv5) and times
from ``now``, so the same evidence gives the same bundle.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import stix2

#: TLP 1.0 marking definitions (the ones STIX 2.1 defines); amber is the default for IoCs
#: shared with the CSIRT.
TLP = {"white": stix2.TLP_WHITE, "green": stix2.TLP_GREEN, "amber": stix2.TLP_AMBER, "red": stix2.TLP_RED}
_NS = uuid.UUID("6f0c3a52-4c1e-5b7e-9a55-0a6b1f5e2d10")  # abfluss' namespace for STIX ids


def _id(kind: str, *parts: str) -> str:
    return f"{kind}--{uuid.uuid5(_NS, '|'.join(parts))}"


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def pattern(kind: str, value: str) -> str:
    """The STIX pattern matching ``value`` (``kind``: ipv4-addr, ipv6-addr or domain-name)."""
    v = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"[{kind}:value = '{v}']"


def bundle(indicators, *, tenant: str, now: datetime, tlp: str = "amber", anomalous: bool = False) -> str:
    """The bundle as JSON. ``anomalous`` types the indicators ``anomalous-activity`` (outflow
    indicated, not confirmed) instead of ``malicious-activity``."""
    if tlp not in TLP:
        raise ValueError(f"tlp {tlp!r}: one of {', '.join(TLP)}")
    now = _utc(now)
    mark = TLP[tlp]
    org = stix2.Identity(id=_id("identity", tenant), name=tenant, identity_class="organization",
                         created=now, modified=now, object_marking_refs=[mark])
    objects: list = [mark, org]
    for i in indicators:
        first, last = _utc(i.first_seen), _utc(i.last_seen)
        ind = stix2.Indicator(
            id=_id("indicator", tenant, i.value), created=now, modified=now, created_by_ref=org.id,
            name=f"{i.kind} {i.value}", pattern=pattern(i.kind, i.value), pattern_type="stix",
            valid_from=first, indicator_types=["anomalous-activity" if anomalous else "malicious-activity"],
            description=f"Seen by abfluss detections: {', '.join(i.detections) or 'n/a'}.",
            labels=list(i.detections) or None, object_marking_refs=[mark])
        sight = stix2.Sighting(
            id=_id("sighting", tenant, i.value), created=now, modified=now, created_by_ref=org.id,
            sighting_of_ref=ind.id, count=max(1, int(i.count)), first_seen=first, last_seen=max(first, last),
            where_sighted_refs=[org.id], object_marking_refs=[mark])
        objects += [ind, sight]
    return stix2.Bundle(objects=objects, id=_id("bundle", tenant, now.isoformat())).serialize(pretty=True)
