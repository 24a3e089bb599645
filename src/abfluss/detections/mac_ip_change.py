"""A device changing IP addresses: one MAC address seen with several internal IPv4 addresses.

A network card keeps its MAC address when its IP address changes: a host that self-assigned a
link-local address and then got a DHCP lease, a host renumbered by hand, or a machine taking
over another's address (ARP spoofing, a rogue DHCP server answering as the gateway). Findings
about the old address belong to the same device as those about the new one; an attacker who
changes address to dodge per-address blocks stays one device. Slips reports this as "a device
changing IPs".

The ``macs`` table says which MAC address carried which IP address: the Ethernet addresses of
every flow's frames (pcap; Zeek's ``orig_l2_addr``/``resp_l2_addr``) and the senders of ARP
frames. Per MAC the detection counts the distinct internal unicast IPv4 addresses it carried:

- a MAC that also carried an external address is a router's (every routed address shows behind
  its MAC) and is never judged; more than ``max_addresses`` addresses is a router or NAT too;
- group MACs (multicast, broadcast) and 0.0.0.0, broadcast and multicast addresses never count;
- IPv6 is left out by default: a host holds link-local, SLAAC and privacy addresses at once;
- a finding needs an address first seen inside the window (the change happened in it); the
  addresses before it come from the look-back.

Informational in weight (low): a changing address is mostly DHCP at work. What it adds is the
link between findings under different addresses, and the addresses also claimed by another
card (``shared_with``), which ARP spoofing and rogue DHCP servers leave behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ibis import _

from ..findings import Finding
from . import Meta, Telemetry
from ._stats import keys_table, rows, utc

META = Meta(
    id="mac_ip_change",
    title="Device changing IP addresses (one MAC, several internal addresses)",
    attack=("T1036", "T1557.002"),
    description="One network card (MAC address) seen with several internal IPv4 addresses: a device "
                "that changed its address (DHCP after a self-assigned address, renumbering, or an "
                "attacker dodging per-address blocks) or took over another device's address.",
    runbook="1. List the addresses and when each was first and last seen (the finding's metrics). "
            "2. Check the DHCP server's leases for the MAC: a lease explains a change; a change "
            "without one, or an address another card holds too (shared_with), does not. "
            "3. Treat the findings of every listed address as one device's when you assess the host.",
    channel="l2",
    inputs=("macs",),
)

#: First hex digit of a MAC address's second nibble that marks a group (multicast) address.
_GROUP = ("1", "3", "5", "7", "9", "b", "d", "f")


@dataclass(frozen=True)
class Settings:
    min_addresses: int = field(default=2, metadata={
        "help": "Distinct internal addresses one MAC must carry to count as a change."})
    max_addresses: int = field(default=4, metadata={
        "help": "More addresses than this on one MAC is a router or NAT fronting other hosts, not a "
                "device changing: not reported."})
    ipv4_only: bool = field(default=True, metadata={
        "help": "Count IPv4 addresses only (an IPv6 host holds several addresses at once)."})
    base_points: float = field(default=25.0, metadata={"help": "Points of any change."})
    address_points: float = field(default=5.0, metadata={
        "help": "Points per address beyond min_addresses."})
    shared_points: float = field(default=5.0, metadata={
        "help": "Points when one of the addresses was also carried by another (non-router) MAC."})
    max_listed: int = field(default=10, metadata={"help": "Addresses listed per finding."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    m = tel.macs
    if m is None or tel.start is None:
        return []
    m = m.filter(m.mac.notnull() & m.addr.notnull() & (m.mac != "00:00:00:00:00:00")
                 & ~m.mac.substr(1, 1).isin(list(_GROUP)))
    # a router's MAC carries every routed address: any external one marks it
    routers = m.filter(~m.internal & ~m.local).select("mac").distinct()
    usable = m.filter(_.internal & ~_.addr.startswith("0.") & (_.addr != "255.255.255.255"))
    if s.ipv4_only:
        usable = usable.filter(~_.addr.contains(":"))
    usable = usable.anti_join(routers, "mac")
    per_mac = (usable.group_by("mac")
               .aggregate(n=usable.addr.nunique(), newest=usable.ts.max(), tenant=usable.tenant.max())
               .filter((_.n >= s.min_addresses) & (_.n <= s.max_addresses)))
    # the change happened in the window: its newest address first appeared there
    start = utc(tel.start)
    cands = [c for c in rows(per_mac.order_by("mac")) if utc(c["newest"]) >= start]
    if not cands:
        return []
    pairs = usable.semi_join(keys_table(cands, ["mac"], usable), "mac").select(
        "mac", "addr", "ts", "ts_end", "flows", "arp_frames")
    got = rows(pairs.order_by(["mac", "ts", "addr"]))
    tenants = {c["mac"]: c["tenant"] for c in cands}
    # other cards carrying the same addresses (a router's too: a device answering as the gateway)
    others = m.filter(_.internal).select(other="mac", addr2="addr")
    shared = rows(pairs.join(others, (pairs.addr == others.addr2) & (pairs.mac != others.other))
                  .select("mac", "addr", "other").distinct().order_by(["mac", "addr", "other"]))
    by_mac: dict[str, list[dict]] = {}
    for r in got:
        by_mac.setdefault(r["mac"], []).append(r)
    also: dict[tuple, list[str]] = {}
    for r in shared:
        also.setdefault((r["mac"], r["addr"]), []).append(r["other"])
    return [_finding(mac, addrs, also, tenants.get(mac), s) for mac, addrs in sorted(by_mac.items())]


def _finding(mac: str, addrs: list[dict], also: dict, tenant, s: Settings) -> Finding:
    for a in addrs:
        a["ts"], a["ts_end"] = utc(a["ts"]), utc(a["ts_end"] or a["ts"])
    addrs.sort(key=lambda a: (a["ts"], a["addr"]))
    n = len(addrs)
    parts = {"change": s.base_points}
    if n > s.min_addresses:
        parts["addresses"] = s.address_points * (n - s.min_addresses)
    shared = {a["addr"]: also.get((mac, a["addr"]), []) for a in addrs if also.get((mac, a["addr"]))}
    if shared:
        parts["shared"] = s.shared_points
    # a clean change: each address out of use before the next one appeared
    clean = all(a["ts_end"] <= b["ts"] for a, b in zip(addrs, addrs[1:]))
    listed = addrs[: s.max_listed]
    words = "; ".join(f"{a['addr']} from {a['ts']:%Y-%m-%d %H:%M:%S}"
                      + (f" (also carried by {', '.join(shared[a['addr']])})" if a["addr"] in shared else "")
                      for a in listed)
    how = "one after the other" if clean else "overlapping in time"
    newest = addrs[-1]
    return Finding(
        detection=META.id,
        key=(mac, "*"),
        score_parts=parts,
        explanation=(f"MAC address {mac} carried {n} internal addresses, {how}: {words}; "
                     f"the newest is {newest['addr']}."),
        internal_hosts=[a["addr"] for a in reversed(listed)],
        external_hosts=[],
        channel="l2", start=addrs[0]["ts"], end=max(a["ts_end"] for a in addrs), bytes_out=0,
        evidence={"flows": sum(a["flows"] or 0 for a in addrs), "arp_frames": sum(a["arp_frames"] or 0 for a in addrs),
                  "top_flows": [], "community_ids": []},
        metrics={"mac": mac, "count": n, "clean_change": clean, "newest": newest["addr"],
                 "addresses": [{"addr": a["addr"], "first_seen": a["ts"].isoformat(),
                                "last_seen": a["ts_end"].isoformat(), "flows": a["flows"],
                                "arp_frames": a["arp_frames"]} for a in listed],
                 "shared_with": shared},
        thresholds={"min_addresses": s.min_addresses, "max_addresses": s.max_addresses},
        attack=["T1036", "T1557.002"] if shared else ["T1036"],
        tenant=tenant,
    )
