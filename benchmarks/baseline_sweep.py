"""The reference-baseline sweep: every baseline on every canonical split, resumable, then the
cost of it, per model and split, from the records themselves.

Canonical splits: QM9 ``boom-<property>`` for the 8 properties; MatBench (dielectric, log_gvrh,
perovskites): the five published ``omee2024-*`` OOD methods (50 folds each) and the official
``random`` 5-fold. Rerunning skips finished runs (records under ``results/runs``).

    python benchmarks/baseline_sweep.py                      # run what is missing, then report
    python benchmarks/baseline_sweep.py --models dummy --datasets matbench_dielectric
    python benchmarks/baseline_sweep.py --report             # only the cost table
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import defaultdict

MODELS = ("dummy", "rf-scm-magpie", "cm-krr", "dpa3-frozen")
DATASETS = ("qm9", "matbench_dielectric", "matbench_log_gvrh", "matbench_perovskites")


def applicable(model: str, dataset: str) -> bool:
    from ood_bench.backends.sklearn.backend import _featurizer
    from ood_bench.datasets import get_spec
    from ood_bench.models import MODELS as REG

    spec = REG.get(model)
    feat = _featurizer(spec.preset(None)) if spec.backend == "sklearn" else None
    return feat is None or get_spec(dataset).kind in feat.kinds


def run(models: list[str], datasets: list[str], results_dir: str | None, splits: list[str] | None = None) -> None:
    from rich.console import Console

    from ood_bench.models import MODELS as REG
    from ood_bench.records import RunKey
    from ood_bench.runner.drive import run_sweep
    from ood_bench.runner.spec import RunSpec
    from ood_bench.runner.sweep import SweepOptions, plan
    from ood_bench.splits.methods import canonical_splits

    console = Console(stderr=True)
    for model in models:
        for dataset in datasets:
            if not applicable(model, dataset):
                continue
            for prop, split in canonical_splits(dataset):
                if splits and split not in splits and split.removeprefix("boom-") not in splits:
                    continue
                console.rule(f"{model} / {dataset} / {split}")
                template = RunSpec(key=RunKey(dataset, "", "", model, "", 0), results_dir=results_dir)
                strategy = REG.get(model).default_strategy
                opts = SweepOptions(model, [strategy], dataset, [prop], split, "all", [0], [1.0], template)
                run_sweep(plan(opts), "local", {"jobs": 1}, console=console)


def report(results_dir: str | None) -> None:
    from ood_bench.paths import results_dir as resolve
    from ood_bench.records import load_records

    records, _ = load_records(resolve(results_dir))
    agg: dict[tuple, list] = defaultdict(list)
    for rec in records:
        k = rec["key"]
        if k["model"] in MODELS:
            agg[(k["model"], k["dataset"], k["split"] if k["dataset"] != "qm9" else "boom-*")].append(rec["timing"])
    print(f"{'model':<14} {'dataset':<22} {'split':<26} {'runs':>5} {'wall s':>9} {'s/run':>8} {'peak MiB':>9}")
    total = 0.0
    for (model, dataset, split), timings in sorted(agg.items()):
        wall = sum(t["wall_s"] for t in timings)
        peak = max((t.get("peak_train_mem_mb") or 0) for t in timings)
        total += wall
        print(f"{model:<14} {dataset:<22} {split:<26} {len(timings):>5} {wall:>9.1f} {wall / len(timings):>8.2f} "
              f"{peak:>9.0f}")
    print(f"total wall time of the recorded runs: {total / 3600:.2f} h")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--splits", default=None, help="only these canonical splits (comma list), e.g. random")
    ap.add_argument("--report", action="store_true", help="only print the cost table from existing records")
    args = ap.parse_args()
    t0 = time.time()
    if not args.report:
        run(args.models.split(","), args.datasets.split(","), args.results_dir,
            args.splits.split(",") if args.splits else None)
        print(f"this sweep: {time.time() - t0:.0f} s wall, peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    report(args.results_dir)


if __name__ == "__main__":
    main()
