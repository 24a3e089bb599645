"""Enrichment as views: direction, tenant, asset tags, allowlists, best destination name.

Views are rebuilt from the configuration each time a workspace is opened for analysis, so
a change of configuration never needs a re-ingest. Views defined here:

``address_class``  every address seen: internal?, tenant, asset tags, allowlisted network?,
                   local (multicast, broadcast, link-local, unspecified)?, configured proxy?
``resolvers``      the DNS servers whose answers may name destinations: the configured
                   ``networks.resolvers``, else the ones learned from the traffic by the one rule
                   of :mod:`abfluss.resolvers` (internal; or asked by several internal clients;
                   or about several domains and some client's main server)
``dns_names``      external address -> the name the resolvers' A/AAAA answers most often give it
``proxies``        forward proxies: configured (``networks.proxies``) or seen (internal clients
                   sending CONNECT or absolute-URI requests to an internal address, Zeek http.log)
``proxy_targets``  per proxied connection (sensor, uid): the real destination and port from its
                   first CONNECT or absolute-URI request, and the address where known (an address
                   literal, else the name's most frequent A/AAAA answer to the proxy or of the
                   resolvers)
``flows_directed`` de-duplicated flows (an interim open record is dropped once its connection
                   is seen complete; of several snapshots the latest counts) with
                   ``direction`` (outbound, inbound, internal, external), ``internal_host``,
                   ``external_host``, ``bytes_out``, ``bytes_in``, ``flow_name`` (SNI/Host).
                   A connection to a proxy whose target is known is the connection to the target:
                   ``resp_h``/``resp_p`` are the target's (its name where no address is known),
                   ``proxy``/``proxy_p`` keep the proxy's
``flows``          the same with ``external_name`` (falling back to the resolvers' answers),
                   ``name_source`` (connection: the flow's own SNI/Host; resolver; null),
                   ``tenant`` and ``dest_class`` (internal, local, allowlisted, proxy, unknown):
                   what detections read

Macro ``dns_address(answer, answer_type, qtype)``: the answer if it is the value of an A or
AAAA record, else null. A TXT or CNAME text spelled like an address is never one; where the
sensor does not give answer types (Zeek), an answer counts only in an A/AAAA response and in
that family's form.

Names decide allowlisting, and anyone can run a DNS server: malware asking its own server for
``cdn.windowsupdate.com`` must not make its upload allowlisted. So only the resolvers' answers
or the connection's own SNI/Host name a destination.
``sensor_health``  records, bytes and missed bytes per sensor per minute

Outflow is bytes sent by the internal endpoint to the external one, whichever side opened
the connection. Bytes are application payload where the sensor measures it (pcap, Zeek),
IP bytes otherwise (NetFlow, Suricata).
"""

from __future__ import annotations

import re

from . import resolvers
from .config import Config, network_range
from .store import Workspace
from .store.catalog import transaction
from .store.views import deferring, read_files

#: Addresses that never leave the local link or name no host: multicast, limited broadcast,
#: link-local, unspecified / "this network". Traffic to them is ``dest_class = 'local'``: in the
#: ledger, never outflow, never a detection's destination.
LOCAL_NETWORKS = ("224.0.0.0/4", "255.255.255.255/32", "169.254.0.0/16", "0.0.0.0/8",
                  "ff00::/8", "fe80::/10", "::/128")
#: A request target that is an absolute URI (``http://host/...``): what only a forward proxy is sent.
_ABSOLUTE_URI = "^[A-Za-z][A-Za-z0-9+.-]*://"
#: An IPv4 or IPv6 address literal (DNS text that merely looks like one is never taken as an address).
_ADDRESS = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$|^[0-9a-f:.]*:[0-9a-f:.]*$"


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


def dest_class_sql(cfg: Config, direction: str, allow_net: str, name: str, local: str = "false") -> str:
    """SQL for the destination class: internal, local, allowlisted (network or domain) or unknown."""
    return (f"CASE WHEN {direction} = 'internal' THEN 'internal' "
            f"WHEN coalesce({local}, false) THEN 'local' "
            f"WHEN coalesce({allow_net}, false) OR {domain_match(name, cfg.allow_domains)} THEN 'allowlisted' "
            "ELSE 'unknown' END")


_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: SQL body of the ``dns_address`` macro (strict forms: no IPv6 zone, no spaces, no newlines).
DNS_ADDRESS_SQL = f"""CASE coalesce(answer_type, qtype)
    WHEN 'A' THEN CASE WHEN regexp_full_match(answer, '{_OCTET}(\\.{_OCTET}){{3}}') THEN answer END
    WHEN 'AAAA' THEN CASE WHEN regexp_full_match(answer, '[0-9A-Fa-f:.]{{2,45}}') AND contains(answer, ':')
                          THEN lower(answer) END
    END"""
def resolvers_sql(cfg: Config) -> str:
    """SQL of the ``resolvers`` view: (addr, source) with source configured or learned. Learned by
    :func:`abfluss.resolvers.learned` (the rule ``dns_tunnel`` uses too) over every record of the
    workspace, through the views ``resolver_flows_in`` and ``resolver_dns_in``."""
    if cfg.resolvers:
        return (f"SELECT addr, 'configured' AS source FROM addresses "
                f"WHERE {in_networks('a', cfg.resolvers)}")
    tuned = cfg.detections.get("dns_tunnel", {})
    rule = resolvers.learned_sql("resolver_flows_in", "resolver_dns_in",
                                 int(tuned.get("learn_min_clients", resolvers.LEARN_MIN_CLIENTS)),
                                 int(tuned.get("learn_min_domains", resolvers.LEARN_MIN_DOMAINS)))
    return f"SELECT resp_h AS addr, 'learned' AS source FROM ({rule})"


def _resolver_inputs(con, view: str) -> None:
    """What the learned-resolver rule reads: port-53 flows and DNS messages with their sides'
    internal flags; local servers (mDNS, LLMNR, NetBIOS) left out."""
    con.execute(f"""
        CREATE OR REPLACE {view} resolver_flows_in AS
        SELECT f.orig_h, f.resp_h, f.resp_p, f.proto, coalesce(c.internal, false) AS orig_internal,
               coalesce(s.internal, false) AS resp_internal
        FROM flows_raw f LEFT JOIN address_class c ON c.addr = f.orig_h
        LEFT JOIN address_class s ON s.addr = f.resp_h
        WHERE f.resp_p = {resolvers.DNS_PORT} AND NOT coalesce(s.local, false)""")
    con.execute(f"""
        CREATE OR REPLACE {view} resolver_dns_in AS
        SELECT d.orig_h, d.resp_h, d.query, coalesce(c.internal, false) AS client_internal,
               coalesce(s.internal, false) AS server_internal
        FROM dns_raw d LEFT JOIN address_class c ON c.addr = d.orig_h
        LEFT JOIN address_class s ON s.addr = d.resp_h
        WHERE NOT coalesce(s.local, false)""")


def apply(ws: Workspace, cfg: Config) -> None:
    """Create (or replace) the enrichment views for ``cfg``.

    A reader's catalog is read-only: its views live in the session; a writer's are kept, with a
    digest of their definitions. A reader whose definitions have the same digest (same
    configuration, same code) uses the kept ones instead of creating its own: DuckDB binds
    every view it creates, a tenth of a second of a command such as ``ledger``. A writer with
    the same digest keeps them too (each ``analyze`` and ``ingest`` opens for writing)."""
    view = "VIEW" if ws.write else "TEMP VIEW"
    macro = "MACRO" if ws.write else "TEMP MACRO"
    if _kept(ws, cfg):
        ws.enriched_with = cfg
        if ws.write:  # more flows stored later may need the de-duplicating form (store.refresh_views)
            ws.after_refresh = lambda added=None: _dedup_view(ws, view, added)
        return
    before, after = _definitions(cfg, view, macro)
    defer = deferring(ws.con)
    # a writer's views and their digest in one transaction (one commit: see store.catalog.transaction)
    with transaction(ws.con, ws.write):
        if ws.write:  # no digest while the views change: a writer stopped halfway leaves none
            ws.con.execute("CREATE TABLE IF NOT EXISTS enrich_state (key VARCHAR PRIMARY KEY, value VARCHAR)")
            ws.con.execute("DELETE FROM enrich_state WHERE key = 'views'")
        for sql in before:
            ws.con.execute(defer(sql))
        ws._open_flows = None
        _dedup_view(ws, view)
        # a writer stores more flows after this (ingest, watch): the view follows (store.refresh_views)
        ws.after_refresh = lambda added=None: _dedup_view(ws, view, added)
        for sql in after:
            ws.con.execute(defer(sql))
        if ws.write:
            ws.con.execute("INSERT INTO enrich_state VALUES ('views', ?)", [_digest(before, after)])
    ws.enriched_with = cfg  # what the stored ledger's update checks it groups under (ledger_store)


#: Whether ``flows_dedup`` (defined by the data, see ``_dedup_view``) is its de-duplicating form.
_DEDUPLICATING = "row_number"


def kept_views(con, *also: str) -> tuple | None:
    """The catalog's kept views: the digest of their definitions (``apply``) and whether
    ``flows_dedup`` is its de-duplicating form, then the values of the scalar SQL expressions
    ``also``, read in one query; None when the catalog keeps no digest or no ``flows_dedup``.
    DuckDB's own text of a view cannot stand for its definition: it lists an EXCLUDE's columns
    in no fixed order."""
    from .store.engine import module

    columns = ["(SELECT value FROM enrich_state WHERE key = 'views')",
               "(SELECT sql FROM duckdb_views() WHERE view_name = 'flows_dedup' AND NOT temporary)", *also]
    try:
        digest, dedup, *values = con.execute("SELECT " + ", ".join(columns)).fetchall()[0]
    except module().Error:  # a catalog from before the digest was kept
        return None
    if digest is None or dedup is None:
        return None
    return (digest, _DEDUPLICATING in dedup, *values)


def _kept(ws: Workspace, cfg: Config) -> bool:
    """Whether the catalog's kept views are the ones ``cfg`` defines, ``flows_dedup`` included
    (its form follows whether interim records are stored). Every writer of this version keeps the
    digest with its views; a writer of an older version (without a digest) on the same workspace
    after a newer one would leave the newer digest beside its own views."""
    kept = kept_views(ws.con, "EXISTS (SELECT 1 FROM flows_raw WHERE open)")
    if kept is None:
        return False
    digest, deduplicating, has_open = kept
    if deduplicating != bool(has_open) or digest != _digest(*_definitions(cfg, "VIEW", "MACRO")):
        return False
    ws._open_flows = has_open
    return True


def _digest(before: list[str], after: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\0".join(before + ["flows_dedup"] + after).encode()).hexdigest()


#: ``flows_directed``'s first step where no proxy is configured or seen (the ``proxies`` view is
#: empty): no flow is proxied or transit, and the joins with ``proxies`` and ``proxy_targets``
#: (whose DNS lookups were most of the stored ledger's grouping on a DNS-heavy capture) give nothing.
_UNPROXIED = """
        WITH p AS (
            SELECT f.*, CASE WHEN false THEN f.resp_h END AS proxy, CASE WHEN false THEN f.resp_p END AS proxy_p,
                   false AS proxy_transit, false AS proxied, NULL::VARCHAR AS proxy_name
            FROM flows_dedup f),"""
_PROXIED = """
        WITH p AS (
            SELECT f.* REPLACE (
                       CASE WHEN pt.target IS NOT NULL THEN coalesce(pt.addr, pt.target) ELSE f.resp_h END AS resp_h,
                       CASE WHEN pt.target IS NOT NULL THEN pt.port ELSE f.resp_p END AS resp_p),
                   CASE WHEN px.addr IS NOT NULL THEN f.resp_h END AS proxy,
                   CASE WHEN px.addr IS NOT NULL THEN f.resp_p END AS proxy_p,
                   px.addr IS NOT NULL AND pt.target IS NULL AS proxy_transit,
                   pt.target IS NOT NULL AS proxied,
                   CASE WHEN NOT pt.literal THEN pt.target END AS proxy_name
            FROM flows_dedup f
            LEFT JOIN {proxies} px ON px.addr = f.resp_h
            LEFT JOIN {targets} pt ON pt.uid = f.uid AND pt.sensor = f.sensor),"""
_DIRECTED = """
        f AS (
            SELECT f.*, co.id AS orig_id, cr.id AS resp_id, coalesce(co.internal, false) AS orig_internal,
                   coalesce(cr.internal, false) AS resp_internal,
                   CASE WHEN f.proxied THEN coalesce(f.proxy_name, t.sni)
                        ELSE coalesce(f.server_name, t.sni, h.host) END AS flow_name
            FROM p f
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
        FROM f"""


def directed_sql(proxies: bool = True, relations: tuple[str, str] = ("proxies", "proxy_targets")) -> str:
    """The query of the ``flows_directed`` view; with ``proxies`` false, the same rows for a
    workspace whose ``proxies`` view is empty (the caller checks), without reading the proxy views.
    ``relations``: what to read for the views ``proxies`` and ``proxy_targets`` (tables holding
    their rows, made once for several queries: ``ledger_store.update``)."""
    if not proxies:
        return _UNPROXIED + _DIRECTED
    return _PROXIED.format(proxies=relations[0], targets=relations[1]) + _DIRECTED


class _Statements(list):
    """Collects view definitions where a connection would run them (``execute``)."""

    def execute(self, sql: str) -> None:
        self.append(sql)


def _definitions(cfg: Config, view: str, macro: str) -> tuple[list[str], list[str]]:
    """The statements defining the views and the macro: those before ``flows_dedup`` (which
    depends on the data, see ``_dedup_view``) and those after it."""
    con = before = _Statements()
    con.execute(f"CREATE OR REPLACE {macro} dns_address(answer, answer_type, qtype) AS {DNS_ADDRESS_SQL}")
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
               coalesce({in_networks('a', cfg.allow_networks)}, false) AS allow_net,
               coalesce({in_networks('a', LOCAL_NETWORKS)}, false) AS local,
               coalesce({in_networks('a', cfg.proxies)}, false) AS proxy_net
        FROM addresses""")
    _resolver_inputs(con, view)
    con.execute(f"CREATE OR REPLACE {view} resolvers AS {resolvers_sql(cfg)}")
    con.execute(f"""
        CREATE OR REPLACE {view} dns_names AS
        SELECT addr, arg_max(query, n) AS name FROM (
            SELECT dns_address(answer, answer_type, qtype) AS addr, query, count(*) AS n FROM (
                SELECT unnest(answers) AS answer, unnest(answer_types) AS answer_type, qtype,
                       lower(query) AS query FROM dns_raw
                WHERE query IS NOT NULL AND len(answers) > 0
                  AND resp_h IN (SELECT addr FROM resolvers))
            WHERE addr IS NOT NULL
            GROUP BY ALL)
        GROUP BY addr""")
    _proxy_views(con, view)
    con = after = _Statements()
    con.execute(f"""
        CREATE OR REPLACE {view} flows_directed AS{directed_sql()}""")
    con.execute(f"""
        CREATE OR REPLACE {view} flows AS
        SELECT d.* EXCLUDE (flow_name, orig_id, resp_id, internal_id, external_id, proxy_transit, proxied,
                                proxy_name),
            CASE direction WHEN 'outbound' THEN coalesce(flow_name, n.name)
                           WHEN 'inbound' THEN n.name END AS external_name,
            CASE WHEN direction = 'outbound' AND flow_name IS NOT NULL THEN 'connection'
                 WHEN direction IN ('outbound', 'inbound') AND n.name IS NOT NULL THEN 'resolver'
                 END AS name_source,
            coalesce(ci.tenant, co.tenant) AS tenant,
            CASE WHEN d.proxy_transit AND d.direction <> 'internal' THEN 'proxy' ELSE
            {dest_class_sql(cfg, "d.direction", "ce.allow_net", "coalesce(flow_name, n.name)", "ce.local")}
            END AS dest_class
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
    return before, after


def _dedup_view(ws: Workspace, view: str, added: dict | None = None) -> None:
    """``flows_dedup`` (see the module docstring). Without any interim (open) record there is
    nothing to de-duplicate, and matching every flow's uid against none costs a pass over all
    flows per query (most of an evidence lookup's time): the view is then the flows themselves,
    and it is defined again when the first interim record is stored.

    ``added``: when a commit only added files (paths relative to the workspace by table, as
    ``store.refresh_views`` passes them), only the new flow files are looked at, if any: once
    interim records are stored more files cannot remove them, and before that only new flow
    files can bring one. Looking through every stored flow file after each commit was a pass over
    a growing workspace per commit of a directory's ingest."""
    known = getattr(ws, "_open_flows", None)
    if added is not None and known is not None:
        new = added.get("flows") or []
        if known or not new:
            return
        has_open = ws.con.execute(f"SELECT EXISTS (SELECT 1 FROM {read_files(ws.root, new)} WHERE open)"
                                  ).fetchall()[0][0]
    else:
        has_open = ws.con.execute("SELECT EXISTS (SELECT 1 FROM flows_raw WHERE open)").fetchall()[0][0]
    if has_open == known:
        return
    ws._open_flows = has_open
    if not has_open:
        ws.con.execute(f"CREATE OR REPLACE {view} flows_dedup AS SELECT * FROM flows_raw")
        return
    ws.con.execute(f"""
        CREATE OR REPLACE {view} flows_dedup AS
        SELECT * FROM flows_raw WHERE NOT coalesce(open, false)
        UNION ALL
        SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY sensor, uid ORDER BY ts_end DESC) AS rn
            FROM flows_raw o WHERE open AND NOT EXISTS (
                SELECT 1 FROM flows_raw c
                WHERE NOT coalesce(c.open, false) AND c.uid = o.uid AND c.sensor = o.sensor))
        WHERE rn = 1""")


def _proxy_views(con, view: str) -> None:
    """``proxies`` and ``proxy_targets`` (see the module docstring)."""
    con.execute(f"""
        CREATE OR REPLACE {view} proxies AS
        SELECT addr FROM address_class WHERE proxy_net
        UNION
        SELECT h.resp_h FROM http_raw h
        JOIN address_class c ON c.addr = h.orig_h AND c.internal
        JOIN address_class s ON s.addr = h.resp_h AND s.internal
        WHERE upper(h.method) = 'CONNECT' OR regexp_matches(h.uri, '{_ABSOLUTE_URI}')""")
    # CONNECT's target is its URI ("host:port"); an absolute URI's is its authority. The Host
    # header is the fallback only: the proxy connects where the request line says.
    con.execute(f"""
        CREATE OR REPLACE {view} proxy_targets AS{proxy_targets_sql()}""")


def proxy_targets_sql(proxies: str = "proxies") -> str:
    """The query of the ``proxy_targets`` view; ``proxies``: what to read for the ``proxies``
    view (a table holding its rows, made once for several queries: ``ledger_store.update``)."""
    return f"""
        WITH r AS (
            SELECT h.sensor, h.uid, h.ts, upper(h.method) = 'CONNECT' AS tunnel,
                   CASE WHEN upper(h.method) = 'CONNECT' THEN h.uri
                        ELSE regexp_extract(h.uri, '{_ABSOLUTE_URI}(?:[^/?#@]*@)?([^/?#]*)', 1) END AS authority,
                   lower(regexp_extract(h.uri, '^([A-Za-z][A-Za-z0-9+.-]*)://', 1)) AS scheme,
                   h.host
            FROM http_raw h JOIN {proxies} p ON p.addr = h.resp_h
            WHERE h.uid IS NOT NULL
              AND (upper(h.method) = 'CONNECT' OR regexp_matches(h.uri, '{_ABSOLUTE_URI}'))),
        t AS (
            SELECT sensor, uid, arg_min(tunnel, ts) AS tunnel, arg_min(scheme, ts) AS scheme,
                   arg_min(coalesce(nullif(authority, ''), host), ts) AS authority
            FROM r GROUP BY sensor, uid),
        n AS (
            SELECT sensor, uid, scheme, tunnel,
                   lower(CASE WHEN starts_with(authority, '[') THEN regexp_extract(authority, '^\\[([^\\]]*)\\]', 1)
                              WHEN length(authority) - length(replace(authority, ':', '')) > 1 THEN authority
                              ELSE regexp_replace(authority, ':[0-9]*$', '') END) AS target,
                   TRY_CAST(regexp_extract(authority, ':([0-9]{{1,5}})$', 1) AS INTEGER) AS port
            FROM t WHERE authority IS NOT NULL)
        SELECT n.sensor, n.uid, n.target,
               coalesce(n.port, CASE WHEN n.tunnel OR n.scheme IN ('https', 'wss') THEN 443 ELSE 80 END) AS port,
               n.literal, CASE WHEN n.literal THEN n.target ELSE a.addr END AS addr
        FROM (SELECT *, regexp_matches(target, '{_ADDRESS}') AS literal FROM n) n
        LEFT JOIN (
            SELECT name, first(addr ORDER BY k DESC, addr) AS addr FROM (
                SELECT name, dns_address(answer, answer_type, qtype) AS addr, count(*) AS k FROM (
                    SELECT lower(query) AS name, unnest(answers) AS answer, unnest(answer_types) AS answer_type,
                           qtype FROM dns_raw
                    WHERE qtype IN ('A', 'AAAA') AND query IS NOT NULL  -- the proxy's own lookups, or trusted
                      AND (resp_h IN (SELECT addr FROM resolvers) OR orig_h IN (SELECT addr FROM {proxies})))
                GROUP BY ALL)
            WHERE addr IS NOT NULL
            GROUP BY name) a ON a.name = n.target
        WHERE n.target <> ''"""
