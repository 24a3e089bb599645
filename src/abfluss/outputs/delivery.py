"""At-least-once delivery of findings to sinks: a persistent queue per sink in the catalog.

When ``analysis.save`` finds a finding new or raised in severity, it queues the finding for
every sink of that run in the same transaction (table ``outbox``); ``deliver`` then sends each
sink its queue and removes an entry only once the sink accepted it. A sink that fails keeps its
queue (attempts and the last error are counted) and gets it again on the next ``analyze`` or
``watch`` cycle with that sink; it never stops the other sinks from getting theirs. A crash
between sending and removing sends a finding twice, never zero times.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from ..findings import Finding
from ..store import Workspace
from .sinks import Sink

DDL = """CREATE TABLE IF NOT EXISTS outbox (
    sink VARCHAR, finding_id VARCHAR, severity VARCHAR, queued TIMESTAMPTZ, attempts INTEGER,
    last_error VARCHAR, PRIMARY KEY (sink, finding_id))"""


@dataclass
class Delivery:
    """What one ``deliver`` did for one sink: sent now, still queued, the error that stopped it."""

    sent: int = 0
    queued: int = 0
    error: str | None = None


def enqueue(con, sinks, findings: list[Finding]) -> None:
    """Queue ``findings`` for every sink spec in ``sinks`` (inside the caller's transaction)."""
    rows = [(s, f.id, f.severity) for s in sinks for f in findings]
    if rows:
        con.executemany("""INSERT INTO outbox VALUES (?, ?, ?, now(), 0, NULL)
                           ON CONFLICT DO UPDATE SET severity = excluded.severity""", rows)


def queued(ws: Workspace, spec: str) -> list[Finding]:
    """The findings still to be sent to ``spec``, oldest first, in their current form."""
    rows = ws.con.execute("""SELECT f.doc FROM outbox o JOIN findings f ON f.id = o.finding_id
                             WHERE o.sink = ? ORDER BY o.queued, o.finding_id""", [spec]).fetchall()
    return [Finding.from_dict(json.loads(r[0])) for r in rows]


def deliver(ws: Workspace, sinks: list[Sink], cancel: threading.Event | None = None) -> dict[str, Delivery]:
    """Send every sink its queue; per sink stop at the first failure (the sink is down: the rest
    waits for the next cycle rather than a deadline each)."""
    out = {}
    ws.con.execute(DDL)
    for sink in sinks:
        d = out[sink.spec] = Delivery()
        for f in queued(ws, sink.spec):
            if cancel is not None and cancel.is_set():
                break
            try:
                sink.send([f], cancel)
            except Exception as e:  # noqa: BLE001  an AbflussError, or a renderer's bug: keep it queued
                d.error = str(e)
                ws.con.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? "
                               "WHERE sink = ? AND finding_id = ?", [d.error, sink.spec, f.id])
                break
            ws.con.execute("DELETE FROM outbox WHERE sink = ? AND finding_id = ?", [sink.spec, f.id])
            d.sent += 1
        d.queued = ws.con.execute("SELECT count(*) FROM outbox WHERE sink = ?", [sink.spec]).fetchall()[0][0]
    return out
