"""The Typer app and what every command module shares: the workspace option, output consoles,
time parsing and JSON/CSV writers.

Imports run one way: ``abfluss.cli`` (the package) imports the command modules, each command
module imports this one, and this one imports no command module.
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .. import api
from ..errors import AbflussError
from ..units import human_bytes  # noqa: F401  re-exported for the command modules

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="abfluss: did data leave this network — how much, from which hosts, to where, when?")
out = Console(soft_wrap=True)
if not out.is_terminal:
    out.width = 160  # piped or logged: keep addresses and names whole
err = Console(stderr=True, soft_wrap=True)


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


def _open(write: bool = False):
    return api.open_workspace(state.workspace, state.config, write=write)


def parse_time(value: Optional[str], flag: str) -> Optional[datetime]:
    """ISO 8601 date or date-time; UTC when no zone is given."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            t = datetime.combine(date.fromisoformat(value), datetime.min.time())
        except ValueError:
            raise AbflussError(f"{flag} {value!r}: not an ISO 8601 time (e.g. 2024-02-08T15:00:00Z)") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _json_default(o):
    if isinstance(o, datetime):
        return o.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(o, date):
        return o.isoformat()
    raise TypeError(type(o))


def _dump_json(rows) -> None:
    sys.stdout.write(json.dumps(rows, default=_json_default, indent=1) + "\n")


def _dump_csv(rows, columns=None) -> None:
    """One CSV row per record; nested values (lists, dicts) as JSON text."""
    columns = list(columns or (rows[0].keys() if rows else []))
    w = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v, default=_json_default) if isinstance(v, (list, dict))
                    else _json_default(v) if isinstance(v, (datetime, date)) else v for k, v in r.items()})
