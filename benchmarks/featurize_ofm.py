"""Orbital-Field Matrix speed: oodbench's featurizer vs matminer's, on the same 300 MatBench structures.

Picks 100 structures from each MatBench dataset (numpy default_rng(0); from --data-dir /
OODBENCH_DATA_DIR, else the test fixtures), featurizes them with ``ood_bench.features.ofm`` and with
``matminer.featurizers.structure.OrbitalFieldMatrix`` called directly, both with the same number of
processes, checks the features agree, and prints structures/second for both and the ratio.

    .venv/bin/python benchmarks/featurize_ofm.py                  # 1 process each
    .venv/bin/python benchmarks/featurize_ofm.py --n-jobs 2       # all cores each
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATASETS = ["matbench_dielectric", "matbench_log_gvrh", "matbench_perovskites"]


def pick_structures(data_dir: Path, n_total: int):
    from ood_bench.datasets import load_dataset

    rng = np.random.default_rng(0)
    picked = []
    per = n_total // len(DATASETS)
    for i, name in enumerate(DATASETS):
        ds = load_dataset(name, data_dir)
        st = ds.structures
        k = per + (n_total - per * len(DATASETS) if i == len(DATASETS) - 1 else 0)
        for sid in rng.choice(np.array(st.ids, dtype=object), size=min(k, len(st)), replace=False):
            picked.append(st.atoms_of(sid))
    return picked


def run_oodbench(atoms, n_jobs: int) -> np.ndarray:
    from ood_bench.features.ofm import _featurize_one, featurize_structures

    class _List:  # the minimal Structures interface featurize_structures needs
        def __init__(self, items):
            self.ids = list(range(len(items)))
            self._items = items

        def atoms_of(self, i):
            return self._items[i]

    if n_jobs == 1:
        return np.array([_featurize_one(a)[0] for a in atoms])
    X, _ = featurize_structures(_List(atoms), n_jobs=n_jobs, progress=False)
    return X


def run_matminer(atoms, n_jobs: int) -> np.ndarray:
    from matminer.featurizers.structure import OrbitalFieldMatrix
    from pymatgen.core import Lattice, Structure

    structs = [Structure(Lattice(c), z.tolist(), p, coords_are_cartesian=True) for z, p, c in atoms]
    f = OrbitalFieldMatrix(period_tag=False, flatten=True)
    if n_jobs == 1:
        return np.array([f.featurize(s) for s in structs])
    f.set_n_jobs(n_jobs)
    return np.array(f.featurize_many(structs, ignore_errors=False, pbar=False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("OODBENCH_DATA_DIR"))
    ap.add_argument("-n", "--n-structures", type=int, default=300)
    ap.add_argument("-j", "--n-jobs", type=int, default=1)
    args = ap.parse_args()
    data_dir = Path(args.data_dir) if args.data_dir else REPO / "tests" / "fixtures" / "data"
    warnings.filterwarnings("ignore")
    os.environ.setdefault("SPGLIB_WARNING", "OFF")

    atoms = pick_structures(data_dir, args.n_structures)
    n = len(atoms)
    natoms = np.mean([len(a[0]) for a in atoms])
    # warm-up both (imports, element tables) outside the timed region
    run_oodbench(atoms[:2], 1)
    run_matminer(atoms[:2], 1)

    t0 = time.perf_counter()
    X_ours = run_oodbench(atoms, args.n_jobs)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    X_mm = run_matminer(atoms, args.n_jobs)
    t_mm = time.perf_counter() - t0

    scale = np.maximum(np.abs(X_mm).max(axis=1, keepdims=True), 1e-300)
    max_rel = float(np.max(np.abs(X_ours - X_mm) / scale))
    print(f"data: {data_dir} ({n} structures, {natoms:.1f} atoms on average), processes: {args.n_jobs}")
    print(f"oodbench  OFM: {n / t_ours:8.1f} structures/s  ({t_ours:.1f} s)")
    print(f"matminer  OFM: {n / t_mm:8.1f} structures/s  ({t_mm:.1f} s)")
    print(f"speed-up (oodbench / matminer): {t_mm / t_ours:.1f}x; max relative feature difference {max_rel:.1e}")
    return 0 if max_rel < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
