"""Harness overhead vs deepmd training time for one 500-step tiny run (issue target: < 10%).

Runs one real fold end to end (default: MatBench dielectric, published LOCO fold 0, FT from the
stand-in) and prints where the wall time went, from the record's own timing block:
prepare (dataset + split load and validation), fold data (deepmd/npy writing), dp --pt train
(subprocess wall, including deepmd's ~6-8 s start-up), evaluation (DeepEval loads, inference on
val for checkpoint selection and on the test sets, metrics), and record writing.

    python benchmarks/harness_overhead.py [--dataset matbench_dielectric --split omee2024-LOCO]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from ood_bench.io_utils import read_json
from ood_bench.records import RunKey
from ood_bench.runner.execute import execute
from ood_bench.runner.spec import RunSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="matbench_dielectric")
    ap.add_argument("--split", default="omee2024-LOCO")
    ap.add_argument("--property", default="n")
    ap.add_argument("--fold", default="0")
    ap.add_argument("--strategy", default="ft")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--pretrained", default="oodbench-small")
    ap.add_argument("--train-fraction", type=float, default=1.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = RunSpec(key=RunKey(args.dataset, args.split, args.fold, "dpa3", args.strategy, 0, args.train_fraction,
                                    args.property),
                       preset="tiny", steps=args.steps, pretrained=args.pretrained, results_dir=tmp)
        t0 = time.time()
        path = execute(spec)
        total = time.time() - t0
        rec = read_json(path)
    t = rec["timing"]
    record_s = total - t["wall_s"]
    train = t["train_s"]
    harness = t["prepare_s"] + t["data_s"] + t["eval_s"] + record_s
    print(f"run: {rec['key']}, n: {rec['data']['n']}")
    print(f"{'prepare (data + split load, validation)':45s} {t['prepare_s']:8.2f} s")
    kib = rec["data"]["fold_data_bytes"] // 1024
    print(f"{f'fold data (deepmd/npy, {kib} KiB)':45s} {t['data_s']:8.2f} s")
    print(f"{'dp --pt train (' + str(args.steps) + ' steps, subprocess wall)':45s} {train:8.2f} s")
    preds = rec["predictions"]
    extra_candidates = len(rec["training"].get("selection") or [{}]) - 1  # scored on validation only
    n_eval = sum(len(p["id"]) for p in preds.values()) + extra_candidates * len(preds["val"]["id"])
    print(f"{'evaluation (DeepEval + metrics)':45s} {t['eval_s']:8.2f} s"
          f"  ({n_eval} structure evaluations, {n_eval / t['eval_s']:.0f}/s)")
    print(f"{'record writing':45s} {record_s:8.2f} s")
    print(f"harness overhead / training time: {harness / train:.1%} "
          f"(without evaluation: {(harness - t['eval_s']) / train:.1%}); "
          f"peak train RSS {t['peak_train_mem_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
