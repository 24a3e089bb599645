"""The case log: measures taken per incident (time, who, what), recorded by analysts and officers.

The notification drafts take their "measures taken" from here (``report.case.write_case``): the
entries of the tenant's incidents that overlap the report's window.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from . import audit, console_db
from .errors import AbflussError

#: Longest entry accepted (a measure is a sentence or a short paragraph, not a document).
MAX_TEXT = 4000


def add(root: Path | str, incident: str, tenant: str, host: str | None, span: tuple[datetime, datetime] | None,
        who: str, what: str) -> dict:
    """Append one measure to ``incident`` (of ``tenant``'s ``host``, spanning ``span``)."""
    what = (what or "").strip()
    if not what:
        raise AbflussError("a case log entry needs a text (--measure TEXT)")
    if len(what) > MAX_TEXT:
        raise AbflussError(f"a case log entry holds at most {MAX_TEXT} characters")
    with console_db.connect(root) as con:
        nid = con.execute("SELECT coalesce(max(id), 0) + 1 FROM case_log").fetchone()[0]
        con.execute("INSERT INTO case_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [nid, incident, tenant, host, console_db.stamp(span[0]) if span else None,
                     console_db.stamp(span[1]) if span else None, console_db.now(), who, what])
        audit.record(root, who, "case_add", tenant, f"incident {incident}: {what[:200]}", con)
        return console_db.rows(con, "SELECT id, incident, tenant, host, incident_start, incident_end, time, "
                                    "who, what FROM case_log WHERE id = ?", [nid])[0]


def entries(root: Path | str, tenants: frozenset[str] | None = None, incident: str | None = None,
            start: datetime | None = None, end: datetime | None = None) -> list[dict]:
    """Entries in time order, filtered in the query: ``tenants`` (None: all), one incident, and
    incidents overlapping [start, end)."""
    cond, args = ["1"], []
    if tenants is not None:
        c, a = console_db.in_list("tenant", tenants)
        cond.append(c)
        args += a
    if incident is not None:
        cond.append("incident = ?")
        args.append(incident)
    if end is not None:
        cond.append("(incident_start IS NULL OR incident_start < ?)")
        args.append(console_db.stamp(end))
    if start is not None:
        cond.append("(incident_end IS NULL OR incident_end >= ?)")
        args.append(console_db.stamp(start))
    if not (Path(root) / console_db.FILE).exists():
        return []  # nothing recorded yet: do not create the file for a read
    with console_db.connect(root) as con:
        return console_db.rows(con, f"SELECT id, incident, tenant, host, incident_start, incident_end, time, who, what "
                                    f"FROM case_log WHERE {' AND '.join(cond)} ORDER BY time, id", args)


def of_incident(root: Path | str, incident, tenant: str) -> list[dict]:
    """The entries of one incident of ``tenant``: those recorded under its id, and those recorded for
    its host while it had another id. An incident's id names its host and its first moment, so only
    a finding that starts before it (or a merge into an earlier incident) gives it a new id; a
    measure taken stays with the host and the time it was taken for (its recorded span overlaps the
    incident's)."""
    if not (Path(root) / console_db.FILE).exists():
        return []
    with console_db.connect(root) as con:
        return console_db.rows(
            con, "SELECT id, incident, tenant, host, incident_start, incident_end, time, who, what FROM case_log "
                 "WHERE tenant = ? AND (incident = ? OR (host = ? AND incident_start <= ? AND incident_end >= ?)) "
                 "ORDER BY time, id",
            [tenant, incident.id, incident.internal_host, console_db.stamp(incident.end),
             console_db.stamp(incident.start)])


def measures(root: Path | str, tenant: str, start: datetime | None, end: datetime | None) -> tuple[str, ...]:
    """The measures taken for ``tenant``'s incidents overlapping the window, as the drafts list them."""
    return tuple(f"{e['time']:%Y-%m-%d %H:%M} UTC, {e['who']}: {e['what']}"
                 for e in entries(root, frozenset({tenant}), start=start, end=end))
