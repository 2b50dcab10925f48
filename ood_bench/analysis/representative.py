"""The paper's "representative fold" (Supplementary D.4): data-efficiency curves on MatBench are
run on one fold per split method, the fold whose full-data FT error is closest to the mean over
folds. A pure reduce over existing records, like the leaderboard."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True)
class Representative:
    dataset: str
    split: str
    fold: str
    error: float  # that fold's error (mean over seeds)
    mean_error: float  # mean over folds
    n_folds: int
    metric: str
    test_set: str


def representative_fold(records: Iterable[dict[str, Any]], dataset: str, split: str, model: str = "dpa3",
                        strategy: str = "ft", test_set: str | None = None) -> Representative:
    """Among full-data (train fraction 1) records of ``model``/``strategy`` on ``dataset``/``split``,
    the fold whose error (the dataset's headline metric on ``test_set``, mean over seeds) is closest
    to the mean over folds; ties go to the lowest fold number."""
    from ..datasets import get_spec

    metric = get_spec(dataset).metric
    per_fold: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        k = rec["key"]
        if (k["dataset"], k["split"], k["model"], k["strategy"]) != (dataset, split, model, strategy):
            continue
        if float(k.get("train_fraction", 1.0)) != 1.0 or k.get("variant"):
            continue
        sets = [s for s in rec["metrics"] if s != "val"]
        chosen = test_set or (sets[0] if len(sets) == 1 else "ood_test")
        if chosen not in rec["metrics"]:
            raise UsageError(f"records of {dataset}/{split} have no test set '{chosen}'; pass --test-set "
                             f"({', '.join(sets)})")
        test_set = chosen
        per_fold[str(k["fold"])].append(float(rec["metrics"][chosen][metric]))
    if not per_fold:
        raise UsageError(f"no full-data {model}-{strategy} records for {dataset} split {split}; run them first: "
                         f"`oodbench run --model {model} --strategy {strategy} --dataset {dataset} "
                         f"--split {split}`")
    errors = {f: sum(v) / len(v) for f, v in per_fold.items()}
    mean = sum(errors.values()) / len(errors)
    fold = min(errors, key=lambda f: (abs(errors[f] - mean), _fold_order(f)))
    return Representative(dataset, split, fold, errors[fold], mean, len(errors), metric, str(test_set))


def _fold_order(fold: str) -> tuple[int, str]:
    return (int(fold), fold) if fold.isdigit() else (1 << 30, fold)
