"""Rebuild everything under results/analysis from what the repository holds.

    python results/analysis/source/reproduce.py            # about 20 minutes on an idle 2-core machine

1. the stand-in pretrained model of this analysis (``PretrainConfig(n_molecules=200, n_crystals=60,
   n_copies=2, steps=500)`` on the fixture data in tests/fixtures/data), in a cache folder of its own;
2. the toy QM9 gap split over the 300 fixture molecules (OOD test = the 20 lowest + 20 highest gap
   molecules; 200 train / 30 validation / the rest ID test), written to ``source/splits``;
3. twelve runs (tiny DPA3, Scratch / LP / FT / MFT, 1,000 steps, seeds 0-2) into ``source/``
   (records and logs are committed; the checkpoints they need stay local);
4. ``oodbench analyze collapse`` on them, into ``results/analysis``.
Finished runs are skipped when rerun (resume), as everywhere in oodbench.
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "data"


def toy_split(splits: Path) -> None:
    from ood_bench.datasets import load_dataset
    from ood_bench.splits import Fold, SplitSet, save_split

    q = load_dataset("qm9", FIXTURES)
    ids = sorted(q.ids, key=lambda i: q.table.loc[i, "gap"])
    ood = ids[:20] + ids[-20:]
    rest = [i for i in q.ids if i not in set(ood)]
    fold = Fold("0", rest[:200], rest[200:230], {"id_test": rest[230:], "ood_test": ood})
    save_split(SplitSet("qm9", "toy-gap", {"0": fold}, ["id_test", "ood_test"], property="gap",
                        dataset_sha256=q.sha256), splits)


def main() -> None:
    os.environ.setdefault("OODBENCH_CACHE_DIR", str(REPO / ".oodbench_cache" / "analysis"))
    from ood_bench.backends.deepmd.pretrain import PretrainConfig, pretrain
    from ood_bench.cli import main as cli

    checkpoint = pretrain(PretrainConfig(n_molecules=200, n_crystals=60, n_copies=2, steps=500), str(FIXTURES))
    splits = HERE / "splits"
    toy_split(splits)
    common = ["--data-dir", str(FIXTURES), "--splits-dir", str(splits), "--results-dir", str(HERE)]
    rc = cli(["run", "--model", "dpa3", "--strategy", "scratch,lp,ft,mft", "--dataset", "qm9", "--property", "gap",
              "--split", "toy-gap", "--seeds", "0,1,2", "--preset", "tiny", "--steps", "1000",
              "--pretrained", str(checkpoint), *common])
    if rc:
        raise SystemExit(rc)
    raise SystemExit(cli(["analyze", "collapse", "--runs", "dataset=qm9,split=toy-gap", "--out", str(HERE.parent),
                          *common]))


if __name__ == "__main__":
    main()
