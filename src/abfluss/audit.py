"""The audit log (GDPR Art. 5(2) accountability): who did what, when, to which tenant's data.

Append-only: this module only ever inserts, and the store's triggers refuse an UPDATE or DELETE
of the table. Tampering is evident rather than impossible (whoever owns the workspace files can
drop the triggers and rewrite them): every row carries the SHA-256 of its own fields and
of the previous row's hash, so changing, deleting or reordering a row breaks the chain from there
on, and :func:`verify` names the first row that does not fit.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

from . import console_db

#: The hash a first row chains to.
GENESIS = "0" * 64
#: Actions recorded (the ``action`` column).
ACTIONS = ("login", "login_failed", "login_locked", "denied", "view", "export", "report", "contain", "case_add",
           "user_add", "user_remove", "token_create", "token_revoke")


def _digest(prev: str, seq: int, time: str, who: str, action: str, tenant: str | None, what: str) -> str:
    body = json.dumps([seq, time, who, action, tenant, what], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev + body).encode()).hexdigest()


def record(root: Path | str, who: str, action: str, tenant: str | None = None, what: str = "",
           con=None) -> int:
    """Append one row; returns its sequence number. ``con``: an open console connection to use
    (its transaction then holds the write lock, so no other row can slip in between)."""
    if con is None:
        with console_db.connect(root) as c:
            return record(root, who, action, tenant, what, c)
    time = console_db.now()
    last = con.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    con.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [seq, time, who, action, tenant, what, prev, _digest(prev, seq, time, who, action, tenant, what)])
    return seq


def entries(root: Path | str, start: datetime | None = None, end: datetime | None = None,
            user: str | None = None, tenant: str | None = None) -> list[dict]:
    """Rows in order, filtered in the query: ``start`` inclusive, ``end`` exclusive."""
    cond, args = ["1"], []
    for c, v in (("time >= ?", console_db.stamp(start)), ("time < ?", console_db.stamp(end)),
                 ("who = ?", user), ("tenant = ?", tenant)):
        if v is not None:
            cond.append(c)
            args.append(v)
    with console_db.connect(root) as con:
        return console_db.rows(con, f"SELECT seq, time, who, action, tenant, what, hash FROM audit "
                                    f"WHERE {' AND '.join(cond)} ORDER BY seq", args)


def verify(root: Path | str) -> dict:
    """Check the whole chain: ``{"rows": n, "ok": bool, "first_bad": seq or None}``."""
    with console_db.connect(root) as con:
        all_rows = con.execute("SELECT seq, time, who, action, tenant, what, prev, hash FROM audit "
                               "ORDER BY seq").fetchall()
    prev, expect = GENESIS, 1
    for seq, time, who, action, tenant, what, p, h in all_rows:
        if seq != expect or p != prev or h != _digest(prev, seq, time, who, action, tenant, what):
            return {"rows": len(all_rows), "ok": False, "first_bad": seq}
        prev, expect = h, seq + 1
    return {"rows": len(all_rows), "ok": True, "first_bad": None}
