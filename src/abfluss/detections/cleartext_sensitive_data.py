"""Sensitive identifiers (KVNR, IBAN, tax ID, ICD-10 ...) sent in cleartext to an external destination.

Payload inspection (``abfluss.dlp``) stores, per flow side, each distinct value found as a
keyed hash. Here they are counted per internal sending host and destination: distinct values
per category (the same value in many flows counts once), how many were anchored by context
(a field name, a FHIR identifier system, a CSV column), and the number of data subjects they
stand for as a range (DOMAIN.md §2.9). Severity follows §2.9: anchored health identifiers
(KVNR, ICD-10, IK) to an external destination are at least high; 100 or more distinct values of
one identifier are critical (a bulk record transfer). None of RITA, Slips, ntopng or Zeek's
scripts look for these identifiers (ANCHORS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis

from ..findings import Finding
from . import Meta, Telemetry
from ._stats import ramp, rows

META = Meta(
    id="cleartext_sensitive_data",
    title="Sensitive identifiers sent in cleartext",
    attack=("T1048.003", "T1041", "T1567"),
    description="Health insurance numbers (KVNR), IKs, IBANs, tax IDs, pension insurance numbers, "
                "ICD-10 codes, e-mail addresses and phone numbers found in unencrypted payload "
                "(HTTP, SMTP, FTP, any TCP/UDP stream) leaving an internal host for an external "
                "destination; counted as distinct keyed hashes, never stored as values.",
    runbook="1. Identify the application on the host that sent the data (process holding the "
            "connection, scheduled exports, misconfigured interfaces sending without TLS). "
            "2. Check whether the destination is a contracted processor; if not, block it and "
            "isolate the host. 3. Use the masked values and counts to scope the affected persons "
            "(subjects_lower..subjects_upper) for the GDPR Art. 33 assessment and the 72 h deadline.",
    channel="cleartext",
    inputs=("dlp", "flows", "inspected"),
)

CATEGORIES = ("kvnr", "ik", "iban", "idnr", "rvnr", "icd10", "email", "phone")
#: Person identifiers, strongest first: the lower bound of data subjects is the distinct count of
#: the first one present (§2.9: KVNR, else RVNR, else IdNr, else e-mail; IBAN and phone added
#: where §2.9 is silent, an account or a number usually belonging to one person).
STRONGEST = ("kvnr", "rvnr", "idnr", "iban", "email", "phone")
#: Values that may each stand for a different person: their sum is the upper bound of subjects.
PERSON = ("kvnr", "rvnr", "idnr", "iban", "email", "phone")
CONTACT = ("email", "phone")
LABELS = {"kvnr": ("KVNR", "KVNRs"), "ik": ("IK", "IKs"), "iban": ("IBAN", "IBANs"),
          "idnr": ("tax ID", "tax IDs"), "rvnr": ("pension insurance number", "pension insurance numbers"),
          "icd10": ("ICD-10 code", "ICD-10 codes"), "email": ("e-mail address", "e-mail addresses"),
          "phone": ("phone number", "phone numbers")}
APP_LABELS = {"http": "HTTP", "smtp": "SMTP", "ftp": "FTP", "ftp-data": "FTP"}


@dataclass(frozen=True)
class Settings:
    bulk_distinct: int = field(default=100, metadata={
        "help": "Distinct values of one of bulk_categories from which a transfer to an external "
                "destination is critical (DOMAIN.md §2.9 bulk record transfer)."})
    bulk_categories: tuple = field(default=("kvnr", "rvnr", "idnr", "iban", "icd10"), metadata={
        "help": "Categories whose distinct count decides the bulk (critical) case."})
    health_categories: tuple = field(default=("kvnr", "icd10", "ik"), metadata={
        "help": "Categories that make a transfer high when anchored and external (DOMAIN.md §2.9)."})
    min_contact_distinct: int = field(default=10, metadata={
        "help": "Distinct e-mail addresses and phone numbers needed for a finding when no other "
                "identifier was sent (a mail names a few addresses; lists matter)."})
    bulk_contact_distinct: int = field(default=100, metadata={
        "help": "Distinct contact values that give the full contact part of the score."})
    include_internal: bool = field(default=False, metadata={
        "help": "Also report transfers to internal destinations (scored without the external part, "
                "never raised to high or critical by the §2.9 rules)."})
    max_evidence: int = field(default=10, metadata={"help": "Flows listed as evidence per finding."})


def _sides(t):
    """Rows with the sending host (src) and the receiving one (dst) of each flow side."""
    orig = t.sender == "orig"
    return t.mutate(src=ibis.ifelse(orig, t.orig_h, t.resp_h), dst=ibis.ifelse(orig, t.resp_h, t.orig_h),
                    src_internal=ibis.ifelse(orig, t.orig_internal, t.resp_internal),
                    dst_internal=ibis.ifelse(orig, t.resp_internal, t.orig_internal),
                    dst_port=ibis.ifelse(orig, t.resp_p, t.orig_p))


def _outgoing(t, s: Settings):
    t = _sides(t.filter(~t.allowlisted.fill_null(False)))
    t = t.filter(t.src_internal.fill_null(False))
    return t if s.include_internal else t.filter(~t.dst_internal.fill_null(False))


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    if tel.dlp is None:
        return []
    d = _outgoing(tel.dlp, s)
    per = d.group_by(["src", "dst", "category"]).aggregate(
        distinct=d.hmac.nunique(), hits=d.hits.sum(), anchored=d.hmac.nunique(where=d.anchored.fill_null(False)))
    pairs = d.group_by(["src", "dst"]).aggregate(
        start=d.ts.min(), end=d.ts.max(), flows=d.community_id.nunique(), tenant=d.tenant.max(),
        internal=d.dst_internal.fill_null(False).any())
    counts: dict[tuple, dict] = {}
    for r in rows(per.order_by(["src", "dst", "category"])):
        counts.setdefault((r["src"], r["dst"]), {})[r["category"]] = r
    # The channel that carried most hits (no mode(): Spark has none in Ibis).
    ways = d.group_by(["src", "dst", "app", "proto", "dst_port"]).aggregate(n=d.hits.sum())
    channels: dict[tuple, dict] = {}
    for r in rows(ways.order_by(["src", "dst", ibis.desc("n"), "app", "proto", "dst_port"])):
        channels.setdefault((r["src"], r["dst"]), {"app": r["app"], "proto": r["proto"], "port": r["dst_port"]})
    volume = _volume(tel, d, s)
    flows = _flows(tel, d)
    out = []
    for p in rows(pairs.order_by(["src", "dst"])):
        key = (p["src"], p["dst"])
        p.update(channels[key], **flows.get(key, {}))
        f = _finding(tel, d, p, counts[key], volume.get(key, {}), s)
        if f is not None:
            out.append(f)
    return out


def _flows(tel: Telemetry, d) -> dict[tuple, dict]:
    """Per pair, from the flow records of the flows with hits: when the last one ended, and the
    destination's name (SNI, HTTP host or DNS name)."""
    if tel.flows is None:
        return {}
    cid = d.select("src", "dst", "community_id").distinct()
    f = tel.flows.select("community_id", "ts_end", "external_name").join(cid, "community_id")
    span = f.group_by(["src", "dst"]).aggregate(last=f.ts_end.max(), name=f.external_name.max())
    return {(r["src"], r["dst"]): {"last": r["last"], "name": r["name"]}
            for r in rows(span.order_by(["src", "dst"]))}


def _volume(tel: Telemetry, d, s: Settings) -> dict[tuple, dict]:
    """Per pair: payload bytes of the flow sides with hits, and of all inspected sides (with the
    encrypted share), from the ``inspected`` table."""
    if tel.inspected is None:
        return {}
    i = _outgoing(tel.inspected, s)
    hit = d.select("src", "dst", "community_id", "sender").distinct()
    sent = i.join(hit, ["src", "dst", "community_id", "sender"]).group_by(["src", "dst"]).aggregate(
        bytes_out=i.payload_bytes.sum())
    total = i.group_by(["src", "dst"]).aggregate(
        payload=i.payload_bytes.sum(), scanned=i.scanned_bytes.sum(),
        encrypted=i.payload_bytes.sum(where=i.encrypted.fill_null(False)))
    out = {(r["src"], r["dst"]): r for r in rows(total.order_by(["src", "dst"]))}
    for r in rows(sent.order_by(["src", "dst"])):
        out.setdefault((r["src"], r["dst"]), {})["bytes_out"] = r["bytes_out"]
    return out


def _finding(tel, d, p: dict, cats: dict, vol: dict, s: Settings) -> Finding | None:
    n = {c: (cats[c]["distinct"] if c in cats else 0) for c in CATEGORIES}
    anchored = {c: (cats[c]["anchored"] if c in cats else 0) for c in CATEGORIES}
    contact = sum(n[c] for c in CONTACT)
    strong = max(n[c] for c in CATEGORIES if c not in CONTACT)
    if strong == 0 and contact < s.min_contact_distinct:
        return None
    external = not p["internal"]
    anchored_strong = any(anchored[c] for c in CATEGORIES if c not in CONTACT)
    parts = {}
    if strong:
        parts["records"] = 40 * ramp(strong, 1, s.bulk_distinct)
    else:
        parts["contacts"] = 25 * ramp(contact, s.min_contact_distinct, s.bulk_contact_distinct)
    if anchored_strong:
        parts["anchored"] = 25.0
    if external:
        parts["external"] = 15.0
    bulk = max(n[c] for c in s.bulk_categories) >= s.bulk_distinct
    severity = None
    if external and bulk and (anchored_strong or n["iban"] >= s.bulk_distinct or n["rvnr"] >= s.bulk_distinct):
        severity = "critical"
    elif external and any(anchored[c] for c in s.health_categories):
        severity = "high"
    lower = next((n[c] for c in STRONGEST if n[c]), 0)
    upper = sum(n[c] for c in PERSON)
    cids, top = _evidence(tel, d, p, s.max_evidence)
    name = p.get("name")
    end = max(p["end"], p.get("last") or p["end"])
    channel = p["app"] if p["app"] in APP_LABELS else f"{p['proto']}/{p['port']}"
    return Finding(
        detection=META.id, key=(p["src"], p["dst"]), score_parts=parts,
        explanation=_sentence(p, n, anchored, name, lower, upper),
        internal_hosts=[p["src"]], external_hosts=[] if p["internal"] else [p["dst"]],
        external_names=[name] if name else [], channel=channel, start=p["start"], end=end,
        bytes_out=vol.get("bytes_out") or 0, severity=severity,
        evidence={"flows": p["flows"], "top_flows": top, "community_ids": cids},
        metrics={"counts": n, "anchored": anchored,
                 "hits": {c: (cats[c]["hits"] if c in cats else 0) for c in CATEGORIES},
                 "subjects_lower": lower, "subjects_upper": upper, "flows": p["flows"],
                 "destination_internal": bool(p["internal"]),
                 "payload_bytes": vol.get("payload") or 0, "scanned_bytes": vol.get("scanned") or 0,
                 "encrypted_bytes": vol.get("encrypted") or 0},
        thresholds={"bulk_distinct": s.bulk_distinct, "min_contact_distinct": s.min_contact_distinct,
                    "bulk_contact_distinct": s.bulk_contact_distinct},
        tenant=p["tenant"],
    )


def _evidence(tel, d, p: dict, limit: int) -> tuple[list, list]:
    """(community ids of the flows with hits, uids of the largest of their flow records)."""
    mine = d.filter((d.src == p["src"]) & (d.dst == p["dst"]) & d.community_id.notnull())
    cids = [r["community_id"] for r in rows(mine.select("community_id").distinct()
                                            .order_by("community_id").limit(limit))]
    if not cids or tel.flows is None:
        return cids, []
    f = tel.flows.filter(tel.flows.community_id.isin(cids) & tel.flows.uid.notnull())
    top = rows(f.order_by([ibis.desc("bytes_out"), "ts", "uid"]).limit(limit).select("uid"))
    return cids, [r["uid"] for r in top]


def _sentence(p: dict, n: dict, anchored: dict, name: str | None, lower: int, upper: int) -> str:
    order = sorted((c for c in CATEGORIES if n[c]), key=lambda c: (-n[c], CATEGORIES.index(c)))
    said = []
    for i, c in enumerate(order):
        label = LABELS[c][n[c] != 1]
        note = "" if not anchored[c] else " (anchored)" if anchored[c] == n[c] else f" ({anchored[c]} anchored)"
        said.append(f"{n[c]} {'distinct ' if i == 0 else ''}{label}{note}")
    listed = said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1]
    how = APP_LABELS.get(p["app"]) or f"{str(p['proto']).upper()} port {p['port']}"
    dest = p["dst"] + (f" ({name})" if name else "")
    who = f"{lower} data subject{'s' if lower != 1 else ''}" if lower == upper else f"{lower} to {upper} data subjects"
    return f"{p['src']} sent {listed} in cleartext {how} to {dest}" + (f", about {who}." if upper else ".")
