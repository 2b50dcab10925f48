"""``build_leaderboard``: the pure reduce from result records + baseline cards to LEADERBOARD.md
and figures. Reads nothing but ``<results>/runs/**/record.json[.gz]``, ``baselines/*.yaml`` and
(for expected fold counts) split files; a corrupt record is reported once and skipped, never
fatal. The output is deterministic: no timestamps, every iteration sorted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import OodBenchError
from ..io_utils import atomic_write_bytes, require_writable_dir
from ..records import RecordProblem, load_records
from .aggregate import (
    Dropped,
    FoldCounter,
    dropped_structures,
    mixed_checkpoints,
    records_frame,
    restrict_folds,
    strategy_label,
    strategy_rank,
    summarize,
)
from .baselines import QM9, Card, load_cards, matbench_cards, qm9_cards
from .compare import RANDOM_SPLIT, Roles, ablation_layout, ablation_table, comparison_table, strategy_roles
from .ensembles import ensemble_frame, ensemble_table
from .figures import (
    Figure,
    ablation_figures,
    data_efficiency_figures,
    fold_error_figures,
    id_vs_ood_figures,
    measured_id_ood_figures,
)
from .tables import (
    MARK,
    MISSING,
    SPLIT_NOTES,
    matbench_table,
    measured_overview,
    other_results_table,
    qm9_gap_table,
    qm9_table,
)

log = logging.getLogger(__name__)

SOURCE = ("Zhang et al. 2025, *Multi-Task Fine-Tuning Enables Robust Out-of-Distribution Generalization in "
          "Atomistic Models*")
SE_RULE = ("population std over seeds / sqrt(number of seeds), the convention of the paper's bracketed "
           "values")


def problem_text(p: RecordProblem) -> str:
    """The problem without the file name the reader already sees beside it."""
    text = str(p.problem)
    prefix = f"{p.path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _log_skipped(p: RecordProblem) -> None:
    log.warning("skipped corrupt record %s: %s", p.path, problem_text(p))


def build_leaderboard(results_dir: str | Path | None = None, out_md: str | Path | None = None,
                      figures_dir: str | Path | None = None, *, splits_dir: str | Path | None = None,
                      baselines_dir: str | Path | None = None, figures: bool = True,
                      on_skip: Callable[[RecordProblem], None] | None = _log_skipped,
                      folds: list[str] | None = None) -> dict[str, Any]:
    """Reduce every valid record under ``results_dir`` (default: ``results_dir()``) and the baseline
    cards into ``out_md`` (default ``<results>/LEADERBOARD.md``) and PNG figures (default
    ``<results>/figures``). The output folders are checked before anything is computed; each
    skipped record is passed once to ``on_skip`` (default: a logged warning; None: silent).
    ``folds`` reduces over that fold subset only (a study that runs a fixed subset of a split's
    folds): see :func:`~.aggregate.restrict_folds`.

    Returns ``{"markdown": Path, "figures": [Path], "figures_dir": Path, "n_records": int,
    "skipped": [(Path, problem)], "n_cards": int}``.
    """
    from ..paths import results_dir as resolve_results

    results = resolve_results(results_dir)
    out_md = Path(out_md) if out_md else results / "LEADERBOARD.md"
    fig_dir = Path(figures_dir) if figures_dir else results / "figures"
    if out_md.is_dir():
        raise OodBenchError(f"leaderboard file {out_md} is a folder; give a file name (e.g. {out_md}/LEADERBOARD.md)")
    require_writable_dir(out_md.parent, "leaderboard folder")
    if figures:
        require_writable_dir(fig_dir, "figures folder")
    cards = load_cards(baselines_dir)
    records, problems = load_records(results, compact=True)
    if on_skip is not None:
        for p in problems:
            on_skip(p)
    subset = None
    if folds:
        records, left_out = restrict_folds(records, folds)
        subset = (folds, left_out)
    frame = records_frame(records)
    summary = summarize(frame, FoldCounter(splits_dir))
    figs: list[Figure] = []
    if figures:
        figs += measured_id_ood_figures(summary, cards, fig_dir)
        figs += id_vs_ood_figures(cards, summary, fig_dir)
        figs += fold_error_figures(frame, summary, cards, fig_dir)
        figs += data_efficiency_figures(frame, cards, fig_dir)
        figs += ablation_figures(summary, fig_dir)
    text = render_markdown(cards, summary, frame, figs, problems, out_md, results,
                           dropped=dropped_structures(records), ensembles=ensemble_frame(records), subset=subset)
    atomic_write_bytes(out_md, text.encode("utf-8"))
    return {
        "markdown": out_md,
        "figures": [f.path for f in figs],
        "figures_dir": fig_dir,
        "n_records": len(records),
        "skipped": [(p.path, problem_text(p)) for p in problems],
        "n_cards": len(cards),
    }


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def _footnotes(cards: list[Card], table: str) -> list[str]:
    lines = [f"{MARK} Reported: copied exactly as printed in {SOURCE}, {table}. References:", ""]
    for c in cards:
        model_ref = c.citation.split("; numbers from")[0]
        lines.append(f"- **{c.name}**: {model_ref}")
    # Notes that concern this table (a note naming another table is shown there), identical notes merged.
    other_tables = {t for c in cards for t in c.source_table} - {table}
    notes: dict[str, list[str]] = {}
    for c in cards:
        for n in c.notes:
            if not any(t in n for t in other_tables):
                notes.setdefault(n, []).append(c.name)
    if notes:
        lines += ["", "Notes on the printed numbers:", ""]
        lines += [f"- {', '.join(names)}: {n}" for n, names in notes.items()]
    return lines


def _counts(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def _dropped_lines(dropped: list[Dropped]) -> list[str]:
    """What the records dropped for lack of coordinates, per set, and how to avoid it."""
    if not dropped:
        return []
    lines = ["Structures dropped for lack of coordinates (the data source has none for them; every number "
             "above is on the rest):", ""]
    for d in dropped:
        parts = []
        for set_name, counts in d.counts.items():
            total = d.totals.get(set_name)
            parts.append(f"{set_name} {_counts(counts)}" + (f" of {_counts(total)}" if total else ""))
        frac = "" if d.train_fraction == 1.0 else f" (train fraction {d.train_fraction:g})"
        source = f"; data: {', '.join(d.sources)}" if d.sources else ""
        lines.append(f"- `{d.dataset}` `{d.split}`{frac}: {', '.join(parts)}{source}")
    if any(d.dataset == QM9 for d in dropped):
        from ..datasets.qm9 import TARBALL_ENV, TARBALL_NAME

        lines += ["", "QM9: `qm9pack` has no coordinates for the 3,054 molecules it leaves uncharacterised, and "
                      "BOOM splits (made on all 133,885) contain some of them. The original QM9 tarball includes them: "
                      f"set `{TARBALL_ENV}=/path/{TARBALL_NAME}` (or put it in `<data>/qm9/`) and rerun to evaluate "
                      "on every molecule of the split."]
    return [*lines, ""]


def _mixed_lines(frame: pd.DataFrame) -> list[str]:
    """A loud note (and a logged warning) for run families that average two pretrained models."""
    mixed = mixed_checkpoints(frame)
    if not mixed:
        return []
    for label, n in mixed:
        log.warning("%s mixes records from %d pretrained checkpoints", label, n)
    return ["**Warning: mixed checkpoints.** These run families hold records made with different pretrained "
            "checkpoints (by sha256), so their numbers average different models; rerun the older ones with "
            "`oodbench run ... --force` or keep them in separate `--results-dir` folders:", "",
            *[f"- {label}: {n} checkpoints" for label, n in mixed], ""]


def _measured_section(cards: list[Card], summary: pd.DataFrame, dropped: list[Dropped], n_records: int,
                      runs_rel: str) -> list[str]:
    L = ["## Measured here", ""]
    if not n_records:
        return [*L, f"No measured records under `{runs_rel}` yet (`oodbench run ...` or `oodbench quickstart` make "
                    "them); the tables below hold the reported numbers only.", ""]
    two, one = measured_overview(cards, summary)
    L += [f"Every measured run family under `{runs_rel}`, one row each, on the dataset's headline metric "
          f"(QM9: RMSE, MatBench: MAE). A value reads `mean (SE)`: the mean over seeds of each seed's mean over "
          f"folds and, with 2+ seeds, its standard error ({SE_RULE}). Full-data runs on the paper's splits also "
          "appear in the Table 3 / Table 4 layouts below; everything else under "
          "\"Other measured results\".",
          ""]
    if two:
        L += ["Splits with an in-distribution and an out-of-distribution test set (OOD/ID: ratio of the two "
              "errors, 1.00 = no generalization gap):", "", two, ""]
    if one:
        L += ["Splits with one test set (MatBench: each split method's test folds):", "", one, ""]
    return L + _dropped_lines(dropped)


def _measured_footnotes(cards: list[Card], summary: pd.DataFrame) -> list[str]:
    """References of the models behind measured rows that have a card (baselines/<card>.yaml)."""
    if summary.empty:
        return []
    keys = sorted({(r.model, r.strategy) for r in summary.itertuples()},
                  key=lambda k: (k[0], strategy_rank(k[1]), k[1]))
    seen, lines = set(), []
    for model, strategy in keys:
        for c in cards:
            if not c.reported_only and c.model == model and c.strategy == strategy and c.key not in seen:
                seen.add(c.key)
                lines.append(f"- **{c.name}** (`{model}`, {strategy}): {c.citation.split('; numbers from')[0]}")
    return ["Measured models: references.", "", *lines, ""] if lines else []


def _subset_note(subset: tuple[list[str], int] | None) -> list[str]:
    if subset is None:
        return []
    folds, left_out = subset
    return [f"**Fold subset**: folds {', '.join(folds)} only (`--folds {','.join(folds)}`; {left_out} record(s) of "
            "other folds left out). Every measured number is a mean over these folds, so their splits are named "
            "`<split> [folds ...]` and never fill the Table 3/4 columns, whose reported numbers average every fold.",
            ""]


def render_markdown(cards: list[Card], summary: pd.DataFrame, frame: pd.DataFrame, figs: list[Figure],
                    problems: list, out_md: Path, results: Path, dropped: list[Dropped] | None = None,
                    ensembles: pd.DataFrame | None = None, subset: tuple[list[str], int] | None = None) -> str:
    n_records = 0 if frame.empty else frame["path"].nunique()
    here = out_md.parent
    runs_rel = _rel(results / "runs", here)
    extra = _comparison_sections(cards, summary, figs, here, ensembles)
    L = _header(n_records, runs_rel, len(problems), len(cards), subset, extra)
    L += _measured_section(cards, summary, dropped or [], n_records, runs_rel)
    L += _mixed_lines(frame)
    L += _how_to_read()
    collapse = results / "analysis" / "collapse.md"
    if collapse.exists():
        L += [f"Representation-collapse analysis: [{_rel(collapse, here)}]({_rel(collapse, here)})", ""]
    L += _paper_layouts(cards, summary)
    for _, _, lines in extra:
        L += lines
    L += _figures_section(figs, frame, here)
    if problems:
        L += ["## Skipped records", "", f"{len(problems)} record file(s) could not be used and were skipped:", ""]
        L += [f"- `{_rel(p.path, here)}`: {problem_text(p)}" for p in problems]
        L.append("")
    return "\n".join(L).rstrip() + "\n"


def _header(n_records: int, runs_rel: str, n_problems: int, n_cards: int,
            subset: tuple[list[str], int] | None, extra: list[tuple[str, str, list[str]]]) -> list[str]:
    """Title, provenance line and table of contents."""
    extra_contents = "".join(f" · [{title}](#{anchor})" for title, anchor, _ in extra)
    return [
        "# oodbench leaderboard",
        "",
        f"Generated by `oodbench leaderboard` from {n_records} result record(s) under "
        f"`{runs_rel}` ({n_problems} skipped) and {n_cards} baseline cards in "
        "`baselines/`. Do not edit by hand: rerun the command.",
        "",
        *_subset_note(subset),
        "Contents: [Measured here](#measured-here) · [How to read this](#how-to-read-this) · "
        "[QM9 (Table 3 layout)](#qm9-boom-rmse-table-3-layout) · "
        "[QM9 OOD/ID gap](#qm9-oodid-gap-per-property) · [MatBench (Table 4 layout)](#matbench-mae-table-4-layout)"
        f"{extra_contents} · [Figures](#figures)",
        "",
    ]


def _how_to_read() -> list[str]:
    """The legend: reported vs measured, brackets, partial cells, row labels, marks, OOD/ID."""
    return [
        "## How to read this",
        "",
        f"- **Reported** numbers carry `{MARK}`: they are copied digit for digit from {SOURCE} (Table 3: QM9, "
        "Table 4: MatBench); each table's footnotes cite every model. **Measured** numbers are computed by "
        "oodbench from result records and say `measured`. The two are never merged into one cell or one row.",
        "- Brackets are **standard errors**, for reported and measured numbers alike. Reported: as printed (the "
        "paper's DPA3 rows: population std over 3 training runs / sqrt(3)). Measured: `mean (SE) [measured "
        f"<coverage>]`: the mean over seeds of each seed's mean over folds, its standard error over seeds "
        f"({SE_RULE}; shown with 2+ seeds), and how many folds/seeds it covers.",
        "- `partial 37/50 folds` means some expected folds (from the split file, else 50 for LOCO/Sparse*, 5 for "
        "random, 1 for BOOM) are not finished for some seed: no number is shown until the cell is complete.",
        "- Row labels: `(measured)` = the paper preset, or a model's only preset; `(tiny, measured)` = the small "
        "smoke-test preset, *not* the paper's model; other presets and variants are named the same way "
        "(`DPA3-frozen (rf, measured)`); `stand-in pretrained` = run with a stand-in for the pretrained "
        "DPA-3.1-3M checkpoint.",
        "- **Bold** = best, <u>underlined</u> = second best (lower error is better), per property and separately "
        "for the ID and OOD lines in the QM9 table, per row in the MatBench table. Rule: competition ranking on "
        "the values *as displayed*; ties share a rank and a tie for best leaves no second place (this reproduces "
        "the paper's own marks). Reported and complete measured cells are ranked together; partial cells are "
        "never ranked.",
        "- **OOD/ID** is the quantity this benchmark is about: the ratio of OOD to ID error (1.00 = no "
        "generalization gap). QM9: geometric mean over the 8 properties of RMSE(OOD test) / RMSE(ID test). "
        "MatBench: mean MAE over the five OOD split methods / MAE on the Random (ID) split.",
        "",
    ]


def _paper_layouts(cards: list[Card], summary: pd.DataFrame) -> list[str]:
    """Table 3 (QM9) and its OOD/ID gap, Table 4 (MatBench), their footnotes, and the measured cells
    that fit neither layout."""
    L = ["## QM9 BOOM, RMSE (Table 3 layout)", "",
         "Rows: model (x strategy) with an ID line (BOOM in-distribution test set) and an OOD line (BOOM "
         "property-extrapolation test set, split `boom-<property>`); reported rows first, then measured runs "
         "on the full training set. Units in the column headers.", "",
         qm9_table(cards, summary), ""]
    L += _footnotes(qm9_cards(cards), "Table 3") + [""]
    L += ["## QM9 OOD/ID gap per property", "",
          "RMSE(OOD) / RMSE(ID) per property; the last column is the geometric mean.", "",
          qm9_gap_table(cards, summary), ""]
    L += ["## MatBench MAE (Table 4 layout)", "",
          "Rows: split method x dataset; columns: reported models, then measured runs on the same splits. OOD "
          "rows: mean over the 50 folds; Random: mean over the 5 folds. " + SPLIT_NOTES["published"] + " Splits "
          "regenerated by oodbench (`LOCO`, `SparseX...` without the `omee2024-` prefix) are different splits: "
          "their results are listed under \"Other measured results\", never in these columns.", "",
          matbench_table(cards, summary), ""]
    L += _footnotes(matbench_cards(cards), "Table 4") + [""]
    L += _measured_footnotes(cards, summary)
    other = other_results_table(cards, summary)
    if other:
        L += ["## Other measured results", "",
              "Measured cells outside the two paper layouts: other splits (including the splits oodbench "
              "regenerates), other datasets, reduced training fractions. Same cell format as above.", "", other, ""]
    return L


def _figures_section(figs: list[Figure], frame: pd.DataFrame, here: Path) -> list[str]:
    L = ["## Figures", ""]
    if figs:
        for f in figs:
            rel = _rel(f.path, here)
            L += [f"- [{f.caption}]({rel})", "", f"  ![{f.caption}]({rel})", ""]
    else:
        L += ["None yet.", ""]
    return L + _missing_figure_notes(frame, figs)


Section = tuple[str, str, list[str]]


def _comparison_sections(cards: list[Card], summary: pd.DataFrame, figs: list[Figure],
                         here: Path, ensembles: pd.DataFrame | None = None) -> list[Section]:
    """(contents title, anchor, markdown lines) of the strategy comparison, seed ensemble and
    ablation sections; a section with nothing to show is left out."""
    roles = strategy_roles()
    sections = [
        _strategy_comparison_section(cards, summary, roles),
        _ensemble_section(cards, ensembles),
        _ablation_section(summary, figs, here, roles),
    ]
    return [s for s in sections if s is not None]


def _strategy_comparison_section(cards: list[Card], summary: pd.DataFrame, roles: Roles) -> Section | None:
    comparison = comparison_table(cards, summary, roles)
    if not comparison:
        return None
    ref = strategy_label(roles.reference)
    ft = strategy_label(roles.fine_tune) if roles.fine_tune else None
    vs = f"{ref} (the reference strategy)" + (f" and against {ft}" if ft else "")
    return ("Strategy comparison", "strategy-comparison-fig-2a-c-quantities", [
        "## Strategy comparison (Fig. 2(a-c) quantities)", "",
        "Every setup (dataset, split, model, preset, checkpoint, training fraction, other run options) with two "
        "or more strategies measured, one row per strategy (non-default options in its name), in registered "
        "order, on the dataset's headline metric (`mean (SE)`, as above). The change columns are the relative "
        f"change of the ID and of the OOD error against {vs}, in %: negative = lower error = better (the paper's "
        "Fig. 2(a-c) plots the same comparison as an improvement, positive = better). Splits with one test set "
        f"(MatBench): its error is the OOD error and the same run's error on the `{RANDOM_SPLIT}` split is the ID "
        "error (empty without one). Strategies that need no pretrained model are compared with the runs of "
        "every checkpoint. Only complete cells give numbers; `partial` cells give none.", "", comparison, ""])


def _ensemble_section(cards: list[Card], ensembles: pd.DataFrame | None) -> Section | None:
    ens = ensemble_table(ensembles, cards) if ensembles is not None else None
    if not ens:
        return None
    return ("Seed ensembles", "seed-ensembles", [
        "## Seed ensembles", "",
        "Derived from the records above, no retraining: the runs of a setup and strategy that differ only by "
        "seed (2+ seeds: the members) averaged per structure id (only ids every member predicted; others are "
        "counted as dropped), on each test set, on the dataset's headline metric. Ensemble: error of the mean "
        "prediction; Mean member: the members' mean error on the same ids. The members' spread (population std "
        "over seeds) is the uncertainty: Spearman(abs. error, spread) is the rank correlation of the "
        "ensemble's absolute error with it (zero-spread structures left out; higher = the spread ranks the "
        "errors), Miscal. area the miscalibration area of N(mean, spread) (Tran et al. 2020: mean |observed - "
        "expected| fraction inside the central intervals, 0 = calibrated, 0.5 = worst). Measured; with several "
        "folds, each value is the mean over the folds that have an ensemble.", "", ens, ""])


def _ablation_section(summary: pd.DataFrame, figs: list[Figure], here: Path, roles: Roles) -> Section | None:
    groups = ablation_layout(summary, roles)
    if not groups:
        return None
    mft = strategy_label(roles.multi_task) if roles.multi_task else ""
    ft = strategy_label(roles.fine_tune) if roles.fine_tune else MISSING
    names = {f.path.name: f for f in figs}
    links = [f"- [{names[f'{g.stem}.png'].caption}]({_rel(names[f'{g.stem}.png'].path, here)})"
             for g in groups if f"{g.stem}.png" in names]
    return ("Ablations", "ablations-fig-3c-e-layout", [
        "## Ablations (Fig. 3(c-e) layout)", "",
        f"Avg. ↑RMSE, as in the paper's Fig. 3(c-e): the mean, over the properties (QM9) or splits (MatBench) "
        f"that the run and the baseline {mft} both have complete, of (RMSE - RMSE of the baseline) / RMSE of the "
        f"baseline, in %, separately on the ID and OOD test sets (MatBench: ID = the `{RANDOM_SPLIT}` split, OOD "
        f"= the other splits); positive = worse than {mft}, `n` = how many properties/splits it averages over "
        f"(listed in the last column). Rows: (c) {ft} for reference, (d) each ablation (registered strategies "
        f"that use auxiliary data besides {mft} and say they are an ablation), (e) {mft} with another auxiliary "
        "branch or data set. Baseline: "
        f"the {mft} run with the auxiliary options most other runs of the setup used (none named: the "
        "checkpoint's default branch and data).", "", ablation_table(summary, roles, groups) or "", "",
        *([*links, ""] if links else [])])


def _missing_figure_notes(frame: pd.DataFrame, figs: list[Figure]) -> list[str]:
    """Why a figure kind is absent, stated against the records actually present."""
    names = [f.path.name for f in figs]
    if frame.empty:
        return ["Per-fold error distributions (cf. paper Figs. 6-8) and data-efficiency curves (Fig. 3(a-b)) "
                "appear here once measured records exist.", ""]
    notes = []
    if not any(n.startswith("fold_errors_") for n in names):
        notes.append("No per-fold error distributions (cf. paper Figs. 6-8): they are drawn for full-training-set "
                     "runs on splits with several folds (MatBench), and no measured record here is one.")
    if not any(n.startswith("data_efficiency_") for n in names):
        notes.append("No data-efficiency curves (cf. Fig. 3(a-b)): they need one run family at several training "
                     "fractions, and each family here has one.")
    return [" ".join(notes), ""] if notes else []
