"""How good a stand-in is at its own job, re-measured from its recipe: held-out and training-frame
energy / force errors, and the energy spread a per-element fit to the training frames leaves.

The held-out frames are rebuilt exactly as ``oodbench pretrain`` made them (same sampling,
perturbation and rows, from the recipe in the checkpoint) and relabelled; the training frames are
the checkpoint's shipped auxiliary share. The rebuilt held-out force RMSE must match the one
stored in the checkpoint (it says so when it does not). Needs the data directory.

    OODBENCH_DATA_DIR=../shared/data python benchmarks/standin_quality.py
    python benchmarks/standin_quality.py --checkpoint path/to/oodbench-small.pt
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, help="a stand-in checkpoint [default: the shipped oodbench-small]")
    ap.add_argument("--data-dir", help="data directory [default: $OODBENCH_DATA_DIR]")
    args = ap.parse_args()

    import numpy as np

    from ood_bench.backends.deepmd.auxdata import Frames
    from ood_bench.backends.deepmd.pretrain import holdout_errors, rebuild_holdout
    from ood_bench.backends.deepmd.standin import find_stand_in, read_embedded_meta

    ckpt = args.checkpoint or find_stand_in("oodbench-small")
    meta = read_embedded_meta(ckpt)
    with tempfile.TemporaryDirectory() as tmp:
        held = rebuild_holdout(meta, args.data_dir, Path(tmp))
    with np.load(ckpt.with_name(meta["aux_file"]["name"])) as arrays:
        train = {b: Frames.from_arrays(arrays, b) for b in held}
    print(f"{ckpt.name}: {meta['config']['steps']} steps")
    print(f"{'branch':<16} {'frames':>6} {'E held':>8} {'E train':>8} {'E count':>8} {'E stored sprd':>13} "
          f"{'F held':>7} {'F train':>7} {'F sprd':>7} {'F held/sprd':>11} {'F train/sprd':>12}")
    for branch, frames in held.items():
        err = holdout_errors(ckpt, branch, frames, train[branch])
        stored = meta["holdout_errors"][branch]
        f_spread = err["force_spread_ev_per_a"]
        print(f"{branch:<16} {err['n_frames']:>6} {err['energy_rmse_ev_per_atom'] * 1e3:>8.1f} "
              f"{err['train_energy_rmse_ev_per_atom'] * 1e3:>8.1f} {err['energy_spread_ev_per_atom'] * 1e3:>8.1f} "
              f"{stored['energy_spread_ev_per_atom'] * 1e3:>13.1f} {err['force_rmse_ev_per_a']:>7.3f} "
              f"{err['train_force_rmse_ev_per_a']:>7.3f} {f_spread:>7.3f} "
              f"{err['force_rmse_ev_per_a'] / f_spread:>11.2f} "
              f"{err['train_force_rmse_ev_per_a'] / err['train_force_spread_ev_per_a']:>12.2f}")
        if not np.isclose(err["force_rmse_ev_per_a"], stored["force_rmse_ev_per_a"], rtol=1e-3):
            print(f"  NOT the build's held-out frames: stored force RMSE {stored['force_rmse_ev_per_a']:.4f}")
    print("E in meV/atom (count: a per-element linear fit to the training frames; stored sprd: the checkpoint's, "
          "fit in-sample), F in eV/A; F sprd: held-out frames (F train/sprd: over the training sample's own spread)")


if __name__ == "__main__":
    main()
