"""The ``dlp`` and ``inspected`` rows of finished flows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from ...readers._community_id import community_id
from ...schema import TS, conform
from ..streams import TCP, UDP, address

if TYPE_CHECKING:
    from .flows import Flow

PROTO_NAMES = {TCP: "tcp", UDP: "udp"}
#: Rows kept as Python lists before they are turned into an Arrow table.
ROWS_PER_BATCH = 100_000
#: Distinct addresses whose text form is remembered (the cache is emptied when full).
ADDRESS_CACHE = 100_000


class Rows:
    """The ``dlp`` and ``inspected`` rows of finished flows: column lists, turned into Arrow
    tables every ``ROWS_PER_BATCH`` rows so a capture of millions of flows stays compact."""

    DLP = ("ts", "community_id", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "sender", "app",
           "category", "hmac", "masked", "anchored", "hits")
    INSPECTED = ("ts", "community_id", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "sender", "app",
                 "payload_bytes", "scanned_bytes", "encrypted", "gaps")

    def __init__(self):
        self.cols = {"dlp": {c: [] for c in self.DLP}}
        # ``inspected`` rows as tuples (one append per flow side, not one per column), turned
        # into columns when sealed
        self.inspected: list[tuple] = []
        self.done: dict[str, list[pa.Table]] = {"dlp": [], "inspected": []}
        self.addresses: dict[bytes, str] = {}  # packed -> text, for the flows' many shared hosts

    def add(self, flow: Flow) -> None:
        if flow.dirs == [None, None]:
            return
        orig_h, resp_h = self._address(flow.client_addr), self._address(flow.server_addr)
        cid = community_id(flow.proto, orig_h, resp_h, flow.client_port, flow.server_port)
        common = (_us(flow.ts), cid, orig_h, flow.client_port, resp_h, flow.server_port, PROTO_NAMES[flow.proto])
        app = flow.app or "raw"
        dlp = self.cols["dlp"]
        for d, sender in zip(flow.dirs, ("orig", "resp")):
            if d is None:
                continue
            payload, gaps = d.bytes
            if not (payload or gaps):
                continue
            self.inspected.append((*common, sender, app, payload, d.sink.scanned, flow.encrypted, gaps))
            if d.hits:  # column by column: a flow side of an export has thousands of rows
                # sorted by (category, HMAC) as one string each: comparing tuples cost more than the rest
                ks = list(d.hits)
                joined = list(map("\0".join, ks))
                keys = list(map(ks.__getitem__, sorted(range(len(ks)), key=joined.__getitem__)))
                n = len(keys)
                for k, v in zip(self.DLP, (*common, sender, app)):
                    dlp[k] += [v] * n
                counts = list(map(d.hits.__getitem__, keys))
                for k, col in zip(("category", "hmac"), zip(*keys)):
                    dlp[k] += col
                for k, col in zip(("hits", "anchored", "masked"), zip(*counts)):
                    dlp[k] += col
        if len(dlp["ts"]) >= ROWS_PER_BATCH:
            self._seal("dlp")
        if len(self.inspected) >= ROWS_PER_BATCH:
            self._seal("inspected")

    def _address(self, packed: bytes) -> str:
        text = self.addresses.get(packed)
        if text is None:
            if len(self.addresses) >= ADDRESS_CACHE:
                self.addresses.clear()
            text = self.addresses[packed] = address(packed)
        return text

    def _seal(self, name: str) -> None:
        if name == "inspected":
            rows = self.inspected
            data = dict(zip(self.INSPECTED, map(list, zip(*rows)))) if rows else {c: [] for c in self.INSPECTED}
        else:
            data = dict(self.cols[name])
        data["ts"] = pa.array(data["ts"], pa.int64()).cast(TS)
        self.done[name].append(conform(name, data))
        if name == "inspected":
            self.inspected.clear()
        else:
            for c in self.cols[name].values():
                c.clear()

    def tables(self) -> tuple[pa.Table, pa.Table]:
        for name in ("dlp", "inspected"):
            self._seal(name)
        return pa.concat_tables(self.done["dlp"]), pa.concat_tables(self.done["inspected"])


def _us(ts: float) -> int:
    """Microseconds, floored to the millisecond as NFStream times its flows: a flow's rows then
    fall in every analysis window its flow record falls in."""
    us = round(ts * 1_000_000)
    return us - us % 1000
