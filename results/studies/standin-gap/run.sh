#!/usr/bin/env bash
# The CPU-scale study of docs/standin.md (the MFT paper's Fig. 3(a) at reduced scale), end to end:
# 36 runs (QM9 boom-gap; fractions 1/256, 1/64, 1/16; Scratch, LP, FT, MFT; seeds 0-2) with the
# shipped stand-in; then the robust fine-tuning strategies (docs/robust-finetuning.md) at 1/64, seeds
# 0-2 (39 runs; the soup trains 3 members); then the collapse analysis (FT vs MFT at 1/64) and this
# folder's leaderboard page. Resumable: rerun it and finished runs are skipped. About 2.5 hours on
# an idle 2-core machine for the first part, as long again for the second.
#
#   bash results/studies/standin-gap/run.sh            # from the repository root
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
JOBS="${JOBS:-2}"
for seed in 0 1 2; do  # seed by seed: a partial study already has whole seeds
  oodbench run --model dpa3 --strategy scratch,lp,ft,mft --dataset qm9 --property gap \
    --train-fraction 0.00390625,0.015625,0.0625 --seeds "$seed" \
    --preset small --steps 300 --pretrained oodbench-small --jobs "$JOBS" --results-dir "$HERE"
done
ROBUST=wise-ft,mft-wise,lp-ft,l2sp,mft-l2sp,ema,surgical,feature-map,bss,llrd,dwise-ft,mft-dwise,soup
for seed in 0 1 2; do
  oodbench run --model dpa3 --strategy "$ROBUST" --dataset qm9 --property gap \
    --train-fraction 0.015625 --seeds "$seed" \
    --preset small --steps 300 --pretrained oodbench-small --jobs "$JOBS" --results-dir "$HERE"
done
oodbench analyze collapse --results-dir "$HERE" --out "$HERE/analysis" \
  --runs "dataset=qm9,split=boom-gap,strategy=ft|mft,train_fraction=0.015625,seed=0" --max-per-class 500
oodbench leaderboard --results-dir "$HERE"
