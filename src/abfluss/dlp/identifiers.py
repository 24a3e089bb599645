"""Check-digit and structure validators for the identifiers of DOMAIN.md §2, implemented in-house.

Every function takes a candidate string and returns a bool (or a normalised str); none raises on a
bad value and none puts the value into a message, so nothing here can leak an identifier.
python-stdnum is used only in the tests, as an oracle for IBAN and IdNr.
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections import Counter

# DOMAIN.md §2.6 regex; the code itself is group 1, marks and certainty follow.
_ICD = re.compile(r"([A-Z][0-9]{2}(?:\.(?:[0-9]{1,2}|-))?)[†+*!]?(?:[ ]?[GVZA][RLB]?|[ ]?[RLB][GVZA]?)?")
# DOMAIN.md §2.8 regexes (without their outer boundaries: these validate a whole string).
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_PHONE = re.compile(r"(\+49|0049|0)[ \-/]?(\(0\)[ ]?)?[1-9][0-9]{1,4}(?:[ \-/]?[0-9]){3,10}")
_KVNR = re.compile(r"[A-Z][0-9]{9}")
_RVNR = re.compile(r"[0-9]{8}[A-Z][0-9]{3}")
_NON_DIGITS = bytes(b for b in range(256) if not 48 <= b <= 57)
PHONE_NSN_DIGITS = (6, 11)  # DOMAIN.md §2.8 post-check: national significant number length

# IBAN registry (SWIFT IBAN registry v101): country -> BBAN structure, n = digits, a = upper-case
# letters, c = letters or digits. Length and structure reject most mod-97 coincidences.
_IBAN_REGISTRY = """
AD:4n4n12c AE:3n16n AL:8n16c AT:5n11n AZ:4a20c BA:3n3n8n2n BE:3n7n2n BG:4a4n2n8c BH:4a14c BI:5n5n11n2n
BR:8n5n10n1a1c BY:4c4n16c CH:5n12c CR:4n14n CY:3n5n16c CZ:4n16n DE:8n10n DJ:5n5n11n2n DK:4n9n1n
DO:4c20n EE:2n14n EG:4n4n17n ES:4n4n1n1n10n FI:3n11n FK:2a12n FO:4n9n1n FR:5n5n11c2n GB:4a6n8n GE:2a16n
GI:4a15c GL:4n9n1n GR:3n4n16c GT:4c20c HN:4a20n HR:7n10n HU:3n4n1n15n1n IE:4a6n8n IL:3n3n13n IQ:4a3n12n
IS:4n2n6n10n IT:1a5n5n12c JO:4a4n18c KW:4a22c KZ:3n13c LB:4n20c LC:4a24c LI:5n12c LT:5n11n LU:3n13c
LV:4a13c LY:3n3n15n MC:5n5n11c2n MD:2c18c ME:3n13n2n MK:3n10c2n MN:4n12n MR:5n5n11n2n MT:4a5n18c
MU:4a2n2n12n3n3a NI:4a20n NL:4a10n NO:4n6n1n OM:3n16c PK:4a16c PL:8n16n PS:4a21c PT:4n4n11n2n QA:4a21c
RO:4a16c RS:3n13n2n RU:9n5n15c SA:2n18c SC:4a2n2n16n3a SD:2n12n SE:3n16n1n SI:5n8n2n SK:4n6n10n
SM:1a5n5n12c SO:4n3n12n ST:4n4n11n2n SV:4a20n TL:3n14n2n TN:2n3n13n2n TR:5n1n16c UA:6n19c VA:3n15n
VG:4a16n XK:4n10n2n YE:4a4n18c
"""
_CLASS = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Z0-9]"}


def _iban_formats() -> dict[str, tuple[int, re.Pattern[str]]]:
    out = {}
    for entry in _IBAN_REGISTRY.split():
        cc, spec = entry.split(":")
        parts = re.findall(r"(\d+)([nac])", spec)
        out[cc] = (4 + sum(int(n) for n, _ in parts),
                   re.compile("".join(f"{_CLASS[k]}{{{n}}}" for n, k in parts)))
    return out


IBAN_FORMATS = _iban_formats()  # country -> (total IBAN length, BBAN pattern)


def _qs(p: int) -> int:
    """Quersumme of one product (products here are below 100)."""
    return p // 10 + p % 10


# Quersumme of 2 × digit indexed by the digit's byte: summing `digits.translate(_QS2)` does the
# doubled positions of a mod-10 check in C (the scanner validates many candidates).
_QS2 = bytes(_qs(2 * (b - 48)) if 48 <= b <= 57 else 0 for b in range(256))
_ZERO = ord("0")


def _weighted_qs(digits: str, weights: tuple[int, ...]) -> int:
    """Sum of the Quersummen of digit × weight, mod 10 (the general form, used for the RVNR)."""
    return sum(_qs(int(d) * w) for d, w in zip(digits, weights, strict=True)) % 10


def _mod10_12(digits: str) -> int:
    """Weights 1,2,1,2,… from the left: the same as `_weighted_qs(digits, (1, 2) * n)`, faster."""
    b = digits.encode("ascii")
    return (sum(b[0::2]) - _ZERO * len(b[0::2]) + sum(b[1::2].translate(_QS2))) % 10


_LETTER_DIGITS = {chr(65 + i): f"{i + 1:02d}" for i in range(26)}


def _letter_digits(letter: str) -> str:
    """A=01 … Z=26, zero-padded (the left-to-right weighting needs the padding, DOMAIN.md §2.1)."""
    return _LETTER_DIGITS[letter]


# --- KVNR (§2.1) -------------------------------------------------------------------------------
def kvnr_check_digit(first9: str) -> int:
    """Check digit of the letter + 8 digits of a Versicherten-ID."""
    return _mod10_12(_letter_digits(first9[0]) + first9[1:9])


def kvnr_ok_bytes(b: bytes) -> bool:
    """`is_kvnr` for 10 ASCII bytes already known to be an upper-case letter and 9 digits (the
    scanner's hot path): the same weights 1,2,… over the letter's two digits and the 8 digits."""
    letter = b[0] - 64
    total = (letter // 10 + _QS2[48 + letter % 10] + sum(b[1:9:2]) - 4 * _ZERO
             + sum(b[2:9:2].translate(_QS2)))
    return total % 10 == b[9] - _ZERO


def is_kvnr(value: str) -> bool:
    """Letter A–Z, 8 digits and a valid check digit (the 10-character unchangeable part)."""
    return bool(_KVNR.fullmatch(value)) and kvnr_ok_bytes(value.encode("ascii"))


# --- IK (§2.2) ---------------------------------------------------------------------------------
def is_ik(value: str) -> bool:
    """Nine digits; digits 3–8 weighted 2,1,2,1,2,1 give digit 9."""
    return (len(value) == 9 and value.isascii() and value.isdigit()
            and _mod10_12("0" + value[2:8]) == int(value[8]))  # a leading 0 shifts to 2,1,2,…


# --- IBAN (§2.4) -------------------------------------------------------------------------------
_IBAN_LETTERS = {ord(ch): str(ord(ch) - 55) for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}  # A=10 … Z=35


def iban_mod97(compact: str) -> bool:
    """ISO 7064 MOD 97-10 over an IBAN with the first four characters moved to the end."""
    s = (compact[4:] + compact[:4]).translate(_IBAN_LETTERS)
    return s.isascii() and s.isdigit() and int(s) % 97 == 1


def is_iban(value: str) -> bool:
    """Country in the registry, registry length and BBAN structure, and the mod-97 check."""
    compact = value.replace(" ", "")
    fmt = IBAN_FORMATS.get(compact[:2])
    if fmt is None or len(compact) != fmt[0] or not compact[2:4].isdigit():
        return False
    return bool(fmt[1].fullmatch(compact[4:])) and iban_mod97(compact)


def iban_shaped(value: str) -> bool:
    """Country, registry length and BBAN structure, without the mod-97 check."""
    compact = value.replace(" ", "")
    fmt = IBAN_FORMATS.get(compact[:2])
    return (fmt is not None and len(compact) == fmt[0] and compact[2:4].isdigit()
            and bool(fmt[1].fullmatch(compact[4:])))


def iban_end(text: str, check=is_iban) -> int | None:
    """Length of the valid IBAN at the start of a greedy match: the registry length of its country
    decides where it ends, which must fall on a group boundary (a number after it is no part).
    With ``check=iban_shaped`` the same for a token of an IBAN's shape whose check fails."""
    fmt = IBAN_FORMATS.get(text[:2])
    if fmt is None:
        return None
    if " " not in text:
        return fmt[0] if len(text) == fmt[0] and check(text) else None
    n = 0
    for i, ch in enumerate(text):
        if ch != " ":
            n += 1
            if n == fmt[0]:
                end = i + 1
                ok = (end == len(text) or text[end] == " ") and check(text[:end])
                return end if ok else None
    return None


# --- IdNr (§2.5) -------------------------------------------------------------------------------
def idnr_structure_ok(value: str) -> bool:
    """11 digits, no leading 0, exactly one digit of the first 10 repeated (2 or 3 times)."""
    if len(value) != 11 or not value.isascii() or not value.isdigit() or value[0] == "0":
        return False
    repeated = [c for c in Counter(value[:10]).values() if c > 1]
    return len(repeated) == 1 and repeated[0] in (2, 3)


def idnr_check_digit(first10: str) -> int:
    """ISO 7064 MOD 11,10."""
    p = 10
    for d in first10:
        s = (int(d) + p) % 10 or 10
        p = (2 * s) % 11
    return (11 - p) % 10


def idnr_adjacent_ok(value: str) -> bool:
    """BZSt rule since 2016 (DOMAIN.md marks it [verify]): a digit must not fill 3 adjacent places."""
    head = value[:10]
    return not any(head[i] == head[i + 1] == head[i + 2] for i in range(len(head) - 2))


def idnr_checksum_ok(value: str) -> bool:
    """Structure and check digit: what python-stdnum accepts."""
    return idnr_structure_ok(value) and idnr_check_digit(value[:10]) == int(value[10])


def is_idnr(value: str) -> bool:
    """Strict: structure, check digit and the 3-adjacent rule (the scanner uses that rule only as a
    confidence modifier, see scanner.py)."""
    return idnr_checksum_ok(value) and idnr_adjacent_ok(value)


# --- RVNR (§2.7) -------------------------------------------------------------------------------
RVNR_AREAS = range(2, 90)  # Bereichsnummer 02–89


def rvnr_checksum_ok(value: str) -> bool:
    if not _RVNR.fullmatch(value):
        return False
    digits = value[:8] + _letter_digits(value[8]) + value[9:11]
    return _weighted_qs(digits, (2, 1, 2, 5, 7, 1, 2, 1, 2, 1, 2, 1)) == int(value[11])


def rvnr_date_regular(value: str) -> bool:
    """Positions 3–8 are a calendar date DDMMYY (either century). Special cases with other day
    values exist (DOMAIN.md: do not reject on the day alone), so this is a confidence modifier."""
    day, month, year = int(value[2:4]), int(value[4:6]), int(value[6:8])
    if not 1 <= month <= 12:
        return False
    last = max(monthrange(1900 + year, month)[1], monthrange(2000 + year, month)[1])
    return 1 <= day <= last


def is_rvnr(value: str) -> bool:
    """Shape, Bereichsnummer 02–89, month 01–12 and the check digit (the day is not judged here)."""
    return (rvnr_checksum_ok(value) and int(value[:2]) in RVNR_AREAS
            and 1 <= int(value[4:6]) <= 12)


# --- ICD-10-GM (§2.6) --------------------------------------------------------------------------
def icd10_code(value: str) -> str | None:
    """The code of a structurally valid ICD-10-GM notation (marks, certainty and side removed;
    a non-terminal `E11.-` becomes its category `E11`), else None. No offline BfArM list ships with
    any package available here, so the check is structural; the scanner accepts an optional list."""
    m = _ICD.fullmatch(value)
    return m.group(1).removesuffix(".-") if m else None


# --- contact data (§2.8) -----------------------------------------------------------------------
def is_email(value: str) -> bool:
    return bool(_EMAIL.fullmatch(value))


def phone_nsn(value: str) -> str | None:
    """National significant number of a German phone number, or None if the shape or the 6–11
    digit post-check fails."""
    m = _PHONE.fullmatch(value)
    if not m:
        return None
    rest = value[m.end(2) if m.group(2) else m.end(1):]
    nsn = rest.encode("ascii").translate(None, _NON_DIGITS).decode("ascii")
    return nsn if PHONE_NSN_DIGITS[0] <= len(nsn) <= PHONE_NSN_DIGITS[1] else None


def is_phone(value: str) -> bool:
    return phone_nsn(value) is not None


# --- normalisation for hashing and masking --------------------------------------------------------
def normalise(category: str, value: str) -> str:
    """The canonical form that is hashed: separators removed, upper case (lower case for e-mail),
    ICD codes without marks, phone numbers as +49 and the national number."""
    v = value.strip()
    if category in ("kvnr", "iban", "rvnr"):
        return v.replace(" ", "").upper()
    if category in ("ik", "idnr"):
        return v.replace(" ", "")
    if category == "icd10":
        return icd10_code(v.upper()) or v.upper()
    if category == "email":
        return v.lower()
    if category == "phone":
        nsn = phone_nsn(v)
        return "+49" + nsn if nsn else "".join(ch for ch in v if ch.isdigit() or ch == "+")
    raise ValueError(f"unknown identifier category {category!r}")
