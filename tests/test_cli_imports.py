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


def test_ingest_of_logs_loads_no_pandas(tmp_path):
    """pyarrow imports pandas (0.3–0.6 CPU s) the first time it converts a value, to ask whether
    it is a pandas object; ``abfluss ingest`` tells it there is none, and pandas still works
    where it is imported and needed afterwards (Arrow tables to and from pandas)."""
    after = ("print(json.dumps('pandas' in sys.modules))\n"
             "import pandas as pd, pyarrow as pa\n"
             "t = pa.Table.from_pandas(pd.DataFrame({'a': [1, 2]}))\n"
             "assert t.to_pandas()['a'].tolist() == [1, 2] and pa.array(pd.Series([1.5, None])).null_count == 1")
    assert ingest_a_log_then(tmp_path, after) is False


def ingest_a_log_then(tmp_path, after: str):
    """``abfluss ingest`` of a real conn.log in a fresh interpreter, then ``after`` there; the JSON
    that ``after`` printed last."""
    conn = ROOT.parent / "shared" / "data" / "rita" / "proxy" / "conn.log"
    assert conn.is_file(), f"test data missing: {conn}"
    code = (f"import abfluss.cli\nsys.argv = ['abfluss', '-w', {str(tmp_path / 'ws')!r}, 'ingest', {str(conn)!r}]\n"
            "try:\n    abfluss.cli.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n" + after)
    proc = subprocess.run([sys.executable, "-c", "import sys, json\n" + code], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_a_command_builds_only_itself_and_findings_loads_no_ibis(tmp_path):
    """Typer builds every command before it parses one (0.03 CPU s of every run); ``main`` lets it
    build only the command named (``cli._only_the_command_run``). Run twice in one process with
    different commands, each still works; the help and a mistyped command see the whole app."""
    ws = str(tmp_path / "ws")
    code = ("import abfluss.cli, io, contextlib\n"
            "def run(*argv):\n"
            "    sys.argv = ['abfluss', *argv]\n"
            "    out = io.StringIO()\n"
            "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):\n"
            "        try:\n            abfluss.cli.main()\n"
            "        except SystemExit as e:\n            assert not e.code, (argv, e.code)\n"
            "    return out.getvalue()\n"
            f"assert 'No findings' in run('-w', {ws!r}, 'findings') or 'findings' in run('-w', {ws!r}, 'findings')\n"
            "assert 'ibis' not in sys.modules\n"
            f"assert 'id' in run('--workspace=' + {ws!r}, 'detections', '--format', 'json')\n"
            "help = run('--help')\n"
            "assert all(c in help for c in ('analyze', 'findings', 'ledger', 'users', 'watch')), help\n"
            "assert 'add' in run('users', '--help')\n")
    proc = subprocess.run([sys.executable, "-c", "import sys, json\n" + code], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    typo = subprocess.run([sys.executable, "-m", "abfluss", "-w", ws, "findngs"], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert typo.returncode == 2 and "No such command 'findngs'. Did you mean 'findings'" in typo.stderr, typo.stderr


#: What ``findings`` and ``ledger`` (issue 15: half a second) need not load, and what each costs
#: (CPU s on the 2-core test machine): Pydantic (Typer's conversion of values, ``cli._coerce``:
#: 0.10), the DuckDB package beside its engine (``store.engine``: 0.09), the sinks' HTTP client
#: (0.03), Rich's progress bar (0.015), TOML without a configuration file (0.01), SQLite for
#: the unaudited local operator (0.004), the analysis.
NOT_FOR_READING = ("pydantic", "duckdb", "http.client", "rich.progress", "tomllib", "sqlite3", "abfluss.analysis")


def test_findings_and_ledger_load_only_what_they_use(tmp_path):
    conn = ROOT.parent / "shared" / "data" / "rita" / "proxy" / "conn.log"
    assert conn.is_file(), f"test data missing: {conn}"
    ws = str(tmp_path / "ws")
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    subprocess.run([sys.executable, "-m", "abfluss", "-w", ws, "ingest", str(conn)], check=True,
                   capture_output=True, cwd=ROOT, env=env)
    for argv in (["findings"], ["ledger"], ["ledger", "--format", "json", "--limit", "5"]):
        code = (f"import abfluss.cli\nsys.argv = ['abfluss', '-w', {ws!r}, *{argv!r}]\n"
                "try:\n    abfluss.cli.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
                f"print(json.dumps(sorted(m for m in {NOT_FOR_READING!r} if m in sys.modules)))")
        proc = subprocess.run([sys.executable, "-c", "import sys, json\n" + code], capture_output=True,
                              text=True, cwd=ROOT, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout.splitlines()[-1]) == [], argv
    rows = json.loads(subprocess.run([sys.executable, "-m", "abfluss", "-w", ws, "ledger", "--format", "json"],
                                     check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout)
    assert rows and {"internal_host", "bytes_out"} <= set(rows[0])


def test_ingest_of_one_log_loads_no_packet_decoder_or_process_pool(tmp_path):
    """A log's ingest in a fresh process (issue 15, item 3): dpkt (0.05-0.07 CPU s, captures only),
    the process pool (0.03, several files only), DuckDB's package (0.09, see store.engine) and
    Pydantic (cli._coerce) are not loaded."""
    after = ("print(json.dumps(sorted(m for m in ('dpkt', 'concurrent.futures.process', 'duckdb', 'pydantic') "
             "if m in sys.modules)))")
    assert ingest_a_log_then(tmp_path, after) == []
