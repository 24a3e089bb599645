"""dns_tunnel's DNS over HTTPS / TLS to listed resolvers (``doh_resolvers``, ``doh_services``):
lookups made there are invisible to the DNS checks, so volume to them is a finding of its own."""

from __future__ import annotations

import ipaddress

import ibis
from ibis import _

from ..findings import Finding
from ..units import noun
from ._stats import evidence_uids, human_bytes, linear, ramp, rows


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def check(tel, s) -> list[Finding]:
    """One finding per internal host sending at least ``doh_min_bytes_out`` to listed DoH/DoT resolvers."""
    addrs = [r for r in s.doh_resolvers if _is_address(r)]
    names = [r.lower() for r in s.doh_resolvers if not _is_address(r)]
    f = tel.flows.filter(_.direction == "outbound")
    name = f.external_name.lower()
    by_name = ibis.or_(*[(name == n) | name.endswith("." + n) for n in names]) if names else ibis.literal(False)
    hit = (f.external_host.isin(addrs or [""]) | by_name.fill_null(False)
           # "" is a service nobody identified: never a placeholder for "no DoH services"
           | (f.service.isin(list(s.doh_services)).fill_null(False) if s.doh_services else ibis.literal(False)))
    f = f.filter(f.resp_p.isin(list(s.doh_ports)) & hit)
    per = rows(f.group_by(["internal_host", "external_host"]).aggregate(
        flows=_.count(), bytes_out=_.bytes_out.sum(), bytes_in=_.bytes_in.sum(), start=_.ts.min(),
        end=_.ts_end.max(), name=_.external_name.max(), tenant=_.tenant.max(),
    ).order_by(["internal_host", "external_host"]))
    hosts: dict[str, list[dict]] = {}
    for r in per:
        hosts.setdefault(r["internal_host"], []).append(r)
    out = []
    for host, rs in hosts.items():
        sent = sum(r["bytes_out"] or 0 for r in rs)
        if sent >= s.doh_min_bytes_out:
            out.append(_doh_finding(f, host, rs, sent, s))
    return out


def _doh_finding(f, host: str, rs: list[dict], sent: int, s) -> Finding:
    got = sum(r["bytes_in"] or 0 for r in rs)
    n = sum(r["flows"] for r in rs)
    resolvers = [r["external_host"] for r in rs]
    shown = ", ".join(sorted({r["name"] or r["external_host"] for r in rs}))
    ratio = sent / max(got, 1)
    parts = {"encrypted_dns": s.doh_base_points,
             "volume": s.doh_volume_points * ramp(sent, s.doh_bytes_low, s.doh_bytes_high),
             "upload_ratio": s.doh_ratio_points * linear(ratio, 1.0, 4.0)}
    ev = evidence_uids(f, (f.internal_host == host) & f.external_host.isin(resolvers), s.max_evidence)
    return Finding(
        detection="dns_tunnel", key=("doh", host), score_parts={k: v for k, v in parts.items() if v > 0.05},
        explanation=(f"{host} sent {human_bytes(sent)} and received {human_bytes(got)} in {n} "
                     f"encrypted DNS {noun(n, 'connection')} to {noun(len(resolvers), 'resolver')} "
                     f"{shown}; lookups made there "
                     f"are invisible to the DNS detections."),
        internal_hosts=[host], external_hosts=resolvers,
        external_names=[r["name"] for r in rs if r["name"]], channel="doh",
        start=min(r["start"] for r in rs), end=max(r["end"] for r in rs), bytes_out=sent,
        evidence={"flows": n, "top_flows": [e["uid"] for e in ev if e["uid"]],
                  "community_ids": sorted({e["community_id"] for e in ev if e["community_id"]})},
        metrics={"flows": n, "bytes_out": sent, "bytes_in": got, "resolvers": len(rs),
                 "out_in_ratio": round(ratio, 2)},
        thresholds={"doh_min_bytes_out": s.doh_min_bytes_out, "doh_bytes_low": s.doh_bytes_low,
                    "doh_bytes_high": s.doh_bytes_high},
        tenant=max((r["tenant"] for r in rs if r["tenant"]), default=None),
    )
