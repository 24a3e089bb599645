"""TLS anomalies: certificates that do not name the server asked for, self-signed or expired
certificates of external servers, and client fingerprints (JA3/JA4) rare in the network.

Malware C2 often runs TLS with whatever certificate is at hand: a self-signed one, an expired
one, or one copied from a well-known site (Slips' "Incompatible certificate CN": 52.0.131.132
answering for netflix.com with Google's certificate). Its TLS library is often not the
browser's either, so its client fingerprint is one no other host of the network shows.
Four kinds, keyed by (internal client, kind, server or fingerprint):

``name_mismatch``     the server name the client asked for (SNI) is covered neither by the
                      certificate's subject CN nor by its subjectAltNames (wildcards cover one
                      label). Where the sensor logged only the subject (an ssl.log without
                      x509.log), an unlisted alternative name cannot be ruled out, so a
                      mismatch counts only where a well-known operator (``OPERATORS``) is
                      involved: a certificate of Google's for netflix.com, or, from a chain
                      the sensor could not validate, anything but Netflix's for netflix.com
                      (a validated chain for a big site's name under a domain of its own
                      that the list lacks, msecnd.net for microsoft.com, is left alone).
                      CDNs' shared certificates never count on the subject alone.
``self_signed``       the server's own certificate signed itself (the sensor says "self signed
                      certificate", or subject and issuer are the same for a non-CA certificate).
``expired``           the certificate had expired when the handshake happened. A certificate
                      "not yet valid" is not flagged: that is a sensor clock far more often
                      than an attack (Slips' own logs carry 1970 times).
``rare_fingerprint``  a JA3/JA4 client fingerprint used by at most ``rare_max_hosts`` internal
                      hosts of a network where at least ``rare_min_population`` show one, from a
                      host that also uses a common one: a second TLS library beside the
                      browser. Low on its own.

Only internal clients talking to external servers are judged. Inputs: ``tls`` (Zeek ssl.log,
Suricata tls, nDPI's JA4 in captures) and ``certs`` (Zeek x509.log: subjectAltNames and
validity); captures give no certificates, so from a pcap only ``rare_fingerprint`` can fire.
The few distinct (server name, certificate) pairs are judged in Python (wildcards, the public
suffix list); the handshakes themselves stay in the engine.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache

import ibis
import pyarrow as pa
from ibis import _

from ..findings import Finding
from ..units import count
from . import Meta, Telemetry
from ._sql import arrow_table, memtable
from ._stats import ramp, rows

META = Meta(
    id="tls_anomaly",
    title="TLS certificate that does not fit its server, or a rare TLS client",
    attack=("T1573.002", "T1557", "T1588.004", "T1071.001"),
    description="An internal host completed TLS with an external server whose certificate names "
                "another site, signed itself or had expired, or used a TLS client fingerprint "
                "(JA3/JA4) that no other host of the network shows: the marks of malware C2 "
                "servers set up in a hurry and of TLS libraries that are not the browser's.",
    runbook="1. Look at the certificate (subject, issuer, names) and the server address: a "
            "certificate of a well-known site on an address that site does not use is "
            "impersonation; self-signed or expired ones on a business service are a finding "
            "for its owner, not an attack. 2. Find the process on the client that made the "
            "connection (EDR, ss -tnp): a rare fingerprint names a TLS library, not a browser. "
            "3. Check the server in threat intelligence (JA3S, certificate hash), block it at "
            "the egress if unexplained and look for the host's other findings.",
    channel="tls",
    inputs=("certs", "tls"),
)

KIND_ATTACK = {"name_mismatch": ["T1573.002", "T1557"], "self_signed": ["T1573.002", "T1588.004"],
               "expired": ["T1573.002", "T1588.004"], "rare_fingerprint": ["T1071.001"]}

#: Well-known operators and the registered domains their certificates and names use. A name
#: below one of them belongs to the operator; ``cdn`` operators serve many customers' names
#: with certificates of their own, so their certificate standing for another name is normal.
OPERATORS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "Google": (False, ("google.com", "gstatic.com", "googleapis.com", "googleusercontent.com", "ggpht.com",
                       "googlevideo.com", "youtube.com", "ytimg.com", "youtube-nocookie.com", "doubleclick.net",
                       "google-analytics.com", "googletagmanager.com", "googlesyndication.com",
                       "googleadservices.com", "2mdn.net", "gvt1.com", "gvt2.com", "android.com", "app-measurement.com",
                       "withgoogle.com", "blogger.com", "blogspot.com", "gmail.com", "googlemail.com")),
    "Microsoft": (False, ("microsoft.com", "msn.com", "bing.com", "bing.net", "live.com", "live.net",
                          "outlook.com", "office.com", "office.net", "office365.com", "windows.com",
                          "windowsupdate.com", "microsoftonline.com", "azure.com", "azureedge.net",
                          "msedge.net", "skype.com", "linkedin.com", "licdn.com", "xboxlive.com",
                          "sharepoint.com", "onedrive.com", "hotmail.com", "msftncsi.com", "gfx.ms",
                          "s-microsoft.com", "msauth.net", "msftauth.net", "virtualearth.net")),
    "Meta": (False, ("facebook.com", "facebook.net", "fbcdn.net", "fb.com", "instagram.com",
                     "cdninstagram.com", "whatsapp.com", "whatsapp.net", "messenger.com", "meta.com")),
    "Apple": (False, ("apple.com", "icloud.com", "mzstatic.com", "cdn-apple.com", "itunes.com", "me.com")),
    "Amazon": (False, ("amazon.com", "amazon.de", "media-amazon.com", "ssl-images-amazon.com", "amazontrust.com")),
    "Netflix": (False, ("netflix.com", "netflix.net", "nflxvideo.net", "nflximg.net", "nflxext.com", "nflxso.net")),
    "Yahoo": (False, ("yahoo.com", "yahoo.net", "yimg.com", "yahooapis.com", "yieldmanager.com", "aol.com")),
    "Twitter": (False, ("twitter.com", "twimg.com", "x.com", "t.co")),
    "Akamai": (True, ("akamai.net", "akamaized.net", "akamaiedge.net", "akamaihd.net", "edgekey.net",
                      "edgesuite.net", "akamaitechnologies.com")),
    "Fastly": (True, ("fastly.net", "fastlylb.net")),
    "Cloudflare": (True, ("cloudflare.com", "cloudflaressl.com", "cloudflare-dns.com")),
    "CloudFront": (True, ("cloudfront.net",)),
}
_CN = re.compile(r"(?:^|,)\s*CN=([^,]*)", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    mismatch_points: float = field(default=50.0, metadata={
        "help": "Points for a certificate that does not name the server asked for (medium)."})
    impersonation_points: float = field(default=15.0, metadata={
        "help": "Points added when the certificate names a well-known operator the server name is "
                "not part of (a copied certificate)."})
    data_points: float = field(default=10.0, metadata={
        "help": "Points added when the handshake was completed (the client went on with the wrong "
                "certificate, not just saw it)."})
    self_signed_points: float = field(default=30.0, metadata={
        "help": "Points for an external server presenting a self-signed certificate (low)."})
    expired_points: float = field(default=30.0, metadata={
        "help": "Points for an external server presenting an expired certificate (low)."})
    expired_grace_days: float = field(default=0.0, metadata={
        "help": "Days after a certificate's end of validity before a handshake counts as expired."})
    rare_max_hosts: int = field(default=1, metadata={
        "help": "Internal hosts that may share a client fingerprint for it to count as rare."})
    rare_min_population: int = field(default=10, metadata={
        "help": "Internal hosts with a client fingerprint needed before any is judged rare (in a "
                "small network every fingerprint is rare)."})
    rare_points: float = field(default=25.0, metadata={
        "help": "Points for a rare client fingerprint beside a common one (low)."})
    rare_high_servers: int = field(default=20, metadata={
        "help": "External servers reached with the rare fingerprint that add the full spread points."})
    spread_points: float = field(default=10.0, metadata={
        "help": "Points added for many servers reached with a rare fingerprint."})
    max_listed: int = field(default=10, metadata={"help": "Handshakes (uids) listed as evidence per finding."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    t = tel.tls
    if t is None:
        return []
    t = t.mutate(client=t.orig_h, server=t.resp_h, sni=t.server_name.lower().re_replace(r"\.$", ""),
                 client_internal=t.orig_internal.fill_null(False), server_internal=t.resp_internal.fill_null(False))
    ext = t.filter(t.client_internal & ~t.server_internal)
    leaf = _with_leaf(ext, tel.certs)
    found = _names(leaf, tel.certs, s) + _certificates(leaf, s) + _rare(t, s)
    found.sort(key=lambda c: (c["client"], c["kind"], c["target"]))
    return [_finding(c, s) for c in found]


# -- the server's own certificate ---------------------------------------------------------------

def _with_leaf(t, certs):
    """Handshakes with their leaf certificate's fields (x509 where logged, else what the sensor
    put inline): ``c_subject``, ``c_issuer``, ``c_san``, ``c_ca``, ``c_before``, ``c_after``, ``leaf``
    (the certificate's id where x509 had it)."""
    fuid = ibis.ifelse(t.cert_fuids.length() > 0, t.cert_fuids[0], ibis.null(str))
    t = t.mutate(leaf_id=fuid)
    if certs is None:
        return t.mutate(leaf=ibis.null(str), c_subject=t.subject, c_issuer=t.issuer, c_san=ibis.null("array<string>"),
                        c_ca=ibis.null(bool), c_before=t.not_before, c_after=t.not_after)
    one = certs.mutate(rn=ibis.row_number().over(group_by="fuid", order_by="ts"))
    one = one.filter(one.rn == 0).select(leaf=_.fuid, x_subject=_.subject, x_issuer=_.issuer, x_san=_.san_dns,
                                          x_ca=_.ca, x_before=_.not_before, x_after=_.not_after)
    j = t.left_join(one, t.leaf_id == one.leaf)
    return j.mutate(c_subject=ibis.coalesce(j.x_subject, j.subject), c_issuer=ibis.coalesce(j.x_issuer, j.issuer),
                    c_san=j.x_san, c_ca=j.x_ca, c_before=ibis.coalesce(j.x_before, j.not_before),
                    c_after=ibis.coalesce(j.x_after, j.not_after))


def _names(leaf, certs, s: Settings) -> list[dict]:
    """Handshakes whose certificate does not name the server asked for, per client and server."""
    named = leaf.filter(leaf.sni.notnull() & (leaf.sni != "") & leaf.c_subject.notnull())
    named = named.mutate(valid=(named.validation_status.lower() == "ok").fill_null(False))
    # The leaf's subjectAltNames come with each pair (one certificate per leaf id), not from a
    # second query listing every leaf id: that list made Ibis build and compile a filter of tens
    # of thousands of literals, which cost more than the whole query.
    pairs = rows(named.group_by(["sni", "c_subject", "leaf", "valid"]).aggregate(san=named.c_san.first()))
    if not pairs:
        return []
    bad = []
    for p in pairs:
        verdict = judge(p["sni"], p["c_subject"], (p["san"] or []) if p["leaf"] else None, p["valid"])
        if verdict:
            bad.append({"sni": p["sni"], "c_subject": p["c_subject"], "leaf": p["leaf"] or "", "valid": p["valid"],
                        "claim": verdict})
    if not bad:
        return []
    schema = pa.schema([("sni", pa.string()), ("c_subject", pa.string()), ("leaf", pa.string()),
                        ("valid", pa.bool_()), ("claim", pa.string())])
    table = memtable(arrow_table({k: [b[k] for b in bad] for k in schema.names}, schema))
    hit = named.mutate(leaf_key=named.leaf.fill_null(""))
    hit = hit.join(table, [hit.sni == table.sni, hit.c_subject == table.c_subject, hit.leaf_key == table.leaf,
                           hit.valid == table.valid])
    hit = hit.select("client", "server", "tenant", "ts", "uid", "established", sni=hit.sni, subject=hit.c_subject,
                     claim=table.claim)
    return _group(hit, "name_mismatch", ["client", "server"], s, extra={"names": hit.sni.collect().unique(),
                                                                       "subject": hit.subject.max(),
                                                                       "claim": hit.claim.max()})


def judge(sni: str, subject: str, sans: list[str] | None, validated: bool = False) -> str | None:
    """Whether a certificate does not fit the server name: None if it fits, else what it names
    instead ("Google" when it is a well-known operator's, else its CN). ``sans`` None: only the
    subject is known, and only a mismatch involving a well-known operator counts (a foreign
    certificate for a well-known name only when the sensor could not ``validated`` its chain)."""
    if _is_address(sni):
        return None
    cn = _common_name(subject)
    names = [cn] + list(sans or [])
    if any(name_matches(sni, n) for n in names if n):
        return None
    op_sni, op_cn = operator_of(sni), operator_of(cn)
    if sans is None:
        if _registered(sni) == _registered(cn) or (op_sni and op_sni == op_cn):
            return None
        cdn = op_cn is not None and OPERATORS[op_cn][0]
        if cdn or not (op_sni or op_cn) or (op_cn is None and validated):
            return None  # an unlisted subjectAltName may well cover it
    if op_sni and op_cn == op_sni:
        return None  # e.g. a certificate of Google's that lists gstatic.com only as an alternative name
    return op_cn if op_cn and not OPERATORS[op_cn][0] else (cn or subject)


def name_matches(sni: str, pattern: str) -> bool:
    """RFC 6125: equal names, or a wildcard standing for exactly the first label."""
    p = pattern.strip().lower().rstrip(".")
    if p == sni:
        return True
    if p.startswith("*.") and "." in sni:
        return sni.split(".", 1)[1] == p[2:]
    return False


def operator_of(name: str) -> str | None:
    name = (name or "").lower().lstrip("*.").rstrip(".")
    for op, (_cdn, domains) in OPERATORS.items():
        if any(name == d or name.endswith("." + d) for d in domains):
            return op
    return None


def _common_name(subject: str) -> str:
    m = _CN.search(subject or "")
    return m.group(1).strip().lower() if m else ""


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


@lru_cache(maxsize=1)
def _psl():
    from publicsuffixlist import PublicSuffixList
    return PublicSuffixList(only_icann=True)


def _registered(name: str) -> str:
    name = (name or "").lower().lstrip("*.").rstrip(".")
    return _psl().privatesuffix(name) or name


def _certificates(leaf, s: Settings) -> list[dict]:
    """Self-signed and expired certificates of external servers, per client and server."""
    status = leaf.validation_status.lower().fill_null("")
    self_signed = ((status == "self signed certificate")
                   | ((leaf.c_subject == leaf.c_issuer) & ~leaf.c_ca.fill_null(False) & leaf.c_subject.notnull()))
    grace = int(s.expired_grace_days * 86400 * 1e6)
    expired = (status == "certificate has expired") | (
        leaf.c_after.notnull() & (leaf.c_after.epoch_seconds() * 1_000_000 + grace < leaf.ts.epoch_seconds() * 1_000_000))
    out = []
    for kind, pred in (("self_signed", self_signed), ("expired", expired)):
        hit = leaf.filter(pred).select("client", "server", "tenant", "ts", "uid", "established", "sni",
                                       subject="c_subject", after="c_after")
        out += _group(hit, kind, ["client", "server"], s, extra={
            "names": hit.sni.collect().unique(), "subject": hit.subject.max(), "not_after": hit.after.max()})
    return out


# -- client fingerprints ------------------------------------------------------------------------

def _rare(t, s: Settings) -> list[dict]:
    """Client fingerprints (JA3 and JA4 apart) few internal hosts use, beside a common one."""
    cl = t.filter(t.client_internal)
    fp = ibis.union(cl.filter(cl.ja3.notnull()).mutate(fp=cl.ja3.lower(), fp_kind=ibis.literal("ja3")),
                    cl.filter(cl.ja4.notnull()).mutate(fp=cl.ja4.lower(), fp_kind=ibis.literal("ja4")))
    population = rows(fp.group_by("fp_kind").aggregate(hosts=fp.client.nunique()))
    kinds = [p["fp_kind"] for p in population if p["hosts"] >= s.rare_min_population]
    if not kinds:
        return []
    fp = fp.filter(fp.fp_kind.isin(kinds))
    per_fp = fp.group_by(["fp_kind", "fp"]).aggregate(fp_hosts=fp.client.nunique())
    rare = per_fp.filter(per_fp.fp_hosts <= s.rare_max_hosts)
    common = per_fp.filter(per_fp.fp_hosts > s.rare_max_hosts)
    with_common = fp.join(common, ["fp_kind", "fp"]).select("client", "fp_kind").distinct()
    hit = fp.join(rare, ["fp_kind", "fp"]).join(with_common, ["client", "fp_kind"])
    hit = hit.filter(~hit.server_internal).select("client", "server", "tenant", "ts", "uid", "established", "sni",
                                                  "fp", "fp_kind")
    return _group(hit, "rare_fingerprint", ["client", "fp"], s, extra={
        "names": hit.sni.collect().unique(), "servers": hit.server.nunique(), "fp_kind": hit.fp_kind.max(),
        "server_list": hit.server.collect().unique()})


# -- findings -----------------------------------------------------------------------------------

def _group(hit, kind: str, by: list[str], s: Settings, extra: dict) -> list[dict]:
    agg = hit.group_by(by).aggregate(handshakes=_.count(), start=hit.ts.min(), end=hit.ts.max(),
                                     established=hit.established.fill_null(False).cast("int64").sum(),
                                     tenant=hit.tenant.max(), **extra)
    found = rows(agg.order_by(by))
    if not found:
        return []
    ranked = hit.mutate(rn=ibis.row_number().over(group_by=by, order_by=["ts", "uid"]))
    ev: dict = {}
    for r in rows(ranked.filter(ranked.rn < s.max_listed).select(*by, "uid").order_by([*by, "uid"])):
        ev.setdefault(tuple(r[b] for b in by), []).append(r["uid"])
    for c in found:
        c["kind"] = kind
        c["target"] = c[by[1]]
        c["uids"] = [u for u in ev.get(tuple(c[b] for b in by), []) if u]
        c["names"] = sorted(n for n in (c.get("names") or []) if n)
    return found


def _score(c: dict, s: Settings) -> dict[str, float]:
    if c["kind"] == "name_mismatch":
        parts = {"mismatch": s.mismatch_points}
        if c["claim"] and c["claim"] in OPERATORS:
            parts["impersonation"] = s.impersonation_points
        if c["established"]:
            parts["established"] = s.data_points
        return parts
    if c["kind"] == "rare_fingerprint":
        return {"rare": s.rare_points, "spread": s.spread_points * ramp(c["servers"], 1, s.rare_high_servers)}
    return {c["kind"]: s.self_signed_points if c["kind"] == "self_signed" else s.expired_points}


def _explain(c: dict) -> str:
    client, shakes = c["client"], count(c["handshakes"], "handshake")
    names = ", ".join(c["names"][:3]) + (f" and {len(c['names']) - 3} more" if len(c["names"]) > 3 else "")
    if c["kind"] == "name_mismatch":
        claim = c["claim"]
        who = f"belongs to {claim}" if claim in OPERATORS else f"names {claim}"
        return (f"{client} asked {c['server']} for {names} and got a certificate that {who} "
                f"({c['subject']}) in {shakes}: the certificate does not fit the server name.")
    if c["kind"] == "self_signed":
        return f"{client} accepted a self-signed certificate ({c['subject']}) from {c['server']} " \
               f"({names or 'no server name'}) in {shakes}."
    if c["kind"] == "expired":
        return f"{client} was shown a certificate of {c['server']} ({names or 'no server name'}) that had " \
               f"expired on {c['not_after']:%Y-%m-%d} in {shakes}."
    return (f"{client} used TLS client fingerprint {c['fp_kind'].upper()} {c['target']}, which no other internal "
            f"host uses, in {shakes} with {count(c['servers'], 'destination')} ({names or 'no server name'}).")


def _finding(c: dict, s: Settings) -> Finding:
    servers = c["server_list"] if c["kind"] == "rare_fingerprint" else [c["server"]]
    metrics = {"handshakes": c["handshakes"], "established": c["established"], "server_names": c["names"][:10]}
    if c["kind"] != "rare_fingerprint":
        metrics["subject"] = c["subject"]
    if c["kind"] == "name_mismatch":
        metrics["certificate_of"] = c["claim"]
    if c["kind"] == "expired":
        metrics["not_after"] = c["not_after"].isoformat() if c["not_after"] else None
    if c["kind"] == "rare_fingerprint":
        metrics.update(fingerprint=c["target"], fingerprint_kind=c["fp_kind"], servers=c["servers"])
    limits = {"name_mismatch": (), "self_signed": (), "expired": ("expired_grace_days",),
              "rare_fingerprint": ("rare_max_hosts", "rare_min_population")}[c["kind"]]
    return Finding(
        detection=META.id,
        key=(c["client"], c["kind"], c["target"]),
        score_parts=_score(c, s),
        explanation=_explain(c),
        internal_hosts=[c["client"]],
        external_hosts=sorted(servers)[:10],
        external_names=c["names"][:10],
        channel="tls", start=c["start"], end=c["end"], bytes_out=0,
        evidence={"flows": 0, "tls_handshakes": c["handshakes"], "top_flows": c["uids"], "community_ids": []},
        metrics=metrics,
        thresholds={k: getattr(s, k) for k in limits},
        attack=KIND_ATTACK[c["kind"]],
        tenant=c["tenant"],
    )
