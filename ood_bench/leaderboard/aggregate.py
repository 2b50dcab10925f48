"""Records -> tidy frame -> one summary cell per (run family, evaluation set, metric).

A *run family* is everything that identifies a table cell except seed and fold: dataset, split,
property, model, strategy, preset, stand-in flag and training fraction. A cell is the mean over
seeds of the per-seed mean over folds; its std is the population std (numpy's default, ddof=0)
over seeds. It is *complete* only when every seed seen has every expected fold; expected fold
counts come from the split file when present, else from defaults (BOOM 1, MatBench random 5,
LOCO/Sparse* 50).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .baselines import Card, card_for_run

log = logging.getLogger(__name__)

FAMILY = ["dataset", "split", "property", "model", "strategy", "preset", "stand_in", "train_fraction"]
STRATEGY_NAMES = {"scratch": "Scratch", "lp": "LP", "ft": "FT", "mft": "MFT"}
STRATEGY_ORDER = {"scratch": 0, "lp": 1, "ft": 2, "mft": 3}
MODEL_NAMES = {"dpa3": "DPA3"}
COLUMNS = [*FAMILY, "fold", "seed", "set", "n", "mae", "rmse", "r2", "max_error", "n_train", "path"]
_SPARSE = re.compile(r"^(omee2024-)?(LOCO|Sparse[XY](cluster|single))$")


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per (record, evaluation set) with the record's identity and metrics."""
    rows = []
    for rec in records:
        key = rec["key"]
        config = rec.get("config") or {}
        pre = rec.get("pretrained") or {}
        base = {
            "dataset": str(key["dataset"]), "split": str(key["split"]), "property": str(key.get("property", "")),
            "model": str(key["model"]), "strategy": str(key["strategy"]),
            "preset": str(config.get("preset") or ""), "stand_in": bool(pre.get("stand_in", False)),
            "train_fraction": float(key.get("train_fraction", 1.0)), "fold": str(key["fold"]),
            "seed": int(key["seed"]), "n_train": (rec.get("data") or {}).get("n_train"),
            "path": rec.get("_path", ""),
        }
        for set_name, m in rec["metrics"].items():
            rows.append({**base, "set": set_name, "n": m.get("n"), "mae": m.get("mae"), "rmse": m.get("rmse"),
                         "r2": m.get("r2"), "max_error": m.get("max_error")})
    return pd.DataFrame(rows, columns=COLUMNS)


def run_name(model: str, strategy: str, cards: list[Card] | None = None) -> str:
    """Display name of a model x strategy ("DPA3-MFT"), from its card when there is one."""
    card = card_for_run(cards or [], model, strategy)
    if card:
        return card.name
    return f"{MODEL_NAMES.get(model, model)}-{STRATEGY_NAMES.get(strategy, strategy)}"


def measured_label(model: str, strategy: str, preset: str, stand_in: bool, cards: list[Card] | None = None,
                   train_fraction: float = 1.0) -> str:
    """``DPA3-MFT (measured)``, ``DPA3-MFT (tiny, stand-in pretrained, measured)``: a measured run
    never shares a label with the paper's model."""
    tags = []
    if not preset:
        tags.append("preset unknown")
    elif preset != "paper":
        tags.append(preset)
    if stand_in:
        tags.append("stand-in pretrained")
    if train_fraction != 1.0:
        tags.append(f"train fraction {train_fraction:g}")
    tags.append("measured")
    return f"{run_name(model, strategy, cards)} ({', '.join(tags)})"


def default_fold_count(dataset: str, split: str) -> int | None:
    if split.startswith("boom-"):
        return 1
    if split == "random":
        return 5
    if _SPARSE.match(split):
        return 50
    return None


class FoldCounter:
    """Expected fold count per (dataset, split): split file when present, else the defaults."""

    def __init__(self, splits_dir: str | Path | None = None, use_split_files: bool = True) -> None:
        self.splits_dir = splits_dir
        self.use_split_files = use_split_files
        self._cache: dict[tuple[str, str], tuple[int | None, str]] = {}

    def __call__(self, dataset: str, split: str) -> tuple[int | None, str]:
        """(expected folds or None when unknown, where the count came from)."""
        if (dataset, split) not in self._cache:
            self._cache[(dataset, split)] = self._count(dataset, split)
        return self._cache[(dataset, split)]

    def _count(self, dataset: str, split: str) -> tuple[int | None, str]:
        if self.use_split_files:
            from ..errors import OodBenchError
            from ..splits import load_split, split_path

            if split_path(dataset, split, self.splits_dir).exists():
                try:
                    return len(load_split(dataset, split, self.splits_dir).folds), "split file"
                except OodBenchError as exc:
                    log.warning("using the default fold count for %s/%s: %s", dataset, split, exc)
        n = default_fold_count(dataset, split)
        return n, ("default" if n is not None else "unknown")


@dataclass
class Cell:
    """Summary of one run family on one evaluation set and metric."""

    mean: float | None
    std: float | None
    n_seeds: int
    done: int                     # (seed, fold) runs present
    expected: int | None          # n_seeds x expected folds, None when the fold count is unknown
    folds_expected: int | None
    complete: bool
    per_seed: dict[int, float] = field(default_factory=dict)   # seed -> mean over folds (complete seeds)
    per_fold: dict[str, float] = field(default_factory=dict)   # fold -> mean over seeds

    def coverage(self) -> str:
        """``3 seeds`` / ``50/50 folds, 1 seed`` for complete cells, ``37/50`` style for partial ones."""
        seeds = f"{self.n_seeds} seed{'s' if self.n_seeds != 1 else ''}"
        if self.folds_expected is None:
            return f"{self.done} runs (expected fold count unknown), {seeds}"
        if self.folds_expected == 1:
            return seeds if self.complete else f"{self.done}/{self.expected} runs, {seeds}"
        if self.n_seeds == 1:
            return f"{self.done}/{self.expected} folds, {seeds}"
        return f"{self.done}/{self.expected} fold-runs ({self.folds_expected} folds x {seeds})"


def summarize_group(group: pd.DataFrame, metric: str, folds_expected: int | None) -> Cell:
    """Cell for one run family's rows on one evaluation set."""
    values = group.dropna(subset=[metric])
    # One value per (seed, fold): a duplicate record (should not happen) is averaged, not double-counted.
    per = values.groupby(["seed", "fold"])[metric].mean()
    seeds = sorted({int(s) for s, _ in per.index})
    done = int(len(per))
    per_seed: dict[int, float] = {}
    complete = bool(seeds)
    for s in seeds:
        folds = per.loc[s]
        if folds_expected is not None and len(folds) < folds_expected:
            complete = False
        else:
            per_seed[s] = float(folds.mean())
    expected = None if folds_expected is None else folds_expected * len(seeds)
    if complete and per_seed:
        arr = np.array(list(per_seed.values()))
        mean, std = float(arr.mean()), (float(arr.std()) if arr.size > 1 else None)
    else:
        mean = std = None
    per_fold = {str(f): float(v) for f, v in values.groupby("fold")[metric].mean().items()}
    return Cell(mean, std, len(seeds), done, expected, folds_expected, complete, per_seed, per_fold)


def summarize(frame: pd.DataFrame, fold_counter: FoldCounter | None = None) -> pd.DataFrame:
    """One row per (run family, set, metric in mae/rmse) with a :class:`Cell` in column ``cell``."""
    fold_counter = fold_counter or FoldCounter(use_split_files=False)
    out = []
    if frame.empty:
        return pd.DataFrame(columns=[*FAMILY, "set", "metric", "cell"])
    for fam, group in frame.groupby([*FAMILY, "set"], sort=True, dropna=False):
        info = dict(zip([*FAMILY, "set"], fam, strict=True))
        folds_expected, _ = fold_counter(info["dataset"], info["split"])
        for metric in ("mae", "rmse"):
            out.append({**info, "metric": metric, "cell": summarize_group(group, metric, folds_expected)})
    return pd.DataFrame(out)


def geo_mean(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return float(np.exp(np.mean(np.log(vals)))) if vals else None


def run_sort_key(model: str, strategy: str, preset: str, stand_in: bool) -> tuple:
    return (model, STRATEGY_ORDER.get(strategy, 99), strategy, preset != "paper", preset, stand_in)
