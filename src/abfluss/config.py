"""TOML configuration: internal networks, tenants, asset tags, allowlists.

Looked up as ``--config FILE`` or ``abfluss.toml`` inside the workspace. Every key is listed
in ``KEYS`` with its default and help text; ``docs/configuration.md`` is checked against it
by a test, so the documentation cannot drift.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .errors import ConfigError

CONFIG_NAME = "abfluss.toml"

#: RFC 1918, RFC 6598 (carrier-grade NAT), loopback, link-local, IPv6 ULA, link-local and loopback.
DEFAULT_INTERNAL = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
)


class Key(NamedTuple):
    name: str
    default: object
    help: str


KEYS: tuple[Key, ...] = (
    Key("networks.internal", list(DEFAULT_INTERNAL),
        "CIDRs of the organisation's own networks. Every other address is external, "
        "documentation and reserved ranges included."),
    Key("networks.resolvers", [],
        "CIDRs or addresses of the DNS resolvers internal hosts are meant to use. Only their answers "
        "name destinations for allowlisting, and DNS to any other server is a finding. Empty: learned "
        "from the traffic, one rule for both (abfluss.resolvers): an internal server, one asked by at "
        "least 3 internal clients, or one asked about names under at least 3 domains that is the main "
        "DNS server of an internal client."),
    Key("networks.proxies", [],
        "CIDRs or addresses of forward web proxies. Traffic to them is transit: the real destination "
        "(CONNECT target, absolute URI, proxy log) is the destination in the ledger and in every "
        "detection. Proxies seen in the telemetry (CONNECT requests) are added automatically."),
    Key("tenants.<name>.networks", [],
        "CIDRs that belong to tenant <name> (the data controller a report is written for). "
        "An internal address in no tenant's networks belongs to tenant \"default\"."),
    Key("assets.<tag>", [],
        "CIDRs or single addresses tagged <tag> (e.g. epa, kim, vsdm, dc, backup)."),
    Key("allowlist.networks", [],
        "External CIDRs whose traffic is expected (own cloud, backup site); classed 'allowlisted'."),
    Key("allowlist.domains", [],
        "Domain names or wildcards (*.windowsupdate.com) classed 'allowlisted' when a flow's "
        "server name matches."),
    Key("sensor.default", "",
        "Sensor name recorded for inputs ingested without --sensor (default: the input's format)."),
    Key("detections.<id>.<setting>", None,
        "Override one threshold of detection <id> (see docs/detections.md for every setting and "
        "its default). Unknown detections or settings are errors."),
    Key("detections.<id>.enabled", True,
        "false turns detection <id> off."),
)


@dataclass(frozen=True)
class Config:
    internal: tuple[str, ...] = DEFAULT_INTERNAL
    resolvers: tuple[str, ...] = ()
    proxies: tuple[str, ...] = ()
    tenants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    assets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    allow_networks: tuple[str, ...] = ()
    allow_domains: tuple[str, ...] = ()
    default_sensor: str = ""
    detections: dict[str, dict] = field(default_factory=dict)
    source: str = "defaults"


def _cidrs(value: object, key: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: {key} must be a list of CIDR strings")
    out = []
    for v in value:
        try:
            out.append(str(ipaddress.ip_network(v.strip(), strict=False)))
        except ValueError:
            raise ConfigError(f"{source}: {key}: {v!r} is not an IP network") from None
    return tuple(out)


def _strings(value: object, key: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: {key} must be a list of strings")
    return tuple(v.strip().lower() for v in value)


def parse(data: dict, source: str = "<config>") -> Config:
    """Build a Config from parsed TOML; unknown sections or keys are errors (typos must not pass)."""
    known = {"networks", "tenants", "assets", "allowlist", "sensor", "detections"}
    for section in data:
        if section not in known:
            raise ConfigError(f"{source}: unknown section [{section}]")
    networks = data.get("networks", {})
    _only(networks, {"internal", "resolvers", "proxies"}, "networks", source)
    allow = data.get("allowlist", {})
    _only(allow, {"networks", "domains"}, "allowlist", source)
    sensor = data.get("sensor", {})
    _only(sensor, {"default"}, "sensor", source)
    tenants = {}
    for name, t in data.get("tenants", {}).items():
        if not isinstance(t, dict):
            raise ConfigError(f"{source}: [tenants.{name}] must be a table")
        _only(t, {"networks"}, f"tenants.{name}", source)
        tenants[name] = _cidrs(t.get("networks", []), f"tenants.{name}.networks", source)
    assets = {tag: _cidrs(v, f"assets.{tag}", source) for tag, v in data.get("assets", {}).items()}
    detections = data.get("detections", {})
    _only(detections, set(detections), "detections", source)
    for det, table in detections.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [detections.{det}] must be a table")
    base = Path(source).parent if source != "<config>" else Path.cwd()
    return Config(
        internal=_cidrs(networks.get("internal", list(DEFAULT_INTERNAL)), "networks.internal", source),
        resolvers=_cidrs(networks.get("resolvers", []), "networks.resolvers", source),
        proxies=_cidrs(networks.get("proxies", []), "networks.proxies", source),
        tenants=tenants,
        assets=assets,
        allow_networks=_cidrs(allow.get("networks", []), "allowlist.networks", source),
        allow_domains=_strings(allow.get("domains", []), "allowlist.domains", source),
        default_sensor=str(sensor.get("default", "")),
        detections={d: _relative_paths(dict(t), base) for d, t in detections.items()},
        source=source,
    )


def _relative_paths(table: dict, base: Path) -> dict:
    """Indicator files named in a detection's table are relative to the configuration file."""
    if isinstance(table.get("files"), list):
        table["files"] = [str(base / f) if isinstance(f, str) else f for f in table["files"]]
    return table


def _only(table: object, allowed: set[str], where: str, source: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{where}] must be a table")
    for k in table:
        if k not in allowed:
            raise ConfigError(f"{source}: unknown key {where}.{k}")


def load(path: Path | None = None, workspace: Path | None = None) -> Config:
    """Read ``path``, else ``<workspace>/abfluss.toml`` if present, else the defaults."""
    if path is None and workspace is not None and (workspace / CONFIG_NAME).exists():
        path = workspace / CONFIG_NAME
    if path is None:
        return Config()
    import tomllib  # 0.01 CPU s, only where there is a file to read

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read configuration: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    return parse(data, str(path))


def network_range(cidr: str) -> tuple[bytes, bytes]:
    """First and last address of ``cidr`` as 16-byte IPv6(-mapped) values, comparable as blobs."""
    net = ipaddress.ip_network(cidr, strict=False)
    return pack(net.network_address), pack(net.broadcast_address)


_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"


def pack(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> bytes:
    """16 bytes that order like the address: IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d)."""
    if isinstance(addr, str):
        try:  # inet_pton is ten times faster than ipaddress for the common, canonical forms
            if ":" in addr:
                return socket.inet_pton(socket.AF_INET6, addr)
            return _V4_PREFIX + socket.inet_pton(socket.AF_INET, addr)
        except OSError:
            addr = ipaddress.ip_address(addr)  # raises ValueError for what is no address at all
    if addr.version == 4:
        return b"\x00" * 10 + b"\xff\xff" + addr.packed
    return addr.packed
