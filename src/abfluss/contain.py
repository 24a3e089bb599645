"""Containment: the blast radius of an indicator or a compromised host, and block lists.

``blast_radius`` answers "which internal systems must be isolated?": every internal host that
talked to an indicator (an external address, CIDR or domain) or to a compromised internal host
in the window, with first and last contact and the bytes each way. ``blocklists`` turns the
indicators of a radius into an nftables file, a plain list and a STIX 2.1 bundle.

Domains are resolved only through the DNS answers the workspace holds, never by a live lookup:
what the hosts resolved is what they could have reached. A domain indicator also matches its
subdomains. Only A and AAAA answers are addresses (``enrich.DNS_ADDRESS_SQL``), in their strict
form: a TXT or CNAME answer is attacker-written text and never reaches a firewall. Every value
written into a block list is validated again where it is written (``_checked``).
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from .enrich import in_networks
from .errors import AbflussError
from .store import Workspace

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: nftables table that ``blocklists`` defines (replaced as a whole on each load).
NFT_TABLE = "abfluss_contain"
#: DNS answers never taken as a domain's address: sinkholes and placeholders block nothing useful.
_NOT_ADDRESSES = ("0.0.0.0/8", "127.0.0.0/8", "::/128", "::1/128")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_ADDRESS_LIKE = re.compile(r"^[0-9.]+$|^[0-9a-f:.]*:[0-9a-f:.]*$")

_CONTACT_COLUMNS = ("internal_host", "peer", "peer_name", "peer_internal", "first_contact", "last_contact",
                    "bytes_out", "bytes_in", "flows")


@dataclass(frozen=True)
class Indicator:
    """One parsed indicator: ``kind`` is ip, cidr or domain; ``network`` for ip and cidr."""

    value: str
    kind: str
    network: Network | None = None


def parse_indicator(value: str) -> Indicator:
    """An address, a CIDR or a domain name; anything that looks like an address must be one."""
    v = value.strip().lower().rstrip(".")
    if v.startswith("*."):
        v = v[2:]  # a domain matches its subdomains anyway
    if "/" in v or _ADDRESS_LIKE.fullmatch(v):
        try:
            net = ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise AbflussError(f"--indicator {value!r}: not a valid IP address or CIDR") from None
        net = _unmap(net)
        kind = "ip" if net.num_addresses == 1 and "/" not in v else "cidr"
        return Indicator(str(net.network_address) if kind == "ip" else str(net), kind, net)
    try:
        v = v.encode("idna").decode("ascii")
    except UnicodeError:
        raise AbflussError(f"--indicator {value!r}: not an IP address, CIDR or domain name") from None
    if len(v) > 253 or not _DOMAIN.fullmatch(v):
        raise AbflussError(f"--indicator {value!r}: not an IP address, CIDR or domain name")
    return Indicator(v, "domain")


def parse_host(value: str) -> str:
    """A compromised host: one IP address, in canonical form."""
    try:
        a = ipaddress.ip_address(value.strip())
    except ValueError:
        raise AbflussError(f"--host {value!r}: not a valid IP address") from None
    return str(getattr(a, "ipv4_mapped", None) or a)


def _unmap(net: Network) -> Network:
    mapped = getattr(net.network_address, "ipv4_mapped", None)
    if mapped is not None and net.prefixlen >= 96:
        return ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}", strict=False)
    return net


def _window(start, end, column: str = "ts") -> tuple[str, list]:
    cond, args = ["true"], []
    if start is not None:
        cond.append(f"{column} >= ?")
        args.append(start)
    if end is not None:
        cond.append(f"{column} < ?")
        args.append(end)
    return " AND ".join(cond), args


def _rows(ws: Workspace, sql: str, args: list) -> list[dict]:
    cur = ws.con.execute(sql, args)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _is_internal(ws: Workspace, addr: str) -> bool:
    a = ipaddress.ip_address(addr)
    return any(a in n for n in map(ipaddress.ip_network, ws.config.internal) if n.version == a.version)


def _name_match(column: str) -> str:
    return f"(lower({column}) = ? OR ends_with(lower({column}), ?))"


_STRICT_ADDRESS = re.compile(r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-fA-F:.]{2,45})$")


def strict_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an address if it is one in plain form: no IPv6 zone (``%…``, which Python
    accepts with any text after it), no spaces, nothing else; IPv4-mapped IPv6 unmapped."""
    if not isinstance(text, str) or not _STRICT_ADDRESS.match(text):
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def _address_answers(where: str) -> str:
    """SQL: the distinct A/AAAA answer values of the ``dns_raw`` rows matching ``where``."""
    return f"""SELECT DISTINCT a FROM (
                   SELECT dns_address(answer, answer_type, qtype) AS a FROM (
                       SELECT unnest(answers) AS answer, unnest(answer_types) AS answer_type, qtype
                       FROM dns_raw WHERE {where}))
               WHERE a IS NOT NULL"""


def _resolve(ws: Workspace, domain: str) -> tuple[list[str], list[str]]:
    """Addresses the workspace's DNS answers give for ``domain`` (or its subdomains, CNAMEs included).

    Every DNS server counts here, the malware's own included: what a host resolved is what it
    could reach, so it is what to block."""
    sql = _address_answers(f"""{_name_match('rtrim(query, chr(46))')}
                 OR len(list_filter(answers, lambda x: {_name_match('rtrim(x, chr(46))')})) > 0""")
    args = [domain, "." + domain] * 2
    found, skipped = set(), set()
    junk = [ipaddress.ip_network(n) for n in _NOT_ADDRESSES]
    for (a,) in ws.con.execute(sql, args).fetchall():
        ip = strict_address(a)
        if ip is None or any(ip in n for n in junk if n.version == ip.version):
            continue
        (skipped if _is_internal(ws, str(ip)) else found).add(str(ip))
    key = lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a))  # noqa: E731
    return sorted(found, key=key), sorted(skipped, key=key)


def _answer_hits(ws: Workspace, nets: list[Network]) -> list[str]:
    """A/AAAA answer values that lie in ``nets`` (answers are text, so the test runs here)."""
    hits = []
    for (a,) in ws.con.execute(_address_answers("true")).fetchall():
        ip = strict_address(a)
        if ip is not None and any(ip in n for n in nets if n.version == ip.version):
            hits.append(a)
    return hits


def _flow_pred(ind: Indicator, nets: list[Network]) -> tuple[str, list]:
    """SQL over ``flows``: the external side is in ``nets`` or, for a domain, carries its name."""
    addr = f"external_host IN (SELECT addr FROM addresses WHERE {in_networks('a', tuple(map(str, nets)))})"
    if ind.kind != "domain":
        return f"({addr})", []
    return f"({addr} OR {_name_match('external_name')})", [ind.value, "." + ind.value]


def _dns_pred(ws: Workspace, ind: Indicator, nets: list[Network]) -> tuple[str, list]:
    """SQL over ``dns_raw``: asked for the domain (or got it as a CNAME), or got an answer in ``nets``."""
    if ind.kind == "domain":
        return (f"({_name_match('rtrim(query, chr(46))')} "
                f"OR len(list_filter(answers, lambda x: {_name_match('rtrim(x, chr(46))')})) > 0)",
                [ind.value, "." + ind.value] * 2)
    hits = _answer_hits(ws, nets)
    return ("list_has_any(answers, ?::VARCHAR[])", [hits]) if hits else ("false", [])


def _contacts(ws: Workspace, pred: tuple[str, list], start, end, by_peer: bool = True) -> list[dict]:
    win, args = _window(start, end)
    peer = "external_host AS peer, max(external_name) AS peer_name, false AS peer_internal," if by_peer else ""
    return _rows(ws, f"""
        SELECT internal_host, {peer}
               min(ts) AS first_contact, max(coalesce(ts_end, ts)) AS last_contact,
               sum(bytes_out)::BIGINT AS bytes_out, sum(bytes_in)::BIGINT AS bytes_in, count(*) AS flows
        FROM flows WHERE direction IN ('outbound', 'inbound') AND {win} AND {pred[0]}
        GROUP BY ALL ORDER BY ALL""", args + pred[1])


def _lookups(ws: Workspace, pred: tuple[str, list], start, end) -> list[dict]:
    """Internal DNS clients of the matching queries, with the names they asked for."""
    win, args = _window(start, end)
    return _rows(ws, f"""
        SELECT orig_h AS internal_host, count(*) AS dns_lookups, min(ts) AS first_lookup,
               max(ts) AS last_lookup, list(DISTINCT lower(query) ORDER BY lower(query)) AS names
        FROM dns_raw d JOIN address_class c ON c.addr = d.orig_h AND c.internal
        WHERE {win} AND {pred[0]} GROUP BY ALL ORDER BY internal_host""", args + pred[1])


def _union(preds: list[tuple[str, list]]) -> tuple[str, list]:
    return ("(" + " OR ".join(p[0] for p in preds) + ")" if preds else "false",
            [a for p in preds for a in p[1]])


def _host_contacts(ws: Workspace, host: str, start, end) -> list[dict]:
    # A connection through a proxy is the client's contact with the real destination, and the
    # proxy's contact with the client (``proxy`` keeps the proxy's address, see enrich.py).
    win, args = _window(start, end)
    return _rows(ws, f"""
        SELECT ? AS internal_host, peer, max(external_name) AS peer_name, any_value(peer_internal) AS peer_internal,
               min(ts) AS first_contact, max(coalesce(ts_end, ts)) AS last_contact,
               sum(sent)::BIGINT AS bytes_out, sum(received)::BIGINT AS bytes_in, count(*) AS flows
        FROM (SELECT ts, ts_end, external_name,
                     CASE WHEN orig_h = ? THEN resp_h ELSE orig_h END AS peer,
                     CASE WHEN orig_h = ? THEN resp_internal ELSE orig_internal END AS peer_internal,
                     CASE WHEN orig_h = ? THEN coalesce(orig_bytes, orig_ip_bytes, 0)
                          ELSE coalesce(resp_bytes, resp_ip_bytes, 0) END AS sent,
                     CASE WHEN orig_h = ? THEN coalesce(resp_bytes, resp_ip_bytes, 0)
                          ELSE coalesce(orig_bytes, orig_ip_bytes, 0) END AS received
              FROM flows WHERE (orig_h = ? OR resp_h = ? OR proxy = ?) AND orig_h <> resp_h AND {win})
        GROUP BY peer ORDER BY peer_internal DESC, bytes_out DESC, peer""", [host] * 8 + args)


def _merge(radius: dict, host: str, row: dict, reasons: list[str], swap: bool = False) -> None:
    """Add one contact to ``host``'s radius entry (``swap``: the row is seen from the other side)."""
    e = radius.setdefault(host, {"internal_host": host, "first_contact": None, "last_contact": None,
                                 "bytes_out": 0, "bytes_in": 0, "flows": 0, "dns_lookups": 0,
                                 "first_lookup": None, "last_lookup": None, "reasons": []})
    out, inn = ("bytes_in", "bytes_out") if swap else ("bytes_out", "bytes_in")
    e["bytes_out"] += row.get(out) or 0
    e["bytes_in"] += row.get(inn) or 0
    e["flows"] += row.get("flows") or 0
    e["dns_lookups"] += row.get("dns_lookups") or 0
    for k, pick in (("first_contact", min), ("last_contact", max), ("first_lookup", min), ("last_lookup", max)):
        vals = [v for v in (e[k], row.get(k)) if v is not None]
        e[k] = pick(vals) if vals else None
    e["reasons"] += [r for r in reasons if r not in e["reasons"]]


def blast_radius(ws: Workspace, hosts=(), indicators=(), start: datetime | None = None,
                 end: datetime | None = None) -> dict:
    """Every internal host that talked to an indicator or to a compromised host in [start, end).

    Returns a JSON-able dict: ``indicators`` (parsed; ``addresses`` a domain resolved to, ``names``
    the DNS names asked for), ``contacts`` (one row per seed, internal host and peer; bytes_out is
    what ``internal_host`` sent to ``peer``), ``radius`` (one row per implicated internal host:
    those that talked to an indicator, and the internal peers of a compromised host; bytes_out
    is what that host sent to the indicators or the compromised host, a flow counted once) and
    ``messages`` (why a part is empty, what was left out).
    """
    seeds = [parse_host(h) for h in hosts]
    inds = [parse_indicator(i) for i in indicators]
    res = {"window": {"start": start, "end": end}, "hosts": seeds, "indicators": [], "contacts": [],
           "radius": [], "messages": []}
    radius: dict[str, dict] = {}
    flow_preds, dns_preds, reasons = [], [], defaultdict(list)
    for ind in inds:
        nets = [ind.network] if ind.network else []
        entry = {"value": ind.value, "kind": ind.kind, "addresses": []}
        if ind.kind == "domain":
            found, internal = _resolve(ws, ind.value)
            nets = [ipaddress.ip_network(a) for a in found]
            entry["addresses"] = found
            if internal:
                res["messages"].append(f"{ind.value} also resolved to internal {', '.join(internal)}: "
                                       "not blocked; investigate with --host")
        elif _is_internal(ws, str(ind.network.network_address)):
            res["messages"].append(f"{ind.value} lies in the internal networks: use --host for an internal system")
        flow_preds.append(_flow_pred(ind, nets))
        dns_preds.append(_dns_pred(ws, ind, nets))
        contacts = _contacts(ws, flow_preds[-1], start, end)
        lookups = _lookups(ws, dns_preds[-1], start, end)
        entry["names"] = sorted({n for r in lookups for n in r["names"] if n})
        entry["matched"] = bool(contacts or lookups)
        res["indicators"].append(entry)
        res["contacts"] += [{"seed": ind.value, "seed_kind": ind.kind, **r} for r in contacts]
        for h in sorted({r["internal_host"] for r in contacts + lookups}):
            reasons[h].append(ind.value)
        if not entry["matched"]:
            res["messages"].append(f"{ind.value}: no flow or DNS record in the window matches it")
    # totals over the union of the indicators, so a flow two indicators match counts once
    for r in _contacts(ws, _union(flow_preds), start, end, by_peer=False) if inds else []:
        _merge(radius, r["internal_host"], r, reasons[r["internal_host"]])
    for r in _lookups(ws, _union(dns_preds), start, end) if inds else []:
        _merge(radius, r["internal_host"], r, reasons[r["internal_host"]])
    for h in seeds:
        if not _is_internal(ws, h):
            res["messages"].append(f"{h} is not in the internal networks (networks.internal)")
        contacts = _host_contacts(ws, h, start, end)
        for r in contacts:
            res["contacts"].append({"seed": h, "seed_kind": "host", **r})
            if r["peer_internal"] and r["peer"] not in seeds:
                _merge(radius, r["peer"], r, [h], swap=True)
        if not contacts:
            res["messages"].append(f"{h}: no flow in the window involves it")
    res["radius"] = sorted(radius.values(), key=lambda e: (-e["bytes_out"], e["internal_host"]))
    return res


# -- block lists ---------------------------------------------------------------------------

def _checked(radius: dict) -> list[tuple[Indicator, list[Network]]]:
    """The radius' indicators validated again where the block lists are written: each value must
    parse as the kind it claims to be, each resolved address must be a strict address. A radius
    is a plain dict that any caller can build, and these values become firewall rules."""
    out = []
    for ind in radius["indicators"]:
        try:
            parsed = parse_indicator(str(ind["value"]))
        except AbflussError:
            raise AbflussError(f"block list: {ind['value']!r} is not an address, CIDR or domain name") from None
        if parsed.kind != ind["kind"] or parsed.value != ind["value"]:
            raise AbflussError(f"block list: {ind['value']!r} is not a canonical {ind['kind']}")
        nets = [parsed.network] if parsed.network else []
        for a in ind.get("addresses", []) if parsed.kind == "domain" else []:
            ip = strict_address(a)
            if ip is None or str(ip) != a:
                raise AbflussError(f"block list: {a!r} (for {parsed.value}) is not an address")
            nets.append(ipaddress.ip_network(ip))
        out.append((parsed, nets))
    return out


def block_networks(radius: dict) -> list[Network]:
    """The networks to block for a radius' indicators: given addresses/CIDRs, resolved addresses."""
    nets = [n for _ind, ns in _checked(radius) for n in ns]
    v4 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 4))
    v6 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 6))
    return v4 + v6


def _nft_set(name: str, family: str, nets: list[Network]) -> list[str]:
    lines = [f"\tset {name} {{", f"\t\ttype {family}_addr", "\t\tflags interval"]
    if nets:
        lines.append("\t\telements = { " + ", ".join(map(_text, nets)) + " }")
    return lines + ["\t}"]


def nftables(radius: dict, generated: datetime) -> str:
    """An ``nft -f`` file: table inet abfluss_contain with two sets and drop rules, replaced atomically."""
    nets = block_networks(radius)
    head = ["#!/usr/sbin/nft -f",
            f"# abfluss containment block list, generated {_iso(generated)}; load with: nft -f FILE",
            "# remove with: nft delete table inet " + NFT_TABLE]
    for ind, ns in _checked(radius):  # validated: names and addresses hold no newline or quote
        extra = f" (resolved in the workspace's DNS answers to {', '.join(map(_text, ns)) or 'nothing'})" \
            if ind.kind == "domain" else ""
        head.append(f"# indicator {ind.value}{extra}")
    body = [f"table inet {NFT_TABLE}", f"delete table inet {NFT_TABLE}", f"table inet {NFT_TABLE} {{"]
    body += _nft_set("block_v4", "ipv4", [n for n in nets if n.version == 4])
    body += _nft_set("block_v6", "ipv6", [n for n in nets if n.version == 6])
    for chain, prio in (("input", "filter - 10"), ("forward", "filter - 10"), ("output", "filter - 10")):
        body += [f"\tchain {chain} {{", f"\t\ttype filter hook {chain} priority {prio}; policy accept;",
                 "\t\tip saddr @block_v4 counter drop", "\t\tip daddr @block_v4 counter drop",
                 "\t\tip6 saddr @block_v6 counter drop", "\t\tip6 daddr @block_v6 counter drop", "\t}"]
    return "\n".join(head + body + ["}"]) + "\n"


def plain(radius: dict) -> str:
    """One value a line: the addresses and CIDRs (as given or resolved, not merged), then the domains."""
    checked = _checked(radius)
    nets = {n for _ind, ns in checked for n in ns}
    order = sorted(nets, key=lambda n: (n.version, n))
    domains = sorted({i.value for i, _ns in checked if i.kind == "domain"})
    return "".join(v + "\n" for v in [_text(n) for n in order] + domains)


def _text(n: Network) -> str:
    return str(n.network_address) if n.num_addresses == 1 else str(n)


def _literal(value: str) -> str:
    """A STIX pattern string literal: backslash and quote escaped (STIX 2.1 patterning, 3.4)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pattern(value: str, kind: str) -> str:
    if kind == "domain":
        return f"[domain-name:value = {_literal(value)}]"
    net = ipaddress.ip_network(value, strict=False)
    return f"[ipv{net.version}-addr:value = {_literal(value)}]"


def stix_bundle(radius: dict, generated: datetime) -> str:
    """A STIX 2.1 bundle with one Indicator per indicator and per address a domain resolved to."""
    import stix2

    objs = []
    for ind, ns in _checked(radius):
        items = [(ind.value, ind.kind, "indicator given to abfluss contain")]
        items += [(_text(n), "ip", f"address {ind.value} resolved to in the workspace's DNS answers")
                  for n in ns] if ind.kind == "domain" else []
        for value, kind, why in items:
            objs.append(stix2.v21.Indicator(
                name=value, description=why, pattern=_pattern(value, kind), pattern_type="stix",
                valid_from=generated, created=generated, modified=generated,
                indicator_types=["malicious-activity"]))
    return stix2.v21.Bundle(objects=objs).serialize(pretty=True) + "\n"


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def blocklists(radius: dict, generated: datetime | None = None) -> dict[str, str]:
    """The block lists of a radius' indicators: ``nftables``, ``plain`` and ``stix`` (file texts)."""
    generated = generated or datetime.now(timezone.utc).replace(microsecond=0)
    return {"nftables": nftables(radius, generated), "plain": plain(radius), "stix": stix_bundle(radius, generated)}


def group_by_seed(contacts: list[dict]) -> dict[str, list[dict]]:
    """Contacts grouped by the seed (indicator or host) that brought them in, order kept."""
    out: dict[str, list[dict]] = defaultdict(list)
    for c in contacts:
        out[c["seed"]].append({k: c[k] for k in _CONTACT_COLUMNS})
    return dict(out)
