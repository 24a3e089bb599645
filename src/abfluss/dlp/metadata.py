"""Metadata is inspected like payload: DNS names, HTTP hosts, URIs and user agents, TLS SNI and
certificate names, flow server names and user agents — whatever a reader (pcap, Zeek, Suricata)
puts into a table — are scanned by the same detectors before a row is stored.

A value found there is replaced, in the stored column, by its masked form (`A12******0`; test
identities too), and counted as a ``dlp`` row (``app`` names the column, e.g. ``dns.query``)
with its keyed hash: no raw identifier reaches any column of any table, and an identifier sent
in a DNS name or a URL counts like one sent in a body. ``Scrubber`` is called by the store's
writer for every batch (store.InputWriter), and for the texts of the catalog (input paths and
skip messages) by ``scrub_text``.

Speed: only distinct values are looked at, only those with a digit run or an ``@`` are scanned,
and they are scanned together (one payload, one line each), so a DNS tunnel's 200,000 names
cost one scan of a few MB.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from ..readers._community_id import community_id
from .scanner import Scanner

#: Text columns per table that carry names or strings chosen by the sender (scanned and masked).
COLUMNS = {
    "flows": ("server_name", "user_agent"),
    "dns": ("query", "answers"),
    "http": ("host", "uri", "user_agent"),
    "tls": ("server_name", "subject", "issuer"),
    "certs": ("subject", "issuer", "san_dns"),
    "alerts": ("signature",),
    "logins": ("user", "reply"),
    "files": ("filename",),
    "software": ("name", "version"),  # banners (SSH-2.0-…, User-Agent products): the sender writes them
}
#: Host names: compared case-insensitively (resolvers randomise the case of DNS names), so they
#: are scanned in upper case (a KVNR in a lower-case label is still a KVNR).
NAME_COLUMNS = {("dns", "query"), ("dns", "answers"), ("flows", "server_name"), ("http", "host"),
                ("tls", "server_name")}
#: A value can hold an identifier only with three digits in a row or an `@` (e-mail).
_MAYBE = r"[0-9]{3}|@"
_MAYBE_RX = re.compile(_MAYBE)
_PROTO = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58}


class Scrubber:
    """Masks identifiers in a batch's text columns and returns the ``dlp`` rows they make.
    The workspace key is fetched only when something is found (``key()``)."""

    def __init__(self, key: Callable[[], bytes]):
        self._key = key
        self._scanner: Scanner | None = None
        # Looks first without the key: a workspace ingested with --no-inspect gets a key only
        # when a stored value really holds an identifier.
        self._probe = Scanner(bytes(32))

    @property
    def scanner(self) -> Scanner:
        if self._scanner is None:
            self._scanner = Scanner(self._key())
        return self._scanner

    def scrub(self, table: str, batch: pa.Table) -> tuple[pa.Table, list[dict]]:
        rows: list[dict] = []
        for col in COLUMNS.get(table, ()):
            if col not in batch.column_names:
                continue
            arr = batch.column(col)
            listed = pa.types.is_list(arr.type)
            flat = pc.list_flatten(arr) if listed else arr
            uniq = pc.unique(flat).drop_null()
            if len(uniq) == 0:
                continue
            maybe = uniq.filter(pc.match_substring_regex(uniq, _MAYBE))
            if len(maybe) == 0:
                continue
            found = self._scan(maybe.to_pylist(), (table, col) in NAME_COLUMNS)
            if not found:
                continue
            masked = {v: m for v, (m, _) in found.items()}
            batch = batch.set_column(batch.column_names.index(col), col,
                                     _replace(arr, masked, listed))
            rows += self._rows(table, col, batch, arr, found, listed)
        return batch, rows

    def _scan(self, values: list[str], upper: bool) -> dict[str, tuple[str, list]]:
        """{value: (masked value, [hits])} for the values holding an identifier."""
        enc = [v.encode("utf-8", "surrogatepass") for v in values]
        payload = b"\n".join(e.upper() if upper else e for e in enc)
        starts, pos = [], 0
        for e in enc:
            starts.append(pos)
            pos += len(e) + 1
        if not self._probe.scan_spans(payload):
            return {}
        per: dict[int, list] = {}
        for s, e, hit in self.scanner.scan_spans(payload):
            i = bisect_right(starts, s) - 1
            per.setdefault(i, []).append((s - starts[i], e - starts[i], hit))
        out = {}
        for i, spans in per.items():
            raw = enc[i]
            pieces, last = [], 0
            for s, e, hit in sorted(spans, key=lambda x: x[0]):
                if s < last:
                    continue
                pieces += [raw[last:s], _masked(hit, raw[s:e]).encode()]
                last = e
            pieces.append(raw[last:])
            out[values[i]] = (b"".join(pieces).decode("utf-8", "surrogatepass"),
                              [h for _, _, h in spans if h is not None])
        return out

    def _rows(self, table: str, col: str, batch: pa.Table, arr, found, listed: bool) -> list[dict]:
        """One ``dlp`` row per stored row, category and value found in it."""
        keys = pa.array(list(found), pa.string())
        if listed:
            flat = pc.list_flatten(arr)
            parents = pc.list_parent_indices(arr)
            hit_rows = pc.unique(pc.filter(parents, pc.is_in(flat, value_set=keys)))
        else:
            hit_rows = pc.indices_nonzero(pc.fill_null(pc.is_in(arr, value_set=keys), False))
        sub = batch.take(hit_rows)
        values = arr.take(hit_rows).to_pylist()  # the values as read (two may share a masked form)
        names = ("ts", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "community_id")
        cols = {c: sub.column(c).to_pylist() if c in sub.column_names else [None] * sub.num_rows for c in names}
        found = {v: hits for v, (_masked, hits) in found.items()}
        out = []
        for r, v in enumerate(values):
            vals = (v or []) if listed else ([v] if v is not None else [])
            tally: dict[tuple, list] = {}
            for x in vals:
                for h in found.get(x, ()):
                    e = tally.setdefault((h.category, h.hmac), [0, False, h.masked])
                    e[0] += 1
                    e[1] = e[1] or h.anchored
            if not tally:
                continue
            proto = cols["proto"][r] or ("udp" if table == "dns" else "tcp")
            cid = cols["community_id"][r]
            if cid is None and cols["orig_h"][r] and cols["resp_h"][r]:
                try:
                    cid = community_id(_PROTO.get(proto, 0), cols["orig_h"][r], cols["resp_h"][r],
                                       cols["orig_p"][r] or 0, cols["resp_p"][r] or 0)
                except (ValueError, TypeError):
                    cid = None
            for (cat, hmac), (hits, anchored, masked) in sorted(tally.items()):
                out.append({"ts": cols["ts"][r], "community_id": cid, "orig_h": cols["orig_h"][r],
                            "orig_p": cols["orig_p"][r], "resp_h": cols["resp_h"][r], "resp_p": cols["resp_p"][r],
                            "proto": proto, "sender": "orig", "app": f"{table}.{col}", "category": cat,
                            "hmac": hmac, "masked": masked, "anchored": anchored, "hits": hits})
        return out

    def text(self, value: str) -> str:
        """One text (a path, a message) with its identifiers masked."""
        if not value or not _MAYBE_RX.search(value):
            return value
        found = self._scan([value], False)
        return found[value][0] if value in found else value


def _masked(hit, raw: bytes) -> str:
    if hit is not None:
        return hit.masked
    text = raw.decode("ascii", "replace").replace(" ", "")
    return "*" * len(text) if not text[:1].isalnum() else text[:3] + "*" * max(0, len(text) - 4) + text[-1:]


def _replace(arr, masked: dict[str, str], listed: bool):
    """The column with the values in ``masked`` replaced (Arrow compute: no per-row Python)."""
    keys = pa.array(list(masked), pa.string())
    vals = pa.array(list(masked.values()), pa.string())

    def swap(flat):
        idx = pc.index_in(flat, value_set=keys)
        return pc.if_else(pc.is_null(idx), flat, pc.take(vals, idx)).cast(flat.type)

    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    out = []
    for ch in chunks:
        if listed:
            out.append(pa.ListArray.from_arrays(ch.offsets, swap(ch.values),
                                                mask=ch.is_null()).cast(arr.type))
        else:
            out.append(swap(ch))
    return pa.chunked_array(out, arr.type)

