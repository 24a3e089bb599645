"""Enrichment as views: direction, tenant, asset tags, allowlists, best destination name.

Views are rebuilt from the configuration each time a workspace is opened for analysis, so
a change of configuration never needs a re-ingest. Views defined here:

``address_class``  every address seen: internal?, tenant, asset tags, allowlisted network?
``dns_names``      external address -> the DNS name most often resolved to it
``flows``          de-duplicated flows (an interim open record is dropped once its connection
                   is seen complete; of several snapshots the latest counts) with
                   ``direction`` (outbound, inbound, internal, external), ``internal_host``,
                   ``external_host``, ``external_name``, ``bytes_out``, ``bytes_in``,
                   ``tenant``, ``dest_class`` (internal, allowlisted, unknown)
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


def apply(ws: Workspace, cfg: Config) -> None:
    """Create (or replace) the enrichment views for ``cfg``."""
    con = ws.con
    tenant = "CASE " + " ".join(
        f"WHEN {in_networks('a', nets)} THEN '{name.replace(chr(39), chr(39) * 2)}'"
        for name, nets in cfg.tenants.items()) + " ELSE 'default' END" if cfg.tenants else "'default'"
    tags = "list_filter([" + ", ".join(
        f"CASE WHEN {in_networks('a', nets)} THEN '{tag}' END" for tag, nets in cfg.assets.items()
    ) + "], x -> x IS NOT NULL)" if cfg.assets else "[]::VARCHAR[]"
    con.execute(f"""
        CREATE OR REPLACE VIEW address_class AS
        SELECT addr, coalesce({in_networks('a', cfg.internal)}, false) AS internal,
               {tenant} AS tenant, {tags} AS tags,
               coalesce({in_networks('a', cfg.allow_networks)}, false) AS allow_net
        FROM addresses""")
    con.execute("""
        CREATE OR REPLACE VIEW dns_names AS
        SELECT addr, arg_max(query, n) AS name FROM (
            SELECT addr, query, count(*) AS n FROM (
                SELECT unnest(answers) AS addr, lower(query) AS query FROM dns_raw
                WHERE query IS NOT NULL AND len(answers) > 0)
            GROUP BY ALL)
        GROUP BY addr""")
    con.execute("""
        CREATE OR REPLACE VIEW flows_dedup AS
        SELECT * FROM flows_raw WHERE NOT coalesce(open, false)
        UNION ALL
        SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY sensor, uid ORDER BY ts_end DESC) AS rn
            FROM flows_raw o WHERE open AND NOT EXISTS (
                SELECT 1 FROM flows_raw c
                WHERE NOT coalesce(c.open, false) AND c.uid = o.uid AND c.sensor = o.sensor))
        WHERE rn = 1""")
    con.execute(f"""
        CREATE OR REPLACE VIEW flows AS
        WITH f AS (
            SELECT f.*, co.internal AS orig_internal, cr.internal AS resp_internal,
                   co.tenant AS orig_tenant, cr.tenant AS resp_tenant,
                   co.allow_net AS orig_allow, cr.allow_net AS resp_allow,
                   coalesce(f.server_name, t.sni, h.host) AS flow_name
            FROM flows_dedup f
            LEFT JOIN address_class co ON co.addr = f.orig_h
            LEFT JOIN address_class cr ON cr.addr = f.resp_h
            LEFT JOIN (SELECT sensor, uid, max(lower(server_name)) AS sni FROM tls_raw
                       WHERE server_name IS NOT NULL AND uid IS NOT NULL GROUP BY ALL) t
                   ON t.uid = f.uid AND t.sensor = f.sensor
            LEFT JOIN (SELECT sensor, uid, max(lower(host)) AS host FROM http_raw
                       WHERE host IS NOT NULL AND uid IS NOT NULL GROUP BY ALL) h
                   ON h.uid = f.uid AND h.sensor = f.sensor),
        d AS (
            SELECT *,
                CASE WHEN orig_internal AND NOT resp_internal THEN 'outbound'
                     WHEN resp_internal AND NOT orig_internal THEN 'inbound'
                     WHEN orig_internal AND resp_internal THEN 'internal'
                     ELSE 'external' END AS direction
            FROM f)
        SELECT d.* EXCLUDE (orig_tenant, resp_tenant, orig_allow, resp_allow, flow_name),
            CASE direction WHEN 'outbound' THEN orig_h WHEN 'inbound' THEN resp_h END AS internal_host,
            CASE direction WHEN 'outbound' THEN resp_h WHEN 'inbound' THEN orig_h END AS external_host,
            CASE direction WHEN 'outbound' THEN coalesce(flow_name, n.name)
                           WHEN 'inbound' THEN n.name END AS external_name,
            CASE direction WHEN 'outbound' THEN coalesce(orig_bytes, orig_ip_bytes, 0)
                           WHEN 'inbound' THEN coalesce(resp_bytes, resp_ip_bytes, 0) END AS bytes_out,
            CASE direction WHEN 'outbound' THEN coalesce(resp_bytes, resp_ip_bytes, 0)
                           WHEN 'inbound' THEN coalesce(orig_bytes, orig_ip_bytes, 0) END AS bytes_in,
            CASE direction WHEN 'outbound' THEN orig_tenant WHEN 'inbound' THEN resp_tenant
                           WHEN 'internal' THEN orig_tenant END AS tenant,
            CASE WHEN direction = 'internal' THEN 'internal'
                 WHEN (direction = 'outbound' AND resp_allow) OR (direction = 'inbound' AND orig_allow)
                      OR {domain_match('coalesce(flow_name, n.name)', cfg.allow_domains)} THEN 'allowlisted'
                 ELSE 'unknown' END AS dest_class
        FROM d
        LEFT JOIN dns_names n ON n.addr = CASE direction WHEN 'outbound' THEN d.resp_h
                                                         WHEN 'inbound' THEN d.orig_h END""")
    con.execute("""
        CREATE OR REPLACE VIEW sensor_health AS
        SELECT sensor, time_bucket(INTERVAL 1 MINUTE, ts) AS minute, count(*) AS records,
               sum(coalesce(orig_bytes, orig_ip_bytes, 0) + coalesce(resp_bytes, resp_ip_bytes, 0)) AS bytes,
               sum(coalesce(missed_bytes, 0)) AS missed_bytes
        FROM flows_raw GROUP BY ALL""")
