"""Markdown tables in the layouts of the paper's Table 3 (QM9) and Table 4 (MatBench), the
"Measured here" overview, and the other measured results.

Reported cells keep the printed strings and carry ``†``; measured cells are ``mean (SE)
[measured <coverage>]`` (SE: standard error over seeds, population std / sqrt(seeds), the
convention of the paper's brackets); incomplete cells read ``partial 37/50 folds`` and show no number.
Ranking (bold = best, underlined = second): competition ranking ("1, 1, 3") on the values as
displayed, lower is better, over reported and complete measured cells together; a tie for best
leaves no second place, exactly as in the paper's tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
from tabulate import tabulate

from .aggregate import (
    FAMILY,
    RUN,
    SUBSET_SPLIT,
    Cell,
    Run,
    geo_mean,
    headline_metric,
    measured_label,
    runs_sorted,
)
from .baselines import (
    MATBENCH_DATASETS,
    MATBENCH_PAPER_NAMES,
    MATBENCH_UNITS,
    OOD_METHODS,
    QM9,
    QM9_PROPERTIES,
    QM9_UNITS,
    SPLIT_METHODS,
    SPLIT_TO_METHOD,
    Card,
    as_decimal,
    decimals_of,
    matbench_cards,
    qm9_cards,
)

MARK = "†"
MISSING = "—"
QM9_HEADERS = {"homo": "HOMO", "lumo": "LUMO", "gap": "GAP", "zpve": "ZPVE", "r2": "⟨R²⟩", "alpha": "α",
               "mu": "μ", "Cv": "C_v"}
MATBENCH_DECIMALS = 4


@dataclass
class Entry:
    """One table value before ranking decorations."""

    kind: str                      # reported | measured | partial | missing
    value: str = ""                # main number as displayed
    se: str | None = None          # bracketed standard error, as displayed
    coverage: str = ""
    number: Decimal | None = None  # what ranking compares (None: not ranked)

    def render(self, rank: int | None = None) -> str:
        if self.kind == "missing":
            return MISSING
        if self.kind == "partial":
            return f"partial {self.coverage}"
        main = self.value
        if rank == 1:
            main = f"**{main}**"
        elif rank == 2:
            main = f"<u>{main}</u>"
        se = f" ({self.se})" if self.se is not None else ""
        if self.kind == "reported":
            return f"{main}{se}{MARK}"
        return f"{main}{se} [measured {self.coverage}]"

    def plain(self) -> str:
        """``mean (SE)`` without marks or coverage; ``partial <coverage>``; ``—``."""
        if self.kind in ("missing", "partial"):
            return self.render()
        return self.value + (f" ({self.se})" if self.se is not None else "")


def reported_entry(value: str | None, se: str | None = None) -> Entry:
    if value is None:
        return Entry("missing")
    return Entry("reported", value, se, number=as_decimal(value))


def measured_entry(cell: Cell | None, decimals: int) -> Entry:
    """A measured cell: mean and standard error over seeds (SE shown with 2+ seeds)."""
    if cell is None:
        return Entry("missing")
    if not cell.complete or cell.mean is None:
        return Entry("partial", coverage=cell.coverage())
    value = f"{cell.mean:.{decimals}f}"
    se = f"{cell.se:.{decimals}f}" if cell.se is not None else None
    return Entry("measured", value, se, cell.coverage(), as_decimal(value))


def competition_ranks(values: dict[Hashable, Decimal | None]) -> dict[Hashable, int]:
    """Rank (1 = lowest error) of every non-None value; ties share a rank, the next rank is skipped."""
    vals = {k: v for k, v in values.items() if v is not None}
    return {k: 1 + sum(1 for w in vals.values() if w < v) for k, v in vals.items()}


def _md(headers: list[str], rows: list[list[str]], colalign: list[str] | None = None) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True, colalign=colalign)


def qm9_decimals(cards: list[Card]) -> dict[str, int]:
    """Displayed decimals per property: the most common printed precision in Table 3."""
    out = {}
    for p in QM9_PROPERTIES:
        counts = Counter(decimals_of(e[f]) for c in qm9_cards(cards) if (e := c.qm9(p)) for f in ("id", "ood"))
        out[p] = counts.most_common(1)[0][0] if counts else 4
    return out


def _ratio(id_entry: Entry, ood_entry: Entry) -> float | None:
    """OOD/ID error ratio of two ranked entries (None when either is missing or ID is zero)."""
    if id_entry.number is None or ood_entry.number is None or id_entry.number <= 0:
        return None
    return float(ood_entry.number) / float(id_entry.number)


def _fmt_ratio(r: float | None) -> str:
    return MISSING if r is None else f"{r:.2f}"


# ------------------------------------------------------------------------------------------ QM9


@dataclass
class Qm9Row:
    label: str
    params: str
    source: str
    line: str                        # ID | OOD
    entries: dict[str, Entry]
    gap: str = ""


def measured_families(summary: pd.DataFrame, datasets: tuple[str, ...] | str, sets: tuple[str, ...],
                      metric: str) -> pd.DataFrame:
    """Full-data (train fraction 1) summary rows of the given datasets, sets and metric."""
    if summary.empty:
        return summary
    ds = (datasets,) if isinstance(datasets, str) else datasets
    m = summary["dataset"].isin(ds) & summary["set"].isin(sets) & (summary["metric"] == metric)
    return summary[m & (summary["train_fraction"] == 1.0)]


def _qm9_property(split: str, prop: str) -> str:
    return split.removeprefix("boom-") if split.startswith("boom-") else prop


def qm9_rows(cards: list[Card], summary: pd.DataFrame) -> tuple[list[Qm9Row], dict[str, int]]:
    """Rows of the QM9 table (before ranking) and the displayed decimals per property."""
    dec = qm9_decimals(cards)
    rows: list[Qm9Row] = []
    for c in qm9_cards(cards):
        for line, f in (("ID", "id"), ("OOD", "ood")):
            entries = {}
            for p in QM9_PROPERTIES:
                e = c.qm9(p)
                entries[p] = reported_entry(e[f], e.get(f"{f}_se")) if e else Entry("missing")
            rows.append(Qm9Row(c.name if line == "ID" else "", (c.params or "") if line == "ID" else "",
                               f"reported{MARK}" if line == "ID" else "", line, entries))
    fam = measured_families(summary, QM9, ("id_test", "ood_test"), "rmse")
    if not fam.empty:
        fam = fam[fam["split"].str.startswith("boom-")]
        runs: dict[Run, dict[tuple[str, str], Cell]] = {}
        for r in fam.itertuples():
            run = Run(*(getattr(r, c) for c in RUN))
            runs.setdefault(run, {})[(_qm9_property(r.split, r.property), r.set)] = r.cell
        for run in runs_sorted(runs):
            label = run.label(cards)
            for line, set_name in (("ID", "id_test"), ("OOD", "ood_test")):
                entries = {p: measured_entry(runs[run].get((p, set_name)), dec[p]) for p in QM9_PROPERTIES}
                rows.append(Qm9Row(label if line == "ID" else "", "", "measured" if line == "ID" else "", line,
                                   entries))
    # OOD/ID gap: geometric mean over properties, on the OOD line of each model.
    for i in range(0, len(rows), 2):
        rid, rood = rows[i], rows[i + 1]
        ratios = [r for p in QM9_PROPERTIES if (r := _ratio(rid.entries[p], rood.entries[p])) is not None]
        if not ratios:
            kinds = {e.kind for e in (*rid.entries.values(), *rood.entries.values())}
            rood.gap = "partial" if "partial" in kinds else MISSING
        else:
            g = _fmt_ratio(geo_mean(ratios))
            n, total = len(ratios), len(QM9_PROPERTIES)
            rood.gap = g if n == total else f"{g} ({n}/{total} properties)"
    return rows, dec


def qm9_ranks(rows: list[Qm9Row]) -> dict[tuple[int, str], int]:
    """(row index, property) -> rank, ranking each property separately on ID and on OOD lines."""
    ranks: dict[tuple[int, str], int] = {}
    for line in ("ID", "OOD"):
        for p in QM9_PROPERTIES:
            vals = {(i, p): r.entries[p].number for i, r in enumerate(rows) if r.line == line}
            ranks.update(competition_ranks(vals))
    return ranks


def qm9_table(cards: list[Card], summary: pd.DataFrame) -> str:
    rows, _ = qm9_rows(cards, summary)
    ranks = qm9_ranks(rows)
    headers = ["Model", "#params", "Source", "Split",
               *[f"{QM9_HEADERS[p]} [{QM9_UNITS[p]}]" for p in QM9_PROPERTIES], "OOD/ID (geo-mean)"]
    body = [[r.label, r.params, r.source, r.line,
             *[r.entries[p].render(ranks.get((i, p))) for p in QM9_PROPERTIES], r.gap]
            for i, r in enumerate(rows)]
    return _md(headers, body)


def qm9_gap_table(cards: list[Card], summary: pd.DataFrame) -> str:
    """OOD/ID RMSE ratio per model and property (1.00 = no generalization gap)."""
    rows, _ = qm9_rows(cards, summary)
    body = []
    for i in range(0, len(rows), 2):
        rid, rood = rows[i], rows[i + 1]
        cells = []
        for p in QM9_PROPERTIES:
            a, b = rid.entries[p], rood.entries[p]
            ratio = _ratio(a, b)
            if ratio is not None:
                cells.append(_fmt_ratio(ratio) + (MARK if a.kind == "reported" else ""))
            else:
                cells.append("partial" if "partial" in (a.kind, b.kind) else MISSING)
        src = "reported" + MARK if rid.source.startswith("reported") else "measured"
        body.append([rid.label, src, *cells, rood.gap])
    headers = ["Model", "Source", *[QM9_HEADERS[p] for p in QM9_PROPERTIES], "geo-mean"]
    return _md(headers, body)


# ------------------------------------------------------------------------------------- MatBench


def split_row_label(split: str) -> tuple[int, str, str]:
    """(family order, method/split label, family name) of a MatBench split name."""
    subset = SUBSET_SPLIT.match(split)
    if subset:
        return 2, f"{subset['split']}, folds {subset['folds']} only", "fold subset"
    if split in SPLIT_TO_METHOD:
        return 0, SPLIT_TO_METHOD[split], "published"
    if split in OOD_METHODS:
        return 1, f"{split} (regenerated)", "regenerated"
    return 2, f"{split} (oodbench split)", "other"


def split_sort_key(split: str, prop: str = "") -> tuple:
    """Table order of a split: Table 4's methods in the paper's order, then regenerated and other
    splits; BOOM splits in Table 3's property order."""
    family, label, _ = split_row_label(split)
    method = SPLIT_TO_METHOD.get(split) or (split if split in OOD_METHODS else None)
    prop = prop or split.removeprefix("boom-")
    return (family, SPLIT_METHODS.index(method) if method in SPLIT_METHODS else len(SPLIT_METHODS),
            QM9_PROPERTIES.index(prop) if prop in QM9_PROPERTIES else len(QM9_PROPERTIES), label)


def is_table4_split(split: str) -> bool:
    """Table 4's split methods are our published-fold split files (``omee2024-<method>``, ``random``);
    splits regenerated by oodbench (``LOCO``...) are other splits, shown elsewhere."""
    return split in SPLIT_TO_METHOD


@dataclass
class MbTable:
    headers: list[str]
    row_keys: list[tuple[str, str]]          # (split name, dataset)
    entries: list[list[Entry]]
    labels: list[tuple[str, str]]            # (split label, dataset label)
    columns: list[str]
    gap_rows: list[list[str]]


def matbench_layout(cards: list[Card], summary: pd.DataFrame) -> MbTable:
    """Table 4: rows = the six split methods x three datasets, columns = reported models then
    measured runs on the same (published-fold) splits."""
    mcards = matbench_cards(cards)
    fam = measured_families(summary, MATBENCH_DATASETS, ("test",), "mae")
    runs: dict[Run, dict[tuple[str, str], Cell]] = {}
    for r in fam.itertuples():
        if is_table4_split(r.split):
            runs.setdefault(Run(*(getattr(r, c) for c in RUN)), {})[(r.split, r.dataset)] = r.cell
    run_keys = runs_sorted(runs)
    columns = [c.name for c in mcards] + [k.label(cards) for k in run_keys]
    headers = ["Split method", "Dataset", *[f"{c.name}{MARK}" for c in mcards], *[k.label(cards) for k in run_keys]]
    splits = [f"omee2024-{m}" for m in OOD_METHODS] + ["random"]
    row_keys, labels, entries = [], [], []
    for split in splits:
        method = SPLIT_TO_METHOD[split]
        for ds in MATBENCH_DATASETS:
            row = [reported_entry(c.matbench(ds, method)) for c in mcards]
            row += [measured_entry(runs[k].get((split, ds)), MATBENCH_DECIMALS) for k in run_keys]
            row_keys.append((split, ds))
            labels.append((method, f"{MATBENCH_PAPER_NAMES[ds]} [{MATBENCH_UNITS[ds]}]"))
            entries.append(row)
    # OOD/ID gap rows: mean MAE over the five OOD methods / Random MAE, per dataset.
    gap_rows = []
    index = {k: i for i, k in enumerate(row_keys)}
    for ds in MATBENCH_DATASETS:
        cells = []
        rid = index[("random", ds)]
        ood = [index[(f"omee2024-{m}", ds)] for m in OOD_METHODS]
        for j in range(len(columns)):
            id_v = entries[rid][j].number
            ood_v = [entries[i][j].number for i in ood]
            if id_v is None or id_v <= 0 or any(v is None for v in ood_v):
                kinds = {entries[i][j].kind for i in [rid, *ood]}
                cells.append("partial" if "partial" in kinds else MISSING)
                continue
            ratio = (sum(float(v) for v in ood_v) / len(ood_v)) / float(id_v)
            cells.append(_fmt_ratio(ratio) + (MARK if j < len(mcards) else ""))
        gap_rows.append(["OOD/ID", f"{MATBENCH_PAPER_NAMES[ds]}", *cells])
    return MbTable(headers, row_keys, entries, labels, columns, gap_rows)


def matbench_ranks(layout: MbTable) -> dict[tuple[int, int], int]:
    ranks: dict[tuple[int, int], int] = {}
    for i, row in enumerate(layout.entries):
        ranks.update(competition_ranks({(i, j): e.number for j, e in enumerate(row)}))
    return ranks


def matbench_table(cards: list[Card], summary: pd.DataFrame) -> str:
    layout = matbench_layout(cards, summary)
    ranks = matbench_ranks(layout)
    body, prev = [], None
    for i, ((split_label, ds_label), row) in enumerate(zip(layout.labels, layout.entries, strict=True)):
        body.append([split_label if split_label != prev else "", ds_label,
                     *[e.render(ranks.get((i, j))) for j, e in enumerate(row)]])
        prev = split_label
    prev = None
    for g in layout.gap_rows:
        body.append([g[0] if g[0] != prev else "", *g[1:]])
        prev = g[0]
    return _md(layout.headers, body)


# ---------------------------------------------------------------------------------------- other


def _shown_in_paper_layouts(summary: pd.DataFrame) -> pd.Series:
    """Summary rows that the Table 3 / Table 4 layouts show (full-data runs on the paper's splits)."""
    shown_qm9 = (summary["dataset"] == QM9) & summary["split"].str.startswith("boom-") & summary["set"].isin(
        ["id_test", "ood_test"])
    shown_mb = (summary["dataset"].isin(MATBENCH_DATASETS) & summary["split"].map(is_table4_split)
                & (summary["set"] == "test"))
    return (shown_qm9 | shown_mb) & (summary["train_fraction"] == 1.0)


def _main_metric(summary: pd.DataFrame) -> pd.Series:
    return summary["metric"] == summary["dataset"].map(headline_metric)


def other_results_table(cards: list[Card], summary: pd.DataFrame) -> str | None:
    """Measured cells that neither paper layout shows: other splits (including the splits oodbench
    regenerates, ``LOCO``, ``SparseX...``, which are not Table 4's published folds), other datasets,
    reduced training fractions."""
    if summary.empty:
        return None
    rest = summary[~_shown_in_paper_layouts(summary) & (summary["set"] != "val") & _main_metric(summary)]
    if rest.empty:
        return None
    body = []
    rows = sorted(rest.itertuples(), key=lambda r: (r.dataset, split_sort_key(r.split, r.property), r.property,
                                                     Run(*(getattr(r, c) for c in RUN)).sort_key(),
                                                     r.train_fraction, r.set, r.metric))
    for r in rows:
        e = measured_entry(r.cell, 4)
        split = split_row_label(r.split)[1] if r.dataset in MATBENCH_DATASETS else r.split
        body.append([r.dataset, split, r.property or MISSING,
                     measured_label(r.model, r.strategy, r.preset, r.stand_in, cards, r.train_fraction,
                                    variant=r.variant),
                     r.set, r.metric, e.render()])
    return _md(["Dataset", "Split", "Property", "Run", "Set", "Metric", "Value"], body)


# ------------------------------------------------------------------------------- measured here


def measured_overview(cards: list[Card], summary: pd.DataFrame) -> tuple[str | None, str | None]:
    """The "Measured here" tables: every measured run family, one row each, headline metric.

    Returns (families evaluated on an ID and an OOD test set, with their OOD/ID ratio;
    families with one test set). Either is None when there is none.
    """
    if summary.empty:
        return None, None
    dec = qm9_decimals(cards)
    main = summary[_main_metric(summary) & (summary["set"] != "val")]
    two, one = [], []
    for fam, g in main.groupby(FAMILY, sort=True, dropna=False):
        info = dict(zip(FAMILY, fam, strict=True))
        run = Run(*(info[c] for c in RUN))
        cells = {r.set: r.cell for r in g.itertuples()}
        d = dec.get(info["property"], MATBENCH_DECIMALS) if info["dataset"] == QM9 else MATBENCH_DECIMALS
        metric = headline_metric(info["dataset"]).upper()
        key = (info["dataset"], split_sort_key(info["split"], info["property"]), info["property"], run.sort_key(),
               info["train_fraction"])
        label = run.label(cards, info["train_fraction"])
        split = split_row_label(info["split"])[1] if info["dataset"] in MATBENCH_DATASETS else info["split"]
        head = [label, info["dataset"], split, info["property"] or MISSING, metric]
        if "id_test" in cells and "ood_test" in cells:
            a, b = measured_entry(cells["id_test"], d), measured_entry(cells["ood_test"], d)
            ca, cb = cells["id_test"], cells["ood_test"]
            ratio = (_fmt_ratio(cb.mean / ca.mean) if a.kind == b.kind == "measured" and ca.mean and ca.mean > 0
                     else ("partial" if "partial" in (a.kind, b.kind) else MISSING))
            two.append((key, [*head, a.plain(), b.plain(), ratio, _coverage(ca, cb)]))
        for set_name in sorted(set(cells) - {"id_test", "ood_test"}):
            c = cells[set_name]
            one.append((key + (set_name,), [*head, set_name, measured_entry(c, d).plain(), c.coverage()]))
    t2 = _md(["Run", "Dataset", "Split", "Property", "Metric", "ID test", "OOD test", "OOD/ID", "Coverage"],
             [row for _, row in sorted(two, key=lambda kv: kv[0])]) if two else None
    t1 = _md(["Run", "Dataset", "Split", "Property", "Metric", "Test set", "Error", "Coverage"],
             [row for _, row in sorted(one, key=lambda kv: kv[0])]) if one else None
    return t2, t1


def _coverage(a: Cell, b: Cell) -> str:
    ca, cb = a.coverage(), b.coverage()
    return ca if ca == cb else f"ID {ca}; OOD {cb}"


SPLIT_NOTES = {
    "published": "Table 4 split methods = our split files `omee2024-<method>` (the published 50 folds of "
                 "Omee et al. 2024) and `random` (official MatBench 5-fold).",
}
