"""What each fine-tuning strategy costs relative to FT, from the records a sweep wrote.

A pure reduce over records (no training): for every strategy, the median over its runs of the
training seconds per step, the evaluation seconds (candidate selection + test sets) and the
training peak memory, each also as a multiple of FT's median on the same records. Runs are
grouped by dataset, split, model, preset and training fraction, so like is compared with like.

    python benchmarks/strategy_cost.py results/studies/standin-gap
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from ood_bench.records import load_records
from ood_bench.strategies import label_of

GROUP = ["dataset", "split", "model", "preset", "train_fraction"]


def cost_frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        k, t, steps = r["key"], r["timing"], r["training"].get("steps") or r["config"]["spec"].get("steps")
        if not steps:
            continue  # closed-form baselines: no steps
        variant = k.get("variant", "")
        rows.append({**{g: k.get(g) for g in GROUP if g != "preset"}, "preset": r["config"].get("preset"),
                     "strategy": k["strategy"] + (f"+{variant}" if variant else ""),
                     "s_per_step": t["train_s"] / steps, "eval_s": t["eval_s"],
                     "peak_mb": t.get("peak_train_mem_mb")})
    return pd.DataFrame(rows)


def relative(frame: pd.DataFrame) -> pd.DataFrame:
    med = frame.groupby([*GROUP, "strategy"], dropna=False).agg(
        runs=("s_per_step", "size"), s_per_step=("s_per_step", "median"), eval_s=("eval_s", "median"),
        peak_mb=("peak_mb", "median")).reset_index()
    out = []
    for _, g in med.groupby(GROUP, dropna=False):
        ft = g[g.strategy.str.partition("+")[0] == "ft"]  # FT's variant is at most the preset
        for col in ("s_per_step", "eval_s", "peak_mb"):
            g[f"{col}_vs_ft"] = g[col] / float(ft[col].iloc[0]) if len(ft) else float("nan")
        out.append(g)
    return pd.concat(out).sort_values([*GROUP, "s_per_step"])


def _label(strategy: str) -> str:
    name, _, variant = strategy.partition("+")
    return label_of(name) + (f" ({variant})" if variant else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results_dir", type=Path, help="a results folder holding runs/")
    a = ap.parse_args()
    records, _ = load_records(a.results_dir)
    frame = cost_frame(records)
    if frame.empty:
        print(f"no trained runs under {a.results_dir}")
        return 1
    table = relative(frame)
    for key, g in table.groupby(GROUP, dropna=False):
        print(" / ".join(str(k) for k in key))
        rows = [[_label(r.strategy), r.runs, f"{r.s_per_step:.3f}", f"{r.s_per_step_vs_ft:.2f}x", f"{r.eval_s:.0f}",
                 f"{r.eval_s_vs_ft:.2f}x", f"{r.peak_mb:.0f}", f"{r.peak_mb_vs_ft:.2f}x"] for r in g.itertuples()]
        print(tabulate(rows, headers=["strategy", "runs", "s/step", "vs FT", "eval s", "vs FT", "peak MiB", "vs FT"],
                       tablefmt="github"))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
