"""Indicator lists for the threat_intel detection: plain lists, CSV files and STIX 2.1 bundles.

Loaded once per analysis (the detection's ``prepare``), never inside a query. Three file
kinds, told apart by content (a JSON object is STIX) and extension (``.csv`` is CSV):

- a plain list: one address, IPv4 network (CIDR), domain or TLS fingerprint per line, ``#``
  starts a comment;
- CSV: the first row names the columns; the indicator column is the one named like
  ``indicator``, ``ioc``, ``value``, ``ip``, ``domain``, ``ja3``, ``ja3_md5``, ``ja4`` or ``sha1``
  (``ioc_value``, ``dst_ip``, ``domain_name`` too). abuse.ch feeds, whose header row is a ``#``
  comment, are understood (SSLBL's ``ja3_md5,…,Listingreason`` and ``…,SHA1,Listingreason``);
  a column named ``listingreason``, ``reason``, ``malware``, ``threat`` or ``description``
  becomes the indicator's reason (``Trickbot``), quoted in findings;
- a STIX 2.1 bundle: ``indicator`` objects with STIX patterns; every comparison of
  ``ipv4-addr:value``, ``ipv6-addr:value``, ``domain-name:value`` (and ``network-traffic``'s
  ``dst_ref.value``/``src_ref.value``), ``x509-certificate:hashes.'SHA-1'`` and any property
  named ``ja3``, ``ja3s`` or ``ja4`` (STIX has no standard fingerprint object; feeds use custom
  ones such as ``x-tls:ja3``) with ``=``, ``IN`` or ``ISSUBSET`` becomes an indicator, whatever
  the boolean structure around it (a feed's ``AND dst_port = 443`` is not kept). The
  indicator's ``name`` is its reason.

TLS fingerprints: a JA3 or JA3S hash (32 hex digits, MD5: the two are the same kind of value
and are matched against both the client's and the server's fingerprint), a JA4 client
fingerprint (``t13d1516h2_8daaf6152771_02713d6af862``), and a certificate's SHA-1 (40 hex
digits, colons allowed). A bare hex string is never taken for a domain name.

Anything else is an error naming the file and line (one line, no traceback): a wrong entry
in an indicator list must not silently shrink it. IPv6 networks other than single addresses
are refused because the matching is done portably on both engines with integer arithmetic
that covers IPv4 only.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .errors import ConfigError

#: A DNS name: labels of letters, digits, hyphens (and underscores, seen in real records).
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
#: "a.b.c.d:port", as ThreatFox writes C2 addresses.
_V4_PORT = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$")
#: CSV header names, strongest first: exact names, then "<ioc|indicator>_value", then any
#: name with an "ip" or "domain" word in it (dst_ip, ip_address, domain_name).
_COLUMN_RULES = (
    re.compile(r"^(indicator|ioc|value|ip|domain|ja3|ja3s|ja3_md5|ja3s_md5|ja4|sha1|sha-1)$"),
    re.compile(r"^(ioc|indicator)_?value$"),
    re.compile(r"(^|_)(ip|domain)(_|$)"),
)
#: CSV header names of a listing's reason (SSLBL's ``Listingreason``, ThreatFox's ``malware``).
_REASON_COLUMN = re.compile(r"^(listingreason|listing_reason|reason|malware|malware_printable|threat|"
                            r"threat_type|description|tags)$")
#: STIX object paths whose values are network indicators.
_STIX_PATHS = {("ipv4-addr", "value"), ("ipv6-addr", "value"), ("domain-name", "value"),
               ("network-traffic", "dst_ref.value"), ("network-traffic", "src_ref.value")}
#: STIX paths of a certificate's SHA-1 (``hashes.'SHA-1'`` as the parser returns it).
_STIX_SHA1 = {"hashes.sha-1", "hashes.sha1"}
#: TLS fingerprints: JA3/JA3S (MD5 hex), JA4 (``t13d1516h2_8daaf6152771_02713d6af862``: protocol,
#: version, SNI flag, cipher and extension counts, ALPN; then two truncated SHA-256), SHA-1.
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_JA4 = re.compile(r"^[tqd][0-9a-z]{2}[di][0-9]{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$")
#: Indicator kinds that are TLS fingerprints (matched against the ``tls`` table, not addresses).
FINGERPRINT_KINDS = ("ja3", "ja4", "sha1")
_STIX_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'")


@dataclass(frozen=True)
class Indicator:
    """One indicator: ``value`` as matched and reported, ``kind`` ipv4 (a network, /32 for an
    address), ipv6 (an address), domain, ja3 (a JA3 or JA3S hash), ja4 or sha1 (a certificate's
    SHA-1), ``source`` (file:line, or inline) and the listing's ``reason`` where it gives one."""

    value: str
    kind: str
    source: str
    reason: str = ""


@dataclass(frozen=True)
class IndicatorSet:
    """The loaded indicators, de-duplicated (the first source of a value is kept)."""

    indicators: tuple[Indicator, ...] = ()
    skipped: int = 0  # STIX indicators of other kinds (file hashes, URLs, other pattern languages)

    def __len__(self) -> int:
        return len(self.indicators)

    def domains(self) -> list[str]:
        return [i.value for i in self.indicators if i.kind == "domain"]

    def ipv4_networks(self) -> list[tuple[str, int, int]]:
        """(indicator, prefix length, first address as an integer) of each IPv4 indicator."""
        out = []
        for i in self.indicators:
            if i.kind == "ipv4":
                net = ipaddress.ip_network(i.value)
                out.append((i.value, net.prefixlen, int(net.network_address)))
        return out

    def ipv6_addresses(self) -> list[str]:
        return [i.value for i in self.indicators if i.kind == "ipv6"]

    def fingerprints(self) -> list[tuple[str, str]]:
        """(value, kind) of every TLS fingerprint indicator: ja3, ja4 and certificate sha1."""
        return [(i.value, i.kind) for i in self.indicators if i.kind in FINGERPRINT_KINDS]

    @cached_property
    def _by_value(self) -> dict[str, Indicator]:
        return {i.value: i for i in self.indicators}

    def source_of(self, value: str) -> str:
        i = self._by_value.get(value)
        return i.source if i else ""

    def reason_of(self, value: str) -> str:
        i = self._by_value.get(value)
        return i.reason if i else ""


def parse_value(raw: str, where: str, reason: str = "") -> Indicator:
    """One indicator from its text, or a ConfigError naming ``where`` (file:line)."""
    text = raw.strip().strip('"').strip()
    reason = " ".join(reason.split())[:100]  # one line, bounded: it ends up in findings
    fp = _fingerprint(text)
    if fp is not None:
        return Indicator(fp[0], fp[1], where, reason)
    m = _V4_PORT.match(text)
    if m:
        text = m.group(1)
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        net = None
    if net is not None:
        if net.version == 4:
            return Indicator(str(net.network_address) if net.prefixlen == 32 else str(net), "ipv4", where, reason)
        if net.prefixlen != 128:
            raise ConfigError(f"{where}: IPv6 network {text!r} is not supported, list its addresses")
        return Indicator(str(net.network_address), "ipv6", where, reason)
    name = text.lower().rstrip(".")
    if name.startswith("*."):  # a wildcard says what every domain indicator means anyway
        name = name[2:]
    # A numeric last label is a mistyped address (1.2.3.256), never a top-level domain.
    if name and len(name) <= 253 and _DOMAIN.match(name) and not name.rsplit(".", 1)[-1].isdigit():
        return Indicator(name, "domain", where, reason)
    raise ConfigError(f"{where}: {raw.strip()!r} is neither an IP address, an IPv4 network, a domain name "
                      "nor a TLS fingerprint")


def _fingerprint(text: str) -> tuple[str, str] | None:
    """(value, kind) when ``text`` is a JA3/JA3S hash, a JA4 fingerprint or a certificate SHA-1."""
    low = text.lower()
    if _MD5.match(low):
        return low, "ja3"
    if _JA4.match(low):
        return low, "ja4"
    hexed = low.replace(":", "")
    if _SHA1.match(hexed) and (":" not in low or re.fullmatch(r"([0-9a-f]{2}:){19}[0-9a-f]{2}", low)):
        return hexed, "sha1"
    return None


def load(files: tuple[str, ...] = (), addresses: tuple[str, ...] = (),
         domains: tuple[str, ...] = ()) -> IndicatorSet:
    """All indicators of the configured files and inline lists."""
    found: list[Indicator] = []
    skipped = 0
    for path in files:
        items, skip = load_file(Path(path))
        found += items
        skipped += skip
    for n, a in enumerate(addresses, 1):
        found.append(parse_value(a, f"threat_intel.addresses[{n}]"))
    for n, d in enumerate(domains, 1):
        ind = parse_value(d, f"threat_intel.domains[{n}]")
        if ind.kind != "domain":
            raise ConfigError(f"threat_intel.domains[{n}]: {d!r} is an address, list it under addresses")
        found.append(ind)
    unique: dict[str, Indicator] = {}
    for i in found:
        unique.setdefault(i.value, i)
    return IndicatorSet(tuple(unique.values()), skipped)


def load_file(path: Path) -> tuple[list[Indicator], int]:
    """Indicators of one file and the number of STIX indicators of other kinds skipped."""
    text = _read(path)
    if text.lstrip().startswith("{"):
        return _stix(path, text)
    if path.suffix.lower() == ".csv":
        return _csv(path, text), 0
    return _plain(path, text), 0


def _read(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: indicator file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read indicator file: {e.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {e.start})") from None


def _plain(path: Path, text: str) -> list[Indicator]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if len(entry.split()) > 1:
            raise ConfigError(f"{path}:{n}: one indicator per line expected, got {entry!r}")
        out.append(parse_value(entry, f"{path}:{n}"))
    return out


def _csv(path: Path, text: str) -> list[Indicator]:
    lines = text.splitlines()
    comments = [(n, l) for n, l in enumerate(lines, 1) if l.lstrip().startswith("#")]
    data = [(n, l) for n, l in enumerate(lines, 1) if l.strip() and not l.lstrip().startswith("#")]
    if not data:
        return []
    rows = list(csv.reader([l for _, l in data]))
    names = rows[0]
    column = _indicator_column(names)
    body = list(zip([n for n, _ in data], rows))[1:]
    if column is None:
        # abuse.ch style: the header is the last comment line before the data.
        header = [(n, l) for n, l in comments if n < data[0][0]]
        names = next(csv.reader([header[-1][1].lstrip("# ")])) if header else []
        column = _indicator_column(names)
        body = list(zip([n for n, _ in data], rows))
        if column is None:
            raise ConfigError(f"{path}:{data[0][0]}: no indicator column (name one indicator, ioc, "
                              "value, ip, domain, ja3, ja4 or sha1)")
    reason = next((i for i, h in enumerate(names) if _REASON_COLUMN.match(h.strip().strip('"').lower())), None)
    out = []
    for n, row in body:
        if column >= len(row):
            raise ConfigError(f"{path}:{n}: {len(row)} columns, the indicator column is number {column + 1}")
        if row[column].strip():
            why = row[reason] if reason is not None and reason < len(row) else ""
            out.append(parse_value(row[column], f"{path}:{n}", why))
    return out


def _indicator_column(header: list[str]) -> int | None:
    names = [h.strip().strip('"').lower() for h in header]
    for rule in _COLUMN_RULES:
        for i, name in enumerate(names):
            if rule.search(name):
                return i
    return None


def _stix(path: Path, text: str) -> tuple[list[Indicator], int]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    if not isinstance(doc, dict) or doc.get("type") != "bundle" or not isinstance(doc.get("objects"), list):
        raise ConfigError(f"{path}:1: a JSON indicator file must be a STIX 2.1 bundle")
    out, skipped = [], 0
    for obj in doc["objects"]:
        if not isinstance(obj, dict) or obj.get("type") != "indicator" or obj.get("revoked"):
            continue
        pattern = obj.get("pattern")
        where = f"{path}:{_line_of(text, pattern)}"
        if obj.get("pattern_type", "stix") != "stix" or not isinstance(pattern, str):
            skipped += 1
            continue
        values = _stix_values(pattern, f"{where}: indicator {obj.get('id', '?')}")
        skipped += not values
        name = obj.get("name") if isinstance(obj.get("name"), str) else ""
        for v, kind in values:
            ind = parse_value(v, where, name)
            if kind != "network" and ind.kind != kind:
                raise ConfigError(f"{where}: {v!r} compared with a {kind} property is no {kind} value")
            out.append(ind)
    return out, skipped


def _stix_kind(obj_type: str, path: str) -> str | None:
    """What a compared property holds: network (address, domain), ja3 (JA3 or JA4), sha1, or None."""
    if (obj_type, path) in _STIX_PATHS:
        return "network"
    low = path.lower().replace("'", "")
    if obj_type == "x509-certificate" and low in _STIX_SHA1:
        return "sha1"
    last = low.rsplit(".", 1)[-1]
    if last in ("ja3", "ja3s", "ja3_hash", "ja3s_hash"):
        return "ja3"
    if last in ("ja4", "ja4_hash"):
        return "ja4"
    return None


def _stix_values(pattern: str, where: str) -> list[tuple[str, str]]:
    """(value, kind) of the network and TLS values a STIX pattern compares with, via the stix2
    pattern parser."""
    from stix2patterns.exceptions import ParseException
    from stix2patterns.v21.pattern import Pattern

    try:
        comparisons = Pattern(pattern).inspect().comparisons
    except ParseException as e:
        raise ConfigError(f"{where}: invalid STIX pattern: {e}") from None
    values = []
    for obj_type, items in comparisons.items():
        for path, op, constant in items:
            kind = _stix_kind(obj_type, ".".join(map(str, path)))
            if kind and op in ("=", "IN", "ISSUBSET"):
                values += [(s.replace("\\'", "'").replace("\\\\", "\\"), kind)
                           for s in _STIX_STRING.findall(constant)]
    return values


def _line_of(text: str, needle: object) -> int:
    """Line of a JSON string value in ``text`` (1 if not found), to point errors at it."""
    if not isinstance(needle, str):
        return 1
    pos = text.find(json.dumps(needle)[1:-1])
    return text.count("\n", 0, pos) + 1 if pos >= 0 else 1
