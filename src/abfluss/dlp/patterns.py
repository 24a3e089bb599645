"""The candidate patterns of the identifier scanner (``scanner``), on the raw bytes and on their
class string (digit→0, A–Z→A, a–z→a), and the exact test that none of them can match
(``may_hold``). The scanner judges the candidates (check digits, context, suppression).
"""

from __future__ import annotations

import re


_CLASS_TABLE = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                               b"0" * 10 + b"A" * 26 + b"a" * 26)


def _bounded(prefix: str, rest: str = "", right: str = r"(?![A0a])(?![.,]0)",
             decimal: bool = True) -> re.Pattern[bytes]:
    """Literal `prefix` (searched fast), not preceded by a letter/digit, then `rest` and the right
    boundary, all on the class string. With `decimal`, a value of digits only is also not taken
    after `digit.`/`digit,` (the fraction of `12,5…` in prose); a value that starts with a letter
    can be no fraction, so for it the byte before is a separator, whatever it is (CSV, SQL)."""
    p = re.escape(prefix)
    guard = f"(?<!0[.,]{p})" if decimal else ""
    return re.compile(f"{p}(?<![A0a]{p}){guard}{rest}{right}".encode())


# KVNR: the match starts at the 9 digits (a digit literal is found faster than a letter class) and
# looks back for the letter: 10-char ID, or the full 20/30-char KVNR. Lower case needs an anchor.
# A KVNR starts with a letter, so `1990,A123456780` is a date column and a KVNR, never a decimal
# fraction; only `.digit` after it (a version or serial suffix) stops it. A comma or semicolon
# after it is the next column (`A123456780,1990-01-02`).
_KVNR = re.compile(rb"000000000(?<=[Aa]000000000)(?<![A0a][Aa]000000000)"
                   rb"(?:0{10}|0{9}A0{10})?(?![A0a])(?!\.0)")
_DIGITS = _bounded("00000000", "(?:A000|000|0)")              # IK 9, IdNr 11, RVNR 8+letter+3
_GROUPED = _bounded("00 000", "(?: 000 000|000 A 000)", r"(?![A0a])(?![.,]0)(?! 0)")  # IdNr / RVNR
_IBAN = _bounded("AA00", "(?: ?[A0]{4}){2,7}(?: ?[A0]{1,3})?", r"(?![A0a])", decimal=False)
_ICD_START = _bounded("A00", "", r"(?![A0a])", decimal=False)  # not a KVNR-shaped token
_ICD = re.compile(rb"([A-Z][0-9]{2}(?:\.(?:[0-9]{1,2}|-))?)(?:\+|\*|!|\xe2\x80\xa0|\x86)?"
                  rb"(?:[ ]?[GVZA][RLB]?|[ ]?[RLB][GVZA]?)?(?![A-Za-z0-9])")
_ICD_MAX = 24  # bytes: longer than any ICD notation (A00.00† GL), so the end is never cut
_PHONE_TAIL = rb"[ \-/]?(?:\(0\)[ ]?)?[1-9][0-9]{1,4}(?:[ \-/]?[0-9]){3,10}(?![A-Za-z0-9])(?![.,][0-9])"
_PHONE_PLUS = re.compile(rb"\+49(?<![A-Za-z0-9+]\+49)" + _PHONE_TAIL)
_PHONE_ZERO = re.compile(rb"0(?<![A-Za-z0-9+]0)(?<![0-9][.,]0)(?:049)?" + _PHONE_TAIL)
_EMAIL = re.compile(rb"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@"
                    rb"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![A-Za-z0-9-])")
_EMAIL_BEFORE, _EMAIL_AFTER = 64, 256  # local part ≤ 64, domain ≤ 253 characters
_LOCAL_PART = bytes(1 if b in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-" else 0
                    for b in range(256))  # for bytes.translate: 1 for the bytes of a local part


def may_hold(raw: bytes, cls: bytes) -> bool:
    """False only when no candidate pattern can match ``raw`` (``cls``: its class string), so the
    scan would find nothing: most small units (a DNS message, a short request) are ruled out
    here in about 2 µs instead of running every search (about 17 µs). Exact, pattern by pattern:
    every match of ``_KVNR`` (9 digits) and ``_DIGITS`` (8) contains the class literal
    ``00000000``, every ``_GROUPED`` match ``00 000``, every e-mail address an ``@`` (``_email``
    looks for nothing else first) and every ``_PHONE_PLUS`` match ``+49``; ``_IBAN``,
    ``_ICD_START`` (the only source of ICD candidates) and ``_PHONE_ZERO`` are searched as
    they are, each from a literal (``AA00``, ``A00``, ``0``) the engine skips to quickly.
    Context (anchors, CSV headers, clusters) only ever judges candidates, and the ``shaped``
    counts live in one scan's ``Payload``: without a candidate there is nothing to judge.
    tests/test_dlp_fastpaths.py scans with and without this test and compares."""
    return (b"@" in raw or b"00000000" in cls or b"+49" in raw or b"00 000" in cls
            or _PHONE_ZERO.search(raw) is not None or _ICD_START.search(cls) is not None
            or _IBAN.search(cls) is not None)


def _email_at(raw: bytes, local: bytes, i: int) -> re.Match | None:
    """The first e-mail match in the window around the ``@`` at ``i`` that ends after it (as
    ``_EMAIL.search`` from ``i - _EMAIL_BEFORE`` would find it, skipping earlier matches). The
    local part can only start where the run of local-part bytes before ``i`` starts (``local``:
    0 for every other byte), so the pattern is matched there once; only when an ``@`` precedes
    that run (an earlier address could reach into it) is the window searched as a whole."""
    lo = max(0, i - _EMAIL_BEFORE)
    s = local.rfind(0, lo, i) + 1
    if s == 0 and lo and local[lo - 1]:
        return None  # a local part longer than 64 bytes
    s = s or lo
    if s == i:
        return None  # no local part
    if s and raw[s - 1] == 0x40:
        m = _EMAIL.search(raw, lo, i + _EMAIL_AFTER)
        while m and m.end() <= i:
            m = _EMAIL.search(raw, m.end(), i + _EMAIL_AFTER)
        return m
    return _EMAIL.match(raw, s, i + _EMAIL_AFTER)
