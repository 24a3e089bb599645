"""Shared fixtures. Real data lives in ../shared/data; its absence is a failure, never a skip."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
EXAMPLES = ROOT / "examples"

# The detections' compiled SQL (detections/_sql.py) is kept once for this test session (CLI
# subprocesses inherit it) rather than in each of the tests' many workspaces: compiled once, not
# per workspace; no earlier session's entries take part.
if "ABFLUSS_SQL_CACHE" not in os.environ:
    os.environ["ABFLUSS_SQL_CACHE"] = tempfile.mkdtemp(prefix="abfluss-test-sql-")
    atexit.register(shutil.rmtree, os.environ["ABFLUSS_SQL_CACHE"], True)


def data(rel: str) -> Path:
    """A file of the shared test data; fails the test loudly when it is missing."""
    assert DATA.is_dir(), f"shared test data not found at {DATA}: the tests need ../shared/data"
    p = DATA / rel
    assert p.exists(), f"shared test data file missing: {p}"
    return p


@pytest.fixture
def ws(tmp_path):
    import abfluss

    w = abfluss.open_workspace(tmp_path / "ws", write=True)
    yield w
    w.close()


def run_cli(*args: str, workspace: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real ``abfluss`` command in a subprocess (exit codes and tracebacks are part of the contract)."""
    exe = shutil.which("abfluss", path=str(Path(sys.executable).parent)) or "abfluss"
    cmd = [exe] + (["--workspace", str(workspace)] if workspace else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


# -- one Spark session, two workers ---------------------------------------------------------------
# `make test` runs the suite on two pytest-xdist workers (``-n 2``). The scheduler below keeps every
# test with the rest of its file (module-scoped fixtures such as an ingested workspace are built once,
# on one worker) and puts every Spark test (its name says "spark"; it asks for ``spark_session``) on
# one worker, so the run starts one JVM. Files known to be long are queued first so that both
# workers finish at about the same time. (xdist's own ``--dist loadgroup`` ignores its marks under
# pytest 9, hence the scheduler here.) Figures: README, "Tests".
LONG_FIRST = ("spark", "test_watch.py", "test_case.py", "test_dlp_inspect.py", "test_watch_sources.py",
              "test_watch_resident.py", "test_outputs.py", "test_store.py", "test_fuzz.py", "test_analysis.py",
              "test_report_language.py", "test_demo.py", "test_open_data.py", "test_cli.py", "test_det_beaconing.py",
              "test_report.py")


def _group(nodeid: str) -> str:
    path, _, name = nodeid.partition("::")
    return "spark" if "spark" in name.split("[", 1)[0] else path.rsplit("/", 1)[-1]


def pytest_collection_modifyitems(config, items):
    rank = {g: i for i, g in enumerate(LONG_FIRST)}
    items.sort(key=lambda it: rank.get(_group(it.nodeid), len(rank)))  # stable: files keep their order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":  # an explicit --dist choice wins
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByFileSparkTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    config.option.loadscopereorder = False  # the collection order above, not "most tests first"
    return ByFileSparkTogether(config, log)


@pytest.fixture(scope="session")
def spark_session():
    """The test run's one Spark session (``abfluss.spark`` hands it to every Spark analysis)."""
    from abfluss import spark as abfluss_spark

    yield abfluss_spark.session()
