"""The official MatBench random 5-fold split, read from the ``matbench`` package's validation file.

MatBench v0.1 made it with ``KFold(n_splits=5, shuffle=True, random_state=18012019)``; the folds
ship in ``matbench/matbench_v0.1_validation.json``. The ``matbench`` package is located without
importing it (its ``__init__`` imports APIs that current matminer no longer has). MatBench has no
validation set: we carve ``train_test_split(train, test_size=0.2, random_state=42)`` out of each
fold's train, like the OOD methods.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, DataMissingError
from ..io_utils import read_json, sha256_file
from .methods import SPLIT_METHODS, SplitMethod, generator_block
from .schema import Fold, SplitSet

VALIDATION_FILE = "matbench_v0.1_validation.json"
VAL_FRACTION = 0.2
VAL_SEED = 42


def validation_file() -> Path:
    spec = find_spec("matbench")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        p = Path(loc) / VALIDATION_FILE
        if p.exists():
            return p
    raise DataMissingError(
        f"MatBench's official folds ({VALIDATION_FILE}) not found: install them with "
        "`pip install --no-deps matbench==0.6`"
    )


def build_random(ds, options: dict | None = None) -> list[SplitSet]:
    from sklearn.model_selection import train_test_split

    path = validation_file()
    raw = read_json(path)
    try:
        folds_raw = raw["splits"][ds.name]
        meta = raw.get("metadata", {})
    except (KeyError, TypeError):
        raise CorruptFileError(f"{path}: no splits for {ds.name}") from None
    known = set(ds.ids)
    folds = {}
    for k, name in enumerate(sorted(folds_raw, key=lambda s: int(s.split("_")[-1]))):
        f = folds_raw[name]
        train_all = [i for i in f["train"] if i in known]
        test = [i for i in f["test"] if i in known]
        if (len(train_all) != len(f["train"]) or len(test) != len(f["test"])) and not _is_fixture(ds):
            raise CorruptFileError(f"{path}: {name} lists ids that {ds.name} does not have")
        train, val = train_test_split(np.array(train_all, dtype=object), test_size=VAL_FRACTION,
                                      random_state=VAL_SEED)
        order = {sid: i for i, sid in enumerate(ds.ids)}
        folds[str(k)] = Fold(str(k), sorted(train.tolist(), key=order.get), sorted(val.tolist(), key=order.get),
                             {"test": test})
    gen = generator_block("random", {
        "source": "matbench v0.1 official folds", "kfold": meta, "val_fraction": VAL_FRACTION,
        "val_random_state": VAL_SEED, "val_method": "sklearn train_test_split of each fold's train",
    }, ["MatBench's own 5 folds (test ids exactly as published); val carved from train, seeded"])
    provenance = {
        "source_file": VALIDATION_FILE,
        "source_sha256": sha256_file(path),
        "dataset_source": ds.source.rsplit("/", 1)[-1],
        "checksum_status": ds.checksum_status,
        "n_samples": len(ds),
        "n_folds": len(folds),
    }
    target = ds.spec.targets[0].name
    return [SplitSet(dataset=ds.name, name="random", folds=folds, test_sets=["test"], generator=gen,
                     dataset_sha256=ds.sha256, property=target, provenance=provenance)]


def _is_fixture(ds) -> bool:
    return ds.checksum_status.startswith("fixture")


SPLIT_METHODS.add("random", SplitMethod(
    name="random", kind="crystals", description="official MatBench 5-fold random split (ID)",
    build=build_random,
))
