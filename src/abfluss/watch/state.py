"""Where each source stands, kept in the catalog.

The authoritative position of a followed file is the ``inputs`` row of each chunk it stored:
the chunk's label ``watch:<source>#<file id>@<start>-<end>`` is committed in the same
transaction as the chunk's rows, so a restart resumes exactly after the last stored chunk.
``watch_state`` remembers which file each source was on (needed to finish a file that was
rotated away while the watcher was down) and when each sensor last delivered records.
"""

from __future__ import annotations

import json
import re

from ..store import Workspace

DDL = """CREATE TABLE IF NOT EXISTS watch_state (
    source VARCHAR PRIMARY KEY, file_id VARCHAR, "offset" BIGINT, updated TIMESTAMPTZ, info JSON)"""
_LABEL = re.compile(r"^watch:(?P<source>.+)#(?P<file>[^#@]+)@(?P<start>\d+)-(?P<end>\d+)$")


def label(source: str, file_id: str, start: int, end: int) -> str:
    return f"watch:{source}#{file_id}@{start}-{end}"


def ensure(ws: Workspace) -> None:
    ws.con.execute(DDL)


def committed_offsets(ws: Workspace) -> dict[tuple[str, str], int]:
    """(source, file id) -> end offset of the last stored chunk, from the inputs table."""
    out: dict[tuple[str, str], int] = {}
    for (path,) in ws.con.execute("SELECT path FROM inputs WHERE starts_with(path, 'watch:')").fetchall():
        m = _LABEL.match(path)
        if m:
            key = (m["source"], m["file"])
            out[key] = max(out.get(key, 0), int(m["end"]))
    return out


def load(ws: Workspace) -> dict[str, tuple[str, int, dict]]:
    rows = ws.con.execute('SELECT source, file_id, "offset", info FROM watch_state').fetchall()
    return {s: (f, o, json.loads(i or "{}")) for s, f, o, i in rows}


def save(ws: Workspace, source: str, file_id: str, offset: int, info: dict | None = None) -> None:
    ws.con.execute('INSERT OR REPLACE INTO watch_state VALUES (?, ?, ?, now(), ?)',
                   [source, file_id, offset, json.dumps(info or {})])
