"""Check-digit validators, keyed hashing and masking (DOMAIN.md §2 test vectors, stdnum as oracle)."""

from __future__ import annotations

import os
import random
import re
import stat
import threading

import pytest
from stdnum import iban as std_iban
from stdnum.de import idnr as std_idnr

from abfluss.dlp import identifiers as ids
from abfluss.dlp.keys import mask, value_hash, workspace_key
from abfluss.errors import WorkspaceError

# --- DOMAIN.md §2 test vectors, each (value, expected) -------------------------------------------
KVNR = [("A123456780", True), ("X110411675", True), ("M987654323", True), ("Z000000017", True),
        ("A123456789", False), ("G995030567", False), ("X11041167", False), ("1234567890", False)]
IK = [("101575519", True), ("104940005", True), ("108310400", True), ("109519005", True),
      ("101575518", False), ("104940006", False), ("10157551", False)]
IBAN = [("DE89370400440532013000", True), ("DE89 3704 0044 0532 0130 00", True),
        ("DE23100000001234567890", True), ("GB82WEST12345698765432", True),
        ("DE89370400440532013001", False), ("DE88370400440532013000", False),
        ("DE8937040044053201300", False)]
IDNR = [("36574261809", True), ("86095742719", True), ("47036892816", True), ("11213456783", True),
        ("36574261890", False), ("36554266806", False), ("06574261809", False), ("11123456786", False)]
RVNR = [("10010490A443", True), ("15070649C103", True), ("65170839J003", True),
        ("10010490A444", False), ("15070649C104", False), ("1001049A0443", False)]
ICD = [("E11.90", "E11.90"), ("J45.0 G", "J45.0"), ("S51.9 GL", "S51.9"), ("A54.4†", "A54.4"),
       ("U07.1!", "U07.1"), ("E1.1", None), ("EX1.2", None), ("ISO9001", None), ("A123456780", None)]
EMAIL = [("max.mustermann@aok.de", True), ("dr.mueller@praxis-mueller.kim.telematik", True),
         ("a.b+c@sub.example.org", True), ("foo@bar", False), ("@example.org", False),
         ("foo@-bad.de", False)]
PHONE = [("+49 201 1234567", True), ("0201/1234567", True), ("+49 (0)170 1234567", True),
         ("0049 30 12345678", True), ("12345", False), ("+49 0 123", False), ("0170 12", False)]


@pytest.mark.parametrize("value,ok", KVNR)
def test_kvnr_vectors(value, ok):
    assert ids.is_kvnr(value) is ok


@pytest.mark.parametrize("value,ok", IK)
def test_ik_vectors(value, ok):
    assert ids.is_ik(value) is ok


@pytest.mark.parametrize("value,ok", IBAN)
def test_iban_vectors(value, ok):
    assert ids.is_iban(value) is ok
    assert std_iban.is_valid(value, check_country=False) is ok  # the oracle agrees on the vectors


@pytest.mark.parametrize("value,ok", IDNR)
def test_idnr_vectors(value, ok):
    assert ids.is_idnr(value) is ok


def test_idnr_adjacent_rule_is_the_only_difference_to_stdnum():
    # DOMAIN.md: 11123456786 passes python-stdnum but puts one digit on 3 adjacent places.
    assert std_idnr.is_valid("11123456786") and ids.idnr_checksum_ok("11123456786")
    assert not ids.idnr_adjacent_ok("11123456786")
    assert ids.idnr_adjacent_ok("11213456783")  # three 1s, not adjacent


@pytest.mark.parametrize("value,ok", RVNR)
def test_rvnr_vectors(value, ok):
    assert ids.is_rvnr(value) is ok


@pytest.mark.parametrize("value,code", ICD)
def test_icd10_vectors(value, code):
    assert ids.icd10_code(value) == code


@pytest.mark.parametrize("value,ok", EMAIL)
def test_email_vectors(value, ok):
    assert ids.is_email(value) is ok


@pytest.mark.parametrize("value,ok", PHONE)
def test_phone_vectors(value, ok):
    assert ids.is_phone(value) is ok


# --- algorithm cross-checks ----------------------------------------------------------------------
def _mod10_from_right(digits: str, weights: tuple[int, int]) -> int:
    """gematik's checksum::mod10<a,b>: weights counted from the right, letter not zero-padded."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        p = int(d) * weights[i % 2]
        total += p // 10 + p % 10
    return total % 10


def test_kvnr_equals_gematik_right_weighted_form():
    rng = random.Random(7)
    for _ in range(3000):
        body = chr(65 + rng.randrange(26)) + "".join(rng.choice("0123456789") for _ in range(8))
        # the 9 digits (letter number + 8) end with weight 2 in the left-to-right padded form
        gematik = _mod10_from_right(str(ord(body[0]) - 64) + body[1:], (2, 1))
        assert ids.kvnr_check_digit(body) == gematik
        assert ids.is_kvnr(body + str(gematik)) and not ids.is_kvnr(body + str((gematik + 1) % 10))


def test_kvnr_unpadded_left_to_right_pitfall_differs():
    """The pitfall of DOMAIN.md §2.1: without zero-padding, letters A–I give other check digits."""
    def pitfall(body):
        digits = str(ord(body[0]) - 64) + body[1:]
        return sum((int(d) * (1, 2)[i % 2]) // 10 + (int(d) * (1, 2)[i % 2]) % 10
                   for i, d in enumerate(digits)) % 10
    assert pitfall("A12345678") != ids.kvnr_check_digit("A12345678") == 0


def test_ik_equals_gematik_right_weighted_form():
    rng = random.Random(8)
    for _ in range(3000):
        v = "".join(rng.choice("0123456789") for _ in range(8))
        check = _mod10_from_right(v[2:8], (1, 2))
        assert ids.is_ik(v + str(check)) and not ids.is_ik(v + str((check + 1) % 10))


def _random_iban(rng: random.Random) -> str:
    cc = rng.choice(sorted(ids.IBAN_FORMATS))
    length, _ = ids.IBAN_FORMATS[cc]
    spec = ids._IBAN_REGISTRY.split(cc + ":")[1].split()[0]
    bban = "".join(rng.choice({"n": "0123456789", "a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                               "c": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}[k])
                   for n, k in re.findall(r"(\d+)([nac])", spec) for _ in range(int(n)))
    iban = cc + std_iban.calc_check_digits(cc + "00" + bban) + bban
    assert len(iban) == length
    return iban


def test_iban_agrees_with_stdnum_oracle():
    rng = random.Random(9)
    verdicts = []
    for _ in range(3000):
        iban = _random_iban(rng)
        mutated = list(iban)
        pos = rng.randrange(2, len(iban))
        # ISO 13616 check digits are digits; stdnum also takes letters there, so mutate with digits
        mutated[pos] = rng.choice("0123456789" if pos < 4 else "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        for v in (iban, "".join(mutated), iban[:-1], iban + "0"):
            verdicts.append(ids.is_iban(v))
            assert ids.is_iban(v) == std_iban.is_valid(v, check_country=False), "IBAN verdicts differ"
    assert verdicts.count(True) >= 3000  # every generated IBAN valid, mutations mostly not
    assert not ids.is_iban("VGG6OZZJ0551877199452957")  # letter in the check digits: stdnum accepts it


def test_idnr_agrees_with_stdnum_oracle():
    rng = random.Random(10)
    valid = 0
    for _ in range(4000):
        head = rng.sample("0123456789", 9)
        head.insert(rng.randrange(10), head[rng.randrange(9)])  # one digit twice
        if rng.random() < 0.3:
            head[rng.randrange(10)] = head[rng.randrange(10)]   # sometimes a third or a second pair
        head = "".join(head)
        for check in "0123456789":
            v = head + check
            assert ids.idnr_checksum_ok(v) == std_idnr.is_valid(v), "IdNr verdicts differ"
            valid += ids.idnr_checksum_ok(v)
    assert valid > 2000


@pytest.mark.parametrize("value,regular", [("10010490A443", True), ("10310290A441", False),
                                           ("10290200A440", True), ("10000490A440", False)])
def test_rvnr_date_regular(value, regular):
    # 31.02. is no date; 29.02.00 is (2000 was a leap year); day 00 is not
    assert ids.rvnr_date_regular(value) is regular


def test_rvnr_area_and_month():
    body = "00010490A44"
    for area, ok in (("00", False), ("01", False), ("02", True), ("89", True), ("90", False)):
        v = area + body[2:]
        digits = v[:8] + f"{ord(v[8]) - 64:02d}" + v[9:11]
        check = ids._weighted_qs(digits, (2, 1, 2, 5, 7, 1, 2, 1, 2, 1, 2, 1))
        assert ids.is_rvnr(v + str(check)) is ok
    assert not ids.is_rvnr("10011390A443")  # month 13


# --- normalisation, masking, hashing -------------------------------------------------------------
@pytest.mark.parametrize("category,value,normal,masked", [
    ("kvnr", "a123456780", "A123456780", "A12******0"),
    ("ik", "101575519", "101575519", "101*****9"),
    ("iban", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "DE8******************0"),
    ("idnr", "36 574 261 809", "36574261809", "365*******9"),
    ("rvnr", "10010490a443", "10010490A443", "100********3"),
    ("icd10", "S51.9 GL", "S51.9", "***.*"),
    ("icd10", "E11.-", "E11", "***"),
    ("email", "Max.Mustermann@AOK.de", "max.mustermann@aok.de", "m***@a***.de"),
    ("phone", "+49 (0)170 1234567", "+491701234567", "+49*********7"),
    ("phone", "0201/1234567", "+492011234567", "+49*********7"),
])
def test_normalise_and_mask(category, value, normal, masked):
    assert ids.normalise(category, value) == normal
    assert mask(category, value) == masked
    assert normal not in mask(category, value)
    assert mask(category, value).count("*") >= 3


def test_short_values_keep_less():
    assert mask("kvnr", "A1234") == "A****"
    assert mask("kvnr", "A12") == "***"


def test_unknown_category_error_does_not_echo_the_value():
    with pytest.raises(ValueError) as e:
        value_hash(b"k" * 32, "passport", "A123456780")
    assert "A123456780" not in str(e.value) and "passport" in str(e.value)


def test_value_hash_is_keyed_and_normalised():
    k1, k2 = b"\x01" * 32, b"\x02" * 32
    h = value_hash(k1, "iban", "DE89 3704 0044 0532 0130 00")
    assert h == value_hash(k1, "iban", "DE89370400440532013000")
    assert len(h) == 64 and int(h, 16) >= 0
    assert h != value_hash(k2, "iban", "DE89370400440532013000")
    assert value_hash(k1, "kvnr", "A123456780") != value_hash(k1, "rvnr", "A123456780")


# --- the workspace key ---------------------------------------------------------------------------
def test_workspace_key_created_private_and_stable(tmp_path):
    key = workspace_key(tmp_path)
    path = tmp_path / "secret" / "dlp.key"
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert workspace_key(tmp_path) == key
    assert workspace_key(tmp_path / "other") != key
    assert [p.name for p in path.parent.iterdir()] == ["dlp.key"]  # no temporary file left


def test_workspace_key_concurrent_first_use_agrees(tmp_path):
    keys = []
    threads = [threading.Thread(target=lambda: keys.append(workspace_key(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_workspace_key_permissions_repaired_and_damage_reported(tmp_path):
    key = workspace_key(tmp_path)
    path = tmp_path / "secret" / "dlp.key"
    os.chmod(path, 0o644)
    assert workspace_key(tmp_path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(key[:5])
    with pytest.raises(WorkspaceError) as e:
        workspace_key(tmp_path)
    assert key[:5].hex() not in str(e.value) and "damaged" in str(e.value)
