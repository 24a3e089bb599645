"""Enrichment as views: direction, tenant, asset tags, allowlists, best destination name.

Views are rebuilt from the configuration each time a workspace is opened for analysis, so
a change of configuration never needs a re-ingest. Views defined here:

``address_class``  every address seen: internal?, tenant, asset tags, allowlisted network?
``dns_names``      external address -> the DNS name most often resolved to it
``flows_directed`` de-duplicated flows (an interim open record is dropped once its connection
                   is seen complete; of several snapshots the latest counts) with
                   ``direction`` (outbound, inbound, internal, external), ``internal_host``,
                   ``external_host``, ``bytes_out``, ``bytes_in``, ``flow_name`` (SNI/Host)
``flows``          the same with ``external_name`` (falling back to DNS), ``tenant`` and
                   ``dest_class`` (internal, allowlisted, unknown): what detections read
``sensor_health``  records, bytes and missed bytes per sensor per minute

Outflow is bytes sent by the internal endpoint to the external one, whichever side opened
the connection. Bytes are application payload where the sensor measures it (pcap, Zeek),
IP bytes otherwise (NetFlow, Suricata).
"""

from __future__ import annotations

from .config import Config, network_range
from .store import Workspace


def _blob(b: bytes) -> str:
    return "'" + "".join(f"\\x{x:02X}" for x in b) + "'::BLOB"


def in_networks(column: str, cidrs: tuple[str, ...]) -> str:
    """SQL predicate: the 16-byte address in ``column`` lies in one of ``cidrs``."""
    if not cidrs:
        return "false"
    parts = []
    for c in cidrs:
        lo, hi = network_range(c)
        parts.append(f"({column} BETWEEN {_blob(lo)} AND {_blob(hi)})")
    return "(" + " OR ".join(parts) + ")"


def domain_match(column: str, patterns: tuple[str, ...]) -> str:
    """SQL predicate: ``column`` equals a domain, or is below a ``*.domain`` wildcard."""
    parts = []
    for p in patterns:
        p = p.replace("'", "''")
        if p.startswith("*."):
            parts.append(f"ends_with({column}, '{p[1:]}')")
        else:
            parts.append(f"{column} = '{p}'")
    return "(" + " OR ".join(parts) + ")" if parts else "false"


def dest_class_sql(cfg: Config, direction: str, allow_net: str, name: str) -> str:
    """SQL for the destination class: internal, allowlisted (network or domain) or unknown."""
    return (f"CASE WHEN {direction} = 'internal' THEN 'internal' "
            f"WHEN coalesce({allow_net}, false) OR {domain_match(name, cfg.allow_domains)} THEN 'allowlisted' "
            "ELSE 'unknown' END")


def apply(ws: Workspace, cfg: Config) -> None:
    """Create (or replace) the enrichment views for ``cfg``."""
    con = ws.con
    # A reader's catalog is read-only: its views live in the session; a writer's are kept.
    view = "VIEW" if ws.write else "TEMP VIEW"
    tenant = "CASE " + " ".join(
        f"WHEN {in_networks('a', nets)} THEN '{name.replace(chr(39), chr(39) * 2)}'"
        for name, nets in cfg.tenants.items()) + " ELSE 'default' END" if cfg.tenants else "'default'"
    tags = "list_filter([" + ", ".join(
        f"CASE WHEN {in_networks('a', nets)} THEN '{tag}' END" for tag, nets in cfg.assets.items()
    ) + "], lambda x: x IS NOT NULL)" if cfg.assets else "[]::VARCHAR[]"
    con.execute(f"""
        CREATE OR REPLACE {view} address_class AS
        SELECT addr, id, coalesce({in_networks('a', cfg.internal)}, false) AS internal,
               {tenant} AS tenant, {tags} AS tags,
               coalesce({in_networks('a', cfg.allow_networks)}, false) AS allow_net
        FROM addresses""")
    con.execute(f"""
        CREATE OR REPLACE {view} dns_names AS
        SELECT addr, arg_max(query, n) AS name FROM (
            SELECT addr, query, count(*) AS n FROM (
                SELECT unnest(answers) AS addr, lower(query) AS query FROM dns_raw
                WHERE query IS NOT NULL AND len(answers) > 0)
            GROUP BY ALL)
        GROUP BY addr""")
    con.execute(f"""
        CREATE OR REPLACE {view} flows_dedup AS
        SELECT * FROM flows_raw WHERE NOT coalesce(open, false)
        UNION ALL
        SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY sensor, uid ORDER BY ts_end DESC) AS rn
            FROM flows_raw o WHERE open AND NOT EXISTS (
                SELECT 1 FROM flows_raw c
                WHERE NOT coalesce(c.open, false) AND c.uid = o.uid AND c.sensor = o.sensor))
        WHERE rn = 1""")
    con.execute(f"""
        CREATE OR REPLACE {view} flows_directed AS
        WITH f AS (
            SELECT f.*, co.id AS orig_id, cr.id AS resp_id, coalesce(co.internal, false) AS orig_internal,
                   coalesce(cr.internal, false) AS resp_internal,
                   coalesce(f.server_name, t.sni, h.host) AS flow_name
            FROM flows_dedup f
            LEFT JOIN address_class co ON co.addr = f.orig_h
            LEFT JOIN address_class cr ON cr.addr = f.resp_h
            LEFT JOIN (SELECT sensor, uid, max(lower(server_name)) AS sni FROM tls_raw
                       WHERE server_name IS NOT NULL AND uid IS NOT NULL GROUP BY ALL) t
                   ON t.uid = f.uid AND t.sensor = f.sensor
            LEFT JOIN (SELECT sensor, uid, max(lower(host)) AS host FROM http_raw
                       WHERE host IS NOT NULL AND uid IS NOT NULL GROUP BY ALL) h
                   ON h.uid = f.uid AND h.sensor = f.sensor)
        SELECT *,
            CASE WHEN orig_internal AND NOT resp_internal THEN 'outbound'
                 WHEN resp_internal AND NOT orig_internal THEN 'inbound'
                 WHEN orig_internal AND resp_internal THEN 'internal'
                 ELSE 'external' END AS direction,
            CASE WHEN orig_internal <> resp_internal THEN CASE WHEN orig_internal THEN orig_h ELSE resp_h END
                 END AS internal_host,
            CASE WHEN orig_internal <> resp_internal THEN CASE WHEN orig_internal THEN orig_id ELSE resp_id END
                 END AS internal_id,
            CASE WHEN orig_internal <> resp_internal THEN CASE WHEN orig_internal THEN resp_id ELSE orig_id END
                 END AS external_id,
            CASE WHEN orig_internal <> resp_internal THEN CASE WHEN orig_internal THEN resp_h ELSE orig_h END
                 END AS external_host,
            CASE WHEN orig_internal <> resp_internal THEN CASE WHEN orig_internal
                 THEN coalesce(orig_bytes, orig_ip_bytes, 0) ELSE coalesce(resp_bytes, resp_ip_bytes, 0) END
                 END AS bytes_out,
            CASE WHEN orig_internal <> resp_internal THEN CASE WHEN orig_internal
                 THEN coalesce(resp_bytes, resp_ip_bytes, 0) ELSE coalesce(orig_bytes, orig_ip_bytes, 0) END
                 END AS bytes_in
        FROM f""")
    con.execute(f"""
        CREATE OR REPLACE {view} flows AS
        SELECT d.* EXCLUDE (flow_name, orig_id, resp_id, internal_id, external_id),
            CASE direction WHEN 'outbound' THEN coalesce(flow_name, n.name)
                           WHEN 'inbound' THEN n.name END AS external_name,
            coalesce(ci.tenant, co.tenant) AS tenant,
            {dest_class_sql(cfg, "d.direction", "ce.allow_net", "coalesce(flow_name, n.name)")} AS dest_class
        FROM flows_directed d
        LEFT JOIN address_class ci ON ci.addr = d.internal_host
        LEFT JOIN address_class ce ON ce.addr = d.external_host
        LEFT JOIN address_class co ON co.addr = d.orig_h AND d.direction = 'internal'
        LEFT JOIN dns_names n ON n.addr = d.external_host""")
    con.execute(f"""
        CREATE OR REPLACE {view} sensor_health AS
        SELECT sensor, time_bucket(INTERVAL 1 MINUTE, ts) AS minute, count(*) AS records,
               sum(coalesce(orig_bytes, orig_ip_bytes, 0) + coalesce(resp_bytes, resp_ip_bytes, 0)) AS bytes,
               sum(coalesce(missed_bytes, 0)) AS missed_bytes
        FROM flows_raw GROUP BY ALL""")
