"""Synthetic insured-person records for the DLP scenarios, with exact counts of what they hold.

The CSV mixes identifiers with correct check digits (KVNR, IBAN, IK) and look-alikes whose
check digit is wrong, so a scanner that skips the check over-counts. Everything comes from
one seeded PRNG: the same seed gives the same bytes, so the truth file stores only counts
(never a raw identifier) and anyone can regenerate the values with the seed.

    python3 lab/dlpdata.py --seed 20240611 > persons.csv      # the CSV the lab sends
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import sys
import unicodedata

VALID_PERSONS = 120  # distinct people whose KVNR and IBAN pass their check digits
REPEATED_ROWS = 5  # extra rows of valid people (a second diagnosis): occurrences > distinct
INVALID_PERSONS = 30  # people whose KVNR and IBAN carry a wrong check digit
INSURERS = 6  # distinct Institutionskennzeichen (all valid) in the kassen_ik column

COLUMNS = ("kvnr", "nachname", "vorname", "geburtsdatum", "iban", "diagnose", "email",
           "kassen_ik", "auftragsnummer", "referenz")

LAST = ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
        "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
        "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner",
        "Krause", "Meier", "Lehmann", "Schmid", "Schulze", "Maier", "Köhler", "Herrmann", "König")
FIRST = ("Anna", "Jürgen", "Sabine", "Thomas", "Petra", "Michael", "Monika", "Andreas", "Ursula",
         "Stefan", "Gabriele", "Frank", "Renate", "Uwe", "Birgit", "Klaus", "Jörg", "Sören", "Maximilian",
         "Lena", "Jonas", "Marie", "Lukas", "Sophie", "Felix", "Hannah", "Paul", "Emilia", "Björn", "Käthe")
# ICD-10-GM codes (existing categories), some with the ambulatory certainty mark
ICD = ("E11.90", "I10.90", "J45.0 G", "F32.1", "M54.5", "K21.0", "E78.0", "I25.10", "J44.19",
       "F41.1", "M17.1", "N18.3", "C50.9", "G43.0", "E66.0", "I48.0 G", "K57.30", "F33.1 V")
MAIL_DOMAINS = ("example.org", "example.com", "example.net")


# ---- check digits ----------------------------------------------------------------------------


def _qs(n: int) -> int:
    return n // 10 + n % 10


def kvnr_check(letter: str, digits8: str) -> int:
    """KVNR check digit (DOMAIN.md 2.1): A=01..Z=26, weights 1,2,1,2.. left to right, Quersummen, mod 10."""
    ten = f"{ord(letter) - 64:02d}" + digits8
    return sum(_qs(int(d) * (1 if i % 2 == 0 else 2)) for i, d in enumerate(ten)) % 10


def kvnr_valid(s: str) -> bool:
    return len(s) == 10 and s[0].isupper() and s[1:].isdigit() and kvnr_check(s[0], s[1:9]) == int(s[9])


def ik_check(ik8: str) -> int:
    """IK check digit (DOMAIN.md 2.2): digits 3-8, weights 2,1,2,1,2,1, Quersummen, mod 10."""
    return sum(_qs(int(d) * (2 if i % 2 == 0 else 1)) for i, d in enumerate(ik8[2:8])) % 10


def _iban_number(s: str) -> int:
    return int("".join(str(int(c, 36)) for c in s[4:] + s[:4]))


def iban_valid(s: str) -> bool:
    s = s.replace(" ", "")
    return len(s) == 22 and _iban_number(s) % 97 == 1


def iban_de(bban: str, check: int | None = None) -> str:
    """A German IBAN for an 18-digit BBAN; check digits by ISO 7064 MOD 97-10 unless given."""
    if check is None:
        check = 98 - _iban_number("DE00" + bban) % 97
    return f"DE{check:02d}{bban}"


def luhn_valid(s: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(s)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


# ---- generation ------------------------------------------------------------------------------


def _ascii(s: str) -> str:
    s = s.replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("Ä", "Ae").replace("Ö", "Oe")
    s = s.replace("Ü", "Ue").replace("ß", "ss")
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()


def _wrong_digit(rng: random.Random, right: int) -> int:
    return (right + rng.randint(1, 9)) % 10


def _kvnr(rng: random.Random, valid: bool) -> str:
    letter, digits = chr(65 + rng.randrange(26)), f"{rng.randrange(10 ** 8):08d}"
    check = kvnr_check(letter, digits)
    return f"{letter}{digits}{check if valid else _wrong_digit(rng, check)}"


def _iban(rng: random.Random, valid: bool, spaced: bool) -> str:
    bban = f"{rng.randrange(10000000, 90000000)}{rng.randrange(10 ** 10):010d}"
    right = iban_de(bban)
    if not valid:  # a wrong pair of check digits; +97 would pass mod 97 again, so stay within 1..50
        good = int(right[2:4])
        wrong = next(c for c in (good + d for d in rng.sample(range(-50, 51), 101)) if 2 <= c <= 98 and c != good)
        right = iban_de(bban, wrong)
    return " ".join(right[i:i + 4] for i in range(0, 22, 4)) if spaced else right


def _order_number(rng: random.Random) -> str:
    """Shaped like a KVNR (letter + 9 digits) but its last digit is never the KVNR check digit."""
    letter, digits = rng.choice("BCPRS"), f"{rng.randrange(10 ** 8):08d}"
    return f"{letter}{digits}{_wrong_digit(rng, kvnr_check(letter, digits))}"


def _reference(rng: random.Random) -> str:
    """A random 12-15 digit string that passes no check we know (not Luhn; lengths no ID uses)."""
    while True:
        s = str(rng.randrange(1, 10)) + "".join(str(rng.randrange(10)) for _ in range(rng.randint(11, 14)))
        if not luhn_valid(s):
            return s


def _person(rng: random.Random, valid: bool, n: int, iks: list[str]) -> dict:
    last, first = rng.choice(LAST), rng.choice(FIRST)
    return {
        "kvnr": _kvnr(rng, valid), "nachname": last, "vorname": first,
        "geburtsdatum": f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(1938, 2006)}",
        "iban": _iban(rng, valid, spaced=n % 3 == 0), "diagnose": rng.choice(ICD),
        "email": f"{_ascii(first)}.{_ascii(last)}{n}@{rng.choice(MAIL_DOMAINS)}",
        "kassen_ik": rng.choice(iks),
    }


def generate(seed: int) -> list[dict]:
    """All rows, in file order: valid people, repeated rows and invalid people shuffled together."""
    rng = random.Random(seed)
    iks = []
    while len(iks) < INSURERS:
        ik8 = f"10{rng.randrange(10 ** 6):06d}"
        iks.append(ik8 + str(ik_check(ik8)))
    people, seen = [], set()
    for valid, count in ((True, VALID_PERSONS), (False, INVALID_PERSONS)):
        while sum(p["_valid"] == valid for p in people) < count:
            p = _person(rng, valid, len(people) + 1, iks)
            if p["kvnr"] in seen or p["iban"].replace(" ", "") in seen:
                continue  # distinct identifiers, so the expected counts are exact
            seen |= {p["kvnr"], p["iban"].replace(" ", "")}
            people.append(dict(p, _valid=valid))
    rows = list(people)
    for p in rng.sample([p for p in people if p["_valid"]], REPEATED_ROWS):
        rows.append(dict(p, diagnose=rng.choice([c for c in ICD if c != p["diagnose"]])))
    rng.shuffle(rows)
    orders = set()
    for r in rows:
        while (o := _order_number(rng)) in orders:
            pass
        orders.add(o)
        r["auftragsnummer"], r["referenz"] = o, _reference(rng)
    return rows


def to_csv(rows: list[dict]) -> bytes:
    lines = [";".join(COLUMNS)] + [";".join(r[c] for c in COLUMNS) for r in rows]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _distinct(values) -> dict:
    values = list(values)
    return {"occurrences": len(values), "distinct": len(set(values))}


def counts(rows: list[dict]) -> dict:
    """What the CSV holds, counted from the rows and re-checked with the validators above."""
    kv = [r["kvnr"] for r in rows]
    ib = [r["iban"].replace(" ", "") for r in rows]
    return {
        "rows": len(rows),
        "kvnr_valid": _distinct(v for v in kv if kvnr_valid(v)),
        "kvnr_invalid_check_digit": _distinct(v for v in kv if not kvnr_valid(v)),
        "iban_valid": _distinct(v for v in ib if iban_valid(v)),
        "iban_invalid_check_digits": _distinct(v for v in ib if not iban_valid(v)),
        "iban_written_in_groups_of_4": sum(" " in r["iban"] for r in rows),
        "kvnr_shaped_order_numbers_invalid": _distinct(r["auftragsnummer"] for r in rows
                                                       if not kvnr_valid(r["auftragsnummer"])),
        "kvnr_shaped_order_numbers_valid": sum(kvnr_valid(r["auftragsnummer"]) for r in rows),
        "random_digit_strings_12_15": _distinct(r["referenz"] for r in rows),
        "ik_valid": _distinct(r["kassen_ik"] for r in rows if ik_check(r["kassen_ik"][:8]) == int(r["kassen_ik"][8])),
        "icd10_codes": _distinct(r["diagnose"] for r in rows),
        "dates_of_birth_dd_mm_yyyy": _distinct(r["geburtsdatum"] for r in rows),
        "email_addresses": _distinct(r["email"] for r in rows),
        "person_names": _distinct((r["vorname"], r["nachname"]) for r in rows),
        "records_with_valid_kvnr": sum(kvnr_valid(v) for v in kv),
        "context_keywords_in_header": ["kvnr", "iban", "diagnose", "geburtsdatum", "kassen_ik"],
    }


KVNR_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z][0-9]{9}(?![A-Za-z0-9])")  # DOMAIN.md 2.1
IBAN_DE_RE = re.compile(r"(?<![A-Z0-9])DE\d{2}(?:[ ]?\d{4}){4}[ ]?\d{2}(?![A-Z0-9])")  # DOMAIN.md 2.4
IK_RE = re.compile(r"(?<!\d)[0-9]{9}(?!\d)")  # DOMAIN.md 2.2


def regex_view(data: bytes) -> dict:
    """What the DOMAIN.md regexes plus check digits find in the whole file (a cross-check of counts(),
    and the IK look-alikes: 9-digit runs inside KVNR-shaped values that pass the IK check by chance)."""
    text = data.decode("utf-8")
    kv = KVNR_RE.findall(text)
    ib = [m.replace(" ", "") for m in IBAN_DE_RE.findall(text)]
    ik = IK_RE.findall(text)
    return {
        "kvnr_pattern_matches": len(kv), "kvnr_pattern_valid_distinct": len({v for v in kv if kvnr_valid(v)}),
        "iban_de_pattern_matches": len(ib), "iban_valid_distinct": len({v for v in ib if iban_valid(v)}),
        "ik_pattern_matches": len(ik),
        "ik_pattern_passing_check_distinct": len({v for v in ik if ik_check(v[:8]) == int(v[8])}),
    }


def self_test() -> None:
    """The DOMAIN.md test vectors: the generator's validators must agree with them."""
    assert all(kvnr_valid(v) for v in ("A123456780", "X110411675", "M987654323", "Z000000017"))
    assert not any(kvnr_valid(v) for v in ("A123456789", "G995030567"))
    assert all(ik_check(v[:8]) == int(v[8]) for v in ("101575519", "104940005", "108310400", "109519005"))
    assert all(iban_valid(v) for v in ("DE89370400440532013000", "DE23100000001234567890", "GB82WEST12345698765432"))
    assert not any(iban_valid(v) for v in ("DE89370400440532013001", "DE88370400440532013000"))


def describe(seed: int) -> tuple[bytes, dict]:
    """The CSV bytes and their counts (plus the CSV's SHA-256, so a regenerated file can be compared)."""
    self_test()
    rows = generate(seed)
    data = to_csv(rows)
    c = counts(rows)
    assert c["kvnr_valid"]["distinct"] == VALID_PERSONS and c["iban_valid"]["distinct"] == VALID_PERSONS
    assert c["kvnr_invalid_check_digit"]["distinct"] == INVALID_PERSONS
    assert c["kvnr_shaped_order_numbers_valid"] == 0
    rv = regex_view(data)
    assert rv["kvnr_pattern_valid_distinct"] == VALID_PERSONS and rv["iban_valid_distinct"] == VALID_PERSONS
    return data, dict(c, regex_view=rv, seed=seed, csv_bytes=len(data), csv_sha256=hashlib.sha256(data).hexdigest(),
                      encoding="UTF-8, ';'-separated, CRLF line ends, one header row")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--counts", action="store_true", help="print the counts as JSON instead of the CSV")
    a = ap.parse_args()
    data, c = describe(a.seed)
    if a.counts:
        import json
        print(json.dumps(c, indent=2))
    else:
        sys.stdout.buffer.write(data)


if __name__ == "__main__":
    main()
