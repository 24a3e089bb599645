"""DNS TXT answers of high entropy: commands or payloads delivered to an internal host inside DNS.

Malware that takes its orders over DNS asks its C2 domain for TXT records and gets them back
encoded (base64, hex, encrypted): an inbound channel no proxy sees. Slips flags a TXT answer
whose character entropy reaches 5 bits (its "DNS TXT answer with high entropy"). Here, per
internal client and registered domain (public suffix list), each distinct TXT answer is split
into its character strings (Zeek writes ``TXT <length> <string>`` per string, the pcap decoder
joins them with spaces), the escapes are undone, and an answer of at least ``min_length``
characters counts as encoded when its entropy reaches ``txt_entropy`` bits per character
(random base64 reaches 6, hex 4, English text about 4.2), or when the pooled text of the
pair's distinct answers does (from ``pool_min_answers`` answers): a string of 40 characters
cannot show more than 5.3 bits, so a tunnel's short answers are judged together.

Records that are high-entropy by design are not counted: SPF, DKIM, DMARC, MTA-STS, TLS-RPT
and the domain-verification tokens services ask site owners to publish (``google-site-
verification=…``, ``MS=…``) — see ``WELL_KNOWN``. Only DNS servers the window keeps are looked
at: link-local multicast (mDNS printers announcing ``pdl=application/…``) never is.

One encoded answer is low: a single odd record. Many distinct ones, or kilobytes of them, are
a channel (medium, then high). Where the names themselves carry data, ``dns_tunnel`` reports
the same domain for the outbound direction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import ibis
from ibis import _

from ..findings import Finding
from ..dns_names import unescape
from ..units import count
from . import Meta, Telemetry
from ._stats import human_bytes, ramp, rows, shannon_entropy

META = Meta(
    id="dns_txt_entropy",
    title="Encoded data in DNS TXT answers (inbound C2 over DNS)",
    attack=("T1071.004", "T1105", "T1132.001"),
    description="An internal host received DNS TXT answers whose text is encoded data (high "
                "character entropy, not a mail or verification record): commands or payloads "
                "delivered over DNS.",
    runbook="1. Look at the answers (metrics.examples) and the domain: who owns it, how old it is, "
            "which server answered. 2. Find the process on the host that asked (DNS client logs, "
            "EDR): scripts and implants use DNS TXT for staging (PowerShell, Cobalt Strike's DNS "
            "stager). 3. Block the domain at the resolver, look for the host's other findings "
            "(dns_tunnel for data going out the same way).",
    channel="dns",
    inputs=("dns",),
)

#: TXT records that are random by design (keys, tokens) and published for everyone to fetch.
WELL_KNOWN = re.compile(
    r"^\s*(v=spf1|v=dkim1|k=rsa|v=dmarc1|v=stsv1|v=tlsrptv1|v=bimi1|v=verifydomain|"
    r"[a-z0-9_.-]*(site-|domain-)?verification[=:]|ms=|mscid=|globalsign|docusign=|"
    r"_?[a-z0-9-]+-challenge[=:]|ca3-|zoom_verify|atlassian-domain|apple-domain)", re.IGNORECASE)
_ZEEK_TXT = re.compile(r"TXT (\d+) ")


@dataclass(frozen=True)
class Settings:
    txt_entropy: float = field(default=5.0, metadata={
        "help": "Character entropy (bits per character) from which a TXT answer counts as encoded "
                "(Slips: 5; random base64 reaches 6, English text about 4.2)."})
    min_length: int = field(default=32, metadata={
        "help": "Characters a TXT answer needs before its entropy is judged (shorter text cannot "
                "reach 5 bits per character)."})
    pool_min_answers: int = field(default=3, metadata={
        "help": "Distinct answers of one client and domain from which their pooled entropy decides "
                "(short answers cannot show theirs one by one)."})
    answer_points: float = field(default=30.0, metadata={
        "help": "Points for one encoded TXT answer (low)."})
    many_points: float = field(default=30.0, metadata={
        "help": "Points added, rising on a log scale, up to high_answers distinct encoded answers."})
    high_answers: int = field(default=20, metadata={
        "help": "Distinct encoded answers that give the full many_points."})
    volume_points: float = field(default=15.0, metadata={
        "help": "Points added, rising on a log scale from 1 KB, at volume_high bytes of encoded text."})
    volume_high: float = field(default=64_000.0, metadata={
        "help": "Bytes of encoded answer text that give the full volume points."})
    sample: int = field(default=200, metadata={
        "help": "Distinct TXT answers per client and queried name that are measured."})
    max_examples: int = field(default=3, metadata={"help": "Encoded answers quoted per finding (60 characters each)."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    d = tel.dns
    if d is None:
        return []
    txt = d.filter(d.client_internal & (d.qtype == "TXT") & d.answers.notnull() & (d.answers.length() > 0))
    ans = txt.select("orig_h", "resp_h", "ts", "uid", query=txt.query.lower(), answer=txt.answers.unnest())
    per = (ans.group_by(["orig_h", "query", "answer"])
           .aggregate(n=_.count(), start=_.ts.min(), end=_.ts.max(), server=_.resp_h.max(), uid=_.uid.min()))
    per = per.mutate(rn=ibis.row_number().over(group_by=["orig_h", "query"], order_by=["answer"]))
    got = rows(per.filter(per.rn < s.sample).drop("rn").order_by(["orig_h", "query", "answer"]))
    groups: dict[tuple, dict] = {}
    for r in got:
        text = payload(r["answer"] or "")
        if len(text) < s.min_length or WELL_KNOWN.match(text):
            continue
        key = (r["orig_h"], registered_domain(r["query"] or ""))
        groups.setdefault(key, []).append((text, r))
    found = []
    for (host, domain), answers in sorted(groups.items()):
        # Short answers cannot show their entropy one by one (41 base64 characters measure 4.7
        # bits); pooled, the distinct answers of one domain can.
        pooled = shannon_entropy("".join(sorted({t for t, _ in answers})))
        pool_ok = len({t for t, _ in answers}) >= s.pool_min_answers and pooled >= s.txt_entropy
        enc = [(t, r) for t, r in answers if pool_ok or shannon_entropy(t) >= s.txt_entropy]
        if enc:
            found.append(_finding(host, domain, enc, pooled if pool_ok else None, s))
    return found


def payload(answer: str) -> str:
    """The text of a TXT answer as stored (Zeek's ``TXT <len> <string> …`` or strings joined by a
    space), its character strings joined, escapes undone."""
    if answer.startswith("TXT "):
        parts, pos = [], 0
        while (m := _ZEEK_TXT.match(answer, pos)) is not None:
            start = m.end()
            # the length counts bytes; an escaped byte (\xNN) is four characters of the log
            text, k, i = [], int(m.group(1)), start
            while k > 0 and i < len(answer):
                step = 4 if answer.startswith("\\x", i) and re.match(r"\\x[0-9a-fA-F]{2}", answer[i:i + 4]) else 1
                text.append(answer[i:i + step])
                i, k = i + step, k - 1
            parts.append("".join(text))
            pos = i + 1 if i < len(answer) and answer[i] == " " else i
        if parts:
            return unescape("".join(parts))
    return unescape(answer.replace(" ", ""))


@lru_cache(maxsize=1)
def _psl():
    from publicsuffixlist import PublicSuffixList
    return PublicSuffixList()


def registered_domain(name: str) -> str:
    name = name.rstrip(".").lower()
    return _psl().privatesuffix(name) or name


def _finding(host: str, domain: str, enc: list, pooled: float | None, s: Settings) -> Finding:
    texts = sorted({t for t, _ in enc})
    n, size = len(texts), sum(len(t) for t in texts)
    lookups = sum(r["n"] for _, r in enc)
    entropy = pooled if pooled is not None else max(shannon_entropy(t) for t in texts)
    parts = {"encoded_answer": s.answer_points,
             "many": s.many_points * ramp(n, 1, s.high_answers),
             "volume": s.volume_points * ramp(size, 1000, s.volume_high)}
    examples = [t[:60] for t in sorted(texts, key=lambda a: (-len(a), a))[: s.max_examples]]
    how = f"{entropy:.1f} bits per character" + (" pooled" if pooled is not None else "")
    sentence = (f"{host} received {count(n, 'answer_txt')} of encoded text ({human_bytes(size)}, {how}) for "
                f"{domain} in {count(lookups, 'lookup')}: data or commands delivered over DNS.")
    return Finding(
        detection=META.id,
        key=(host, domain),
        score_parts=parts,
        explanation=sentence,
        internal_hosts=[host],
        external_hosts=sorted({r["server"] for _, r in enc if r["server"]}),
        # the registered domain first: it is what a block or a report names (as dns_tunnel does)
        external_names=[domain, *sorted({r["query"] for _, r in enc if r["query"] and r["query"] != domain})[:9]],
        channel="dns", start=min(r["start"] for _, r in enc), end=max(r["end"] for _, r in enc), bytes_out=0,
        evidence={"flows": 0, "dns_queries": lookups, "top_flows": sorted({r["uid"] for _, r in enc if r["uid"]})[:10],
                  "community_ids": []},
        metrics={"encoded_answers": n, "answer_bytes": size, "entropy": round(entropy, 2),
                 "pooled": pooled is not None, "lookups": lookups, "examples": examples},
        thresholds={"txt_entropy": s.txt_entropy, "min_length": s.min_length},
        attack=list(META.attack),
        tenant=None,
    )
