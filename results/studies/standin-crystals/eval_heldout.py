"""Force RMSE of a crystal-only run on the shipped build's 120 held-out crystals (rebuilt, relabelled) and on 120
of its training frames; see README.md here. Usage: python eval_heldout.py RUN/model.ckpt.pt"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from deepmd.infer.deep_pot import DeepPot

from ood_bench.backends.deepmd.auxdata import Frames, label_frames
from ood_bench.backends.deepmd.pretrain import PretrainConfig, _errors, holdout_rows, source_structures
from ood_bench.backends.deepmd.standin import read_embedded_meta

ship = Path('ood_bench/pretrained/oodbench-small.pt')
meta = read_embedded_meta(ship)
cfg = PretrainConfig(**meta['config'])
src = source_structures(cfg, None)['matbench_chgnet']
st = src["structures"]
held = holdout_rows(len(st), cfg.holdout, cfg.seed)
with tempfile.TemporaryDirectory() as t:
    fr = label_frames(st.subset([st.ids[r] for r in held]), 'chgnet', Path(t))
with np.load(ship.with_name('oodbench-small.aux.npz')) as a:
    train = Frames.from_arrays(a, 'matbench_chgnet')
rows = np.sort(np.random.default_rng(3).permutation(len(train))[:len(fr)])
m = DeepPot(sys.argv[1], no_jit=True)
print('held', _errors(m, fr), 'spread', fr.force.std())
print('train', _errors(m, train.take(rows)), 'spread', train.take(rows).force.std())
