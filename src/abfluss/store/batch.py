"""Committing staged inputs: their Parquet files move into place and the catalog records them,
their inputs and their new addresses, all in one transaction."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from ..config import pack

if TYPE_CHECKING:
    from .workspace import Workspace
    from .writer import Staged


def commit_staged(ws: Workspace, batch: list[Staged]) -> list[bool]:
    """Make staged inputs visible, all in one catalog transaction: their Parquet files move
    into place and the catalog records them with their inputs. Whether each was stored: an
    input whose content the catalog (or an earlier one of the batch) already holds is not,
    and its files are removed. On error nothing of the batch is stored and it raises."""
    stored, seen, placed = [], set(), []
    known_ids = {r[0] for r in ws.con.execute(
        "SELECT input_id FROM inputs WHERE input_id IN (SELECT unnest(?))",
        [[s.meta.input_id for s in batch]]).fetchall()} if batch else set()
    # the batch's rows gathered column-wise and inserted with one statement per table: a
    # statement per row cost milliseconds each, most of a small log's time
    files: list[list] = [[], [], [], [], []]
    inputs: list[list] = [[] for _ in range(11)]
    addrs: list[list] = [[], [], []]
    ws.con.execute("BEGIN TRANSACTION")
    try:
        # only the batch's addresses are looked up, not every address the catalog knows
        candidates = sorted(set().union(*(s.addresses for s in batch)))
        known = {r[0] for r in ws.con.execute(
            "SELECT addr FROM addresses WHERE addr IN (SELECT unnest(?::VARCHAR[]))", [candidates]).fetchall()}
        next_id = ws.con.execute("SELECT coalesce(max(id), 0) FROM addresses").fetchall()[0][0]
        for s in batch:
            meta = s.meta
            if meta.input_id in known_ids or meta.input_id in seen:
                stored.append(False)
                continue
            seen.add(meta.input_id)
            stored.append(True)
            for rel, tmp, table, day, rows in s.files:
                os.replace(ws.root / tmp, ws.root / rel)
                placed.append(rel)
                for col, v in zip(files, (rel, table, meta.input_id, day, rows)):
                    col.append(v)
            for col, v in zip(inputs, (meta.input_id, meta.path, meta.size, meta.format, meta.sensor,
                                       meta.first_ts, meta.last_ts, sum(meta.records.values()),
                                       meta.skipped, json.dumps(meta.records, sort_keys=True),
                                       json.dumps(meta.messages))):
                col.append(v)
            # ids in the order one input after the other would give them: the same
            # whichever way the inputs are batched
            new = sorted(s.addresses - known)
            known.update(new)
            addrs[0] += new
            addrs[1] += [_pack_or_none(a) for a in new]
            addrs[2] += range(next_id + 1, next_id + 1 + len(new))
            next_id += len(new)
        # lists as parameters: registering an Arrow table would make DuckDB import pandas
        if files[0]:
            ws.con.execute("INSERT INTO files SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
                           "unnest(?::VARCHAR[]), unnest(?::DATE[]), unnest(?::BIGINT[])", files)
        if inputs[0]:
            ws.con.execute(
                "INSERT INTO inputs SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::BIGINT[]), "
                "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), now(), unnest(?::TIMESTAMPTZ[]), "
                "unnest(?::TIMESTAMPTZ[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]), "
                "unnest(?::VARCHAR[])::JSON, unnest(?::VARCHAR[])::JSON", inputs)
        if addrs[0]:
            ws.con.execute("INSERT INTO addresses SELECT unnest(?::VARCHAR[]), unnest(?::BLOB[]), "
                           "unnest(?::BIGINT[])", addrs)
        ws.con.execute("COMMIT")
    except BaseException:
        ws.con.execute("ROLLBACK")
        for rel in placed:
            (ws.root / rel).unlink(missing_ok=True)
        for s in batch:
            s.discard(ws.root)
        raise
    for s, ok in zip(batch, stored):
        if not ok:
            s.discard(ws.root)
    if any(stored):
        added: dict[str, list[str]] = {}
        for rel, table in zip(files[0], files[1]):
            added.setdefault(table, []).append(rel)
        ws.refresh_views(set(added), added)
    return stored


def _pack_or_none(addr: str) -> bytes | None:
    try:
        return pack(addr)
    except ValueError:
        return None
