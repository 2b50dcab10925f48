"""Leaderboard figures (PNG, matplotlib's Agg canvas; no pyplot state, safe in any process).

- ``fold_errors_<dataset>.png``: per-fold test error of each measured run, one panel per split
  (like the paper's Figs. 6-8).
- ``id_vs_ood_<source>.png``: ID and OOD improvement over Scratch per QM9 property for each
  strategy (like Fig. 2(a-c)); from the reported Table 3 numbers and from measured runs.
- ``data_efficiency_<dataset>[_<property>].png``: error vs training-set size (like Fig. 3(a-b)),
  drawn only when records with several training fractions exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import STRATEGY_NAMES, STRATEGY_ORDER, measured_label, run_sort_key
from .baselines import (
    MATBENCH_PAPER_NAMES,
    QM9,
    QM9_PROPERTIES,
    SPLIT_TO_METHOD,
    Card,
    card_for_run,
)
from .tables import QM9_HEADERS, split_row_label

DPI = 110


@dataclass
class Figure:
    path: Path
    caption: str


def _new_figure(ncols: int, nrows: int, w: float = 4.2, h: float = 3.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(w * ncols, h * nrows), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not fig.legends:
        fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=DPI, metadata={"Software": None})
    tmp.replace(path)
    return path


def _figure_legend(fig, axes) -> None:
    """One legend for all panels, below them (labels de-duplicated)."""
    seen: dict[str, object] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, h)
    if seen:
        width_pt = fig.get_figwidth() * 72
        longest = max(len(label) for label in seen)
        ncol = max(1, min(len(seen), int(width_pt // (longest * 4.2 + 40))))
        fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=ncol, fontsize=7, frameon=False)
        nrows = -(-len(seen) // ncol)
        bottom = (0.25 + 0.16 * nrows) / fig.get_figheight()
        fig.tight_layout(rect=(0, bottom, 1, 0.95))


def _plain_log_ticks(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:.3g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(fmt)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _fold_key(f: str):
    return (0, int(f), "") if str(f).isdigit() else (1, 0, str(f))


def _metric_for(dataset: str) -> str:
    return "rmse" if dataset == QM9 else "mae"


# ---------------------------------------------------------------------------------- fold errors


def fold_error_figures(frame: pd.DataFrame, summary: pd.DataFrame, cards: list[Card], out: Path) -> list[Figure]:
    """Per-fold test errors of each measured run, per dataset, one panel per multi-fold split."""
    figs: list[Figure] = []
    if frame.empty:
        return figs
    full = frame[frame["train_fraction"] == 1.0]
    for dataset, dfr in full.groupby("dataset"):
        test_set = "test" if (dfr["set"] == "test").any() else "ood_test"
        dfr = dfr[dfr["set"] == test_set]
        multi = [s for s, g in dfr.groupby("split") if g["fold"].nunique() > 1 or s in SPLIT_TO_METHOD]
        if not multi:
            continue
        multi.sort(key=lambda s: (split_row_label(s)[0], split_row_label(s)[1]))
        metric = _metric_for(dataset)
        ncols = min(3, len(multi))
        nrows = -(-len(multi) // ncols)
        fig, axes = _new_figure(ncols, nrows)
        for ax in axes.flat[len(multi):]:
            ax.set_visible(False)
        for ax, split in zip(axes.flat, multi, strict=False):
            g = dfr[dfr["split"] == split]
            runs = sorted(g.groupby(["model", "strategy", "preset", "stand_in"]).groups, key=lambda k: run_sort_key(*k))
            partial: list[str] = []
            for k, run in enumerate(runs):
                model, strategy, preset, stand_in = run
                r = g[(g["model"] == model) & (g["strategy"] == strategy) & (g["preset"] == preset)
                      & (g["stand_in"] == stand_in)]
                per_fold = r.groupby("fold")[metric].mean()
                folds = sorted(per_fold.index, key=_fold_key)
                x = np.arange(len(folds))
                label = measured_label(model, strategy, preset, stand_in, cards)
                cell = _cell(summary, dataset, split, run, test_set, metric)
                if cell is not None and not cell.complete:
                    partial.append(f"{label}: partial {cell.coverage()}")
                width = 0.8 / max(1, len(runs))
                bars = ax.bar(x + (k - (len(runs) - 1) / 2) * width, per_fold.loc[folds].to_numpy(), width=width,
                              label=label, alpha=0.85)
                if cell is not None and cell.complete and cell.mean is not None:
                    ax.axhline(cell.mean, color=bars.patches[0].get_facecolor(), ls="--", lw=1)
                card = card_for_run(cards, model, strategy)
                method = SPLIT_TO_METHOD.get(split)
                if card and method and card.matbench(dataset, method):
                    ax.axhline(float(card.matbench(dataset, method)), color=bars.patches[0].get_facecolor(),
                               ls=":", lw=1.5, label=f"{card.name}† reported mean (paper's model)")
                if len(folds) <= 10:
                    ax.set_xticks(x, [str(f) for f in folds])
            name = MATBENCH_PAPER_NAMES.get(dataset, dataset)
            ax.set_title(f"{name}: {split_row_label(split)[1]}", fontsize=9)
            ax.set_xlabel("fold")
            ax.set_ylabel(f"{test_set} {metric.upper()}")
            if partial:
                ax.text(0.01, 0.99, "\n".join(partial), transform=ax.transAxes, va="top", fontsize=6,
                        color="0.25", bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        _figure_legend(fig, axes)
        fig.suptitle(f"Per-fold {metric.upper()} on {dataset} (dashed: measured mean over folds; dotted: "
                     "reported mean)", fontsize=10)
        path = _save(fig, out / f"fold_errors_{_slug(dataset)}.png")
        figs.append(Figure(path, f"Per-fold {metric.upper()} on {dataset}, per split method (cf. paper Figs. 6-8)"))
    return figs


def _cell(summary: pd.DataFrame, dataset: str, split: str, run: tuple, set_name: str, metric: str):
    if summary.empty:
        return None
    model, strategy, preset, stand_in = run
    m = ((summary["dataset"] == dataset) & (summary["split"] == split) & (summary["model"] == model)
         & (summary["strategy"] == strategy) & (summary["preset"] == preset) & (summary["stand_in"] == stand_in)
         & (summary["set"] == set_name) & (summary["metric"] == metric) & (summary["train_fraction"] == 1.0))
    hits = summary[m]
    return hits.iloc[0]["cell"] if len(hits) else None


# ------------------------------------------------------------------------------------ ID vs OOD


def _improvement_figure(values: dict[str, dict[str, tuple[float, float]]], baseline: str, title: str,
                        path: Path) -> Path | None:
    """values: strategy -> property -> (id error, ood error). Bars: relative improvement over
    ``baseline`` in % (positive = lower error), ID and OOD side by side, one panel per strategy."""
    base = values.get(baseline, {})
    fig2_order = {"ft": 0, "lp": 1, "mft": 2}  # panel order of the paper's Fig. 2(a-c)
    others = [s for s in sorted(values, key=lambda s: (fig2_order.get(s, 9), STRATEGY_ORDER.get(s, 99), s))
              if s != baseline]
    others = [s for s in others if any(p in base for p in values[s])]
    if not base or not others:
        return None
    fig, axes = _new_figure(len(others), 1, w=4.6)
    for ax, strat in zip(axes.flat, others, strict=True):
        props = [p for p in QM9_PROPERTIES if p in values[strat] and p in base]
        ids = [100 * (base[p][0] - values[strat][p][0]) / base[p][0] for p in props]
        oods = [100 * (base[p][1] - values[strat][p][1]) / base[p][1] for p in props]
        x = np.arange(len(props))
        ax.bar(x - 0.2, ids, 0.4, label=f"ID (mean {np.mean(ids):.1f}%)", color="#4c72b0")
        ax.bar(x + 0.2, oods, 0.4, label=f"OOD (mean {np.mean(oods):.1f}%)", color="#dd8452")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(x, [QM9_HEADERS[p] for p in props], fontsize=8)
        ax.set_ylabel(f"RMSE improvement over {STRATEGY_NAMES.get(baseline, baseline)} (%)")
        ax.set_title(STRATEGY_NAMES.get(strat, strat))
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _ratio_figure(values: dict[str, dict[str, tuple[float, float]]], title: str, path: Path) -> Path | None:
    """No Scratch run to compare with: OOD/ID RMSE ratio per property and strategy."""
    strategies = sorted(values, key=lambda s: STRATEGY_ORDER.get(s, 99))
    props = [p for p in QM9_PROPERTIES if any(p in values[s] for s in strategies)]
    if not props:
        return None
    fig, axes = _new_figure(1, 1, w=6.5)
    ax = axes[0, 0]
    width = 0.8 / len(strategies)
    x = np.arange(len(props))
    for k, s in enumerate(strategies):
        ys = [values[s][p][1] / values[s][p][0] if p in values[s] and values[s][p][0] > 0 else np.nan for p in props]
        ax.bar(x + (k - (len(strategies) - 1) / 2) * width, ys, width, label=STRATEGY_NAMES.get(s, s))
    ax.axhline(1, color="k", lw=0.8)
    ax.set_xticks(x, [QM9_HEADERS[p] for p in props])
    ax.set_ylabel("OOD RMSE / ID RMSE")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def id_vs_ood_figures(cards: list[Card], summary: pd.DataFrame, out: Path) -> list[Figure]:
    figs: list[Figure] = []
    reported: dict[str, dict[str, tuple[float, float]]] = {}
    for c in cards:
        if c.model == "dpa3" and c.strategy and c.has_qm9:
            reported[c.strategy] = {p: (float(e["id"]), float(e["ood"])) for p in QM9_PROPERTIES if (e := c.qm9(p))}
    p = _improvement_figure(reported, "scratch", "Reported (MFT paper Table 3†, DPA3): ID vs OOD improvement over "
                            "Scratch, computed from the printed (rounded) RMSEs", out / "id_vs_ood_reported.png")
    if p:
        figs.append(Figure(p, "ID vs OOD RMSE improvement over Scratch per strategy, from the reported Table 3 "
                              "numbers† (cf. paper Fig. 2(a-c))"))
    if summary.empty:
        return figs
    m = ((summary["dataset"] == QM9) & summary["split"].str.startswith("boom-") & (summary["metric"] == "rmse")
         & summary["set"].isin(["id_test", "ood_test"]) & (summary["train_fraction"] == 1.0))
    families: dict[tuple, dict[str, dict[str, dict[str, float]]]] = {}
    for r in summary[m].itertuples():
        if not r.cell.complete or r.cell.mean is None:
            continue
        prop = r.split.removeprefix("boom-")
        families.setdefault((r.model, r.preset, r.stand_in), {}).setdefault(r.strategy, {}).setdefault(
            prop, {})[r.set] = r.cell.mean
    for (model, preset, stand_in), by_strat in sorted(families.items(), key=lambda kv: str(kv[0])):
        values = {s: {p: (v["id_test"], v["ood_test"]) for p, v in props.items() if {"id_test", "ood_test"} <= set(v)}
                  for s, props in by_strat.items()}
        values = {s: v for s, v in values.items() if v}
        if not values:
            continue
        label = measured_label(model, "*", preset, stand_in, cards).replace("-*", "")
        stem = f"id_vs_ood_{_slug(model)}_{_slug(preset or 'unknown')}" + ("_stand-in" if stand_in else "")
        path = out / f"{stem}.png"
        if "scratch" in values:
            p = _improvement_figure(values, "scratch", f"{label}: ID vs OOD improvement over Scratch", path)
            caption = f"{label}: ID vs OOD RMSE improvement over Scratch per strategy (cf. paper Fig. 2(a-c))"
        else:
            p = _ratio_figure(values, f"{label}: OOD/ID RMSE ratio (no Scratch run to compare with)", path)
            caption = f"{label}: OOD/ID RMSE ratio per strategy (no Scratch run yet)"
        if p:
            figs.append(Figure(p, caption))
    return figs


# ------------------------------------------------------------------------------ data efficiency


def data_efficiency_figures(frame: pd.DataFrame, cards: list[Card], out: Path) -> list[Figure]:
    figs: list[Figure] = []
    if frame.empty:
        return figs
    for (dataset, prop_key), g in frame.groupby(["dataset", "property"]):
        g = g[g["set"] != "val"]
        fam_cols = ["split", "model", "strategy", "preset", "stand_in"]
        if not any(sub["train_fraction"].nunique() > 1 for _, sub in g.groupby(fam_cols)):
            continue
        metric = _metric_for(dataset)
        panels = sorted({(s, t) for s, t in zip(g["split"], g["set"], strict=True)},
                        key=lambda st: (split_row_label(st[0])[0], st[0], st[1] != "id_test"))
        ncols = min(3, len(panels))
        nrows = -(-len(panels) // ncols)
        fig, axes = _new_figure(ncols, nrows)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, (split, set_name) in zip(axes.flat, panels, strict=False):
            sub = g[(g["split"] == split) & (g["set"] == set_name)]
            for run, r in sorted(sub.groupby(["model", "strategy", "preset", "stand_in"]),
                                 key=lambda kv: run_sort_key(*kv[0])):
                pts = []
                for frac, rf in r.groupby("train_fraction"):
                    x = rf["n_train"].dropna().astype(float).mean() if rf["n_train"].notna().any() else frac
                    per_seed = rf.groupby("seed")[metric].mean()
                    pts.append((x, per_seed.mean(), per_seed.std(ddof=0) if len(per_seed) > 1 else 0.0))
                pts.sort()
                xs, ys, es = (np.array(v, dtype=float) for v in zip(*pts, strict=True))
                ax.errorbar(xs, ys, yerr=es, marker="o", ms=4, capsize=2, label=measured_label(*run, cards=cards))
            ax.set_xscale("log")
            ax.set_yscale("log")
            _plain_log_ticks(ax)
            uses_n = sub["n_train"].notna().any()
            ax.set_xlabel("training-set size" if uses_n else "training fraction")
            ax.set_ylabel(f"{set_name} {metric.upper()}")
            ax.set_title(f"{split}: {set_name}", fontsize=9)
        _figure_legend(fig, axes)
        name = MATBENCH_PAPER_NAMES.get(dataset, dataset) + (f" {prop_key}" if dataset == QM9 and prop_key else "")
        fig.suptitle(f"Data efficiency: {name} (mean over folds and seeds; bars: std over seeds)", fontsize=10)
        stem = f"data_efficiency_{_slug(dataset)}" + (f"_{_slug(prop_key)}" if dataset == QM9 and prop_key else "")
        path = _save(fig, out / f"{stem}.png")
        figs.append(Figure(path, f"Data efficiency on {name}: error vs training-set size (cf. paper Fig. 3(a-b))"))
    return figs
