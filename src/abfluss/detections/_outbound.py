"""Outbound flows per internal host, destination, channel and address: one pre-aggregate that
upload_heavy, rare_destination and long_connection all start from, computed once per run
(``Telemetry.shared``) instead of each detection grouping every outbound flow again.

The destination is the name (SNI, HTTP Host, DNS) where known, else the address. Every column is
one that re-aggregates exactly over coarser groups (counts and byte sums add up, minima and
maxima of minima and maxima), so a detection grouping by (host, destination) or by (host,
address) gets what grouping the flows themselves would give; ``top_bytes`` (the largest flow's
bytes out) lets the channel of the largest flow be found per coarser group.
"""

from __future__ import annotations

from ibis import _

from ._stats import channel


def by_channel(tel):
    """The shared table: ``internal_host``, ``dest``, ``channel``, ``external_host`` and per group
    ``flows``, ``bytes_out``, ``bytes_in``, ``start``, ``end``, ``tenant``, ``name`` (the largest
    external name), ``duration`` (summed, nulls as 0), ``longest``, ``open_flows``, ``top_bytes``."""
    def build():
        f = tel.flows.filter(_.direction == "outbound")
        f = f.mutate(channel=channel(f.service, f.proto, f.resp_p),
                     dest=_.external_name.lower().coalesce(_.external_host))
        return f.group_by(["internal_host", "dest", "channel", "external_host"]).aggregate(
            flows=_.count(), bytes_out=_.bytes_out.sum(), bytes_in=_.bytes_in.sum(), start=_.ts.min(),
            end=_.ts_end.max(), tenant=_.tenant.max(), name=_.external_name.max(),
            duration=f.duration.fill_null(0).sum(), longest=f.duration.max(),
            open_flows=f.open.cast("int64").sum(), top_bytes=f.bytes_out.max())

    return tel.shared("outbound_by_channel", build)
