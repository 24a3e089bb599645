"""ARP scans, gratuitous ARP floods and ARP for addresses outside the local network, per sender.

ARP never crosses a router, so every sender is on a link the sensor sees: a host that asks
who has *every* address of its subnet is mapping it (``nmap -sn`` and ``arp-scan`` on a LAN,
worms looking for neighbours), ahead of port scans and lateral movement. Three kinds, keyed by
(sender address, kind, ``*``):

``arp_scan``          requests for at least ``scan_min_targets`` distinct addresses at
                      ``scan_min_rate`` per minute or faster (a router resolving its clients one
                      by one over hours stays slower);
``gratuitous_flood``  at least ``flood_min_frames`` unsolicited frames (gratuitous: sender and
                      target address equal, or a reply sent to broadcast) at ``flood_min_rate``
                      per minute: cache poisoning or a misbehaving host (one announces on boot);
``outside_network``   requests for addresses outside the sender's own ``local_prefix`` network:
                      a wrong netmask, or a host probing beyond its subnet. Low by design.
``forged_sender``     frames whose ARP sender hardware address is not the Ethernet source that
                      carried them (arpwatch's "ethernet mismatch"): crafted ARP, as spoofing
                      tools and Slips' test9 send it. One frame is enough; the finding says
                      which were unsolicited (a reply to broadcast, a gratuitous frame) and
                      which asked for addresses outside the sender's network.

Input: the ``arp`` table of ARP frames from packet captures (the pcap reader's light pass;
NFStream meters IP only) and Zeek's arp.log. Requests from 0.0.0.0 (address conflict probes, RFC 5227) count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
from ibis import _

from ..findings import Finding
from ..units import count
from . import Meta, Telemetry
from ._stats import first_per_group, keys_table, ramp, rows

META = Meta(
    id="arp_scan",
    title="ARP scan, gratuitous ARP flood or ARP beyond the local network",
    attack=("T1018", "T1595.001", "T1557.002"),
    description="A host asking by ARP for many addresses of its network in a short time (mapping "
                "which hosts are up), flooding unsolicited ARP announcements (cache poisoning, the "
                "step before intercepting traffic), or asking for addresses outside its own network.",
    runbook="1. Identify the sender by its MAC address (switch port, DHCP lease): an inventory or "
            "network-management tool (confirm with its owner) or not. "
            "2. For an unexplained ARP scan look on the host for nmap, arp-scan or malware discovery "
            "modules, and for port scans or lateral fan-out that follow. "
            "3. For a gratuitous flood compare the MAC it announces with the real owner of the "
            "address (the gateway's above all): a different MAC is ARP spoofing; enable dynamic ARP "
            "inspection on the switch and isolate the port.",
    channel="arp",
    inputs=("arp",),
)

KIND_ATTACK = {"arp_scan": ["T1018", "T1595.001"], "gratuitous_flood": ["T1557.002"],
               "outside_network": ["T1018"], "forged_sender": ["T1557.002"]}


@dataclass(frozen=True)
class Settings:
    scan_min_targets: int = field(default=20, metadata={
        "help": "Distinct addresses one sender asked for that make an ARP scan (Slips: 5 within 30 s; "
                "a host talking to a handful of neighbours stays below)."})
    scan_high_targets: int = field(default=254, metadata={
        "help": "Addresses that give the full breadth part of an ARP scan's score (a /24)."})
    scan_min_rate: float = field(default=10.0, metadata={
        "help": "Distinct addresses per minute (a burst under a minute counts as one minute) below "
                "which many requests are a router or server resolving clients as they come."})
    fast_rate: float = field(default=120.0, metadata={
        "help": "Addresses (frames for a flood) per minute that give the full speed part of the score."})
    flood_min_frames: int = field(default=30, metadata={
        "help": "Unsolicited (gratuitous or broadcast reply) frames from one sender that make a flood "
                "(a host announces itself a few times on boot or failover)."})
    flood_min_rate: float = field(default=10.0, metadata={
        "help": "Unsolicited frames per minute below which they are periodic announcements, not a flood."})
    flood_high_frames: int = field(default=1000, metadata={
        "help": "Unsolicited frames that give the full count part of a flood's score."})
    local_prefix: int = field(default=24, metadata={
        "help": "Prefix length (8, 16 or 24) of the sender's own network for outside_network; 0 turns "
                "that kind off."})
    outside_min_targets: int = field(default=3, metadata={
        "help": "Distinct addresses outside the sender's network asked for that make an outside_network "
                "finding (one stray request is a typo or a stale route)."})
    forged_points: float = field(default=45.0, metadata={
        "help": "Points for ARP frames whose sender hardware address is not their Ethernet source "
                "(medium: crafted frames)."})
    max_listed: int = field(default=20, metadata={"help": "Addresses listed in a finding's metrics."})


def detect(tel: Telemetry, s: Settings) -> list[Finding]:
    a = tel.arp
    if a is None:
        return []
    # a["op"], never a.op: Table.op is an Ibis method
    a = a.mutate(unsolicited=a.gratuitous.fill_null(False)
                 | ((a["op"] == "reply") & (a.eth_dst == "ff:ff:ff:ff:ff:ff")))
    req = a.filter((a["op"] == "request") & ~a.gratuitous.fill_null(False))
    cands = _kind(req, "arp_scan", s.scan_min_targets, s)
    cands = [c for c in cands if c["rate"] >= s.scan_min_rate]
    flood = _kind(a.filter(a.unsolicited), "gratuitous_flood", s.flood_min_frames, s, count="frames")
    cands += [c for c in flood if c["rate"] >= s.flood_min_rate]
    if s.local_prefix in (8, 16, 24):
        octets = s.local_prefix // 8
        pat = r"^(" + r"\.".join([r"[0-9]+"] * octets) + r")\."
        out = req.filter((req.orig_h != "0.0.0.0")
                         & (req.resp_h.re_extract(pat, 1) != req.orig_h.re_extract(pat, 1)))
        cands += _kind(out, "outside_network", s.outside_min_targets, s)
    if "eth_src" in a.columns:
        cands += _forged(a, s)
    cands.sort(key=lambda c: (c["orig_h"], c["kind"]))
    return [_finding(c, s) for c in cands]


def _forged(a, s: Settings) -> list[dict]:
    """Per sender address: frames whose ARP sender hardware address is not the Ethernet source."""
    f = a.filter(a.eth_src.notnull() & a.orig_mac.notnull() & (a.eth_src.lower() != a.orig_mac.lower()))
    agg = (f.group_by("orig_h")
           .aggregate(n=f.resp_h.nunique(), frames=_.count(), macs=f.orig_mac.nunique(), mac=f.orig_mac.max(),
                      eth_src=f.eth_src.max(), unsolicited=f.unsolicited.cast("int64").sum(),
                      start=f.ts.min(), end=f.ts.max(), tenant=f.tenant.max()))
    found = rows(agg.order_by("orig_h"))
    if not found:
        return []
    listed = first_per_group(f, keys_table(found, ["orig_h"], f), ["orig_h"], ["resp_h"], ["resp_h"],
                             s.max_listed, True)
    for c in found:
        c.update(kind="forged_sender", listed=[r["resp_h"] for r in listed.get((c["orig_h"],), [])])
        c["sec"] = max(0.0, (c["end"] - c["start"]).total_seconds())
        c["rate"] = c["frames"] / max(c["sec"] / 60, 1.0)
        c["outside"] = sorted(t for t in c["listed"] if not _same_net(c["orig_h"], t, s.local_prefix))
    return found


def _same_net(a: str, b: str, prefix: int) -> bool:
    if prefix not in (8, 16, 24):
        return True
    k = prefix // 8
    return a.split(".")[:k] == b.split(".")[:k]


def _kind(t, kind: str, minimum: int, s: Settings, count: str = "targets") -> list[dict]:
    """Per sender: frames, distinct targets, span; those reaching ``minimum`` (targets or frames)."""
    agg = (t.group_by("orig_h")
           .aggregate(n=t.resp_h.nunique(), frames=_.count(), macs=t.orig_mac.nunique(),
                      mac=t.orig_mac.max(), start=t.ts.min(), end=t.ts.max(), tenant=t.tenant.max()))
    agg = agg.filter((agg.frames if count == "frames" else agg.n) >= minimum)
    found = rows(agg.order_by("orig_h"))
    if not found:
        return []
    listed = first_per_group(t, keys_table(found, ["orig_h"], t), ["orig_h"], ["resp_h"], ["resp_h"],
                             s.max_listed, True)
    for c in found:
        c.update(kind=kind, listed=[r["resp_h"] for r in listed.get((c["orig_h"],), [])])
        c["sec"] = max(0.0, (c["end"] - c["start"]).total_seconds())
        measure = c["frames"] if count == "frames" else c["n"]
        c["rate"] = measure / max(c["sec"] / 60, 1.0)
    return found


def _score(c: dict, s: Settings) -> dict[str, float]:
    if c["kind"] == "forged_sender":
        return {"forged": s.forged_points}
    if c["kind"] == "outside_network":  # mostly misconfiguration: never more than low alone
        return {"breadth": 20 + 15 * ramp(c["n"], s.outside_min_targets, s.scan_high_targets)}
    if c["kind"] == "arp_scan":
        breadth = 20 + 30 * ramp(c["n"], s.scan_min_targets, s.scan_high_targets)
        return {"breadth": breadth, "speed": 20 * ramp(c["rate"], s.scan_min_rate, s.fast_rate)}
    return {"count": 25 + 25 * ramp(c["frames"], s.flood_min_frames, s.flood_high_frames),
            "speed": 20 * ramp(c["rate"], s.flood_min_rate, s.fast_rate)}


def _explain(c: dict) -> str:
    src, span = c["orig_h"], f"{c['sec']:.0f} s" if c["sec"] < 120 else f"{c['sec'] / 60:.0f} min"
    mac = f" ({c['mac']})" if c["macs"] == 1 else f" ({c['macs']} MAC addresses)"
    if c["kind"] == "arp_scan":
        return (f"{src}{mac} asked by ARP for {c['n']} addresses in {span} ({c['rate']:.0f} per minute, "
                f"{c['frames']} requests): an ARP scan of its network.")
    if c["kind"] == "forged_sender":
        what = [count(c["frames"], "frame")]
        if c["unsolicited"]:
            what.append(f"{c['unsolicited']} unsolicited (broadcast reply or gratuitous)")
        if c["outside"]:
            what.append(f"for {', '.join(c['outside'][:3])}, outside its network")
        return (f"{src} sent ARP frames claiming hardware address {c['mac']} from Ethernet source {c['eth_src']}: "
                f"forged ARP ({'; '.join(what)}).")
    if c["kind"] == "gratuitous_flood":
        return (f"{src}{mac} sent {c['frames']} unsolicited ARP frames in {span} ({c['rate']:.0f} per "
                f"minute): a gratuitous ARP flood, possibly cache poisoning.")
    return f"{src}{mac} asked by ARP for {c['n']} addresses outside its own network ({c['frames']} requests)."


def _finding(c: dict, s: Settings) -> Finding:
    limits = {"arp_scan": ("scan_min_targets", "scan_high_targets", "scan_min_rate", "fast_rate"),
              "gratuitous_flood": ("flood_min_frames", "flood_high_frames", "flood_min_rate", "fast_rate"),
              "outside_network": ("local_prefix", "outside_min_targets"),
              "forged_sender": ("forged_points",)}[c["kind"]]
    return Finding(
        detection=META.id,
        key=(c["orig_h"], c["kind"], "*"),
        score_parts=_score(c, s),
        explanation=_explain(c),
        internal_hosts=[c["orig_h"]],  # ARP is local-link traffic: the sender is one of ours
        external_hosts=[],
        channel="arp", start=c["start"], end=c["end"], bytes_out=0,
        evidence={"flows": 0, "arp_frames": c["frames"], "top_flows": [], "community_ids": []},
        metrics={"count": c["n"], "frames": c["frames"], "seconds": round(c["sec"], 1),
                 "per_minute": round(c["rate"], 1), "sender_macs": c["macs"], "sender_mac": c["mac"],
                 "addresses": c["listed"],
                 **({"ethernet_source": c["eth_src"], "unsolicited": c["unsolicited"], "outside": c["outside"]}
                    if c["kind"] == "forged_sender" else {})},
        thresholds={k: getattr(s, k) for k in limits},
        attack=KIND_ATTACK[c["kind"]],
        tenant=c["tenant"],
    )
