"""Run one ``RunSpec`` JSON file: the unit of work for parallel and cluster executors.

``python -m ood_bench.runner.task spec.json`` exits 0 with the record written, or non-zero with
a one-line reason on stderr (deepmd's log tail included), so any scheduler can retry it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import OodBenchError
from .execute import execute
from .spec import RunSpec


def run_spec_file(path: str | Path, results_dir: str | None = None) -> Path:
    spec = RunSpec.from_json(json.loads(Path(path).read_text()))
    if results_dir is not None:
        spec.results_dir = results_dir
    return execute(spec)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m ood_bench.runner.task SPEC.json [RESULTS_DIR]", file=sys.stderr)
        return 2
    try:
        out = run_spec_file(argv[0], argv[1] if len(argv) > 1 else None)
    except OodBenchError as exc:
        print(f"oodbench task: error: {exc}", file=sys.stderr)
        return 1
    print(f"record: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
