"""Issue 15 (answers in a second): the command line loads only what a command uses. Importing
``abfluss.cli`` (what ``abfluss --help`` does) must not load the Spark/JVM bridge, WeasyPrint,
Ibis, DuckDB, Arrow, the report or the detections; those load inside the commands that need them."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

HEAVY = ("pyspark", "weasyprint", "ibis", "duckdb", "pyarrow", "abfluss.report", "abfluss.analysis",
         "abfluss.detections", "abfluss.watch.loop")


def loaded_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    return json.loads(proc.stdout.splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_module():
    assert loaded_after("import abfluss.cli") == []


def test_help_loads_no_heavy_module():
    code = ("import abfluss.cli\nsys.argv = ['abfluss', '--help']\ntry:\n    abfluss.cli.main()\n"
            "except SystemExit:\n    pass")
    assert loaded_after(code) == []


def test_the_public_names_still_resolve():
    code = ("import abfluss, abfluss.ledger, abfluss.coverage, abfluss.report as r\n"
            "assert callable(abfluss.ledger) and callable(abfluss.coverage)\n"
            "assert abfluss.Workspace.__name__ == 'Workspace' and callable(abfluss.analyze)\n"
            "assert callable(abfluss.detections.settings_for) and callable(abfluss.api.refresh)\n"
            "assert callable(r.write_report) and r.VERDICTS and r.SCHEMA_PATH.exists()\n"
            "from abfluss.watch import Watcher, DEFAULT_EVERY\n"
            "from abfluss.watch.loop import DEFAULT_WINDOW\nfrom abfluss.watch.capture import DEFAULT_ROTATE")
    assert "abfluss.report" in loaded_after(code)
