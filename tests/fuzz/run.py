"""Fuzz abfluss with atheris (libFuzzer, coverage-guided): the targets of ``targets.py``.

    python tests/fuzz/run.py TARGET [--seconds S] [--crashes DIR]   one target (libFuzzer in this process)
    python tests/fuzz/run.py fast ...                                the fast targets together (the
                                                                     first input byte picks one)
    python tests/fuzz/run.py --all [TARGET] --seconds S [--crashes DIR]  every target (or one) for S seconds each, in
                                                                     child processes; a table of executions
                                                                     and crashes (``make fuzz``)
    python tests/fuzz/run.py --seeds TARGET                          every seed once, no fuzzing

The corpus starts from the seeds (real data from ../shared/data, written to a temporary folder
at run time, never committed). A crash writes its input as ``crash-<sha1>`` into ``--crashes``
and ends that run with a non-zero status; replay it with ``run.py TARGET <file>``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

#: libFuzzer's limits per input: a reader may take a while on a large mutated capture.
LIBFUZZER_FLAGS = ["-max_len=65536", "-timeout=60", "-rss_limit_mb=4096", "-print_final_stats=1"]


def _callable(name: str):
    import targets

    if name != "fast":
        return targets.TARGETS[name]
    fast = [targets.TARGETS[n] for n in targets.FAST]

    def one(data: bytes) -> None:
        if data:
            fast[data[0] % len(fast)](data[1:])
    return one


def _corpus(name: str, folder: Path) -> None:
    import targets

    names = targets.FAST if name == "fast" else (name,)
    for i, n in enumerate(names):
        prefix = bytes([i]) if name == "fast" else b""
        for j, seed in enumerate(targets.seeds(n)):
            (folder / f"seed-{n}-{j}").write_bytes(prefix + seed)


def fuzz(name: str, seconds: float, crashes: Path, extra: list[str], seed: int = 0) -> None:
    """libFuzzer in this process (it exits the process when done)."""
    import atheris

    with atheris.instrument_imports(include=["abfluss", "dpkt", "netflow"]):
        import abfluss.readers  # noqa: F401
        from abfluss.dlp import containers, decode, decode_http, inspect, office, scanner, streams, structured  # noqa: F401
        from abfluss.readers import (_dns_packets, _dns_wire, binetflow, netflow, nfdump, pcap, squid,  # noqa: F401
                                     suricata, zeek)
    target = _callable(name)
    args = [sys.argv[0]]
    if not extra:  # a fresh corpus from the seeds
        import targets

        corpus = Path(tempfile.mkdtemp(prefix=f"corpus-{name}-", dir=targets.work()))
        _corpus(name, corpus)
        args.append(str(corpus))
    crashes.mkdir(parents=True, exist_ok=True)
    args += LIBFUZZER_FLAGS + [f"-max_total_time={max(1, int(seconds))}", f"-artifact_prefix={crashes}/", *extra]
    if seed:
        args.append(f"-seed={seed}")
    atheris.Setup(args, target)
    atheris.Fuzz()


def seeds_only(name: str) -> int:
    import targets

    n = 0
    for seed in targets.seeds(name):
        _callable(name)(seed)
        n += 1
    return n


def run_all(seconds: float, crashes: Path, names: list[str]) -> int:
    """Every target in a child process for ``seconds``; a crashed target is started again for the
    rest of its time, so one defect does not hide the next."""
    print(f"{'target':16s} {'executions':>12s} {'crashes':>8s}  crash inputs")
    total_crashes = 0
    import targets

    env = {**os.environ, "ABFLUSS_FUZZ_WORK": str(targets.work())}
    for name in names:
        execs, found, deadline = 0, [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 2:
            p = subprocess.run([sys.executable, __file__, name, "--seconds", str(int(left)), "--crashes", str(crashes)],
                               capture_output=True, text=True, env=env)
            # the last stats are this process's: a forked helper (the pcap reader's workers) that
            # exits prints its own "fuzz target exited" and stats first
            m = re.findall(r"stat::number_of_executed_units:\s*(\d+)", p.stderr)
            done = re.findall(r"#(\d+)\s+(?:pulse|NEW|REDUCE|DONE|INITED)", p.stderr)
            execs += int(m[-1]) if m else int(done[-1]) if done else 0
            if p.returncode == 0:
                break
            art = re.findall(r"Test unit written to (\S+)", p.stderr)
            found += art or [f"(exit {p.returncode})"]
            sys.stderr.write(p.stderr[-3000:])
        total_crashes += len(found)
        print(f"{name:16s} {execs:12d} {len(found):8d}  {' '.join(found)}", flush=True)
    return 1 if total_crashes else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", nargs="?", help="a target of targets.py, or 'fast'")
    ap.add_argument("inputs", nargs="*", help="replay these inputs instead of fuzzing")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--crashes", type=Path, default=Path(tempfile.gettempdir()) / "abfluss-fuzz-crashes")
    ap.add_argument("--all", action="store_true", help="every target in turn, --seconds each")
    ap.add_argument("--seeds", action="store_true", help="run the seeds once, no fuzzing")
    ap.add_argument("--seed", type=int, default=0,
                    help="libFuzzer's random seed (0: a new one each run); the suite fixes it so that a "
                         "run repeats the same mutations and cannot turn red by chance")
    args = ap.parse_args()
    import targets

    try:
        if args.all:
            sys.exit(run_all(args.seconds, args.crashes, [args.target] if args.target else list(targets.TARGETS)))
        if args.target is None:
            ap.error("give a TARGET, 'fast' or --all")
        if args.seeds:
            print(f"{args.target}: {seeds_only(args.target)} seeds ran")
            return
        if args.inputs:
            for p in args.inputs:
                _callable(args.target)(Path(p).read_bytes())
            print(f"{args.target}: {len(args.inputs)} inputs ran without error")
            return
        if "ABFLUSS_FUZZ_WORK" not in os.environ:
            # libFuzzer ends the process without running Python's cleanup: fuzz in a child whose
            # working folder this process removes afterwards
            env = {**os.environ, "ABFLUSS_FUZZ_WORK": str(targets.work())}
            sys.exit(subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env).returncode)
        fuzz(args.target, args.seconds, args.crashes, [], seed=args.seed)
    finally:
        if "ABFLUSS_FUZZ_WORK" not in os.environ and targets.WORK is not None:
            shutil.rmtree(targets.WORK, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
