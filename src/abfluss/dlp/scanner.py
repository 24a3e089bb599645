"""Finds German health, tax, bank and contact identifiers in cleartext payloads (DOMAIN.md §2).

Pipeline per payload: candidate patterns, then the check digit, then context (keyword anchors
within ±64 bytes, CSV column headers, clusters of valid KVNRs or tax ids, an ICD code in the same
line as a KVNR). A found value leaves this module only as a `Hit` (category, keyed hash, masked
form, anchored): the raw value is never stored, logged or put into a message. Weak values (IK,
IdNr, ICD, lower-case KVNR, IdNr breaking the 3-adjacent rule, RVNR with an irregular day) are
reported only when anchored; known test identities are suppressed (see ScanSettings).

Speed: every pattern is ASCII, so matching runs on the raw bytes; UTF-8 and Latin-1/cp1252 are
both ASCII-compatible, so this gives exactly the matches of decoding with either and cannot
fail on bad bytes (the ICD dagger is matched in both encodings). The bytes are first translated
into a class string (digit→0, A–Z→A, a–z→a) in which most patterns begin with a long literal such
as `000000000`; the regex engine then skips through text with a fast substring search instead
of testing a character class at every position (per pattern about ten times faster than the
DOMAIN.md regexes as written; see bench/bench_dlp_scan.py for whole-scan figures).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from . import identifiers as ids
from .context import ICD_HINTS, Anchors, CsvHeaders, Payload, _merge
from .keys import Keyed, mask_normalised
from .patterns import (_CLASS_TABLE, _DIGITS, _GROUPED, _IBAN, _ICD, _ICD_MAX, _ICD_START, _KVNR,
                       _LOCAL_PART, _PHONE_PLUS, _PHONE_ZERO, _email_at, may_hold)

CATEGORIES = ("kvnr", "ik", "iban", "idnr", "rvnr", "icd10", "email", "phone")
# Overlapping candidates: the stronger identifier keeps the bytes (a phone-shaped run inside an
# IBAN is part of the IBAN). E-mail addresses only compete with phone numbers.
_PRIORITY = {c: i for i, c in enumerate(("iban", "kvnr", "rvnr", "idnr", "ik", "icd10", "email", "phone"))}

_HEADER_NAME_MAX = 32  # bytes of a line compared with the ignored mail header names
HIT_CACHE = 100_000  # distinct values whose hit (hash, mask) a scanner remembers


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class ScanSettings:
    """Thresholds and suppression lists of the scanner (every field documented in its help)."""
    context_bytes: int = field(default=64, metadata=_help(
        "An anchor keyword within this many bytes before or after a value anchors it (DOMAIN.md §2)."))
    cluster_size: int = field(default=3, metadata=_help(
        "This many distinct valid values of a clustered category in one payload anchor all of them "
        "(a list of insured persons; DOMAIN.md §2.1)."))
    cluster_min_share: float = field(default=0.5, metadata=_help(
        "The cluster rule also needs at least this share of the payload's tokens of that shape to be "
        "valid: a real list is all valid, KVNR-shaped order numbers pass the check digit 1 time in 10."))
    cluster_categories: tuple[str, ...] = field(default=("kvnr", "idnr"), metadata=_help(
        "Categories to which the cluster rule applies."))
    require_anchor: tuple[str, ...] = field(default=("ik", "idnr"), metadata=_help(
        "Categories reported only when anchored (keyword, CSV header, cluster): 9-digit IKs pass "
        "the check 1 time in 10, random 11-digit numbers the IdNr checks about 1 time in 300. "
        "ICD-10 codes always need context (an ICD keyword or a KVNR in the same line)."))
    lowercase_kvnr: bool = field(default=True, metadata=_help(
        "Also accept a lower-case first letter of a KVNR, only when anchored (DOMAIN.md §2.1)."))
    record_max_bytes: int = field(default=4096, metadata=_help(
        "A record is a line; lines are looked for at most this far either way (ICD next to a KVNR, "
        "CSV rows, mail headers)."))
    csv_headers: bool = field(default=True, metadata=_help(
        "A CSV column whose header names a category anchors every value in that column."))
    csv_header_max_bytes: int = field(default=4096, metadata=_help(
        "Longest line still considered as a CSV header."))
    csv_header_max_field: int = field(default=48, metadata=_help(
        "Longest header field (bytes); a line with a longer field is prose or data, not a header."))
    suppress_values: frozenset[str] = field(repr=False, default=frozenset({
        "iban:DE89370400440532013000", "iban:GB82WEST12345698765432"}), metadata=_help(
        "Published sample values ('category:normalised value') never reported: the documentation "
        "IBANs of DOMAIN.md §2.4 and the IBAN registry. Add your own test identities here."))
    suppress_kvnr_ranges: tuple[tuple[str, int, int], ...] = field(
        repr=False, default=(("X0000", 1, 5000),), metadata=_help(
            "KVNR test identities as (prefix, first, last serial between prefix and check digit): "
            "gematik's verification identities X0000 0001–5000 (A_20751)."))
    suppress_email_domains: tuple[str, ...] = field(default=(
        "example", "example.com", "example.net", "example.org", "test", "invalid", "localhost",
        "openssh.com", "libssh.org", "lysator.liu.se"),
        metadata=_help("E-mail domains never reported, subdomains included: RFC 2606 names; the SSH "
                       "algorithm names name@openssh.com etc. of every cleartext SSH key exchange "
                       "(RFC 4250 §4.6.1); add your own service addresses."))
    email_ignore_headers: tuple[str, ...] = field(default=(
        "message-id:", "references:", "in-reply-to:", "content-id:", "resent-message-id:"),
        metadata=_help("Mail header names (lower case) whose lines, folded continuations included, "
                       "hold addr-spec-shaped message identifiers, not e-mail addresses."))
    icd10_codes: frozenset[str] = field(repr=False, default=frozenset(), metadata=_help(
        "Optional ICD-10-GM code list (e.g. from BfArM's kodes.txt, with or without the dot); "
        "empty means structural validation only, since no offline list is available."))


@dataclass(frozen=True)
class Hit:
    """One occurrence of a valid identifier. Never holds the raw value."""
    category: str
    hmac: str
    masked: str
    anchored: bool


class _Cand:
    """A validated candidate inside one scan; repr hides the value."""
    __slots__ = ("cat", "start", "end", "norm", "anchored", "weak", "hidden")

    def __init__(self, cat: str, start: int, end: int, norm: str, anchored: bool = False,
                 weak: bool = False):
        self.cat, self.start, self.end = cat, start, end
        self.norm = norm          # the normalised value (identifiers.normalise)
        self.anchored = anchored  # context already proven by the structure (full KVNR)
        self.weak = weak          # reported only when anchored
        self.hidden = False       # a suppressed test identity

    def __repr__(self) -> str:
        return f"_Cand({self.cat}, {self.start}-{self.end})"


class Scanner:
    """Scans payloads for identifiers; one `Hit` per occurrence (see module docstring)."""

    def __init__(self, key: bytes, settings: ScanSettings | None = None):
        self._mac = Keyed(key)
        self.settings = settings or ScanSettings()
        self._suppress = self.settings.suppress_values
        self._kvnr_prefixes = tuple(pre for pre, _, _ in self.settings.suppress_kvnr_ranges)
        self._require = frozenset(self.settings.require_anchor)
        domains = self.settings.suppress_email_domains
        self._email_domains = frozenset(domains), tuple("." + d for d in domains)
        self._mail_headers = tuple(h.encode() for h in self.settings.email_ignore_headers)
        self._hit_cache: dict[tuple[str, str, bool], Hit] = {}
        self._hashed: dict[tuple[str, str], tuple[str, str]] = {}  # (category, value) -> (HMAC, mask)

    def __repr__(self) -> str:  # the key stays out of logs
        return f"Scanner({self.settings!r})"

    def scan(self, data: bytes | str) -> list[Hit]:
        """One `Hit` per occurrence, in payload order. Bytes may be UTF-8, Latin-1 or cp1252 (or
        broken): matching is on ASCII patterns over the raw bytes and never raises."""
        kept = self._kept(data)
        return self._hits(kept) if kept else []

    def scan_spans(self, data: bytes | str) -> list[tuple[int, int, Hit]]:
        """`scan` with each hit's byte span in ``data`` (to mask values in stored metadata).
        Suppressed test identities are returned too (their hit is None): they are masked as well."""
        kept = self._kept(data, hidden=True)
        shown = [c for c in kept if not c.hidden]
        hits = dict(zip(map(id, shown), self._hits(shown)))
        return [(c.start, c.end, hits.get(id(c))) for c in kept]

    def _kept(self, data: bytes | str, hidden: bool = False) -> list[_Cand]:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        if not raw:
            return []
        cls = raw.translate(_CLASS_TABLE)
        if not may_hold(raw, cls):
            return []
        p = Payload(raw, cls)
        cands = self._candidates(p)
        cands += self._icd(p, [c for c in cands if not c.hidden])
        if not cands:
            return []
        self._anchor(p, [c for c in cands if not c.hidden])
        # Suppressed test identities still claim their bytes (no phone number inside a sample IBAN).
        kept = self._claim([c for c in cands if c.hidden or c.anchored
                            or not (c.weak or c.cat in self._require)])
        return kept if hidden else [c for c in kept if not c.hidden]

    # --- candidates ------------------------------------------------------------------------------
    def _candidates(self, p: Payload) -> list[_Cand]:
        out = self._kvnr(p) + self._digits(p) + self._iban(p) + self._email(p) + self._phone(p)
        return self._hide(out)

    def _hide(self, cands: list[_Cand]) -> list[_Cand]:
        for c in cands:
            c.hidden = c.hidden or self._suppressed(c)
        return cands

    def _kvnr(self, p: Payload) -> list[_Cand]:
        out = []
        for m in _KVNR.finditer(p.cls):
            s, e = m.start() - 1, m.end()
            b = p.raw[s:e]
            if b[0] >= 97:  # lower case: needs an anchor
                if self.settings.lowercase_kvnr and e - s == 10 and ids.kvnr_ok_bytes(b.upper()):
                    out.append(_Cand("kvnr", s, e, b.upper().decode("ascii"), weak=True))
            elif e - s == 10:
                p.shaped["kvnr"] += 1
                if ids.kvnr_ok_bytes(b):
                    out.append(_Cand("kvnr", s, e, b.decode("ascii")))
            elif ids.kvnr_ok_bytes(b[:10]) and ids.is_ik(b[10:19].decode("ascii")):
                # Full KVNR (§2.1): Versicherten-ID + IK [+ ID of the main insured] + check digit
                # (its algorithm is not specified; two valid inner checks leave a 1:100 chance).
                v = b.decode("ascii")
                out += [_Cand("kvnr", s, s + 10, v[:10], True), _Cand("ik", s + 10, s + 19, v[10:19], True)]
                if len(v) == 30 and ids.kvnr_ok_bytes(b[19:29]):
                    out.append(_Cand("kvnr", s + 19, s + 29, v[19:29], True))
        return out

    def _digits(self, p: Payload) -> list[_Cand]:
        out = []
        for rx in (_DIGITS, _GROUPED):
            for m in rx.finditer(p.cls):
                s, e = m.span()
                c = self._digit_cand(p, p.raw[s:e].decode("ascii"), s, e)
                if c:
                    out.append(c)
        return out

    @staticmethod
    def _digit_cand(p: Payload, v: str, s: int, e: int) -> _Cand | None:
        compact = v.replace(" ", "")
        if len(compact) == 9 and ids.is_ik(compact):
            return _Cand("ik", s, e, compact)
        if len(compact) == 11:
            p.shaped["idnr"] += compact[0] != "0"
        if len(compact) == 11 and ids.idnr_checksum_ok(compact):
            # The 3-adjacent rule is [verify] in DOMAIN.md §2.5: breaking it needs an anchor.
            return _Cand("idnr", s, e, compact, weak=not ids.idnr_adjacent_ok(compact))
        if len(compact) == 12 and ids.is_rvnr(compact):
            # Irregular day values exist (§2.7): not rejected, but they need an anchor.
            return _Cand("rvnr", s, e, compact, weak=not ids.rvnr_date_regular(compact))
        return None

    def _iban(self, p: Payload) -> list[_Cand]:
        out = []
        for m in _IBAN.finditer(p.cls):
            text = p.raw[m.start():m.end()].decode("ascii")
            end = ids.iban_end(text)
            if end:
                out.append(_Cand("iban", m.start(), m.start() + end, text[:end].replace(" ", "")))
                continue
            end = ids.iban_end(text, ids.iban_shaped)
            if end:  # a mistyped IBAN: never reported, but no phone number or IK is read out of it
                c = _Cand("iban", m.start(), m.start() + end, "")
                c.hidden = True
                out.append(c)
        return out

    def _email(self, p: Payload) -> list[_Cand]:
        out, raw = [], p.raw
        i = raw.find(b"@")
        if i < 0:
            return out
        local = raw.translate(_LOCAL_PART)
        while i >= 0:
            m = _email_at(raw, local, i)
            if m and m.start() <= i:
                v = m.group().decode("ascii")
                if not self._email_ignored(p, m.start(), v):
                    out.append(_Cand("email", m.start(), m.end(), v.lower()))
                i = raw.find(b"@", m.end())
            else:
                i = raw.find(b"@", i + 1)
        return out

    def _email_ignored(self, p: Payload, start: int, v: str) -> bool:
        if p.raw[max(0, start - 2):start].endswith((b"!", b"!~")):
            return True  # an IRC hostmask nick!user@host, not an address
        domain = v.rpartition("@")[2].lower()
        if domain in self._email_domains[0] or domain.endswith(self._email_domains[1]):
            return True
        limit = self.settings.record_max_bytes
        ls, _ = p.line_bounds(start, limit)
        while ls > 1 and p.raw[ls:ls + 1] in (b" ", b"\t"):  # folded header continuation
            ls, _ = p.line_bounds(ls - 2, limit)
        return p.raw[ls:ls + _HEADER_NAME_MAX].lower().startswith(self._mail_headers)

    def _phone(self, p: Payload) -> list[_Cand]:
        out = []
        for rx in (_PHONE_PLUS, _PHONE_ZERO):
            for m in rx.finditer(p.raw):
                nsn = ids.phone_nsn(m.group().decode("ascii"))
                if nsn:
                    out.append(_Cand("phone", m.start(), m.end(), "+49" + nsn))
        return out

    def _icd(self, p: Payload, cands: list[_Cand]) -> list[_Cand]:
        """ICD codes are only searched where they can be reported: in the whole payload when an
        ICD keyword occurs in it, otherwise only on the lines (records) holding a valid KVNR."""
        starts = [m.start() for m in _ICD_START.finditer(p.cls)]
        if not starts:
            return []
        if not _icd_hinted(p):
            limit = self.settings.record_max_bytes
            lines = _merge(p.line_bounds(c.start, limit) for c in cands if c.cat == "kvnr" and not c.weak)
            starts = [s for s in starts if _in_lines(lines, s)]
        out = []
        for s in starts:
            full = _ICD.match(p.raw, s, s + _ICD_MAX)
            code = full and full.group(1).decode("ascii").removesuffix(".-")
            if code and self._icd_listed(code):
                out.append(_Cand("icd10", full.start(), full.end(), code, weak=True))
        return self._hide(out)

    def _icd_listed(self, code: str) -> bool:
        codes = self.settings.icd10_codes
        return not codes or code in codes or code.replace(".", "") in codes

    def _suppressed(self, c: _Cand) -> bool:
        norm = c.norm
        if f"{c.cat}:{norm}" in self._suppress:
            return True
        return c.cat == "kvnr" and norm.startswith(self._kvnr_prefixes) and any(
            norm.startswith(pre) and norm[len(pre):9].isdigit() and lo <= int(norm[len(pre):9]) <= hi
            for pre, lo, hi in self.settings.suppress_kvnr_ranges)

    # --- context -----------------------------------------------------------------------------------
    def _anchor(self, p: Payload, cands: list[_Cand]) -> None:
        s = self.settings
        self._cluster(p, cands)
        self._same_record_icd(p, cands, s.record_max_bytes)
        open_ = [c for c in cands if not c.anchored]
        if not open_:
            return
        near = Anchors(p, [(c.start, c.end) for c in open_], s.context_bytes, frozenset(c.cat for c in open_))
        headers = CsvHeaders(p, sorted(c.start for c in cands), s.csv_header_max_bytes,
                             s.csv_header_max_field, s.record_max_bytes) if s.csv_headers else None
        for c in open_:
            c.anchored = (near.near(c.start, c.end, c.cat)
                          or bool(headers and headers.column_anchors(p, c.start, c.end, c.cat)))

    def _cluster(self, p: Payload, cands: list[_Cand]) -> None:
        """A list of insured persons (or tax ids) anchors itself: enough distinct valid values, and
        most tokens of that shape valid (random order numbers pass a mod-10 check 1 time in 10)."""
        s = self.settings
        for cat in s.cluster_categories:
            valid = [c for c in cands if c.cat == cat and not c.weak]
            if (len({c.norm for c in valid}) >= s.cluster_size
                    and len(valid) >= s.cluster_min_share * p.shaped[cat]):
                for c in valid:
                    c.anchored = True

    @staticmethod
    def _same_record_icd(p: Payload, cands: list[_Cand], limit: int) -> None:
        """An ICD code in the same line (record) as a valid KVNR is anchored (DOMAIN.md §2.6)."""
        starts = sorted(c.start for c in cands if c.cat == "kvnr" and not c.weak)
        for c in cands:
            if c.cat == "icd10" and starts:
                lo, hi = p.line_bounds(c.start, limit)
                i = bisect_left(starts, lo)
                c.anchored = c.anchored or (i < len(starts) and starts[i] < hi)

    # --- output ------------------------------------------------------------------------------------
    @classmethod
    def _claim(cls, cands: list[_Cand]) -> list[_Cand]:
        """The candidates that keep their bytes, in payload order. Only overlapping candidates
        compete, so the payload is cut into runs of overlapping spans first: most candidates
        overlap nothing and are kept as they are."""
        kept: list[_Cand] = []
        run: list[_Cand] = []
        end = -1
        for c in sorted(cands, key=_start):
            if c.start >= end:
                if len(run) > 1:
                    kept += cls._claim_run(run)
                elif run:
                    kept.append(run[0])
                run = [c]
                end = c.end
            else:
                run.append(c)
                end = max(end, c.end)
        if len(run) > 1:
            kept += cls._claim_run(run)
        elif run:
            kept.append(run[0])
        return kept

    @staticmethod
    def _claim_run(cands: list[_Cand]) -> list[_Cand]:
        by_cat: dict[str, list[_Cand]] = {}
        for c in cands:
            by_cat.setdefault(c.cat, []).append(c)
        strong: list[tuple[int, int]] = []
        emails: list[tuple[int, int]] = []
        kept = []
        for cat in sorted(by_cat, key=_PRIORITY.get):
            own = emails if cat == "email" else strong
            against = (emails,) if cat == "email" else (strong, emails) if cat == "phone" else (strong,)
            batch = [c for c in by_cat[cat] if not any(_overlaps(spans, c.start, c.end) for spans in against)]
            own.extend((c.start, c.end) for c in batch)
            own.sort()
            kept += batch
        return sorted(kept, key=_start)

    def _hits(self, cands: list[_Cand]) -> list[Hit]:
        # Hits are kept across scans (a chunk's context is scanned again, lists repeat values),
        # bounded: a cache is dropped whole when it is full. The keyed hash is computed once per
        # distinct value (an anchored and an unanchored occurrence share it).
        cache, hashed = self._hit_cache, self._hashed
        if len(cache) > HIT_CACHE:
            cache.clear()
        if len(hashed) > HIT_CACHE:
            hashed.clear()
        out = []
        for c in cands:
            key = (c.cat, c.norm, c.anchored)
            hit = cache.get(key)
            if hit is None:
                value = (c.cat, c.norm)
                hm = hashed.get(value)
                if hm is None:
                    # keys.value_hash, the value normalised already
                    hm = hashed[value] = (self._mac.hexdigest(f"{c.cat}:{c.norm}".encode()),
                                          mask_normalised(c.cat, c.norm))
                hit = cache[key] = Hit(c.cat, hm[0], hm[1], c.anchored)
            out.append(hit)
        return out


def _start(c: _Cand) -> int:
    return c.start


# ICD_HINTS grouped by their lower-case form: a spelling can only occur where its lower-case form
# occurs in the lower-case copy, so each group costs one search when absent (the usual case)
# instead of one per spelling, and the anchor search reuses that copy (Payload.low).
_ICD_HINT_GROUPS = tuple((low, tuple(h for h in ICD_HINTS if h.lower() == low))
                         for low in dict.fromkeys(h.lower() for h in ICD_HINTS))


def _icd_hinted(p: Payload) -> bool:
    """Whether one of ICD_HINTS occurs in the payload (exactly ``any(h in p.raw for h in ICD_HINTS)``)."""
    low, raw = p.low, p.raw
    return any(lower in low and any(h in raw for h in spellings) for lower, spellings in _ICD_HINT_GROUPS)


def _in_lines(lines: list[tuple[int, int]], pos: int) -> bool:
    i = bisect_left(lines, (pos + 1,)) - 1
    return i >= 0 and lines[i][0] <= pos < lines[i][1]


def _overlaps(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    i = bisect_left(spans, (start, start))
    return (i < len(spans) and spans[i][0] < end) or (i > 0 and spans[i - 1][1] > start)
