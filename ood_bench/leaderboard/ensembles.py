"""Seed ensembles: a derived result from existing records, no retraining.

Records that differ only by seed (same dataset, split, fold, model, strategy, variant, training
fraction, property, and the same preset and checkpoint kind) form a *group*; with two or more seeds
(its *members*) the group is an ensemble. On every evaluation set all members have (validation left
out), predictions are aligned by structure id: only ids every member predicted exactly once, with the
same true value, are kept (the others are counted as dropped). The ensemble prediction is the mean
over members; its uncertainty is the members' spread, the population std (ddof=0) over members.

Quality per set: the ensemble's RMSE and MAE next to the mean member RMSE and MAE (on the same ids),
the Spearman correlation between |ensemble error| and spread (zero-spread points left out), and the
miscalibration area of the Gaussian N(mean, spread) (Tran et al. 2020, as in uncertainty-toolbox):
the mean over a grid of expected proportions p in (0, 1) of |observed - p|, where observed is the
fraction of true values inside the central p-interval; a zero spread is the limit of a tiny sigma
(inside only when the error is exactly zero).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm, spearmanr

from .aggregate import head_note, headline_metric, strategy_rank
from .baselines import Card
from .compare import _decimals, _options_label, _role, _split_label, setup_label, split_variant
from .tables import MISSING, _md, qm9_decimals
from .tables import split_sort_key as _split_sort_key

GROUP = ["dataset", "split", "property", "fold", "model", "strategy", "preset", "variant", "stand_in",
         "train_fraction"]
FAMILY = [c for c in GROUP if c != "fold"]  # a table row: the folds' ensembles averaged
SKIP_SETS = ("val",)
GRID = 100  # expected proportions of the miscalibration area
COLUMNS = [*GROUP, "set", "n_members", "seeds", "n_ids", "n_dropped", "ens_rmse", "ens_mae", "member_rmse",
           "member_mae", "spearman", "miscal_area"]


def group_key(rec: dict[str, Any]) -> tuple:
    """The record's identity without its seed, in ``GROUP`` order (what members must share)."""
    key, config, pre = rec["key"], rec.get("config") or {}, rec.get("pretrained") or {}
    variant = ", ".join(filter(None, [str(key.get("variant") or ""), head_note(rec)]))
    return (str(key["dataset"]), str(key["split"]), str(key.get("property", "")), str(key["fold"]),
            str(key["model"]), str(key["strategy"]), str(config.get("preset") or ""), variant,
            bool(pre.get("stand_in", False)), float(key.get("train_fraction", 1.0)))


def seed_groups(records: Iterable[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Groups with 2+ distinct seeds, members in seed order (one record per seed: the first seen)."""
    by_seed: dict[tuple, dict[int, dict[str, Any]]] = {}
    for rec in records:
        by_seed.setdefault(group_key(rec), {}).setdefault(int(rec["key"]["seed"]), rec)
    return {k: [v[s] for s in sorted(v)] for k, v in sorted(by_seed.items()) if len(v) >= 2}


def align(members: list[dict[str, Any]], set_name: str) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """(ids, y_true, member predictions [member, id], ids dropped): ids every member has once, same truth."""
    blocks = [m["predictions"][set_name] for m in members]
    once = [{i for i, c in Counter(map(str, b["id"])).items() if c == 1} for b in blocks]
    seen = set().union(*(map(str, b["id"]) for b in blocks))
    ids = [i for i in map(str, blocks[0]["id"]) if all(i in s for s in once)]
    rows = [dict(zip(map(str, b["id"]), zip(b["y_true"], b["y_pred"], strict=True), strict=True)) for b in blocks]
    truth = np.array([[r[i][0] for i in ids] for r in rows], dtype=float).reshape(len(rows), len(ids))
    keep = np.all(np.isclose(truth, truth[0]), axis=0)
    ids = [i for i, k in zip(ids, keep, strict=True) if k]
    preds = np.array([[r[i][1] for i in ids] for r in rows], dtype=float).reshape(len(rows), len(ids))
    return ids, truth[0][keep], preds, len(seen) - len(ids)


def spread_spearman(abs_err: np.ndarray, spread: np.ndarray) -> float:
    """Spearman rho of |error| vs spread over nonzero spreads: does the spread rank the errors? (NaN if undefined)."""
    m = spread > 0
    e, s = abs_err[m], spread[m]
    if len(e) < 3 or np.ptp(e) == 0 or np.ptp(s) == 0:
        return float("nan")
    return float(spearmanr(e, s).statistic)


def miscalibration_area(y: np.ndarray, mean: np.ndarray, sigma: np.ndarray, n_grid: int = GRID) -> float:
    """Mean |observed - expected| coverage of central Gaussian intervals over p in (0, 1): 0 = calibrated."""
    p = (np.arange(n_grid) + 0.5) / n_grid
    z = norm.ppf(0.5 + p / 2)
    inside = np.abs(y - mean)[None, :] <= z[:, None] * sigma[None, :]  # sigma 0: inside only if exact
    return float(np.mean(np.abs(inside.mean(axis=1) - p)))


def set_metrics(y: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """The ensemble's quality on one set from the aligned truth and member predictions."""
    mean = preds.mean(axis=0)
    spread = np.where(np.ptp(preds, axis=0) == 0, 0.0, preds.std(axis=0))  # identical members: exactly 0
    err, member_err = mean - y, preds - y[None, :]
    return {"ens_rmse": float(np.sqrt(np.mean(err ** 2))), "ens_mae": float(np.mean(np.abs(err))),
            "member_rmse": float(np.mean(np.sqrt(np.mean(member_err ** 2, axis=1)))),
            "member_mae": float(np.mean(np.abs(member_err))),
            "spearman": spread_spearman(np.abs(err), spread), "miscal_area": miscalibration_area(y, mean, spread)}


def ensemble_frame(records: Iterable[dict[str, Any]], skip: tuple[str, ...] = SKIP_SETS) -> pd.DataFrame:
    """One row per (group with 2+ seeds, evaluation set all members have): the derived ensemble's quality."""
    rows = []
    for key, members in seed_groups(records).items():
        sets = [s for s in members[0]["predictions"] if s not in skip and all(s in m["predictions"] for m in members)]
        for set_name in sets:
            ids, y, preds, dropped = align(members, set_name)
            metrics = set_metrics(y, preds) if ids else {}
            rows.append({**dict(zip(GROUP, key, strict=True)), "set": set_name, "n_members": len(members),
                         "seeds": ",".join(str(m["key"]["seed"]) for m in members), "n_ids": len(ids),
                         "n_dropped": dropped, **metrics})
    return pd.DataFrame(rows, columns=COLUMNS)


# ------------------------------------------------------------------------------ leaderboard table


def _fmt(v: float | None, decimals: int) -> str:
    return MISSING if v is None or not np.isfinite(v) else f"{v:.{decimals}f}"


def _count(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def family_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (run family, set): each quantity averaged over the folds that have an ensemble."""
    f = frame[frame["n_ids"] > 0]
    if f.empty:
        return f
    means = ["ens_rmse", "ens_mae", "member_rmse", "member_mae", "spearman", "miscal_area"]
    g = f.groupby([*FAMILY, "set"], sort=False, dropna=False)
    out = g[means].mean()
    out["members"] = g["n_members"].agg(_count)
    out["folds"], out["n_ids"], out["n_dropped"] = g["fold"].nunique(), g["n_ids"].sum(), g["n_dropped"].sum()
    return out.reset_index()


def _sort_key(r: Any) -> tuple:
    opts = split_variant(r.variant)
    return (r.dataset, _split_sort_key(r.split, r.property), r.property, r.model, r.preset, r.train_fraction,
            opts.context, r.stand_in, strategy_rank(r.strategy), r.strategy, opts.params + opts.aux,
            _role(r.split, r.set), r.set)


def ensemble_table(frame: pd.DataFrame, cards: list[Card]) -> str | None:
    """Markdown: per dataset and split, each seed ensemble's error, spread-error rank correlation, calibration."""
    fam = family_frame(frame)
    if fam.empty:
        return None
    dec, body, last = qm9_decimals(cards), [], None
    for r in sorted(fam.itertuples(), key=_sort_key):
        opts, metric = split_variant(r.variant), headline_metric(r.dataset)
        d = _decimals(dec, r.dataset, r.property)
        head = (r.dataset, r.split, r.property)
        cols = ([r.dataset, _split_label(r.dataset, r.split), r.property or MISSING] if head != last
                else ["", "", ""])
        last = head
        ids = f"{r.n_ids} ids" + (f" ({r.n_dropped} dropped)" if r.n_dropped else "")
        body.append([*cols, setup_label(r.model, r.preset, opts.context, r.stand_in, r.train_fraction),
                     _options_label(r.strategy, opts.params + opts.aux), r.members,
                     f"{_role(r.split, r.set)} ({r.set})", metric.upper(), _fmt(getattr(r, f"ens_{metric}"), d),
                     _fmt(getattr(r, f"member_{metric}"), d), _fmt(r.spearman, 2), _fmt(r.miscal_area, 3),
                     f"{r.folds} fold{'s' if r.folds != 1 else ''}, {ids}"])
    return _md(["Dataset", "Split", "Property", "Setup", "Strategy", "Members", "Set", "Metric", "Ensemble",
                "Mean member", "Spearman(abs. error, spread)", "Miscal. area", "Coverage"], body)
