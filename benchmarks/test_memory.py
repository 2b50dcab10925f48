"""Where the test suite's peak memory comes from.

Runs pytest (the README's test command, or the arguments given) with ``OODBENCH_TEST_MEMORY``
set, so ``tests/conftest.py`` logs after every test the peak resident memory so far of the pytest
process and of its largest finished child process (deepmd trainings run as children). Prints the
tests at which either peak rose by more than ``--min-rise`` MiB, and the two peaks.

    python benchmarks/test_memory.py                       # the whole suite (~15 min)
    python benchmarks/test_memory.py -- tests/test_runner.py -q
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def rises(rows: list[tuple[float, float, str]], min_rise: float) -> list[tuple[str, str, float, float]]:
    """(which, test, before, after) for every rise of a running peak by more than ``min_rise``."""
    out = []
    own = kids = 0.0
    for o, k, test in rows:
        if o - own > min_rise:
            out.append(("pytest", test, own, o))
        if k - kids > min_rise:
            out.append(("child", test, kids, k))
        own, kids = max(own, o), max(kids, k)
    return out


def read(path: Path) -> list[tuple[float, float, str]]:
    rows = []
    for line in path.read_text().splitlines():
        own, kids, test = line.split("\t", 2)
        rows.append((float(own), float(kids), test))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-rise", type=float, default=300.0, help="MiB (default 300)")
    ap.add_argument("pytest_args", nargs="*", default=["-q"])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "memory.tsv"
        env = {**os.environ, "OODBENCH_TEST_MEMORY": str(log)}
        rc = subprocess.call([sys.executable, "-m", "pytest", *a.pytest_args], env=env)
        rows = read(log) if log.exists() else []
    if not rows:
        print("no tests ran")
        return rc or 1
    for which, test, before, after in rises(rows, a.min_rise):
        print(f"{which:6s} {before:7.0f} -> {after:7.0f} MiB  {test}")
    print(f"peak: pytest process {max(r[0] for r in rows):.0f} MiB, largest child {max(r[1] for r in rows):.0f} MiB")
    return rc


if __name__ == "__main__":
    sys.exit(main())
