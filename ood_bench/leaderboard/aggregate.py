"""Records -> tidy frame -> one summary cell per (run family, evaluation set, metric).

A *run family* is everything that identifies a table cell except seed and fold: dataset, split,
property, model, strategy, preset, variant (``key.variant``: a non-default preset or other
option that makes a different run), stand-in flag and training fraction. A cell is the mean over
seeds of the per-seed mean over folds; its spread is the **standard error** over seeds: the
population std (numpy's default, ddof=0) over seeds divided by sqrt(number of seeds), the
convention of the paper's bracketed values. It is *complete* only when every seed seen has every
expected fold; expected fold counts come from the split file when present, else from defaults
(BOOM 1, MatBench random 5, LOCO/Sparse* 50).

Display names, order and the reference strategy come from the registries (``ood_bench.models``,
``ood_bench.strategies``, ``ood_bench.datasets``); a record whose model, strategy or dataset is no
longer registered still renders, under its raw names.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .baselines import Card, card_for_run

log = logging.getLogger(__name__)

# What identifies a run within a family (one row/column of a table).
RUN = ["model", "strategy", "preset", "variant", "stand_in"]
FAMILY = ["dataset", "split", "property", "model", "strategy", "preset", "variant", "stand_in", "train_fraction"]
COLUMNS = [*FAMILY, "fold", "seed", "set", "n", "mae", "rmse", "r2", "max_error", "n_train", "path", "checkpoint"]
_SPARSE = re.compile(r"^(omee2024-)?(LOCO|Sparse[XY](cluster|single))$")
PAPER_PRESET = "paper"  # the preset that reproduces the paper's model: its measured rows carry no preset tag


# ------------------------------------------------------------------------------ registries


def model_label(model: str) -> str:
    """Registered display label of a model ("RF-SCM/Magpie"); an unregistered name shows as itself."""
    from ..models import label_of

    return label_of(model)


def strategy_label(strategy: str) -> str:
    from ..strategies import label_of

    return label_of(strategy)


def strategy_rank(strategy: str) -> int:
    """Registered order of a strategy (unknown strategies last)."""
    from ..strategies import STRATEGIES

    return STRATEGIES.get(strategy).order if strategy in STRATEGIES else 1000


def reference_strategy() -> str:
    """The strategy the others are compared with (the paper's Scratch)."""
    from ..strategies import reference_strategy as ref

    return ref()


def headline_metric(dataset: str) -> str:
    """The dataset's headline metric as the paper reports it (``DatasetSpec.metric``); "mae" for a
    dataset that is no longer registered."""
    from ..datasets import DATASETS

    return DATASETS.get(dataset).metric if dataset in DATASETS else "mae"


def has_several_targets(dataset: str) -> bool:
    from ..datasets import DATASETS

    return dataset not in DATASETS or len(DATASETS.get(dataset).targets) > 1


def _single_preset(model: str, preset: str) -> bool:
    """True when ``preset`` is the registered model's only preset (naming it says nothing)."""
    from ..models import MODELS

    return model in MODELS and list(MODELS.get(model).presets) == [preset]


# ------------------------------------------------------------------------------ records


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
            "preset": str(config.get("preset") or ""),
            "variant": ", ".join(filter(None, [str(key.get("variant") or ""), head_note(rec)])),
            "stand_in": bool(pre.get("stand_in", False)),
            "train_fraction": float(key.get("train_fraction", 1.0)), "fold": str(key["fold"]),
            "seed": int(key["seed"]), "n_train": (rec.get("data") or {}).get("n_train"),
            "path": rec.get("_path", ""), "checkpoint": str(pre.get("sha256") or ""),
        }
        for set_name, m in rec["metrics"].items():
            rows.append({**base, "set": set_name, "n": m.get("n"), "mae": m.get("mae"), "rmse": m.get("rmse"),
                         "r2": m.get("r2"), "max_error": m.get("max_error")})
    return pd.DataFrame(rows, columns=COLUMNS)


def mixed_checkpoints(frame: pd.DataFrame) -> list[tuple[str, int]]:
    """Run families whose records come from more than one pretrained checkpoint (a rebuilt stand-in,
    a re-downloaded model): their cells would average two models. (label, how many checkpoints)."""
    if frame.empty:
        return []
    with_ckpt = frame[frame["checkpoint"] != ""]
    counts = with_ckpt.groupby(FAMILY, sort=True, dropna=False)["checkpoint"].nunique()
    out = []
    for fam, n in counts.items():
        if n > 1:
            info = dict(zip(FAMILY, fam, strict=True))
            run = Run(*(info[c] for c in RUN)).label(None, float(info["train_fraction"]))
            where = [str(info[c]) for c in ("dataset", "split", "property") if str(info[c])]
            out.append((" / ".join([*where, run]), int(n)))
    return out


def head_note(rec: dict[str, Any]) -> str:
    """For a DPA3 run whose property the paper predicts with a special head (QM9 mu: dipole norm,
    <R^2>: spatial extent) but which used another (the plain pooled scalar): say so in its label."""
    config, training, key = rec.get("config") or {}, rec.get("training") or {}, rec["key"]
    deepmd_input = config.get("deepmd_input")
    if config.get("backend", "deepmd") != "deepmd" or not deepmd_input:
        return ""
    from ..backends.deepmd.plugins import head_of_input

    head = training.get("head") or head_of_input(deepmd_input)
    paper = training.get("paper_head")
    if paper is None:
        from ..datasets import DATASETS

        if key["dataset"] not in DATASETS:
            return ""
        paper = DATASETS.get(key["dataset"]).target(key.get("property") or None).paper_head
    return "" if head == paper else f"{head} head, not the paper's {paper} head"


@dataclass
class Dropped:
    """Structures a group of records dropped for lack of coordinates, per set."""

    dataset: str
    split: str
    train_fraction: float
    counts: dict[str, list[int]]    # set -> distinct dropped counts seen (one value unless sources differ)
    totals: dict[str, list[int]]    # set -> distinct set sizes before dropping
    sources: list[str]              # distinct dataset checksum statuses / sources named by the records


def dropped_structures(records: Iterable[dict[str, Any]]) -> list[Dropped]:
    """Per (dataset, split, train fraction): what the records say they dropped
    (``record["data"]["dropped_without_structure"]``); groups that dropped nothing are left out."""
    groups: dict[tuple[str, str, float], dict[str, Any]] = {}
    for rec in records:
        data = rec.get("data") or {}
        dropped = data.get("dropped_without_structure") or {}
        if not any(int(v or 0) for v in dropped.values()):
            continue
        key = rec["key"]
        g = groups.setdefault((str(key["dataset"]), str(key["split"]), float(key.get("train_fraction", 1.0))),
                              {"counts": {}, "totals": {}, "sources": set()})
        for set_name, v in dropped.items():
            g["counts"].setdefault(set_name, set()).add(int(v or 0))
            total = (data.get("n") or {}).get(set_name)
            if total is not None:
                g["totals"].setdefault(set_name, set()).add(int(total))
        status = data.get("dataset_checksum_status")
        if status:
            g["sources"].add(str(status))
    return [Dropped(ds, split, frac, {s: sorted(v) for s, v in g["counts"].items()},
                    {s: sorted(v) for s, v in g["totals"].items()}, sorted(g["sources"]))
            for (ds, split, frac), g in sorted(groups.items())]


# ------------------------------------------------------------------------------ runs and labels


class Run(NamedTuple):
    """A run's identity within a family: one measured row (QM9) or column (MatBench)."""

    model: str
    strategy: str
    preset: str
    variant: str
    stand_in: bool

    def sort_key(self) -> tuple:
        return (self.model, strategy_rank(self.strategy), self.strategy, self.preset != PAPER_PRESET,
                self.preset, self.variant, self.stand_in)

    def label(self, cards: list[Card] | None = None, train_fraction: float = 1.0) -> str:
        return measured_label(self.model, self.strategy, self.preset, self.stand_in, cards, train_fraction,
                              variant=self.variant)


def runs_sorted(runs: Iterable[tuple]) -> list[Run]:
    return sorted((Run(*r) for r in runs), key=Run.sort_key)


def run_name(model: str, strategy: str, cards: list[Card] | None = None) -> str:
    """Display name of a model x strategy ("DPA3-MFT"), from its card when there is one, else from
    the registered labels (raw names for a model or strategy no longer registered)."""
    card = card_for_run(cards or [], model, strategy)
    if card:
        return card.name
    return f"{model_label(model)}-{strategy_label(strategy)}"


def measured_label(model: str, strategy: str, preset: str, stand_in: bool, cards: list[Card] | None = None,
                   train_fraction: float = 1.0, *, variant: str = "") -> str:
    """``DPA3-MFT (measured)``, ``DPA3-MFT (tiny, stand-in pretrained, measured)``: a measured run
    never shares a label with the paper's model. The preset is named unless it is the paper's or
    the model's only one; a variant other than the preset is named too."""
    tags = measured_tags(model, preset, stand_in, train_fraction, variant)
    return f"{run_name(model, strategy, cards)} ({', '.join(tags)})"


def measured_tags(model: str, preset: str, stand_in: bool, train_fraction: float = 1.0,
                  variant: str = "") -> list[str]:
    """The bracketed tags of a measured label (``tiny``, ``stand-in pretrained``, ..., ``measured``)."""
    tags = []
    if not preset:
        tags.append("preset unknown")
    elif preset != PAPER_PRESET and not _single_preset(model, preset):
        tags.append(preset)
    if variant and variant != preset:
        tags.append(variant)
    if stand_in:
        tags.append("stand-in pretrained")
    if train_fraction != 1.0:
        tags.append(f"train fraction {train_fraction:g}")
    tags.append("measured")
    return tags


def default_fold_count(dataset: str, split: str) -> int | None:
    if split.startswith("boom-"):
        return 1
    if split == "random":
        return 5
    if _SPARSE.match(split):
        return 50
    return None


SUBSET_SPLIT = re.compile(r"^(?P<split>.+) \[folds (?P<folds>[^\]]+)\]$")


def subset_split(split: str, folds: list[str]) -> str:
    """``omee2024-LOCO [folds 0,1]``: the name a split's runs take when the reduce covers a fold subset."""
    return f"{split} [folds {','.join(folds)}]"


def restrict_folds(records: Iterable[dict[str, Any]], folds: list[str]) -> tuple[list[dict[str, Any]], int]:
    """(records of these folds only, how many others were left out). Each kept record is a copy whose
    split is named :func:`subset_split`: a mean over a fold subset is another quantity than the
    split's mean over all its folds, so it never fills a Table 3/4 cell or meets full-split runs."""
    wanted = set(folds)
    kept, left_out = [], 0
    for rec in records:
        if str(rec["key"]["fold"]) not in wanted:
            left_out += 1
            continue
        key = {**rec["key"], "split": subset_split(str(rec["key"]["split"]), folds)}
        kept.append({**rec, "key": key})
    return kept, left_out


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
        subset = SUBSET_SPLIT.match(split)
        if subset:
            names = subset["folds"].split(",")
            _, source = self(dataset, subset["split"])
            if source == "split file":  # names the split does not have are not expected
                from ..splits import load_split

                names = [n for n in names if n in load_split(dataset, subset["split"], self.splits_dir).folds]
            return len(names), "fold subset"
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
    std: float | None             # population std (ddof=0) over seeds; None with one seed
    n_seeds: int
    done: int                     # (seed, fold) runs present
    expected: int | None          # n_seeds x expected folds, None when the fold count is unknown
    folds_expected: int | None
    complete: bool
    se: float | None = None       # standard error: std / sqrt(seeds); what tables show in brackets
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
    mean = std = se = None
    if complete and per_seed:
        arr = np.array([per_seed[s] for s in sorted(per_seed)])
        mean = float(arr.mean())
        if arr.size > 1:
            std = float(arr.std())  # population std (ddof=0)
            se = std / math.sqrt(arr.size)
    per_fold = {str(f): float(v) for f, v in values.groupby("fold")[metric].mean().items()}
    return Cell(mean, std, len(seeds), done, expected, folds_expected, complete, se=se, per_seed=per_seed,
                per_fold=per_fold)


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


