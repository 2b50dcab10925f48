#!/usr/bin/env bash
# Robust fine-tuning on crystals (docs/robust-finetuning.md): every DPA3 strategy on MatBench
# dielectric, published OOD split omee2024-LOCO, fold 0 only (a fixed subset: its test set is one
# cluster of 152 structures), seeds 0-2, with the shipped stand-in oodbench-small (MFT's auxiliary
# task: its CHGNet crystal branch and shipped frames), the `small` preset and 300 steps; then this
# folder's leaderboard page, reduced over that fold (--folds 0). Resumable: rerun it and finished
# runs are skipped. 51 runs (the soup trains 3 members, plus its 0-step init): their wall times sum
# to 3.0 hours on this 2-core machine while it was shared, so about 1.5 hours with JOBS=2.
#
#   bash results/studies/standin-dielectric/run.sh            # from the repository root
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
JOBS="${JOBS:-2}"
ALL=scratch,lp,ft,mft,wise-ft,mft-wise,lp-ft,l2sp,mft-l2sp,ema,surgical,feature-map,bss,llrd,dwise-ft,mft-dwise,soup
for seed in 0 1 2; do  # seed by seed: a partial study already has whole seeds
  oodbench run --model dpa3 --strategy "$ALL" --dataset matbench_dielectric --split omee2024-LOCO \
    --folds 0 --seeds "$seed" --preset small --steps 300 --pretrained oodbench-small \
    --jobs "$JOBS" --results-dir "$HERE"
done
oodbench leaderboard --results-dir "$HERE" --folds 0
