"""Indicator lists for the threat_intel detection: plain lists, CSV files and STIX 2.1 bundles.

Loaded once per analysis (the detection's ``prepare``), never inside a query. Three file
kinds, told apart by content (a JSON object is STIX) and extension (``.csv`` is CSV):

- a plain list: one address, IPv4 network (CIDR) or domain per line, ``#`` starts a comment;
- CSV: the first row names the columns; the indicator column is the one named like
  ``indicator``, ``ioc``, ``value``, ``ip`` or ``domain`` (``ioc_value``, ``dst_ip``,
  ``domain_name`` too). abuse.ch feeds, whose header row is a ``#`` comment, are understood;
- a STIX 2.1 bundle: ``indicator`` objects with STIX patterns; every comparison of
  ``ipv4-addr:value``, ``ipv6-addr:value``, ``domain-name:value`` (and ``network-traffic``'s
  ``dst_ref.value``/``src_ref.value``) with ``=``, ``IN`` or ``ISSUBSET`` becomes an indicator,
  whatever the boolean structure around it (a feed's ``AND dst_port = 443`` is not kept).

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
    re.compile(r"^(indicator|ioc|value|ip|domain)$"),
    re.compile(r"^(ioc|indicator)_?value$"),
    re.compile(r"(^|_)(ip|domain)(_|$)"),
)
#: STIX object paths whose values are network indicators.
_STIX_PATHS = {("ipv4-addr", "value"), ("ipv6-addr", "value"), ("domain-name", "value"),
               ("network-traffic", "dst_ref.value"), ("network-traffic", "src_ref.value")}
_STIX_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'")


@dataclass(frozen=True)
class Indicator:
    """One indicator: ``value`` as matched and reported, ``kind`` ipv4 (a network, /32 for an
    address), ipv6 (an address) or domain, and ``source`` (file:line, or inline)."""

    value: str
    kind: str
    source: str


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

    @cached_property
    def _sources(self) -> dict[str, str]:
        return {i.value: i.source for i in self.indicators}

    def source_of(self, value: str) -> str:
        return self._sources.get(value, "")


def parse_value(raw: str, where: str) -> Indicator:
    """One indicator from its text, or a ConfigError naming ``where`` (file:line)."""
    text = raw.strip().strip('"').strip()
    m = _V4_PORT.match(text)
    if m:
        text = m.group(1)
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        net = None
    if net is not None:
        if net.version == 4:
            return Indicator(str(net.network_address) if net.prefixlen == 32 else str(net), "ipv4", where)
        if net.prefixlen != 128:
            raise ConfigError(f"{where}: IPv6 network {text!r} is not supported, list its addresses")
        return Indicator(str(net.network_address), "ipv6", where)
    name = text.lower().rstrip(".")
    if name.startswith("*."):  # a wildcard says what every domain indicator means anyway
        name = name[2:]
    # A numeric last label is a mistyped address (1.2.3.256), never a top-level domain.
    if name and len(name) <= 253 and _DOMAIN.match(name) and not name.rsplit(".", 1)[-1].isdigit():
        return Indicator(name, "domain", where)
    raise ConfigError(f"{where}: {raw.strip()!r} is neither an IP address, an IPv4 network nor a domain name")


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
    column = _indicator_column(rows[0])
    body = list(zip([n for n, _ in data], rows))[1:]
    if column is None:
        # abuse.ch style: the header is the last comment line before the data.
        header = [(n, l) for n, l in comments if n < data[0][0]]
        column = _indicator_column(next(csv.reader([header[-1][1].lstrip("# ")]))) if header else None
        body = list(zip([n for n, _ in data], rows))
        if column is None:
            raise ConfigError(f"{path}:{data[0][0]}: no indicator column (name one indicator, ioc, "
                              "value, ip or domain)")
    out = []
    for n, row in body:
        if column >= len(row):
            raise ConfigError(f"{path}:{n}: {len(row)} columns, the indicator column is number {column + 1}")
        if row[column].strip():
            out.append(parse_value(row[column], f"{path}:{n}"))
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
        out += [parse_value(v, where) for v in values]
    return out, skipped


def _stix_values(pattern: str, where: str) -> list[str]:
    """The network values a STIX pattern compares with, via the stix2 pattern parser."""
    from stix2patterns.exceptions import ParseException
    from stix2patterns.v21.pattern import Pattern

    try:
        comparisons = Pattern(pattern).inspect().comparisons
    except ParseException as e:
        raise ConfigError(f"{where}: invalid STIX pattern: {e}") from None
    values = []
    for obj_type, items in comparisons.items():
        for path, op, constant in items:
            if (obj_type, ".".join(map(str, path))) in _STIX_PATHS and op in ("=", "IN", "ISSUBSET"):
                values += [s.replace("\\'", "'").replace("\\\\", "\\") for s in _STIX_STRING.findall(constant)]
    return values


def _line_of(text: str, needle: object) -> int:
    """Line of a JSON string value in ``text`` (1 if not found), to point errors at it."""
    if not isinstance(needle, str):
        return 1
    pos = text.find(json.dumps(needle)[1:-1])
    return text.count("\n", 0, pos) + 1 if pos >= 0 else 1
