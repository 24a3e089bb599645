"""Shared fixtures. Real data lives in ../shared/data; its absence is a failure, never a skip."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
EXAMPLES = ROOT / "examples"


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
