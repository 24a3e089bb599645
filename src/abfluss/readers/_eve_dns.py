"""DNS events of an eve.json merged into one row per query (``suricata`` describes the rules).

Matching needs only each event's kind, key, question and flags; the rest of an event stays where
it is (a bulk block's Arrow columns from ``_eve_fast``, or a tuple from the line reader) and a
row is a reference to events: the one that opened it and the answer events that filled it. The
rows' columns are taken from the events once, when the chunk is flushed, so answer lists never
go from Arrow to Python and back.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from abfluss.schema import conform

#: A DNS event as ``Merger`` keeps it until its chunk is flushed: what a row takes from it.
EVENT = pa.schema([("ts", pa.int64()), ("uid", pa.string()), ("orig_h", pa.string()), ("orig_p", pa.int64()),
                   ("resp_h", pa.string()), ("resp_p", pa.int64()), ("proto", pa.string()),
                   ("trans_id", pa.int64()), ("query", pa.string()), ("qtype", pa.string()),
                   ("rcode", pa.string()), ("answers", pa.list_(pa.string())),
                   ("answer_types", pa.list_(pa.string())), ("ttls", pa.list_(pa.float64()))])


class Merger:
    """DNS rows of one chunk with the queries still waiting for their answer."""

    def __init__(self) -> None:
        self.rows: list[list] = []  # [opening event, answer events or None, swap ends, no qtype]
        self.pending: dict[tuple, list[tuple]] = {}  # (flow_id, dns id) -> (row, query, qtype) waiting
        self.answered: dict[tuple, list] = {}  # last row answered per key (v1 continuation)
        self.parts: list = []  # the events in order: (Arrow table, start, stop) or a list of tuples
        self.events = 0
        self.joined = False  # whether a row has more than one answer event (v1 records)

    def add(self, ts: int, fields: tuple) -> None:
        """A dns event read by the line reader, as ``suricata._dns_fields`` gives it."""
        kind, key, uid, ends, proto, trans_id, query, qtype, rcode, data, types, ttls, v1, swap = fields
        if not self.parts or not isinstance(self.parts[-1], list):
            self.parts.append([])
        self.parts[-1].append((ts, uid, ends["orig_h"], ends["orig_p"], ends["resp_h"], ends["resp_p"], proto,
                               trans_id, query, qtype, rcode, data, types, ttls))
        self._match(((kind, key, query, qtype, v1, swap),))

    def add_bulk(self, events: pa.Table, start: int, stop: int, match: list) -> None:
        """Rows ``start`` to ``stop`` of ``events`` (a block's DNS events, ``EVENT`` columns,
        from ``_eve_fast``), with what matching needs of each: (kind, key, question name and
        type, v1 record, sent by the server)."""
        if stop > start:
            self.parts.append((events, start, stop))
            self._match(match)

    def _match(self, events) -> None:
        """Each of ``events`` (kind, key, question name and type, v1 record, sent by the server) in
        order: a query opens a row that waits for its answer; an answer fills the first waiting
        row of its key with the same question, else the first waiting one, else opens a row of
        its own (server as resp); a further v1 record extends the row last answered.
        (One loop over a block's events with the state in locals: a call per event cost a
        third of the merge.)"""
        ev = self.events
        rows, pending, answered = self.rows, self.pending, self.answered
        for kind, key, query, qtype, v1, swap in events:
            if kind == "query" or kind == "request":
                row = [ev, None, False, False]
                rows.append(row)
                waiting = pending.get(key)
                if waiting is None:
                    pending[key] = [(row, query, qtype)]
                else:
                    waiting.append((row, query, qtype))
                ev += 1
                continue
            waiting = pending.get(key)
            if waiting:
                at = 0
                if len(waiting) > 1 and (waiting[0][1] != query or waiting[0][2] != qtype):
                    at = next((i for i, w in enumerate(waiting) if w[1] == query and w[2] == qtype), 0)
                row = waiting.pop(at)[0]
            elif v1 and key in answered:
                answered[key][1].append(ev)  # a further resource record of the same v1 response
                self.joined = True
                ev += 1
                continue
            else:
                row = [ev, None, swap, v1]  # a v1 record's type is not the question's
                rows.append(row)
            row[1] = [ev]
            answered[key] = row
            ev += 1
        self.events = ev

    def table(self) -> pa.Table | None:
        """The chunk's rows, in the order they were opened."""
        if not self.rows:
            return None
        parts = [p[0].slice(p[1], p[2] - p[1]) if isinstance(p, tuple) else
                 pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(zip(*p), EVENT)], schema=EVENT)
                 for p in self.parts]
        ev = (parts[0] if len(parts) == 1 else pa.concat_tables(parts)).combine_chunks()
        opened = pa.array([r[0] for r in self.rows], pa.int64())
        swap = pa.array([r[2] for r in self.rows], pa.bool_())
        col = lambda name: ev.column(name).take(opened)  # noqa: E731
        cols = {"ts": col("ts"), "uid": col("uid"), "proto": col("proto"), "trans_id": col("trans_id"),
                "query": col("query"),
                "qtype": pc.if_else(pa.array([r[3] for r in self.rows], pa.bool_()), pa.scalar(None, pa.string()),
                                    col("qtype"))}
        for a, b in (("orig_h", "resp_h"), ("orig_p", "resp_p")):
            cols[a], cols[b] = pc.if_else(swap, col(b), col(a)), pc.if_else(swap, col(a), col(b))
        answered = pa.array([r[1][0] if r[1] else None for r in self.rows], pa.int64())
        cols["rcode"] = ev.column("rcode").take(answered)
        for name in ("answers", "answer_types", "ttls"):
            cols[name] = ev.column(name).take(answered)
        if self.joined:  # v1 records of one response: their lists joined
            for name in ("answers", "answer_types", "ttls"):
                values = ev.column(name).to_pylist()
                cols[name] = pa.array([None if not r[1] else [v for i in r[1] for v in values[i]] for r in self.rows],
                                      EVENT.field(name).type)
        return conform("dns", cols)
