"""The Typer app and what every command module shares: the workspace option, output consoles,
time parsing and JSON/CSV writers.

Imports run one way: ``abfluss.cli`` (the package) imports the command modules, each command
module imports this one, and this one imports no command module.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape as rich_escape

from ..errors import AbflussError
from ..units import human_bytes, parse_time  # noqa: F401  re-exported for the command modules
from ..units import json_default as _json_default

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="abfluss: did data leave this network — how much, from which hosts, to where, when?")

#: Control characters (C0, DEL, C1, line and paragraph separators): written to a terminal they
#: move the cursor, clear the screen or retitle the window. Shown as escapes instead.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with every control character but the newline written as an escape (``\\x1b``)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 256 else f"\\u{ord(m[0]):04x}", text)


def esc(value) -> str:
    """A data value (name, path, message) for a line printed with ``markup=True``: Rich markup
    in it (``[/]``, ``[link=…]``) is shown, never interpreted; newlines are escaped too."""
    return rich_escape(printable(str(value)).replace("\n", "\\n"))


class _Console(Console):
    """A console for attacker-written data: markup and emoji codes are off unless a call asks
    for them (``markup=True``, with the data passed through ``esc``), and control characters
    never reach the terminal. Every string Rich prints, table cells and titles included,
    passes through ``render_str``."""

    def __init__(self, **kw):
        super().__init__(markup=False, emoji=False, **kw)

    def render_str(self, text: str, **kw):
        return super().render_str(printable(text), **kw)


out = _Console(soft_wrap=True)
if not out.is_terminal:
    out.width = 160  # piped or logged: keep addresses and names whole
err = _Console(stderr=True, soft_wrap=True)


class Fmt(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class _State:
    workspace: Optional[Path] = None
    config: Optional[Path] = None


state = _State()


@app.callback()
def _main(
    workspace: Annotated[Optional[Path], typer.Option("--workspace", "-w", help="Workspace directory (default $ABFLUSS_WORKSPACE or ./abfluss-data).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML configuration (default <workspace>/abfluss.toml).")] = None,
) -> None:
    state.workspace, state.config = workspace, config


def _open(write: bool = False, enrich: bool = True):
    from .. import api  # DuckDB and Arrow load here, not for --help
    return api.open_workspace(state.workspace, state.config, write=write, enrich=enrich)




def _dump_json(rows) -> None:
    sys.stdout.write(json.dumps(rows, default=_json_default, indent=1) + "\n")


#: A spreadsheet reads a cell that starts with one of these as a formula (OWASP, CSV Injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A CSV cell: nested values (lists, dicts) as JSON text, times in ISO 8601, and text that a
    spreadsheet would run as a formula prefixed with a single quote (OWASP's rule; names, URIs
    and log fields are attacker-written). Numbers stay numbers."""
    if isinstance(value, (list, dict)):
        value = json.dumps(value, default=_json_default)
    elif isinstance(value, (datetime, date)):
        value = _json_default(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _dump_csv(rows, columns=None) -> None:
    """One CSV row per record, every cell through ``csv_cell``."""
    columns = list(columns or (rows[0].keys() if rows else []))
    w = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
    # Python 3.11's writer leaves a lone CR unquoted, which splits the row for any reader: a row
    # holding one is written with every field quoted
    quoted = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n", quoting=csv.QUOTE_ALL)
    w.writeheader()
    for r in rows:
        cells = {k: csv_cell(v) for k, v in r.items()}
        (quoted if any(isinstance(v, str) and "\r" in v for v in cells.values()) else w).writerow(cells)
