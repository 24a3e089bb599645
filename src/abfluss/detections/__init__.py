"""The detection suite: one module per behaviour, each registered in ``MODULES``.

Every module defines

- ``META``: a :class:`Meta` (id, title, ATT&CK technique ids, description, runbook);
- ``Settings``: a frozen dataclass whose fields are the documented thresholds, each with
  ``metadata={"help": ...}``; overridable per detection in the configuration as
  ``[detections.<id>] <field> = value``;
- ``detect(telemetry, settings) -> list[Finding]``: set-based over the Ibis tables in
  :class:`Telemetry`, no I/O and no global state, so it runs unchanged on DuckDB and Spark.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any

from ..errors import ConfigError

#: Registered detection modules, in the order they run and are documented.
MODULES = (
    "bulk_outbound",
    "upload_heavy",
    "rare_destination",
    "beaconing",
    "long_connection",
    "dns_tunnel",
    "dns_txt_entropy",
    "icmp_tunnel",
    "scan_and_lateral",
    "brute_force",
    "executable_download",
    "suspicious_user_agent",
    "software_change",
    "tunnel_encapsulation",
    "icmp_scan",
    "arp_scan",
    "mac_ip_change",
    "threat_intel",
    "tls_anomaly",
    "direct_ip",
    "off_hours",
    "cleartext_sensitive_data",
    "protocol_mismatch",
    "ids_alert",
)


@dataclass(frozen=True)
class Meta:
    id: str
    title: str
    attack: tuple[str, ...]  # MITRE ATT&CK technique ids
    description: str
    runbook: str  # what the analyst does first, in order
    channel: str = ""  # default channel of its findings
    #: The Telemetry tables it reads. When every one of them is empty in the window the detection
    #: is not run: on no rows it finds nothing (tests/test_detections_contract.py checks both the
    #: list and that). Empty: always run.
    inputs: tuple[str, ...] = ()


@dataclass
class Telemetry:
    """What a detection sees: enriched Ibis tables cut to the analysis window.

    ``flows``    the enriched flows view (see ``abfluss.enrich``) inside the window, with the
                 allowlisted destinations already removed;
    ``history``  the same columns for flows before the window (the look-back), for baselines
                 and first-seen dates; may be empty;
    ``dns``      DNS transactions inside the window with ``client_internal`` and
                 ``server_internal``; allowlisted names removed;
    ``http``, ``tls`` the sensor's HTTP and TLS records inside the window (``tls`` with
                 ``orig_internal``, ``resp_internal`` and ``tenant``; allowlisted servers removed;
                 ``http`` with the four columns of ``alerts``, requests to allowlisted names removed);
    ``dlp``      sensitive values found in cleartext payload (hashes, never values) with
                 ``orig_internal``/``resp_internal``/``tenant``/``allowlisted``;
    ``inspected`` bytes inspected per flow side, and whether they were encrypted;
    ``alerts``   IDS alerts (Suricata eve alerts, Zeek notices) with the same four columns as
                 ``dlp``;
    ``arp``      ARP frames (captures, Zeek arp.log; ``schema.ARP``) with ``tenant``;
    ``logins``   authentication attempts (``schema.LOGINS``), ``tunnels`` encapsulation seen
                 (``schema.TUNNELS``): both with the four columns of ``alerts``;
    ``files``    files carried by connections (``schema.FILES``) with ``tx_internal``,
                 ``rx_internal``, ``tenant``, ``allowlisted``;
    ``software`` software hosts announced (``schema.SOFTWARE``) with ``host_internal``, ``tenant``;
    ``certs``    certificates the sensor parsed (``schema.CERTS``, Zeek x509.log), joined to
                 handshakes through ``tls.cert_fuids``; from the look-back on, since a
                 sensor logs a certificate once and later handshakes only refer to it;
    ``macs``     which MAC address carried which IP address (``analysis.macs_sql``): one row
                 per pair from the flows' frames and ARP senders, from the look-back on, with
                 ``ts``/``ts_end`` (first and last sight), ``flows``, ``arp_frames``,
                 ``internal``, ``local`` and ``tenant``;
    ``start``, ``end`` the window (UTC); ``extra`` detection-specific inputs from the
    configuration (e.g. indicator lists), keyed by detection id; ``rows`` the tables' row
    counts where known.
    """

    flows: Any
    history: Any
    dns: Any
    http: Any
    tls: Any
    dlp: Any = None
    inspected: Any = None
    alerts: Any = None
    arp: Any = None
    logins: Any = None
    files: Any = None
    software: Any = None
    tunnels: Any = None
    certs: Any = None
    macs: Any = None
    start: datetime | None = None
    end: datetime | None = None
    backend: str = "duckdb"
    extra: dict = field(default_factory=dict)
    #: Rows per table in the window, where known (see ``Meta.inputs``).
    rows: dict = field(default_factory=dict)

    #: Tables several queries derive from the same rows, computed once (see ``shared``).
    _shared: dict = field(default_factory=dict, repr=False)

    def shared(self, name: str, build: Callable[[], Any]) -> Any:
        """The Ibis table ``build()`` returns, computed once for this telemetry and kept in the
        engine (a temporary DuckDB table; ``detections._sql.materialize``), so the detections and
        queries that start from the same pre-aggregate do not each scan and group the flows
        again. ``name`` (letters, digits, underscores) must name everything the table depends
        on beyond the telemetry itself, settings included. Each Telemetry has its own connection
        (``analysis.telemetry_from_parquet``), so the name needs no other qualification."""
        table = self._shared.get(name)
        if table is None:
            from ._sql import materialize

            table = self._shared[name] = materialize(build(), f"abfluss_shared_{name}")
        return table

    def empty(self, tables: tuple[str, ...]) -> bool:
        """True when every one of ``tables`` is known to hold no row in the window."""
        return bool(tables) and all(self.rows.get(t, 1) == 0 for t in tables)


def module(detection_id: str) -> ModuleType:
    if detection_id not in MODULES:
        raise ConfigError(f"unknown detection {detection_id!r} (known: {', '.join(MODULES)})")
    return importlib.import_module(f"{__name__}.{detection_id}")


def all_modules() -> list[ModuleType]:
    return [module(d) for d in MODULES]


def settings_for(detection_id: str, overrides: dict | None) -> Any:
    """The detection's Settings with the configuration's overrides applied and type-checked."""
    mod = module(detection_id)
    base = mod.Settings()
    if not overrides:
        return base
    fields = {f.name: f for f in dataclasses.fields(base)}
    changes = {}
    for name, value in overrides.items():
        if name not in fields:
            raise ConfigError(f"detections.{detection_id}: unknown setting {name!r} "
                              f"(known: {', '.join(sorted(fields))})")
        changes[name] = _coerce(detection_id, name, getattr(base, name), value)
    return dataclasses.replace(base, **changes)


def _coerce(det: str, name: str, default: Any, value: Any) -> Any:
    where = f"detections.{det}.{name}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number")
        return type(default)(value) if isinstance(default, float) or float(value).is_integer() else value
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list")
        return tuple(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string")
        return value
    return value


def settings_help(detection_id: str) -> list[tuple[str, Any, str]]:
    """(name, default, help) of every setting of a detection, for docs and ``explain``."""
    base = module(detection_id).Settings()
    return [(f.name, getattr(base, f.name), f.metadata.get("help", ""))
            for f in dataclasses.fields(base)]
