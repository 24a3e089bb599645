"""The command line: a thin shell over the library API (see ``abfluss.api``).

Command names, flags and JSON field names here are contracts other tools script against. The
Typer app and the shared helpers live in ``app``; each command group is one module that registers
its commands on that app when imported here.
"""

from __future__ import annotations

import os
import signal
import sys

from ..errors import AbflussError
from ..fsutil import no_space
from .app import app, err
from . import data, account, detect, contain, report, watch, console, serve  # noqa: F401,I001  register their commands, in help order

__all__ = ["app", "main"]


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate(os.getpid()))
    try:
        app()
    except AbflussError as e:
        err.print(f"abfluss: {e}", markup=False, highlight=False)
        sys.exit(2)
    except Exception as e:  # a full disk is a condition, not a defect: one line, no traceback
        if not no_space(e):
            raise
        what = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        where = f" ({e.filename})" if isinstance(e, OSError) and e.filename else ""
        err.print(f"abfluss: disk full: {what}{where}; nothing partial was kept", markup=False, highlight=False)
        sys.exit(2)


def _terminate(main_pid: int):
    """SIGTERM ends the command like Ctrl-C does: ``finally`` blocks run, so private temporary
    files and scratch folders are removed. A forked helper (a meter, a scan worker) inherits
    this handler and just dies, as it would without it."""
    def handler(signum, _frame):
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(128 + signum)
    return handler
