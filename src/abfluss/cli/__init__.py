"""The command line: a thin shell over the library API (see ``abfluss.api``).

Command names, flags and JSON field names here are contracts other tools script against. The
Typer app and the shared helpers live in ``app``; each command group is one module that registers
its commands on that app when imported here.
"""

from __future__ import annotations

import sys

from ..errors import AbflussError
from .app import app, err
from . import data, detect, contain, report, watch  # noqa: F401,I001  register their commands, in help order

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except AbflussError as e:
        err.print(f"abfluss: {e}", markup=False, highlight=False)
        sys.exit(2)
