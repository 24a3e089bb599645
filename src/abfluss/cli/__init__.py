"""The command line: a thin shell over the library API (see ``abfluss.api``).

Command names, flags and JSON field names here are contracts other tools script against. The
Typer app and the shared helpers live in ``app``; each command group is one module that registers
its commands on that app when imported here.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

from typer.main import get_command_name

from ..errors import AbflussError
from ..fsutil import disk_full_line, no_space
from . import _coerce, _stop
from .app import app, err
from . import data, account, detect, contain, report, watch, console, serve  # noqa: F401,I001  register their commands, in help order

__all__ = ["app", "main"]

_coerce.install()  # Typer converts the commands' values without importing Pydantic


def main() -> None:
    _stop.install()
    try:
        with _only_the_command_run(sys.argv[1:]):
            app()
    except AbflussError as e:
        err.print(f"abfluss: {e}", markup=False, highlight=False)
        sys.exit(2)
    except Exception as e:  # a full disk is a condition, not a defect: one line, no traceback
        if _stop.SIGNALLED:
            # Stopped by the user (Ctrl-C) or a service manager (SIGTERM) while a query ran:
            # DuckDB turns the exception our handler raised into "Query interrupted". The
            # ``finally`` blocks have run; this is an ordinary stop, not a defect.
            sys.exit(128 + _stop.SIGNALLED[-1])
        if not no_space(e):
            raise
        err.print(f"abfluss: {disk_full_line(e)}", markup=False, highlight=False)
        sys.exit(2)


#: The options of the app itself (``_main`` in ``app``), each taking a value.
_GLOBAL_OPTIONS = ("-w", "--workspace", "--config")


@contextmanager
def _only_the_command_run(argv: list[str]):
    """Build only the command (or command group) ``argv`` names. Typer builds the command line
    of every command before it parses one (each signature and its type hints read twice): for
    the forty commands 0.025-0.035 CPU s of every ``abfluss`` run, against 0.003 for one, a
    tenth of what ``findings`` or ``ledger`` take. When ``argv`` names exactly one registered
    command or group after the app's own options, the others are left out for this run;
    otherwise (``--help``, no or an unknown command, an option this does not know) the whole
    app is built, so its help and its errors are Typer's own."""
    name = _command_name(argv)
    commands = [c for c in app.registered_commands
                if (c.name or get_command_name(c.callback.__name__)) == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if name is None or len(commands) + len(groups) != 1:
        yield
        return
    kept = app.registered_commands, app.registered_groups
    app.registered_commands, app.registered_groups = commands, groups
    try:
        yield
    finally:
        app.registered_commands, app.registered_groups = kept


def _command_name(argv: list[str]) -> str | None:
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_OPTIONS:
            i += 2
        elif arg.split("=", 1)[0] in _GLOBAL_OPTIONS[1:] and "=" in arg:
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None
