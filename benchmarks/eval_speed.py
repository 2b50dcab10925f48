"""Evaluation speed of a fine-tuned DPA3 property model: structures/s before and after.

Trains one short FT run (QM9 gap, 0.5% of the training set, tiny preset, from the stand-in) to get
a real property checkpoint, then predicts the same QM9 molecules in fresh processes under two
configurations and checks that the predictions agree to float round-off:

- before: what oodbench did until this benchmark existed (one thread, 1024-atom batches,
  deepmd's default TorchScript model);
- after: oodbench's current evaluation settings (eager model, every usable core once training
  has ended, 256-atom batches).

Each configuration makes one pass over the molecules with a freshly loaded model, as a run does
for each candidate checkpoint.

    python benchmarks/eval_speed.py [--n 4000] [--checkpoint model.pt]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONFIGS = {  # label: (environment, load as oodbench did before)
    "before (TorchScript, 1 thread, 1024 atoms)": ({"OODBENCH_EVAL_THREADS": "1", "DP_INFER_BATCH_SIZE": "1024"}, True),
    "after (oodbench defaults)": ({}, False),
}


def train_checkpoint(workdir: Path) -> Path:
    from ood_bench.records import RunKey
    from ood_bench.runner.execute import execute
    from ood_bench.runner.spec import RunSpec

    spec = RunSpec(key=RunKey("qm9", "boom-gap", "0", "dpa3", "ft", 0, 0.005, "gap"), preset="tiny", steps=20,
                   results_dir=str(workdir))
    return execute(spec).parent / "model.pt"


def legacy_load(checkpoint: str):
    """How oodbench loaded a model before: ``DeepEval``'s default, TorchScript."""
    import torch
    from deepmd.infer import DeepEval

    from ood_bench.backends.deepmd.launcher import inference_threads, set_inference_threads

    set_inference_threads()
    model = DeepEval(checkpoint)
    torch.set_num_threads(inference_threads())
    return model


def worker(checkpoint: str, n: int, out: str, legacy: bool) -> None:
    """Predict ``n`` seeded QM9 molecules, grouped by atom count as the harness does."""
    from ood_bench.backends.deepmd.data import write_systems
    from ood_bench.backends.deepmd.predict import load_model, predict
    from ood_bench.datasets import load_dataset

    qm9 = load_dataset("qm9", None)
    pool = qm9.ids_with_structures()
    ids = [pool[i] for i in np.random.default_rng(0).choice(len(pool), n, replace=False)]
    with tempfile.TemporaryDirectory() as tmp:
        systems = write_systems(Path(tmp) / "sys", qm9.structures, ids)
        t0 = time.time()
        model = legacy_load(checkpoint) if legacy else load_model(Path(checkpoint))
        t_load = time.time() - t0
        t0 = time.time()
        got_ids, y = predict(model, systems)
        seconds = time.time() - t0
    np.save(out, y[np.argsort(np.array([ids.index(i) for i in got_ids]))])
    print(json.dumps({"load_s": t_load, "predict_s": seconds}))


def run_config(checkpoint: Path, n: int, env: dict[str, str], legacy: bool, out: Path) -> dict[str, float]:
    full = {k: v for k, v in os.environ.items() if k not in ("OODBENCH_EVAL_THREADS", "DP_INFER_BATCH_SIZE")}
    full.update(env)
    cmd = [sys.executable, __file__, "--worker", str(checkpoint), "--n", str(n), "--out", str(out)]
    cmd += ["--legacy"] if legacy else []
    res = subprocess.run(cmd, env=full, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4000, help="QM9 molecules to predict")
    ap.add_argument("--checkpoint", help="a property-model .pt (default: train a 20-step FT run)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--legacy", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.n, args.out, args.legacy)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(args.checkpoint) if args.checkpoint else train_checkpoint(Path(tmp))
        print(f"checkpoint: {ckpt.name}, {args.n} QM9 molecules, {os.cpu_count()} cores")
        preds, rates = [], []
        for label, (env, legacy) in CONFIGS.items():
            out = Path(tmp) / f"pred{len(preds)}.npy"
            t = run_config(ckpt, args.n, env, legacy, out)
            preds.append(np.load(out))
            rates.append(args.n / t["predict_s"])
            print(f"{label:40s} {rates[-1]:8.0f} structures/s  (model load {t['load_s']:.1f} s)")
        diff = float(np.max(np.abs(preds[0] - preds[1])))
        scale = float(np.max(np.abs(preds[0])))
        print(f"speed-up {rates[-1] / rates[0]:.2f}x; max |prediction difference| {diff:.2e} (max |y| {scale:.2e})")


if __name__ == "__main__":
    main()
