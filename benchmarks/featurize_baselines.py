"""Speed of the baseline featurizers, and (``--full``) computing and caching their full datasets.

Without ``--full``: featurizes N structures per featurizer (numpy default_rng(0) picks; from
--data-dir / OODBENCH_DATA_DIR, else the test fixtures) and prints structures/s and wall time:
``cm-eigenspectrum`` on N QM9 molecules (and matminer's own ``CoulombMatrix`` on the same molecules,
for comparison), ``scm-magpie`` on N crystals drawn evenly from the three MatBench datasets.

With ``--full``: runs ``cached_features`` on every dataset a baseline uses (qm9 for
cm-eigenspectrum; matbench_dielectric, matbench_log_gvrh and matbench_perovskites for scm-magpie),
each in its own child process so that its peak memory (getrusage max RSS of the process and of
its pool workers) is its own, and prints wall time, size and peak memory. Caches land in
OODBENCH_CACHE_DIR (a later sweep reuses them); ``--recompute`` deletes them first.

    .venv/bin/python benchmarks/featurize_baselines.py 300
    OODBENCH_DATA_DIR=/work/shared/data OODBENCH_CACHE_DIR=.oodbench_cache \\
        .venv/bin/python benchmarks/featurize_baselines.py --full
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FULL = [("cm-eigenspectrum", "qm9"), ("scm-magpie", "matbench_dielectric"),
        ("scm-magpie", "matbench_log_gvrh"), ("scm-magpie", "matbench_perovskites")]
MATBENCH = ["matbench_dielectric", "matbench_log_gvrh", "matbench_perovskites"]


def _pick(ds, n: int, rng) -> list:
    ids = ds.ids_with_structures()
    k = min(n, len(ids))
    return [ids[i] for i in sorted(rng.choice(len(ids), size=k, replace=False))]


def _concat(parts):
    """One ``Structures`` from several (ids made unique as 'dataset:id')."""
    from ood_bench.datasets import Structures

    ids, nums, pos, cells, offs = [], [], [], [], [0]
    for name, st in parts:
        ids += [f"{name}:{i}" for i in st.ids]
        nums.append(st.numbers)
        pos.append(st.positions)
        cells.append(st.cells)
        offs += list(offs[-1] + st.offsets[1:])
    return Structures(ids, np.concatenate(nums), np.concatenate(pos), np.array(offs), np.concatenate(cells))


def speed(data_dir: Path | None, n: int, n_jobs: int) -> None:
    from ood_bench.datasets import load_dataset
    from ood_bench.features.base import FEATURIZERS

    rng = np.random.default_rng(0)
    q = load_dataset("qm9", data_dir)
    mols = q.structures.subset(_pick(q, n, rng))
    per = [n // 3 + (1 if k < n % 3 else 0) for k in range(3)]
    crystals = _concat([(name, load_dataset(name, data_dir).structures.subset(
        _pick(load_dataset(name, data_dir), m, rng))) for name, m in zip(MATBENCH, per, strict=True)])

    cm = FEATURIZERS.get("cm-eigenspectrum")
    cm.compute(mols, mols.ids[:2], {"progress": False})  # warm-up (imports)
    t0 = time.perf_counter()
    cm.compute(mols, mols.ids, {"progress": False})
    t = time.perf_counter() - t0
    print(f"cm-eigenspectrum  {len(mols):6d} QM9 molecules ({mols.natoms().mean():5.1f} atoms): "
          f"{len(mols) / t:10.1f} structures/s  ({t:.2f} s, 1 process)")

    from matminer.featurizers.structure import CoulombMatrix

    pm = [mols.to_pymatgen(i) for i in mols.ids]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = CoulombMatrix(diag_elems=True, flatten=True).fit(pm)
        for m in pm:
            ref.featurize(m)
    t = time.perf_counter() - t0
    print(f"  (matminer CoulombMatrix on the same: {len(pm) / t:10.1f} structures/s  ({t:.2f} s))")

    scm = FEATURIZERS.get("scm-magpie")
    scm.compute(crystals, crystals.ids[:2], {"progress": False, "n_jobs": 1})  # warm-up
    t0 = time.perf_counter()
    scm.compute(crystals, crystals.ids, {"progress": False, "n_jobs": n_jobs})
    t = time.perf_counter() - t0
    print(f"scm-magpie        {len(crystals):6d} MatBench crystals ({crystals.natoms().mean():5.1f} atoms): "
          f"{len(crystals) / t:10.1f} structures/s  ({t:.2f} s, {n_jobs} processes)")


def one(featurizer: str, dataset: str, data_dir: Path | None, n_jobs: int, recompute: bool) -> dict:
    """Compute (or read) one cached feature matrix; returns its numbers as a dict."""
    from ood_bench.datasets import load_dataset
    from ood_bench.features.base import FEATURIZERS, cache_path, cached_features

    f = FEATURIZERS.get(featurizer)
    t0 = time.perf_counter()
    ds = load_dataset(dataset, data_dir)
    ds.structures  # noqa: B018 - load the structure arrays outside the featurization timing
    t_load = time.perf_counter() - t0
    path = cache_path(f, ds.name, ds.sha256)
    if recompute:
        path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    ids, X, info = cached_features(f, ds, {"n_jobs": n_jobs, "progress": sys.stderr.isatty()})
    wall = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"featurizer": featurizer, "dataset": dataset, "n": len(ids), "dim": int(X.shape[1]),
            "from_cache": bool(info["from_cache"]), "load_s": round(t_load, 1), "wall_s": round(wall, 1),
            "per_s": round(len(ids) / wall, 1) if wall > 0 else None,
            "nan_rows": int((~np.isfinite(X)).any(axis=1).sum()), "nan_cells": int(np.isnan(X).sum()),
            "peak_rss_mib": round(own), "peak_worker_rss_mib": round(kids),
            "cache": str(path), "n_jobs": n_jobs}


def full(data_dir: Path | None, n_jobs: int, recompute: bool) -> int:
    print(f"{'featurizer':17s} {'dataset':21s} {'n':>7s} {'dim':>4s} {'wall s':>8s} {'struct/s':>9s} "
          f"{'peak MiB':>8s} {'workers':>7s} {'NaN rows':>8s}  cache")
    rc = 0
    for feat, name in FULL:
        cmd = [sys.executable, __file__, "--only", feat, name, "--n-jobs", str(n_jobs)]
        if data_dir:
            cmd += ["--data-dir", str(data_dir)]
        if recompute:
            cmd.append("--recompute")
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            print(f"{feat:17s} {name:21s} FAILED (exit {proc.returncode})")
            rc = 1
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        src = "read" if r["from_cache"] else "computed"
        print(f"{feat:17s} {name:21s} {r['n']:7d} {r['dim']:4d} {r['wall_s']:8.1f} {r['per_s'] or 0:9.1f} "
              f"{r['peak_rss_mib']:8d} {r['peak_worker_rss_mib']:7d} {r['nan_rows']:8d}  {src} "
              f"{Path(r['cache']).name} (load {r['load_s']} s)", flush=True)
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", nargs="?", type=int, default=300, help="structures per featurizer (speed mode)")
    ap.add_argument("--data-dir", default=os.environ.get("OODBENCH_DATA_DIR"))
    ap.add_argument("-j", "--n-jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--full", action="store_true", help="compute and cache the full datasets")
    ap.add_argument("--recompute", action="store_true", help="with --full: delete existing caches first")
    ap.add_argument("--only", nargs=2, metavar=("FEATURIZER", "DATASET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("SPGLIB_WARNING", "OFF")
    data_dir = Path(args.data_dir) if args.data_dir else None
    if args.only:
        with contextlib.redirect_stdout(sys.stderr):  # progress bars to stderr, the result to stdout
            result = one(*args.only, data_dir, args.n_jobs, args.recompute)
        print(json.dumps(result))
        return 0
    if args.full:
        return full(data_dir, args.n_jobs, args.recompute)
    speed(data_dir or REPO / "tests" / "fixtures" / "data", args.n, args.n_jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
