"""Leaderboard figures (PNG, matplotlib's Agg canvas; no pyplot state, safe in any process).

- ``measured_id_ood_<dataset>_<split>_<property>_tf<fraction>.png``: measured ID and OOD test error
  of every run family of one (dataset, split, property, training fraction) with both, side by side,
  their OOD/ID ratio above each pair: the measured numbers at any training fraction, even a single one.
- ``fold_errors_<dataset>.png``: per-fold test error of each measured run, one panel per split
  (like the paper's Figs. 6-8).
- ``id_vs_ood_reported_<model>.png`` / ``id_vs_ood_<model>_<preset>.png``: ID and OOD
  improvement over the reference strategy (the registry's, the paper's Scratch) per QM9 property
  for each other strategy (like Fig. 2(a-c)), from the reported Table 3 numbers of each model with
  cards for several strategies, and from measured runs; a measured model with no other strategy to
  compare gets its OOD/ID ratio per property instead.
- ``data_efficiency_<dataset>[_<property>].png``: error vs training-set size (like Fig. 3(a-b)),
  drawn only when records with several training fractions exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import (
    RUN,
    Cell,
    Run,
    has_several_targets,
    headline_metric,
    measured_tags,
    model_label,
    reference_strategy,
    run_name,
    runs_sorted,
    strategy_label,
    strategy_rank,
)
from .baselines import (
    MATBENCH_PAPER_NAMES,
    MATBENCH_UNITS,
    QM9,
    QM9_PROPERTIES,
    QM9_UNITS,
    SPLIT_TO_METHOD,
    Card,
    card_for_run,
)
from .tables import MISSING, QM9_HEADERS, _main_metric, split_row_label, split_sort_key

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


def _ticks_at(axis, values: list[float]) -> None:
    """Label a log axis at the measured points only (training-set sizes): labelled minor ticks
    between them overlap."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    axis.set_major_locator(FixedLocator(values))
    axis.set_minor_formatter(NullFormatter())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _fold_key(f: str):
    return (0, int(f), "") if str(f).isdigit() else (1, 0, str(f))


# ---------------------------------------------------------------------------------- fold errors


@dataclass
class FoldPanel:
    """One panel of a per-fold figure: every measured run's mean error per fold on one split."""

    dataset: str
    split: str
    test_set: str
    metric: str
    runs: list[tuple[Run, pd.Series]]  # (run, fold -> mean over seeds), runs in table order


def fold_error_panels(frame: pd.DataFrame) -> dict[str, list[FoldPanel]]:
    """Per dataset, the panels of its per-fold figure: full-training-set runs of every model
    (DPA3 strategies and the reference baselines alike) on each multi-fold split (and on every
    Table 4 split, even one with a single fold so far)."""
    out: dict[str, list[FoldPanel]] = {}
    if frame.empty:
        return out
    full = frame[frame["train_fraction"] == 1.0]
    for dataset, dfr in full.groupby("dataset"):
        test_set = "test" if (dfr["set"] == "test").any() else "ood_test"
        dfr = dfr[dfr["set"] == test_set]
        multi = [s for s, g in dfr.groupby("split") if g["fold"].nunique() > 1 or s in SPLIT_TO_METHOD]
        multi.sort(key=split_sort_key)
        metric = headline_metric(dataset)
        panels = []
        for split in multi:
            g = dfr[dfr["split"] == split]
            runs = []
            for run in runs_sorted(g.groupby(RUN).groups):
                r = g[np.logical_and.reduce([g[c] == v for c, v in zip(RUN, run, strict=True)])]
                per_fold = r.groupby("fold")[metric].mean()
                runs.append((run, per_fold.loc[sorted(per_fold.index, key=_fold_key)]))
            panels.append(FoldPanel(str(dataset), split, test_set, metric, runs))
        if panels:
            out[str(dataset)] = panels
    return out


def fold_error_figures(frame: pd.DataFrame, summary: pd.DataFrame, cards: list[Card], out: Path) -> list[Figure]:
    """Per-fold test errors of every measured run, per dataset, one panel per multi-fold split."""
    figs: list[Figure] = []
    for dataset, panels in fold_error_panels(frame).items():
        metric = panels[0].metric
        ncols = min(3, len(panels))
        nrows = -(-len(panels) // ncols)
        fig, axes = _new_figure(ncols, nrows)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, panel in zip(axes.flat, panels, strict=False):
            split, runs = panel.split, panel.runs
            partial: list[str] = []
            for k, (run, per_fold) in enumerate(runs):
                folds = list(per_fold.index)
                x = np.arange(len(folds))
                label = run.label(cards)
                cell = _cell(summary, dataset, split, run, panel.test_set, metric)
                if cell is not None and not cell.complete:
                    partial.append(f"{label}: partial {cell.coverage()}")
                width = 0.8 / max(1, len(runs))
                bars = ax.bar(x + (k - (len(runs) - 1) / 2) * width, per_fold.to_numpy(), width=width,
                              label=label, alpha=0.85)
                if cell is not None and cell.complete and cell.mean is not None:
                    ax.axhline(cell.mean, color=bars.patches[0].get_facecolor(), ls="--", lw=1)
                card = card_for_run(cards, run.model, run.strategy)
                method = SPLIT_TO_METHOD.get(split)
                if card and method and card.matbench(dataset, method):
                    ax.axhline(float(card.matbench(dataset, method)), color=bars.patches[0].get_facecolor(),
                               ls=":", lw=1.5, label=f"{card.name}† reported mean (paper's model)")
                if len(folds) <= 10:
                    ax.set_xticks(x, [str(f) for f in folds])
            name = MATBENCH_PAPER_NAMES.get(dataset, dataset)
            ax.set_title(f"{name}: {split_row_label(split)[1]}", fontsize=9)
            ax.set_xlabel("fold")
            ax.set_ylabel(f"{panel.test_set} {metric.upper()}")
            if partial:
                ax.text(0.01, 0.99, "\n".join(partial), transform=ax.transAxes, va="top", fontsize=6,
                        color="0.25", bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        _figure_legend(fig, axes)
        fig.suptitle(f"Per-fold {metric.upper()} on {dataset} (dashed: measured mean over folds; dotted: "
                     "reported mean)", fontsize=10)
        path = _save(fig, out / f"fold_errors_{_slug(dataset)}.png")
        figs.append(Figure(path, f"Per-fold {metric.upper()} on {dataset}, per split method, every measured model "
                                 "(cf. paper Figs. 6-8)"))
    return figs


def _cell(summary: pd.DataFrame, dataset: str, split: str, run: Run, set_name: str, metric: str):
    if summary.empty:
        return None
    m = ((summary["dataset"] == dataset) & (summary["split"] == split) & (summary["set"] == set_name)
         & (summary["metric"] == metric) & (summary["train_fraction"] == 1.0))
    for c, v in zip(RUN, run, strict=True):
        m &= summary[c] == v
    hits = summary[m]
    return hits.iloc[0]["cell"] if len(hits) else None


# ------------------------------------------------------------------------------------ ID vs OOD


def _strategy_key(s: str) -> tuple:
    return (strategy_rank(s), s)


def _improvement_figure(values: dict[str, dict[str, tuple[float, float]]], baseline: str, title: str,
                        path: Path) -> Path | None:
    """values: strategy -> property -> (id error, ood error). Bars: relative improvement over
    ``baseline`` in % (positive = lower error), ID and OOD side by side, one panel per strategy
    (in registered order)."""
    base = values.get(baseline, {})
    others = [s for s in sorted(values, key=_strategy_key) if s != baseline]
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
        ax.set_ylabel(f"RMSE improvement over {strategy_label(baseline)} (%)")
        ax.set_title(strategy_label(strat))
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _ratio_figure(values: dict[str, dict[str, tuple[float, float]]], title: str, path: Path) -> Path | None:
    """No reference-strategy run to compare with: OOD/ID RMSE ratio per property and strategy."""
    strategies = sorted(values, key=_strategy_key)
    props = [p for p in QM9_PROPERTIES if any(p in values[s] for s in strategies)]
    if not props:
        return None
    fig, axes = _new_figure(1, 1, w=6.5)
    ax = axes[0, 0]
    width = 0.8 / len(strategies)
    x = np.arange(len(props))
    for k, s in enumerate(strategies):
        ys = [values[s][p][1] / values[s][p][0] if p in values[s] and values[s][p][0] > 0 else np.nan for p in props]
        ax.bar(x + (k - (len(strategies) - 1) / 2) * width, ys, width, label=strategy_label(s))
    ax.axhline(1, color="k", lw=0.8)
    ax.set_xticks(x, [QM9_HEADERS[p] for p in props])
    ax.set_ylabel("OOD RMSE / ID RMSE")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def id_vs_ood_figures(cards: list[Card], summary: pd.DataFrame, out: Path) -> list[Figure]:
    figs: list[Figure] = []
    ref = reference_strategy()
    ref_label = strategy_label(ref)
    # Reported: every model whose runnable cards print QM9 numbers for the reference strategy and another.
    reported: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for c in cards:
        if c.model and c.strategy and c.has_qm9:
            reported.setdefault(c.model, {})[c.strategy] = {
                p: (float(e["id"]), float(e["ood"])) for p in QM9_PROPERTIES if (e := c.qm9(p))}
    for model, values in sorted(reported.items()):
        label = model_label(model)
        p = _improvement_figure(values, ref, f"Reported (MFT paper Table 3†, {label}): ID vs OOD improvement over "
                                f"{ref_label}, computed from the printed (rounded) RMSEs",
                                out / f"id_vs_ood_reported_{_slug(model)}.png")
        if p:
            figs.append(Figure(p, f"{label}: ID vs OOD RMSE improvement over {ref_label} per strategy, from the "
                                  "reported Table 3 numbers† (cf. paper Fig. 2(a-c))"))
    if summary.empty:
        return figs
    m = ((summary["dataset"] == QM9) & summary["split"].str.startswith("boom-") & (summary["metric"] == "rmse")
         & summary["set"].isin(["id_test", "ood_test"]) & (summary["train_fraction"] == 1.0))
    families: dict[tuple, dict[str, dict[str, dict[str, float]]]] = {}
    for r in summary[m].itertuples():
        if not r.cell.complete or r.cell.mean is None:
            continue
        prop = r.split.removeprefix("boom-")
        families.setdefault((r.model, r.preset, r.variant, r.stand_in), {}).setdefault(r.strategy, {}).setdefault(
            prop, {})[r.set] = r.cell.mean
    for (model, preset, variant, stand_in), by_strat in sorted(families.items(), key=lambda kv: str(kv[0])):
        values = {s: {p: (v["id_test"], v["ood_test"]) for p, v in props.items() if {"id_test", "ood_test"} <= set(v)}
                  for s, props in by_strat.items()}
        values = {s: v for s, v in values.items() if v}
        if not values:
            continue
        label = Run(model, "*", preset, variant, stand_in).label(cards).replace("-*", "")
        stem = (f"id_vs_ood_{_slug(model)}_{_slug(preset or 'unknown')}"
                + (f"_{_slug(variant)}" if variant and variant != preset else "") + ("_stand-in" if stand_in else ""))
        path = out / f"{stem}.png"
        p = None
        if ref in values and len(values) > 1:
            p = _improvement_figure(values, ref, f"{label}: ID vs OOD improvement over {ref_label}", path)
            caption = f"{label}: ID vs OOD RMSE improvement over {ref_label} per strategy (cf. paper Fig. 2(a-c))"
        if p is None:
            note = "" if ref in values else f" (no {ref_label} run to compare with)"
            p = _ratio_figure(values, f"{label}: OOD/ID RMSE ratio{note}", path)
            caption = f"{label}: OOD/ID RMSE ratio per property{note}"
        if p:
            figs.append(Figure(p, caption))
    return figs


# --------------------------------------------------------------------------- measured ID vs OOD

MAX_ID_OOD_RUNS = 12  # pairs of bars per figure; more would be unreadable
ID_OOD_SETS = ("id_test", "ood_test")
ID_OOD_GROUP = ["dataset", "split", "property", "train_fraction"]


@dataclass
class IdOodGroup:
    """Measured ID and OOD cells of the runs of one (dataset, split, property, training fraction)."""

    dataset: str
    split: str
    prop: str
    train_fraction: float
    metric: str
    runs: list[tuple[Run, Cell, Cell]]  # (run, ID cell, OOD cell) with numbers, in table order
    n_runs: int                         # runs with both numbers, before keeping the first MAX_ID_OOD_RUNS
    n_partial: int = 0                  # runs with an ID and an OOD cell, one of them without a number

    def name(self) -> str:
        """``qm9 boom-gap (gap), train fraction 0.02``: the group as captions name it."""
        prop = f" ({self.prop})" if self.prop else ""
        frac = "full training set" if self.train_fraction == 1.0 else f"train fraction {self.train_fraction:g}"
        return f"{self.dataset} {self.split}{prop}, {frac}"

    def stem(self) -> str:
        """File name (no suffix), unique per group."""
        parts = [_slug(p) for p in (self.dataset, self.split, self.prop) if p]
        return "_".join(["measured_id_ood", *parts, f"tf{_slug(f'{self.train_fraction:g}')}"])


def _has_number(cell: Cell | None) -> bool:
    return cell is not None and cell.complete and cell.mean is not None


def _id_ood_group(key: tuple, g: pd.DataFrame) -> IdOodGroup | None:
    """One group's runs that have both an ID and an OOD number (None when no run has)."""
    runs, partial = [], 0
    for run_key, r in g.groupby(RUN, sort=False, dropna=False):
        cells = {row.set: row.cell for row in r.itertuples()}
        if all(_has_number(cells.get(s)) for s in ID_OOD_SETS):
            runs.append((Run(*run_key), cells["id_test"], cells["ood_test"]))
        elif set(ID_OOD_SETS) <= set(cells):
            partial += 1
    if not runs:
        return None
    runs.sort(key=lambda t: t[0].sort_key())
    dataset, split, prop, frac = key
    return IdOodGroup(str(dataset), str(split), str(prop), float(frac), headline_metric(str(dataset)),
                      runs[:MAX_ID_OOD_RUNS], len(runs), partial)


def measured_id_ood_groups(summary: pd.DataFrame) -> list[IdOodGroup]:
    """Every group with a measured ID and OOD number on the headline metric, in table order."""
    if summary.empty:
        return []
    main = summary[_main_metric(summary) & summary["set"].isin(ID_OOD_SETS)]
    groups = [_id_ood_group(key, g) for key, g in main.groupby(ID_OOD_GROUP, sort=False, dropna=False)]
    return sorted((g for g in groups if g), key=lambda g: (g.dataset, split_sort_key(g.split, g.prop), g.prop,
                                                         g.split, g.train_fraction))


def _pair_labels(runs: list[Run], cards: list[Card]) -> list[str]:
    """Short tick labels: strategy (or model-strategy when models differ), then the run's tags."""
    several_models = len({r.model for r in runs}) > 1
    labels = []
    for r in runs:
        name = run_name(r.model, r.strategy, cards) if several_models else strategy_label(r.strategy)
        tags = [t for t in measured_tags(r.model, r.preset, r.stand_in, 1.0, r.variant) if t != "measured"]
        labels.append("\n".join([name, *tags]))
    return labels if len(set(labels)) == len(labels) else [r.label(cards) for r in runs]


def _unit(dataset: str, prop: str) -> str:
    unit = QM9_UNITS.get(prop) if dataset == QM9 else MATBENCH_UNITS.get(dataset)
    return f" [{unit}]" if unit else ""


def _draw_id_ood(ax, group: IdOodGroup, labels: list[str]) -> None:
    """ID and OOD bars per run (error bars: standard error, 2+ seeds), OOD/ID ratio above each pair."""
    x = np.arange(len(group.runs))
    for k, dx, role, color in ((1, -0.2, "ID test", "#4c72b0"), (2, 0.2, "OOD test", "#dd8452")):
        cells = [t[k] for t in group.runs]
        se = [np.nan if c.se is None else c.se for c in cells]
        ax.bar(x + dx, [c.mean for c in cells], 0.4, label=role, color=color,
               yerr=se if not np.all(np.isnan(se)) else None, capsize=3, error_kw={"lw": 1})
    for xi, (_, a, b) in zip(x, group.runs, strict=True):
        top = max(a.mean + (a.se or 0.0), b.mean + (b.se or 0.0))
        ratio = f"{b.mean / a.mean:.2f}" if a.mean > 0 else MISSING
        ax.annotate(ratio, (xi, top), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                    fontsize=7)
    ax.set_ylim(0, 1.3 * max(max(a.mean + (a.se or 0.0), b.mean + (b.se or 0.0)) for _, a, b in group.runs))
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel(f"test {group.metric.upper()}{_unit(group.dataset, group.prop)}")
    ax.legend(fontsize=7, ncol=2, loc="upper left")  # above the bars and ratios: the top 30% is kept free


def measured_id_ood_figures(summary: pd.DataFrame, cards: list[Card], out: Path) -> list[Figure]:
    """Measured ID vs OOD error per group, at any training fraction: the measured gap, drawn."""
    figs: list[Figure] = []
    for group in measured_id_ood_groups(summary):
        fig, axes = _new_figure(1, 1, w=max(5.5, 0.9 * len(group.runs) + 1.5), h=3.8)
        _draw_id_ood(axes[0, 0], group, _pair_labels([t[0] for t in group.runs], cards))
        metric = group.metric.upper()
        fig.suptitle(f"Measured {metric}, {group.name()}\nmean over seeds, error bars: standard error (2+ seeds), "
                     "above each pair: OOD/ID", fontsize=8)
        path = _save(fig, out / f"{group.stem()}.png")
        notes = ["OOD/ID ratio above each pair"]
        if group.n_runs > len(group.runs):
            notes.append(f"the first {len(group.runs)} of {group.n_runs} runs, in table order")
        if group.n_partial:
            notes.append(f"{group.n_partial} run(s) with a partial cell not drawn")
        figs.append(Figure(path, f"Measured ID vs OOD {metric} on {group.name()} ({'; '.join(notes)})"))
    return figs


# ------------------------------------------------------------------------------ data efficiency


def data_efficiency_figures(frame: pd.DataFrame, cards: list[Card], out: Path) -> list[Figure]:
    figs: list[Figure] = []
    if frame.empty:
        return figs
    for (dataset, prop_key), g in frame.groupby(["dataset", "property"]):
        g = g[g["set"] != "val"]
        fam_cols = ["split", *RUN]
        if not any(sub["train_fraction"].nunique() > 1 for _, sub in g.groupby(fam_cols)):
            continue
        metric = headline_metric(dataset)
        panels = sorted({(s, t) for s, t in zip(g["split"], g["set"], strict=True)},
                        key=lambda st: (split_sort_key(st[0]), st[1] != "id_test", st[1]))
        ncols = min(3, len(panels))
        nrows = -(-len(panels) // ncols)
        fig, axes = _new_figure(ncols, nrows)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, (split, set_name) in zip(axes.flat, panels, strict=False):
            sub = g[(g["split"] == split) & (g["set"] == set_name)]
            xs_all: set[float] = set()
            for key, r in sorted(sub.groupby(RUN), key=lambda kv: Run(*kv[0]).sort_key()):
                pts = []
                for frac, rf in r.groupby("train_fraction"):
                    x = rf["n_train"].dropna().astype(float).mean() if rf["n_train"].notna().any() else frac
                    per_seed = rf.groupby("seed")[metric].mean()
                    # standard error over seeds (population std / sqrt(seeds)), as in the tables
                    se = per_seed.std(ddof=0) / np.sqrt(len(per_seed)) if len(per_seed) > 1 else 0.0
                    pts.append((x, per_seed.mean(), se))
                pts.sort()
                xs, ys, es = (np.array(v, dtype=float) for v in zip(*pts, strict=True))
                ax.errorbar(xs, ys, yerr=es, marker="o", ms=4, capsize=2, label=Run(*key).label(cards))
                xs_all.update(xs.tolist())
            ax.set_xscale("log")
            ax.set_yscale("log")
            _plain_log_ticks(ax)
            _ticks_at(ax.xaxis, sorted(xs_all))
            uses_n = sub["n_train"].notna().any()
            ax.set_xlabel("training-set size" if uses_n else "training fraction")
            ax.set_ylabel(f"{set_name} {metric.upper()}")
            ax.set_title(f"{split}: {set_name}", fontsize=9)
        _figure_legend(fig, axes)
        named = bool(prop_key) and has_several_targets(dataset)
        name = MATBENCH_PAPER_NAMES.get(dataset, dataset) + (f" {prop_key}" if named else "")
        fig.suptitle(f"Data efficiency: {name} (mean over folds and seeds; bars: standard error over seeds)",
                     fontsize=10)
        stem = f"data_efficiency_{_slug(dataset)}" + (f"_{_slug(prop_key)}" if named else "")
        path = _save(fig, out / f"{stem}.png")
        figs.append(Figure(path, f"Data efficiency on {name}: error vs training-set size (cf. paper Fig. 3(a-b))"))
    return figs


# ------------------------------------------------------------------------------------ ablations


def ablation_figures(summary: pd.DataFrame, out: Path, groups=None) -> list[Figure]:
    """One bar figure per ablation setup (like Fig. 3(c-e)): each row's Avg. ↑RMSE relative to the
    baseline MFT, ID and OOD bars side by side (rows without a number on either set are left out)."""
    from .compare import PANELS, ablation_layout

    figs: list[Figure] = []
    for g in ablation_layout(summary) if groups is None else groups:
        rows = [r for r in g.rows if any(r.increase.get(k) is not None for k in ("ID", "OOD"))]
        if not rows:
            continue
        fig, axes = _new_figure(1, 1, w=max(4.5, 1.5 * len(rows) + 1.5), h=3.6)
        ax = axes[0, 0]
        x = np.arange(len(rows))
        for dx, role, color in ((-0.2, "ID", "#4c72b0"), (0.2, "OOD", "#dd8452")):
            ys = [np.nan if r.increase.get(role) is None else r.increase[role] for r in rows]
            bars = ax.bar(x + dx, ys, 0.4, label=role, color=color)
            for b, r in zip(bars, rows, strict=True):
                if r.increase.get(role) is not None:
                    ax.annotate(f"{r.increase[role]:+.1f}%\n(n={len(r.over[role])})", (b.get_x() + 0.2, b.get_height()),
                                ha="center", va="bottom" if b.get_height() >= 0 else "top", fontsize=6)
        ax.axhline(0, color="k", lw=0.8)
        ax.margins(y=0.2)  # room for the value labels
        ax.set_xticks(x, [f"{PANELS[r.panel].split()[0]} {r.label}" for r in rows], fontsize=7, rotation=15,
                      ha="right")
        ax.set_ylabel(f"Avg. ↑RMSE vs {g.baseline} (%)")
        ax.legend(fontsize=7)
        ax.set_title(f"{g.dataset}, {g.label()}", fontsize=8)
        path = _save(fig, out / f"{g.stem}.png")
        figs.append(Figure(path, f"{g.dataset}, {g.label()}: Avg. ↑RMSE relative to {g.baseline}, ID and OOD "
                                 "(cf. paper Fig. 3(c-e))"))
    return figs
