"""The notification clocks of a report: ``report.json`` ``deadlines`` and its HTML section.

The clocks run from the awareness time (DOMAIN.md §1.7). Without ``--aware-at`` abfluss cannot
know it, so it assumes the time of the report and says so (``aware_at_source = "assumed"``)
instead of presenting a guess as a fact. Each deadline carries the seconds left at ``as_of``
(negative once passed); the words ("noch 47 h", "overdue since …") come from ``units``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .. import units
from .drafts import deadlines as clock
from .drafts import iso
from .drafts_text import HEADS

#: duty (draft kind) -> key of :func:`abfluss.report.drafts.deadlines`, in the order they fall due.
DUTIES = (("nis2_early", "early_warning"), ("art33", "art33"), ("nis2_notification", "notification"),
          ("nis2_final", "final"))


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def section(aware_at: datetime | None, now: datetime) -> dict:
    """``{"aware_at", "aware_at_source": "given"|"assumed", "as_of", "due": [{duty, deadline,
    seconds_left}]}``; the final report's deadline is provisional (counted from the 72 h deadline)."""
    now = _utc(now)
    aware = _utc(aware_at) if aware_at is not None else now
    dl = clock(aware)
    return {"aware_at": iso(aware), "aware_at_source": "given" if aware_at is not None else "assumed",
            "as_of": iso(now),
            "due": [{"duty": duty, "deadline": iso(dl[key]), "seconds_left": int((dl[key] - now).total_seconds())}
                    for duty, key in DUTIES]}


def rows(sec: dict, lang: str) -> list[dict]:
    """The deadlines as table rows in ``lang``: duty title, legal basis, and the deadline with its state."""
    return [{"title": HEADS[d["duty"]][lang][0], "law": HEADS[d["duty"]][lang][1],
             "overdue": d["seconds_left"] < 0, "status": units.deadline_status(d["deadline"], sec["as_of"], lang)}
            for d in sec["due"]]
