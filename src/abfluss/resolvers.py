"""The resolvers internal hosts are meant to use: one definition for enrichment and detections.

Configured (``[networks] resolvers``): the servers inside those networks. Otherwise learned from
the traffic, DNS messages and port-53 flow records (UDP and TCP) alike. Of the servers internal
clients send DNS to (never a local address: mDNS, LLMNR and NetBIOS go to multicast and
broadcast), a server is a learned resolver when it is

- internal (a company's own DNS servers), or
- asked by at least ``LEARN_MIN_CLIENTS`` internal clients (a shared resolver), or
- asked about names under at least ``LEARN_MIN_DOMAINS`` domains (last two labels) and the main
  DNS server of at least one internal client (the one it sends most DNS to).

A tunnel server answers one zone, so one client's tunnel does not make its server a resolver, and
a server of an attacker's own that a host asks about a few well-known names (to have an upload
look like an allowlisted destination) is not the host's main server either.

Who uses it: ``enrich`` (view ``resolvers``: only their A/AAAA answers name destinations) and
``dns_tunnel`` (DNS to a server that is no resolver is suspect). The rule is an Ibis expression,
so the detection runs it on either engine over its window, and ``enrich`` compiles the same
expression to DuckDB SQL over the whole workspace. The two thresholds are ``dns_tunnel``'s
settings ``learn_min_clients`` and ``learn_min_domains`` (``[detections.dns_tunnel]``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

DNS_PORT = 53
#: An external server asked by this many internal clients is a resolver.
LEARN_MIN_CLIENTS = 3
#: A server asked about names under this many domains, and some client's main server, is one.
LEARN_MIN_DOMAINS = 3

#: Columns ``learned`` reads (the telemetry's ``flows`` and ``dns`` have them; enrich builds them).
FLOW_COLUMNS = {"orig_h": "string", "resp_h": "string", "resp_p": "int32", "proto": "string",
                "orig_internal": "boolean", "resp_internal": "boolean"}
DNS_COLUMNS = {"orig_h": "string", "resp_h": "string", "query": "string",
               "client_internal": "boolean", "server_internal": "boolean"}


def learned(flows, dns, min_clients: int = LEARN_MIN_CLIENTS, min_domains: int = LEARN_MIN_DOMAINS):
    """Table ``(resp_h)`` of the learned resolvers (see the module doc); local servers must be
    filtered out of ``flows`` and ``dns`` by the caller (both of its callers do it anyway)."""
    import ibis

    from .detections._domains import key as domain_key

    nul = ibis.null("string")
    f = flows.filter((flows.resp_p == DNS_PORT) & flows.proto.isin(["udp", "tcp"]) & flows.resp_h.notnull())
    f = f.select(resp_h=f.resp_h, internal=f.resp_internal.fill_null(False),
                 client=ibis.ifelse(f.orig_internal.fill_null(False), f.orig_h, nul), domain=nul)
    d = dns.filter(dns.resp_h.notnull())
    name = d.query.lower().re_replace(r"\.+$", "")
    d = d.select(resp_h=d.resp_h, internal=d.server_internal.fill_null(False),
                 client=ibis.ifelse(d.client_internal.fill_null(False), d.orig_h, nul),
                 domain=ibis.ifelse(d.query.notnull(), domain_key(name), nul))
    both = ibis.union(f, d)
    asked = both.filter(both.client.notnull()).group_by(["client", "resp_h"]).aggregate(n=lambda t: t.count())
    rank = ibis.row_number().over(group_by=asked.client, order_by=[ibis.desc(asked.n), asked.resp_h])
    main = asked.mutate(rn=rank).filter(lambda t: t.rn == 0).select(main_of=lambda t: t.resp_h).distinct()
    servers = both.group_by("resp_h").aggregate(internal=both.internal.max(), clients=both.client.nunique(),
                                                 domains=both.domain.nunique())
    servers = servers.left_join(main, servers.resp_h == main.main_of)
    return servers.filter(servers.internal | (servers.clients >= min_clients)
                          | ((servers.domains >= min_domains) & servers.main_of.notnull())).select("resp_h")


def learned_sql(flows_view: str, dns_view: str, min_clients: int = LEARN_MIN_CLIENTS,
                min_domains: int = LEARN_MIN_DOMAINS) -> str:
    """``learned`` as DuckDB SQL over two views with ``FLOW_COLUMNS`` and ``DNS_COLUMNS``.

    Compiled once and kept (in this process and in the user's cache folder, keyed by the rule's
    source): importing Ibis and compiling take a second, and every command that opens a
    workspace needs this SQL (``ledger`` should answer in half of that)."""
    return _cached_sql(flows_view, dns_view, int(min_clients), int(min_domains))


def _rule_source_key(*args) -> str:
    h = hashlib.sha256(repr(args).encode())
    for f in (Path(__file__), Path(__file__).parent / "detections" / "_domains.py"):
        h.update(f.read_bytes())
    return h.hexdigest()[:32]


@functools.lru_cache(maxsize=8)
def _cached_sql(flows_view: str, dns_view: str, min_clients: int, min_domains: int) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "abfluss" / f"resolvers-{_rule_source_key(flows_view, dns_view, min_clients, min_domains)}.sql"
    try:
        if (text := path.read_text()).strip():
            return text
    except OSError:
        pass
    sql = _compile_sql(flows_view, dns_view, min_clients, min_domains)
    try:  # a cache only: a folder that cannot be written costs the compile next time, nothing else
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(sql)
        os.replace(tmp, path)
    except OSError:
        pass
    return sql


def _compile_sql(flows_view: str, dns_view: str, min_clients: int, min_domains: int) -> str:
    import ibis

    from ._ibis import lazy_compilers

    lazy_compilers()

    expr = learned(ibis.table(FLOW_COLUMNS, name=flows_view), ibis.table(DNS_COLUMNS, name=dns_view),
                   min_clients, min_domains)
    return str(ibis.to_sql(expr, dialect="duckdb"))
