"""Force RMSE of a crystal-only run on the shipped build's 120 held-out crystals (rebuilt, relabelled) and on 120
of its training frames; see README.md here. Usage: python eval_heldout.py RUN/model.ckpt.pt"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from deepmd.infer.deep_pot import DeepPot

from ood_bench.backends.deepmd.auxdata import Frames
from ood_bench.backends.deepmd.pretrain import _errors, rebuild_holdout, train_sample
from ood_bench.backends.deepmd.standin import read_embedded_meta

BRANCH = "matbench_chgnet"
ship = Path("ood_bench/pretrained/oodbench-small.pt")
meta = read_embedded_meta(ship)
with tempfile.TemporaryDirectory() as t:
    fr = rebuild_holdout(meta, None, Path(t))[BRANCH]
with np.load(ship.with_name(meta["aux_file"]["name"])) as a:
    train = train_sample(Frames.from_arrays(a, BRANCH), len(fr), meta["config"]["seed"])
m = DeepPot(sys.argv[1], no_jit=True)
print("held", _errors(m, fr), "spread", fr.force.std())
print("train", _errors(m, train), "spread", train.force.std())
