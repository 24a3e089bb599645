"""The findings an analysis keeps: stored by id in the catalog, merged with what was stored
before (their span and bytes only grow), listed, looked up by id prefix, and the flows a finding
names as evidence. ``analysis`` runs the detections and hands their findings to :func:`save`."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from . import detections as _det
from .errors import AbflussError
from .findings import Finding
from .store import Workspace


_ORDER = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def merge(old: Finding, new: Finding) -> Finding:
    """The stored form of a finding seen again: its evidence never shrinks.

    A narrower window sees less of the same behaviour; the stored finding keeps the union of
    both spans and the larger byte estimate. Its other fields (score, sentence, evidence) come
    from the stronger of the two (severity, then bytes, then score; the new one on a tie).
    """
    def strength(f: Finding) -> tuple:
        return _ORDER[f.severity], f.bytes_out, f.score

    base = new if strength(new) >= strength(old) else old
    out = Finding.from_dict(json.loads(json.dumps(base.to_dict(), default=str)))
    out.start = min((t for t in (old.start, new.start) if t is not None), default=None)
    out.end = max((t for t in (old.end, new.end) if t is not None), default=None)
    out.bytes_out = max(old.bytes_out, new.bytes_out)
    return out


def _status(old: Finding | None, merged: Finding) -> str:
    if old is None:
        return "new"
    if _ORDER[merged.severity] > _ORDER[old.severity]:
        return "raised"
    if merged.bytes_out > old.bytes_out or merged.start != old.start or merged.end != old.end:
        return "grown"
    return "unchanged"


def save(ws: Workspace, findings: list[Finding], sinks: tuple[str, ...] = (),
         window: tuple[datetime | None, datetime | None] = (None, None), engine: str = "duckdb",
         only: tuple[str, ...] = ()) -> list[Finding]:
    """Upsert findings by id, merged with what is stored (:func:`merge`: span and bytes only
    grow), and record the run in ``analyses``; return those that are new or rose in severity,
    queued for ``sinks`` in the same transaction (``notified``: the severity last queued, so
    nothing is lost between storing and sending)."""
    from . import __version__
    from .outputs import delivery

    ws.con.execute(delivery.DDL)
    now = datetime.now(timezone.utc)
    prev = {r[0]: (r[1], r[2], r[3], r[4]) for r in ws.con.execute(
        "SELECT id, notified, first_seen, doc, updated FROM findings").fetchall()}
    fresh = []
    rows = []
    counts = {"new": 0, "raised": 0, "grown": 0, "unchanged": 0}
    for f in findings:
        notified, first, doc, updated = prev.get(f.id, (None, None, None, None))
        old = Finding.from_dict(json.loads(doc)) if doc else None
        m = merge(old, f) if old else f
        status = _status(old, m)
        counts[status] += 1
        # ``updated`` moves only when the finding changed: the live view and ``last_update``
        # show what is new, grown or raised, not every finding a run saw again
        updated = now if status != "unchanged" or updated is None else updated
        if notified is None or _ORDER[m.severity] > _ORDER.get(notified, -1):
            fresh.append(m)
            notified = m.severity
        rows.append((m.id, m.detection, m.severity, m.score, m.start, m.end, m.bytes_out,
                     m.internal_hosts, json.dumps(m.to_dict(), default=str), first or now, updated, notified))
    ws.con.execute("BEGIN")
    try:
        if rows:
            ws.con.executemany("DELETE FROM findings WHERE id = ?", [(r[0],) for r in rows])
            ws.con.executemany("INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        delivery.enqueue(ws.con, sinks, fresh)
        ws.con.execute("""INSERT INTO analyses SELECT coalesce(max(id), 0) + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
                          FROM analyses""",
                       [now, window[0], window[1], engine, __version__, sorted(only) or list(_det.MODULES),
                        len(findings), counts["new"], counts["raised"], counts["grown"], counts["unchanged"]])
        ws.con.execute("COMMIT")
    except Exception:
        ws.con.execute("ROLLBACK")
        raise
    return fresh


def runs(ws: Workspace) -> list[dict]:
    """The recorded analysis runs, oldest first (the ``analyses`` table)."""
    cur = ws.con.execute("SELECT * FROM analyses ORDER BY id")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def load(ws: Workspace, severity: str | None = None, host: str | None = None,
         detection: str | None = None, tenants: frozenset[str] | None = None,
         updated_after: datetime | None = None) -> list[Finding]:
    """Stored findings, strongest first; ``severity`` is a minimum; ``tenants`` (None: all)
    limits them to those tenants' findings (a finding without a tenant is ``default``'s);
    ``updated_after``: only those stored or changed since then (``last_update``)."""
    cond, args = ["true"], []
    if updated_after is not None:
        cond.append("updated > ?")
        args.append(updated_after)
    if tenants is not None:
        cond.append(f"{TENANT_SQL} IN (SELECT unnest(?::VARCHAR[]))")
        args.append(sorted(tenants))
    if severity:
        if severity not in _ORDER:
            raise AbflussError(f"--severity {severity!r}: one of {', '.join(_ORDER)}")
        cond.append("list_position(?, severity) >= ?")
        args += [list(_ORDER), _ORDER[severity] + 1]
    if host:
        cond.append("list_contains(internal_hosts, ?)")
        args.append(host)
    if detection:
        cond.append("detection = ?")
        args.append(detection)
    try:
        rows = ws.con.execute(f"SELECT doc FROM findings WHERE {' AND '.join(cond)} "
                              "ORDER BY score DESC, detection, id", args).fetchall()
    except Exception as e:  # a catalog from before findings existed, opened read-only
        if "findings" in str(e) and "does not exist" in str(e):
            return []
        raise
    return [Finding.from_dict(json.loads(r[0])) for r in rows]


def last_update(ws: Workspace) -> datetime | None:
    """When a stored finding last changed (None: no findings yet)."""
    try:
        return ws.con.execute("SELECT max(updated) FROM findings").fetchall()[0][0]
    except Exception as e:  # a catalog from before findings existed, opened read-only
        if "findings" in str(e) and "does not exist" in str(e):
            return None
        raise


#: A stored finding's tenant, as SQL over the catalog's ``findings`` table.
TENANT_SQL = "coalesce(json_extract_string(doc, '$.tenant'), 'default')"


def get(ws: Workspace, finding_id: str, tenants: frozenset[str] | None = None) -> Finding:
    """One stored finding by id or unique id prefix, among ``tenants``' findings (None: all)."""
    cond, args = "true", []
    if tenants is not None:
        cond, args = f"{TENANT_SQL} IN (SELECT unnest(?::VARCHAR[]))", [sorted(tenants)]
    rows = ws.con.execute(f"SELECT doc FROM findings WHERE (id = ? OR starts_with(id, ?)) AND {cond}",
                          [finding_id, finding_id, *args]).fetchall()
    if not rows:
        raise AbflussError(f"no finding with id {finding_id!r} (list them with: abfluss findings)")
    if len(rows) > 1:
        raise AbflussError(f"{finding_id!r} matches {len(rows)} findings: give more of the id")
    return Finding.from_dict(json.loads(rows[0][0]))


def evidence_flows(ws: Workspace, f: Finding, limit: int = 10) -> list[dict]:
    """The flows a finding names as evidence (by uid), largest bytes out first.

    The finding's span bounds where they are (a uid names one connection, which started inside
    the span of the finding it is evidence of): the slice of flows in [start, end] is read first
    (the uids as literals and the span let the Parquet scan skip row groups by their statistics);
    only when some uid is not in it are all flows searched."""
    uids = list(f.evidence.get("top_flows", []))[:limit]
    if not uids:
        return []
    from .analysis import sql_string
    listed = ", ".join(sql_string(u) for u in uids)
    sql = ("SELECT uid, ts, orig_h, orig_p, resp_h, resp_p, service, bytes_out, bytes_in, duration "
           f"FROM flows WHERE uid IN ({listed}) {{}} ORDER BY bytes_out DESC NULLS LAST, ts LIMIT ?")
    rows = None
    if f.start is not None and f.end is not None:
        cur = ws.con.execute(sql.format("AND ts >= ? AND ts <= ?"), [f.start, f.end, limit])
        rows = cur.fetchall()
        if {r[0] for r in rows} != set(uids):  # a uid's flow outside the span: look everywhere
            rows = None
    if rows is None:
        cur = ws.con.execute(sql.format(""), [limit])
        rows = cur.fetchall()
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in rows]
