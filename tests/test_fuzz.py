"""The in-tree fuzzers (tests/fuzz/): every seed once, then a short coverage-guided run.

``make fuzz`` runs each target for minutes; here the run is short (``ABFLUSS_FUZZ_SECONDS``,
default 20 s for the fast targets together and 8 s for the whole pcap reader). A crash fails
the test and names the input file that reproduces it (``tests/fuzz/run.py TARGET FILE``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

import targets  # noqa: E402

RUN = Path(__file__).resolve().parent / "fuzz" / "run.py"
SECONDS = float(os.environ.get("ABFLUSS_FUZZ_SECONDS", "20"))


@pytest.fixture(autouse=True, scope="module")
def _work(tmp_path_factory):
    targets.WORK = tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_every_seed_runs(name):
    seeds = targets.seeds(name)
    assert seeds
    for seed in seeds:
        targets.TARGETS[name](seed)


@pytest.mark.parametrize("name,seconds", [("fast", SECONDS), ("pcap", max(4.0, SECONDS / 2.5))])
def test_short_fuzzing_run_finds_nothing(tmp_path, name, seconds):
    crashes = tmp_path / "crashes"
    p = subprocess.run([sys.executable, str(RUN), name, "--seconds", str(seconds), "--crashes", str(crashes)],
                       capture_output=True, text=True, timeout=seconds + 240,
                       env={**os.environ, "ABFLUSS_FUZZ_WORK": str(tmp_path / "work")})
    found = sorted(crashes.glob("*")) if crashes.exists() else []
    assert p.returncode == 0 and not found, f"crash inputs {found}:\n{p.stderr[-4000:]}"
    assert "stat::number_of_executed_units" in p.stderr
