"""The leaderboard reduce: records -> cells -> markdown tables and figures. No training: records
are built from arrays with ``write_record``."""

from __future__ import annotations

import gzip
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ood_bench.evaluate import evaluate_sets
from ood_bench.leaderboard import build_leaderboard
from ood_bench.leaderboard.aggregate import FoldCounter, dropped_structures, measured_label, records_frame, summarize
from ood_bench.leaderboard.baselines import MATBENCH_DATASETS, OOD_METHODS, QM9_PROPERTIES, load_cards
from ood_bench.leaderboard.figures import MAX_ID_OOD_RUNS, fold_error_panels, measured_id_ood_figures
from ood_bench.leaderboard.tables import (
    competition_ranks,
    matbench_layout,
    matbench_ranks,
    matbench_table,
    measured_overview,
    other_results_table,
    qm9_ranks,
    qm9_rows,
    qm9_table,
)
from ood_bench.records import FORMAT, RunKey, load_records, record_path, write_record
from ood_bench.splits import Fold, SplitSet, save_split

REPO = Path(__file__).resolve().parents[1]


def make_record(dataset: str, split: str, fold, model: str, strategy: str, seed: int,
                sets: dict[str, tuple], *, prop: str = "", preset: str = "paper", stand_in: bool | None = None,
                train_fraction: float = 1.0, n_train: int = 100, variant: str = "",
                dropped: dict[str, int] | None = None) -> dict:
    """A valid record from arrays: ``sets`` maps an evaluation set to (y_true, y_pred)."""
    predictions = {
        name: {"id": [f"{name}-{i}" for i in range(len(t))], "y_true": [float(v) for v in t],
               "y_pred": [float(v) for v in p]}
        for name, (t, p) in sets.items()
    }
    key = RunKey(dataset, split, str(fold), model, strategy, seed, train_fraction, prop, variant)
    data = {"n_train": n_train}
    if dropped is not None:
        data |= {"dropped_without_structure": dropped,
                 "n": {s: len(sets[s][0]) + dropped[s] if s in sets else n_train + dropped[s] for s in dropped}}
    rec = {
        "format": FORMAT, "status": "complete", "key": key.to_dict(),
        "config": {"preset": preset, "unit": "Hartree" if dataset == "qm9" else "unitless"},
        "versions": {"oodbench": "test"}, "data": data,
        "predictions": predictions, "metrics": evaluate_sets(predictions), "timing": {"train_s": 0.0},
    }
    if stand_in is not None:
        rec["pretrained"] = {"stand_in": stand_in}
    return rec


def write(results: Path, *recs) -> None:
    for r in recs:
        write_record(results, r)


@pytest.fixture(scope="module")
def cards():
    return load_cards(REPO / "baselines")


def summary_of(results: Path, splits_dir: Path | None = None) -> pd.DataFrame:
    records, _ = load_records(results)
    return summarize(records_frame(records), FoldCounter(splits_dir or results / "no-splits"))


def summary_of_records(records: list[dict]) -> pd.DataFrame:
    """Summary straight from in-memory records (default fold counts: BOOM 1, random 5, Sparse*/LOCO 50)."""
    return summarize(records_frame(records), FoldCounter(use_split_files=False))


def cell(summary: pd.DataFrame, **where):
    m = pd.Series(True, index=summary.index)
    for k, v in where.items():
        m &= summary[k] == v
    hits = summary[m]
    assert len(hits) == 1, hits
    return hits.iloc[0]["cell"]


def qm9_record(seed, y_id, p_id, y_ood, p_ood, prop="gap", strategy="mft", **kw):
    return make_record("qm9", f"boom-{prop}", 0, "dpa3", strategy, seed,
                       {"val": (y_id[:3], y_id[:3]), "id_test": (y_id, p_id), "ood_test": (y_ood, p_ood)},
                       prop=prop, **kw)


# ------------------------------------------------------------------------------ the numbers


def test_perfect_predictor_gives_zero_errors(tmp_path, cards):
    y = np.linspace(0.1, 0.4, 20)
    write(tmp_path, *[qm9_record(s, y, y, y + 1, y + 1) for s in (0, 1, 2)])
    write(tmp_path, *[make_record("matbench_dielectric", "random", f, "dpa3", "ft", 0, {"test": (y, y)})
                      for f in range(5)])
    s = summary_of(tmp_path)
    c = cell(s, dataset="qm9", set="ood_test", metric="rmse")
    assert (c.mean, c.std, c.n_seeds, c.complete) == (0.0, 0.0, 3, True)
    assert cell(s, dataset="matbench_dielectric", metric="mae").mean == 0.0
    table = qm9_table(cards, s)
    row = next(line for line in table.splitlines() if "DPA3-MFT (measured)" in line)
    assert "**0.0000** (0.0000) [measured 3 seeds]" in row  # beats every reported number: bold
    md = matbench_table(cards, s)
    assert "**0.0000** [measured 5/5 folds, 1 seed]" in md


def test_seeded_random_predictor_matches_errors_computed_by_hand(tmp_path):
    rng = np.random.default_rng(1234)
    expected_rmse, expected_mae = {}, {}
    for seed in (0, 1, 2):
        per_fold_mae = []
        for fold in range(5):
            y = rng.normal(size=30)
            p = y + rng.normal(scale=0.1 * (seed + 1), size=30)
            write(tmp_path, make_record("matbench_perovskites", "random", fold, "dpa3", "mft", seed,
                                        {"test": (y, p)}))
            per_fold_mae.append(sum(abs(a - b) for a, b in zip(y, p, strict=True)) / 30)
        expected_mae[seed] = sum(per_fold_mae) / 5
        y = rng.normal(size=25)
        p = y + rng.uniform(-0.5, 0.5, size=25)
        write(tmp_path, qm9_record(seed, y, p, y, p + 0.2, prop="homo"))
        expected_rmse[seed] = math.sqrt(sum((a - b) ** 2 for a, b in zip(y, p, strict=True)) / 25)
    s = summary_of(tmp_path)
    mb = cell(s, dataset="matbench_perovskites", metric="mae")
    mean = sum(expected_mae.values()) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in expected_mae.values()) / 3)  # population std over seeds
    assert mb.complete and mb.mean == pytest.approx(mean, rel=1e-12) and mb.std == pytest.approx(std, rel=1e-12)
    assert mb.se == pytest.approx(std / math.sqrt(3), rel=1e-12)  # standard error, the paper's bracket
    assert mb.per_seed == pytest.approx(expected_mae, rel=1e-12)
    q = cell(s, dataset="qm9", set="id_test", metric="rmse")
    mean = sum(expected_rmse.values()) / 3
    assert q.mean == pytest.approx(mean, rel=1e-12)
    assert q.std == pytest.approx(np.std(list(expected_rmse.values())), rel=1e-12)


def test_measured_brackets_are_standard_errors_computed_by_hand(tmp_path, cards):
    """Three seeds with known per-seed RMSEs: the bracket is population std / sqrt(3), like the paper's."""
    y = np.zeros(4)
    per_seed = {0: 0.010, 1: 0.013, 2: 0.019}  # constant errors: RMSE = MAE = the offset
    write(tmp_path, *[qm9_record(seed, y, y + e, y, y + 2 * e) for seed, e in per_seed.items()])
    s = summary_of(tmp_path)
    c = cell(s, set="id_test", metric="rmse")
    # by hand: mean 0.014; deviations -0.004, -0.001, 0.005; population variance (16+1+25)e-6/3 = 14e-6
    assert c.mean == pytest.approx(0.014, rel=1e-9)
    assert c.std == pytest.approx(math.sqrt(14e-6), rel=1e-9)
    assert c.se == pytest.approx(math.sqrt(14e-6) / math.sqrt(3), rel=1e-9)  # 0.00216..., not the std 0.00374
    rows, _ = qm9_rows(cards, s)
    assert rows[-2].entries["gap"].render() == "0.0140 (0.0022) [measured 3 seeds]"
    assert rows[-1].entries["gap"].render() == "0.0280 (0.0043) [measured 3 seeds]"
    # One seed: no spread at all.
    one = summary_of_records([qm9_record(0, y, y + 0.01, y, y + 0.02)])
    c1 = cell(one, set="id_test", metric="rmse")
    assert c1.std is None and c1.se is None
    md = build_leaderboard(tmp_path, figures=False, splits_dir=tmp_path / "none")["markdown"].read_text()
    assert "standard error" in md and "sqrt(number of seeds)" in md and "(std)" not in md


def test_partial_coverage_renders_as_partial_never_as_a_number(tmp_path, cards):
    rng = np.random.default_rng(0)
    for f in range(37):
        y = rng.normal(size=10)
        write(tmp_path, make_record("matbench_dielectric", "omee2024-LOCO", f, "dpa3", "mft", 0,
                                    {"test": (y, y + 0.01)}))
    s = summary_of(tmp_path)
    c = cell(s, split="omee2024-LOCO", metric="mae")
    assert not c.complete and c.mean is None and (c.done, c.expected) == (37, 50)
    layout = matbench_layout(cards, s)
    row = layout.row_keys.index(("omee2024-LOCO", "matbench_dielectric"))
    col = layout.columns.index("DPA3-MFT (measured)")
    assert layout.entries[row][col].render() == "partial 37/50 folds, 1 seed"
    assert layout.entries[row][col].number is None  # never ranked
    md = matbench_table(cards, s)
    assert "partial 37/50 folds" in md and "**0.4690**†" in md  # the reported best is still best
    # The OOD/ID gap of an incomplete column is partial too.
    assert any(g[2 + col] == "partial" for g in layout.gap_rows if g[1] == "dielectric")


def test_expected_folds_come_from_the_split_file(tmp_path, cards):
    splits = tmp_path / "splits"
    folds = {str(i): Fold(str(i), [f"t{i}"], [f"v{i}"], {"test": [f"x{i}"]}) for i in range(3)}
    save_split(SplitSet("matbench_dielectric", "omee2024-LOCO", folds, ["test"]), splits)
    results = tmp_path / "results"
    for f in range(2):
        write(results, make_record("matbench_dielectric", "omee2024-LOCO", f, "dpa3", "mft", 0,
                                   {"test": ([1.0, 2.0], [1.5, 2.0])}))
    assert FoldCounter(splits)("matbench_dielectric", "omee2024-LOCO") == (3, "split file")
    assert FoldCounter(splits)("matbench_dielectric", "omee2024-SparseXsingle") == (50, "default")
    c = cell(summary_of(results, splits), metric="mae")
    assert not c.complete and c.coverage() == "2/3 folds, 1 seed"
    write(results, make_record("matbench_dielectric", "omee2024-LOCO", 2, "dpa3", "mft", 0,
                               {"test": ([1.0, 2.0], [1.0, 2.0])}))
    c = cell(summary_of(results, splits), metric="mae")
    assert c.complete and c.mean == pytest.approx(0.5 / 3) and c.coverage() == "3/3 folds, 1 seed"


def test_a_seed_missing_a_fold_makes_the_cell_partial(tmp_path):
    for seed in (0, 1):
        for f in range(5 if seed == 0 else 4):
            write(tmp_path, make_record("matbench_log_gvrh", "random", f, "dpa3", "ft", seed,
                                        {"test": ([1.0], [1.1])}))
    c = cell(summary_of(tmp_path), metric="mae")
    assert not c.complete and c.coverage() == "9/10 fold-runs (5 folds x 2 seeds)"


# ------------------------------------------------------------------------------ labels & rows


def test_measured_labels_never_look_like_the_paper_model(cards):
    assert measured_label("dpa3", "mft", "paper", False, cards) == "DPA3-MFT (measured)"
    assert measured_label("dpa3", "mft", "tiny", False, cards) == "DPA3-MFT (tiny, measured)"
    assert measured_label("dpa3", "ft", "tiny", True, cards) == "DPA3-FT (tiny, stand-in pretrained, measured)"
    assert measured_label("dpa3", "scratch", "", False, cards) == "DPA3-Scratch (preset unknown, measured)"


def test_reported_and_measured_are_separate_rows(tmp_path, cards):
    y = np.linspace(0, 1, 10)
    write(tmp_path, qm9_record(0, y, y + 0.02, y, y + 0.03, preset="tiny", stand_in=True))
    s = summary_of(tmp_path)
    rows, _ = qm9_rows(cards, s)
    labels = [r.label for r in rows if r.label]
    assert labels[-1] == "DPA3-MFT (tiny, stand-in pretrained, measured)" and "DPA3-MFT" in labels
    reported = next(i for i, r in enumerate(rows) if r.label == "DPA3-MFT")
    assert rows[reported + 1].entries["gap"].render() == "0.0171 (0.0002)†"
    measured = rows[-1]  # OOD line of the measured run
    assert measured.entries["gap"].render() == "0.0300 [measured 1 seed]"
    assert measured.entries["homo"].render() == "—"  # only gap was run
    assert measured.gap == "1.50 (1/8 properties)"  # OOD/ID ratio 0.03 / 0.02
    table = qm9_table(cards, s)
    assert "| DPA3-MFT (tiny, stand-in pretrained, measured) |" in table.replace("  ", "")


def test_regenerated_splits_are_other_results_not_table4_columns(tmp_path, cards):
    """``LOCO`` (regenerated by oodbench) is not Table 4's ``omee2024-LOCO``: it never enters the
    Table 4 layout; it is listed under other results, named as regenerated."""
    for f in range(50):
        write(tmp_path, make_record("matbench_dielectric", "LOCO", f, "dpa3", "mft", 0, {"test": ([1.0], [1.2])}))
    s = summary_of(tmp_path)
    layout = matbench_layout(cards, s)
    assert all(split.startswith("omee2024-") or split == "random" for split, _ in layout.row_keys)
    assert len(layout.row_keys) == 18
    assert "DPA3-MFT (measured)" not in layout.columns  # no run on Table 4's splits: no measured column
    other = other_results_table(cards, s)
    row = next(line for line in other.splitlines() if "LOCO (regenerated)" in line)
    assert "DPA3-MFT (measured)" in row and "0.2000 [measured 50/50 folds, 1 seed]" in row
    md = build_leaderboard(tmp_path, figures=False, splits_dir=tmp_path / "none")["markdown"].read_text()
    table4 = md.split("## MatBench MAE (Table 4 layout)")[1].split("## Other measured results")[0]
    assert "regenerated" not in "".join(line for line in table4.splitlines() if line.startswith("|"))
    assert "LOCO (regenerated)" in md.split("## Other measured results")[1]



def test_fold_subset_reduces_those_folds_and_stays_out_of_table4(tmp_path, cards, capsys):
    """``--folds 0,1``: cells over folds 0 and 1 only are complete numbers (fold 2 left out, said
    on the page), named as a fold subset, compared across strategies, never a Table 4 cell."""
    from ood_bench.cli import main

    for strategy, err in [("scratch", 0.4), ("ft", 0.2)]:
        for seed in (0, 1):
            for f, extra in [(0, 0.0), (1, 0.1), (2, 5.0)]:
                write(tmp_path, make_record("matbench_dielectric", "omee2024-LOCO", f, "dpa3", strategy, seed,
                                            {"test": ([1.0], [1.0 + err + extra + 0.01 * seed])}))
    assert main(["leaderboard", "--results-dir", str(tmp_path), "--no-figures", "--folds", "0-1"]) == 0
    md = (tmp_path / "LEADERBOARD.md").read_text()
    assert "folds 0, 1 only (`--folds 0,1`; 4 record(s) of other folds left out)" in md
    table4 = md.split("## MatBench MAE (Table 4 layout)")[1].split("## Other measured results")[0]
    assert "measured" not in "".join(line for line in table4.splitlines() if line.startswith("|"))
    row = next(line for line in md.split("## Other measured results")[1].splitlines() if "DPA3-FT" in line)
    # FT: mean over seeds of (0.2 + 0.3) / 2 + 0.01 seed -> 0.255; SE = 0.005 / sqrt(2)
    assert "omee2024-LOCO, folds 0,1 only" in row and "0.2550 (0.0035) [measured 4/4 fold-runs" in row
    comp = md.split("## Strategy comparison")[1]
    ft = next(line for line in comp.splitlines() if "| FT " in line)
    assert "-44.0%" in ft  # OOD vs Scratch: 0.255 / 0.455 - 1
    assert main(["leaderboard", "--results-dir", str(tmp_path), "--no-figures", "--folds", "3-1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("a range goes from low to high, e.g. 1-3")

# ---------------------------------------------------------------------------------- ranking


def test_competition_ranking():
    assert competition_ranks({"a": 1, "b": 1, "c": 3, "d": None}) == {"a": 1, "b": 1, "c": 3}
    assert competition_ranks({"a": 2, "b": 1, "c": 2}) == {"b": 1, "a": 2, "c": 2}


PAPER_UNDERLINED_QM9 = {
    ("MACE", "alpha", "OOD"), ("GotenNet", "homo", "OOD"), ("GotenNet", "lumo", "OOD"),
    ("DPA3-Scratch", "mu", "OOD"), ("DPA3-LP", "gap", "OOD"), ("DPA3-LP", "r2", "OOD"),
    ("DPA3-FT", "homo", "ID"), ("DPA3-FT", "zpve", "OOD"), ("DPA3-FT", "alpha", "ID"), ("DPA3-FT", "Cv", "OOD"),
    ("DPA3-MFT", "lumo", "ID"), ("DPA3-MFT", "r2", "ID"), ("DPA3-MFT", "mu", "ID"), ("DPA3-MFT", "mu", "OOD"),
}
PAPER_UNDERLINED_MATBENCH = {  # (column, dataset, split) underlined in Table 4
    ("coNGN", "matbench_dielectric", "omee2024-LOCO"),
    ("DPA3-MFT", "matbench_log_gvrh", "omee2024-LOCO"),
    ("DPA3-FT", "matbench_perovskites", "omee2024-LOCO"),
    ("coGN", "matbench_dielectric", "omee2024-SparseXcluster"),
    ("DPA3-MFT", "matbench_log_gvrh", "omee2024-SparseXcluster"),
    ("DPA3-MFT", "matbench_perovskites", "omee2024-SparseXcluster"),
    ("coGN", "matbench_dielectric", "omee2024-SparseXsingle"),
    ("DPA3-FT", "matbench_log_gvrh", "omee2024-SparseXsingle"),
    ("DPA3-FT", "matbench_perovskites", "omee2024-SparseXsingle"),
    ("DPA3-FT", "matbench_dielectric", "omee2024-SparseYcluster"),
    ("DPA3-FT", "matbench_log_gvrh", "omee2024-SparseYcluster"),
    ("DPA3-FT", "matbench_perovskites", "omee2024-SparseYcluster"),
    ("DPA3-FT", "matbench_dielectric", "omee2024-SparseYsingle"),
    ("ALIGNN", "matbench_log_gvrh", "omee2024-SparseYsingle"),
    ("DPA3-FT", "matbench_perovskites", "omee2024-SparseYsingle"),
    ("DPA3-FT", "matbench_dielectric", "random"),
    ("DPA3-FT", "matbench_log_gvrh", "random"),
    ("DPA3-MFT", "matbench_perovskites", "random"),
}


def test_ranking_reproduces_the_papers_marks(cards):
    """Underlines (second best) are exactly the paper's; bold counts match its text."""
    empty = summarize(records_frame([]))
    rows, _ = qm9_rows(cards, empty)
    ranks = qm9_ranks(rows)
    names = [rows[i - (i % 2)].label for i in range(len(rows))]
    second = {(names[i], p, rows[i].line) for (i, p), r in ranks.items() if r == 2}
    assert second == PAPER_UNDERLINED_QM9
    best = {(names[i], p, rows[i].line) for (i, p), r in ranks.items() if r == 1}
    # "DPA3-FT and DPA3-MFT ... achieve the best ID performance across all eight tasks"
    assert {p for n, p, line in best if line == "ID"} == set(rows[0].entries)
    assert all(n in ("DPA3-FT", "DPA3-MFT") for n, _, line in best if line == "ID")
    # "DPA3-MFT achieves the best OOD performance in six out of the eight tasks"
    assert sum(1 for n, _, line in best if line == "OOD" and n == "DPA3-MFT") == 6
    layout = matbench_layout(cards, empty)
    mranks = matbench_ranks(layout)
    second = {(layout.columns[j], *layout.row_keys[i][::-1]) for (i, j), r in mranks.items() if r == 2}
    assert second == PAPER_UNDERLINED_MATBENCH
    # "DPA3-MFT achieves the best performance in 13 of the 18 evaluated tasks and ranks second in 4"
    mft = layout.columns.index("DPA3-MFT")
    assert sum(1 for (i, j), r in mranks.items() if j == mft and r == 1) == 13
    assert sum(1 for (i, j), r in mranks.items() if j == mft and r == 2) == 4


def test_a_measured_winner_takes_bold_and_pushes_the_reported_best_to_second(tmp_path, cards):
    for f in range(50):
        write(tmp_path, make_record("matbench_dielectric", "omee2024-LOCO", f, "dpa3", "mft", 0,
                                    {"test": ([1.0], [1.3])}))
    s = summary_of(tmp_path)
    md = matbench_table(cards, s)
    row = next(line for line in md.splitlines() if line.startswith("| LOCO "))
    assert "**0.3000** [measured 50/50 folds, 1 seed]" in row
    assert "<u>0.4690</u>†" in row and "<u>0.4983</u>" not in row


# ------------------------------------------------------------------------------- end to end


def test_corrupt_record_is_reported_and_skipped(tmp_path):
    results = tmp_path / "results"
    y = np.linspace(0, 1, 8)
    write(results, qm9_record(0, y, y + 0.01, y, y + 0.02))
    bad = record_path(results, RunKey("qm9", "boom-gap", "0", "dpa3", "mft", 1, 1.0, "gap"))
    bad.parent.mkdir(parents=True)
    bad.write_text('{"format": "oodbench-record/1", "status": "comp')  # truncated
    wrong = record_path(results, RunKey("qm9", "boom-gap", "0", "dpa3", "mft", 2, 1.0, "gap"))
    rec = qm9_record(2, y, y + 0.01, y, y + 0.02)
    rec["metrics"]["ood_test"]["rmse"] = 0.0  # does not match the predictions
    wrong.parent.mkdir(parents=True)
    with gzip.open(wrong, "wt") as fh:
        fh.write(json.dumps(rec))
    out = build_leaderboard(results, figures=False, splits_dir=tmp_path / "none")
    assert out["n_records"] == 1
    assert sorted(p.name for p, _ in out["skipped"]) == ["record.json.gz", "record.json.gz"]
    assert {Path(p).parent.name for p, _ in out["skipped"]} == {"fold0-seed1-frac1", "fold0-seed2-frac1"}
    assert not any(problem.startswith(str(p)) for p, problem in out["skipped"])  # the path is not repeated
    md = out["markdown"].read_text()
    assert "## Skipped records" in md and "not readable JSON" in md and "does not match the saved predictions" in md
    assert "0.0200 [measured 1 seed]" in md
    assert str(tmp_path) not in md  # relative paths only


def test_build_writes_markdown_and_figures(tmp_path):
    results = tmp_path / "results"
    rng = np.random.default_rng(7)
    for strategy in ("scratch", "ft", "mft"):
        for prop in ("gap", "homo"):
            for seed in (0, 1):
                y = rng.normal(size=12)
                write(results, qm9_record(seed, y, y + rng.normal(scale=0.1, size=12), y,
                                          y + rng.normal(scale=0.3, size=12), prop=prop, strategy=strategy,
                                          preset="tiny", n_train=400))
        for f in range(5):
            y = rng.normal(size=8)
            write(results, make_record("matbench_dielectric", "random", f, "dpa3", strategy, 0,
                                       {"test": (y, y + rng.normal(scale=0.2, size=8))}, preset="tiny"))
        for f in range(6):
            y = rng.normal(size=8)
            write(results, make_record("matbench_dielectric", "omee2024-SparseYsingle", f, "dpa3", strategy, 0,
                                       {"test": (y, y + rng.normal(scale=0.4, size=8))}, preset="tiny"))
        for frac in (0.25, 0.5):
            y = rng.normal(size=12)
            write(results, qm9_record(0, y, y + frac, y, y + 2 * frac, strategy=strategy, preset="tiny",
                                      train_fraction=frac, n_train=int(400 * frac)))
    (results / "analysis").mkdir()
    (results / "analysis" / "collapse.md").write_text("# collapse\n")
    out = build_leaderboard(results, splits_dir=tmp_path / "none")
    names = sorted(p.name for p in out["figures"])
    assert names == ["data_efficiency_qm9_gap.png", "fold_errors_matbench-dielectric.png",
                     "id_vs_ood_dpa3_tiny.png", "id_vs_ood_reported_dpa3.png",
                     "measured_id_ood_qm9_boom-gap_gap_tf0-25.png", "measured_id_ood_qm9_boom-gap_gap_tf0-5.png",
                     "measured_id_ood_qm9_boom-gap_gap_tf1.png", "measured_id_ood_qm9_boom-homo_homo_tf1.png"]
    assert all(p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG" for p in out["figures"])
    md = out["markdown"].read_text()
    assert out["markdown"] == results / "LEADERBOARD.md"
    assert "(figures/fold_errors_matbench-dielectric.png)" in md and "(analysis/collapse.md)" in md
    assert "DPA3-MFT (tiny, measured)" in md and "partial 6/50 folds" in md
    assert "[measured 2 seeds]" in md
    assert md.index("## Measured here") < md.index("## How to read this") < md.index("## QM9 BOOM")
    assert "appear here once measured records exist" not in md
    assert "## Other measured results" in md and "train fraction 0.25" in md
    assert "How to read this" in md and "competition ranking" in md


def test_measured_id_vs_ood_figure_at_a_single_reduced_fraction(tmp_path, cards):
    """Runs at one reduced training fraction still get their measured numbers drawn (first figure);
    a split with one test set (MatBench) gets no such figure."""
    results = tmp_path / "results"
    y = np.linspace(0.0, 1.0, 10)
    for strategy in ("scratch", "mft"):
        for seed in (0, 1):
            write(results, qm9_record(seed, y, y + 0.01 * (seed + 1), y, y + 0.03 * (seed + 1), strategy=strategy,
                                      preset="tiny", train_fraction=0.02))
    for f in range(5):
        write(results, make_record("matbench_dielectric", "random", f, "dpa3", "mft", 0, {"test": (y, y + 0.1)},
                                   preset="tiny"))
    out = build_leaderboard(results, splits_dir=tmp_path / "none")
    png = results / "figures" / "measured_id_ood_qm9_boom-gap_gap_tf0-02.png"
    assert out["figures"][0] == png and png.read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in out["figures"] if p.name.startswith("measured_id_ood_matbench")]
    figures = out["markdown"].read_text().split("## Figures")[1]
    caption = "Measured ID vs OOD RMSE on qm9 boom-gap (gap), train fraction 0.02 (OOD/ID ratio above each pair)"
    assert figures.lstrip().startswith(f"- [{caption}](figures/{png.name})")
    # More runs than a figure holds: the first ones in table order, and the caption says so.
    recs = [qm9_record(0, y, y + 0.01, y, y + 0.02, variant=f"v{k:02d}") for k in range(MAX_ID_OOD_RUNS + 2)]
    (fig,) = measured_id_ood_figures(summary_of_records(recs), cards, tmp_path / "many")
    assert f"the first {MAX_ID_OOD_RUNS} of {MAX_ID_OOD_RUNS + 2} runs, in table order" in fig.caption


def test_cli_prints_where_files_are_and_warns_about_skipped_once(tmp_path, capsys):
    from ood_bench.cli import main

    results = tmp_path / "results"
    bad = results / "runs" / "x" / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("not json")
    out_md = tmp_path / "board" / "LB.md"
    rc = main(["leaderboard", "--results-dir", str(results), "--out", str(out_md), "--no-figures",
               "--splits-dir", str(tmp_path / "none")])
    captured = capsys.readouterr()
    assert rc == 0 and out_md.exists()
    assert str(out_md) in captured.out and "0 records, 1 skipped" in captured.out
    assert "warning: skipped corrupt record" in captured.err and "x/record.json" in captured.err
    assert (captured.out + captured.err).count("skipped corrupt record") == 1
    assert captured.err.count(str(bad)) == 1  # the path once, not repeated inside the problem


@pytest.mark.parametrize("layout", ["missing", "no-runs", "a-file"])
def test_cli_mistyped_results_dir_is_a_one_line_error_and_creates_nothing(tmp_path, capsys, layout):
    from ood_bench.cli import main

    results = tmp_path / "reslts"
    if layout == "no-runs":
        results.mkdir()
    elif layout == "a-file":
        results.write_text("")
    before = sorted(tmp_path.rglob("*"))
    rc = main(["leaderboard", "--results-dir", str(results), "--no-figures"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("oodbench: error: ") and err.count("\n") == 1 and str(results) in err
    assert {"missing": "no such folder", "no-runs": "no runs/ folder", "a-file": "is a file"}[layout] in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing created


@pytest.mark.parametrize("target", ["out", "figures"])
def test_cli_unwritable_output_is_a_one_line_error_checked_first(tmp_path, capsys, monkeypatch, target):
    """An output folder that cannot be created (a path under a regular file: even root cannot) is
    one line, exit 1, before any record is read."""
    from ood_bench.cli import main
    from ood_bench.leaderboard import build as build_mod

    results = tmp_path / "results"
    write(results, qm9_record(0, np.zeros(3), np.zeros(3) + 0.1, np.zeros(3), np.zeros(3) + 0.2))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["--out", str(blocker / "sub" / "LB.md")] if target == "out" else [
        "--out", str(tmp_path / "ok" / "LB.md"), "--figures-dir", str(blocker / "figs")]

    def fail(*a, **k):
        raise AssertionError("records were read before the output folder was checked")

    monkeypatch.setattr(build_mod, "load_records", fail)
    rc = main(["leaderboard", "--results-dir", str(results), *args])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("oodbench: error: ") and err.count("\n") == 1
    assert "is a file, not a folder" in err and str(blocker) in err
    assert not (tmp_path / "ok").exists()


def test_unwritable_folder_is_refused_when_permissions_apply(tmp_path):
    import os

    from ood_bench.errors import OodBenchError
    from ood_bench.io_utils import require_writable_dir

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permission bits do not stop writes (the file-blocker test covers this)")
        with pytest.raises(OodBenchError, match="not writable"):
            require_writable_dir(locked / "figures", "figures folder")
    finally:
        locked.chmod(0o700)


# ------------------------------------------------------------------- every model, registries


def _baseline_records() -> list[dict]:
    """Complete runs of the reference baselines: cm-krr and dummy on all 8 QM9 properties, dummy
    and rf-scm-magpie on the 18 Table 4 cells, dpa3-frozen with its two presets on QM9 gap."""
    recs = []
    rng = np.random.default_rng(3)
    for model in ("cm-krr", "dummy"):
        for prop in QM9_PROPERTIES:
            y = rng.normal(size=6)
            recs.append(make_record("qm9", f"boom-{prop}", 0, model, "scratch", 0,
                                    {"val": (y, y), "id_test": (y, y + 0.1), "ood_test": (y, y + 0.3)}, prop=prop,
                                    preset="hansen2013" if model == "cm-krr" else "mean"))
    for model, preset, err in (("dummy", "mean", 0.9), ("rf-scm-magpie", "matbench", 0.3)):
        for ds in MATBENCH_DATASETS:
            for split, folds in [*((f"omee2024-{m}", 50) for m in OOD_METHODS), ("random", 5)]:
                for f in range(folds):
                    recs.append(make_record(ds, split, f, model, "scratch", 0, {"test": ([1.0], [1.0 + err])},
                                            prop="n", preset=preset))
    for preset, variant, err in (("ridge", "", 0.02), ("rf", "rf", 0.04)):
        recs.append(make_record("qm9", "boom-gap", 0, "dpa3-frozen", "lp", 0,
                                {"id_test": ([0.0, 0.0], [err, err]), "ood_test": ([0.0], [2 * err])}, prop="gap",
                                preset=preset, variant=variant, stand_in=True))
    return recs


def test_baselines_have_complete_measured_rows_in_both_paper_layouts(cards):
    s = summary_of_records(_baseline_records())
    rows, _ = qm9_rows(cards, s)
    by_label = {rows[i].label: (rows[i], rows[i + 1]) for i in range(0, len(rows), 2)}
    for label in ("CM-KRR (measured)", "Dummy (measured)"):
        rid, rood = by_label[label]
        assert rid.source == "measured" and (rid.line, rood.line) == ("ID", "OOD")
        assert all(rid.entries[p].kind == rood.entries[p].kind == "measured" for p in QM9_PROPERTIES), label
        assert rood.gap == "3.00"  # OOD/ID over all 8 properties: 0.3 / 0.1
    # Reported rows are untouched and come first; measured rows follow, in registry-label order.
    labels = [r.label for r in rows if r.label]
    assert labels[:15] == [c.name for c in sorted((c for c in cards if c.has_qm9), key=lambda c: c.order("Table 3"))]
    layout = matbench_layout(cards, s)
    assert len(layout.row_keys) == 18
    for label, value in (("Dummy (measured)", "0.9000"), ("RF-SCM/Magpie (measured)", "0.3000")):
        j = layout.columns.index(label)
        cells = [row[j] for row in layout.entries]
        assert all(e.kind == "measured" and e.value == value for e in cells), label
        assert {e.coverage for e in cells} == {"50/50 folds, 1 seed", "5/5 folds, 1 seed"}
    assert layout.headers[-2:] == ["Dummy (measured)", "RF-SCM/Magpie (measured)"]
    j = layout.columns.index("RF-SCM/Magpie (measured)")
    assert all(g[2 + j] == "1.00" for g in layout.gap_rows)
    # The Table 3 layout never shows a crystal-only model, nor Table 4 a molecule-only one.
    assert "RF-SCM/Magpie (measured)" not in by_label and "CM-KRR (measured)" not in layout.columns


def test_presets_and_variants_are_separate_rows(cards):
    s = summary_of_records(_baseline_records())
    labels = [r.label for r in qm9_rows(cards, s)[0] if r.label]
    assert "DPA3-frozen (ridge, stand-in pretrained, measured)" in labels
    assert "DPA3-frozen (rf, stand-in pretrained, measured)" in labels
    fam = s[(s["model"] == "dpa3-frozen") & (s["set"] == "id_test") & (s["metric"] == "rmse")]
    assert sorted(zip(fam["preset"], fam["variant"], strict=True)) == [("rf", "rf"), ("ridge", "")]
    # The same preset under two variants is still two rows.
    recs = [make_record("qm9", "boom-gap", 0, "dpa3-frozen", "lp", 0, {"id_test": ([0.0], [e]),
                        "ood_test": ([0.0], [e])}, prop="gap", preset="ridge", variant=v)
            for v, e in (("", 0.01), ("sum-pool", 0.02))]
    labels = [r.label for r in qm9_rows(cards, summary_of_records(recs))[0] if r.label]
    assert labels[-2:] == ["DPA3-frozen (ridge, measured)", "DPA3-frozen (ridge, sum-pool, measured)"]


def test_unregistered_model_and_strategy_render_under_raw_names(cards):
    recs = [make_record("qm9", "boom-gap", 0, "retired-net", "distill", s, {"id_test": ([0.0], [0.01]),
                        "ood_test": ([0.0], [0.03])}, prop="gap", preset="big") for s in (0, 1)]
    recs += [make_record("matbench_dielectric", "random", f, "retired-net", "ft", 0, {"test": ([0.0], [0.5])},
                         prop="n", preset="big") for f in range(5)]
    s = summary_of_records(recs)
    labels = [r.label for r in qm9_rows(cards, s)[0] if r.label]
    assert labels[-1] == "retired-net-distill (big, measured)"
    assert "retired-net-FT (big, measured)" in matbench_layout(cards, s).columns  # registered strategy: its label
    assert measured_label("dpa3", "mft", "paper", False, cards) == "DPA3-MFT (measured)"
    assert measured_label("cm-krr", "scratch", "hansen2013", False, cards) == "CM-KRR (measured)"  # only preset


def test_leaderboard_code_has_no_model_or_strategy_name_tables():
    """Labels, order, the reference strategy and each dataset's metric come from the registries."""
    import re

    src = {p.name: p.read_text() for p in (REPO / "ood_bench" / "leaderboard").glob("*.py")}
    for name in ("aggregate.py", "tables.py", "figures.py", "build.py", "compare.py"):
        text = src[name]
        for banned in ("STRATEGY_NAMES", "STRATEGY_ORDER", "MODEL_NAMES", "fig2_order", "_metric_for"):
            assert banned not in text, (name, banned)
        assert not re.search(r"""==\s*["'](dpa3|scratch|lp|ft|mft|dummy|cm-krr|rf-scm-magpie|dpa3-frozen)["']""", text)
        assert not re.search(r"""["'](scratch|mft)["']""", text), name


def test_fold_error_figures_include_the_baselines(tmp_path, cards):
    recs = [r for r in _baseline_records() if r["key"]["dataset"] == "matbench_dielectric"]
    recs += [make_record("matbench_dielectric", "omee2024-LOCO", f, "dpa3", "mft", 0, {"test": ([1.0], [1.1])},
                         prop="n", preset="tiny") for f in range(50)]
    frame = records_frame(recs)
    panels = fold_error_panels(frame)["matbench_dielectric"]
    assert [p.split for p in panels] == [*(f"omee2024-{m}" for m in OOD_METHODS), "random"]
    loco = panels[0]
    assert [r.model for r, _ in loco.runs] == ["dpa3", "dummy", "rf-scm-magpie"]
    assert all(len(per_fold) == 50 for _, per_fold in loco.runs)
    assert [str(f) for f in loco.runs[1][1].index[:3]] == ["0", "1", "2"]  # numeric fold order
    from ood_bench.leaderboard.figures import fold_error_figures

    figs = fold_error_figures(frame, summary_of_records(recs), cards, tmp_path)
    assert [f.path.name for f in figs] == ["fold_errors_matbench-dielectric.png"]


# ---------------------------------------------------------------------------- measured here


def test_measured_here_lists_every_family_first_with_ood_id_ratio(tmp_path, cards):
    y = np.zeros(4)
    for seed in (0, 1):
        write(tmp_path, qm9_record(seed, y, y + 0.01, y, y + 0.03, strategy="ft", preset="tiny",
                                   dropped={"train": 48, "val": 123, "id_test": 104, "ood_test": 639}))
    for f in range(5):
        write(tmp_path, make_record("matbench_dielectric", "random", f, "dummy", "scratch", 0,
                                    {"test": ([1.0], [1.25])}, prop="n", preset="mean"))
    s = summary_of(tmp_path)
    two, one = measured_overview(cards, s)
    row = next(line for line in two.splitlines() if "DPA3-FT (tiny, measured)" in line)
    cols = [c.strip() for c in row.strip("|").split("|")]
    assert cols[1:] == ["qm9", "boom-gap", "gap", "RMSE", "0.0100 (0.0000)", "0.0300 (0.0000)", "3.00", "2 seeds"]
    row = next(line for line in one.splitlines() if "Dummy (measured)" in line)
    assert [c.strip() for c in row.strip("|").split("|")][1:] == [
        "matbench_dielectric", "Random", "n", "MAE", "test", "0.2500", "5/5 folds, 1 seed"]
    md = build_leaderboard(tmp_path, figures=False, splits_dir=tmp_path / "none")["markdown"].read_text()
    head = md.split("## How to read this")[0]
    assert "## Measured here" in head and "DPA3-FT (tiny, measured)" in head and "Dummy (measured)" in head
    assert md.index("## Measured here") < md.index("## QM9 BOOM")
    # Molecules dropped for lack of coordinates: how many per set, and where to get them.
    assert "train 48 of 148, val 123 of 126, id_test 104 of 108, ood_test 639 of 643" in head
    assert "OODBENCH_QM9_TARBALL" in head and "original QM9 tarball" in head
    assert "appear here once measured records exist" not in md


def test_measured_here_with_no_records_says_so(tmp_path):
    md = build_leaderboard(tmp_path, figures=False, splits_dir=tmp_path / "none")["markdown"].read_text()
    section = md.split("## Measured here")[1].split("## How to read this")[0]
    assert "No measured records" in section
    assert "appear here once measured records exist" in md


def test_dropped_structures_are_collected_per_split(tmp_path):
    y = np.zeros(3)
    recs = [qm9_record(s, y, y, y, y, dropped={"train": 5, "val": 0, "id_test": 1, "ood_test": 7}) for s in (0, 1)]
    recs.append(qm9_record(0, y, y, y, y, prop="homo", dropped={"train": 0, "val": 0, "id_test": 0, "ood_test": 0}))
    (d,) = dropped_structures(recs)
    assert (d.dataset, d.split, d.counts["ood_test"], d.totals["ood_test"]) == ("qm9", "boom-gap", [7], [10])


# ------------------------------------------------------------------------------- committed pages


@pytest.mark.parametrize("page,options", [("quickstart", []), ("studies/standin-gap", []),
                                          ("studies/standin-dielectric", ["--folds", "0"])])
def test_committed_page_is_what_the_command_makes(page, options, tmp_path, capsys):
    """results/<page>/LEADERBOARD.md (the quickstart's, the stand-in study's) is exactly what
    `oodbench leaderboard` makes from the committed records and collapse table (built here in a
    copy with the same layout), and it is deterministic."""
    from ood_bench.cli import main

    src = REPO / "results" / page
    if not (src / "runs").is_dir() or not (src / "LEADERBOARD.md").exists():
        pytest.skip(f"no committed records and page under results/{page}")
    results = tmp_path / Path(page).name
    shutil.copytree(src / "runs", results / "runs", ignore=shutil.ignore_patterns("*.pt", "work", "scratch"))
    if (src / "analysis" / "collapse.md").exists():
        (results / "analysis").mkdir()
        shutil.copy(src / "analysis" / "collapse.md", results / "analysis" / "collapse.md")
    args = ["leaderboard", "--results-dir", str(results), "--splits-dir", str(REPO / "splits"), *options]
    assert main(args) == 0
    fresh = (results / "LEADERBOARD.md").read_text()
    assert fresh == (src / "LEADERBOARD.md").read_text()
    assert sorted(p.name for p in (results / "figures").iterdir()) == sorted(
        p.name for p in (src / "figures").iterdir())
    assert main(args) == 0
    assert (results / "LEADERBOARD.md").read_text() == fresh  # deterministic: no timestamps
    capsys.readouterr()


def test_committed_leaderboard_is_up_to_date(tmp_path):
    """results/LEADERBOARD.md is what `oodbench leaderboard` makes from the committed records, built
    in a copy with the same layout (only files git tracks: local, uncommitted runs do not count)."""
    import subprocess

    committed = REPO / "results" / "LEADERBOARD.md"
    if not committed.exists():
        pytest.skip("results/LEADERBOARD.md not generated yet")
    listed = subprocess.run(["git", "ls-files", "results/runs"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell committed records from local ones")
    results = tmp_path / "results"
    for rel in listed.stdout.split():
        (results.parent / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, results.parent / rel)
    if (REPO / "results" / "analysis" / "collapse.md").exists():
        (results / "analysis").mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "results" / "analysis" / "collapse.md", results / "analysis" / "collapse.md")
    out = build_leaderboard(results, splits_dir=REPO / "splits")
    assert out["markdown"].read_text() == committed.read_text()
    assert sorted(p.name for p in out["figures"]) == sorted(p.name for p in (REPO / "results" / "figures").iterdir())


def test_plain_scalar_mu_runs_are_labelled_not_the_papers_head():
    from ood_bench.leaderboard.aggregate import head_note

    def rec(prop, head, paper):
        return {"key": {"dataset": "qm9", "property": prop}, "config": {"backend": "deepmd", "deepmd_input": {
            "model": {"fitting_net": {"type": "property"}}}}, "training": {"head": head, "paper_head": paper}}

    assert head_note(rec("mu", "property", "dipole-norm")) == "property head, not the paper's dipole-norm head"
    assert head_note(rec("mu", "dipole-norm", "dipole-norm")) == ""
    assert head_note(rec("gap", "property", "property")) == ""
    legacy = rec("r2", None, None)
    legacy["training"] = {}
    assert head_note(legacy) == "property head, not the paper's spatial-extent head"
    assert head_note({**rec("mu", "property", "dipole-norm"), "config": {"backend": "sklearn"}}) == ""


# ------------------------------------------------------------- strategy comparison and ablations


def _cols(table: str, label: str) -> list[str]:
    """Cells of the table row whose strategy/run column is exactly ``label``."""
    for line in table.splitlines():
        cols = [c.strip() for c in line.strip("|").split("|")]
        if label in cols:
            return cols
    raise AssertionError(f"no row {label!r} in\n{table}")


def test_strategy_roles_come_from_the_registry():
    from ood_bench.leaderboard.compare import split_variant, strategy_roles

    roles = strategy_roles()
    assert (roles.reference, roles.fine_tune, roles.multi_task) == ("scratch", "ft", "mft")
    assert roles.ablations == ("mft-freshhead", "mtl-scratch")  # MFT + WiSE-FT etc. are not ablations
    opts = split_variant("tiny,alphas=0,0.5,1,aux=SPICE2,auxdata=ab12cd34,subset=3")
    assert opts.context == ("tiny", "subset=3") and opts.params == ("alphas=0,0.5,1",)
    assert opts.aux == ("aux=SPICE2", "auxdata=ab12cd34")


def _comparison_records() -> list[dict]:
    y = np.zeros(3)
    recs = []
    # QM9 gap: (strategy, variant, stand_in, seed, ID error, OOD error); constant errors: RMSE = the offset.
    # Written out of order: the table follows the registry (Scratch, FT, MFT, WiSE-FT), unknown last.
    for strategy, variant, stand_in, seed, e_id, e_ood in (
            ("mft", "", True, 0, 0.0099, 0.0336), ("distill", "", True, 0, 0.0121, 0.0462),
            ("wise-ft", "alphas=0,0.5", True, 0, 0.0110, 0.0420), ("ft", "", True, 0, 0.0088, 0.0378),
            ("scratch", "", None, 0, 0.010, 0.040), ("scratch", "", None, 1, 0.012, 0.044)):
        recs.append(qm9_record(seed, y, y + e_id, y, y + e_ood, strategy=strategy, preset="tiny", variant=variant,
                               stand_in=stand_in))
    # MatBench dielectric: LOCO (one test set: OOD) with the Random split as ID when the run has one.
    for strategy, folds, err in (("scratch", 50, 0.8), ("ft", 50, 0.6), ("lp", 41, 0.7)):  # LP: 41/50 folds
        recs += [make_record("matbench_dielectric", "omee2024-LOCO", f, "dpa3", strategy, 0,
                             {"test": ([1.0], [1.0 + err])}, prop="n") for f in range(folds)]
    recs += [make_record("matbench_dielectric", "random", f, "dpa3", "scratch", 0, {"test": ([1.0], [1.5])},
                         prop="n") for f in range(5)]
    return recs


def test_strategy_comparison_numbers_computed_by_hand(cards):
    from ood_bench.leaderboard.compare import comparison_layout, comparison_table

    s = summary_of_records(_comparison_records())
    groups = comparison_layout(s)
    assert [(g.base.dataset, g.base.split) for g in groups] == [("matbench_dielectric", "omee2024-LOCO"),
                                                                 ("qm9", "boom-gap")]
    qm9 = groups[1]
    # Scratch needs no checkpoint (no stand-in flag): it is the reference of the stand-in runs.
    assert qm9.stand_in is True and qm9.label() == "DPA3 (tiny, stand-in pretrained, measured)"
    assert [r.label for r in qm9.rows] == ["Scratch", "FT", "MFT", "WiSE-FT (alphas=0,0.5)", "distill"]
    full = comparison_table(cards, s)
    loco, table = full.split("| qm9")
    # Scratch: ID mean (0.010 + 0.012) / 2 = 0.011, SE = population std 0.001 / sqrt(2) = 0.0007; OOD mean
    # 0.042, SE 0.002 / sqrt(2) = 0.0014; OOD/ID 0.042 / 0.011 = 3.82.
    # Against FT: (0.011 - 0.0088) / 0.0088 = +25 %, (0.042 - 0.0378) / 0.0378 = +11.1 %.
    assert _cols(table, "Scratch")[6:] == ["0.0110 (0.0007)", "0.0420 (0.0014)", "3.82", "ref", "ref", "+25.0%",
                                           "+11.1%", "2 seeds"]
    # FT: (0.0088 - 0.011) / 0.011 = -20 %, (0.0378 - 0.042) / 0.042 = -10 %.
    assert _cols(table, "FT")[6:] == ["0.0088", "0.0378", "4.30", "-20.0%", "-10.0%", "ref", "ref", "1 seed"]
    # MFT: -10 % / -20 % against Scratch; +12.5 % / (0.0336 - 0.0378) / 0.0378 = -11.1 % against FT.
    assert _cols(table, "MFT")[6:] == ["0.0099", "0.0336", "3.39", "-10.0%", "-20.0%", "+12.5%", "-11.1%", "1 seed"]
    assert _cols(table, "WiSE-FT (alphas=0,0.5)")[9:11] == ["+0.0%", "+0.0%"]
    assert _cols(table, "distill")[9:11] == ["+10.0%", "+10.0%"]  # unregistered: raw name, last
    # MatBench LOCO: OOD = the LOCO test error, ID = the same run's Random split error (FT has none).
    assert _cols(loco, "Scratch")[:6] == ["matbench_dielectric", "LOCO", "n", "DPA3 (measured)", "MAE", "Scratch"]
    assert _cols(loco, "Scratch")[6:11] == ["0.5000", "0.8000", "1.60", "ref", "ref"]
    assert _cols(loco, "FT")[6:11] == ["—", "0.6000", "—", "—", "-25.0%"]  # (0.6 - 0.8) / 0.8
    assert [r.label for r in groups[0].rows] == ["Scratch", "LP", "FT"]


def test_strategy_comparison_incomplete_cell_shows_no_number(cards):
    from ood_bench.leaderboard.compare import comparison_table

    table = comparison_table(cards, summary_of_records(_comparison_records())).split("| qm9")[0]
    lp = _cols(table, "LP")
    assert lp[6:] == ["—", "partial 41/50 folds, 1 seed", "—", "—", "partial", "—", "partial",
                      "41/50 folds, 1 seed"]
    assert _cols(table, "FT")[8:11] == ["—", "—", "-25.0%"]  # complete cells still compare
    # A single strategy (or none) is no comparison.
    assert comparison_table(cards, summary_of_records(_comparison_records()[-5:])) is None


def _ablation_records() -> list[dict]:
    """HOMO, LUMO, GAP as in the paper's Fig. 3(c-e); every run made with --aux-branch SPICE2, as
    the README's command does (also Scratch and FT, whose auxiliary options mean nothing)."""
    y = np.zeros(3)
    spice, omat = "aux=SPICE2,auxdata=11111111", "aux=OMat24,auxdata=22222222"
    runs = {  # (strategy, variant, stand_in): {property: (ID RMSE, OOD RMSE)}
        ("mft", spice, True): {"homo": (0.010, 0.050), "lumo": (0.020, 0.060), "gap": (0.040, 0.080)},
        ("mft-freshhead", spice, True): {"homo": (0.011, 0.050), "lumo": (0.020, 0.063), "gap": (0.042, 0.080)},
        ("mtl-scratch", spice, None): {"homo": (0.013, 0.055), "gap": (0.052, 0.088)},
        ("mft", omat, True): {"gap": (0.044, 0.096)},
        ("ft", spice, True): {"homo": (0.010, 0.060), "lumo": (0.020, 0.072), "gap": (0.040, 0.096)},
        ("scratch", spice, None): {"gap": (0.050, 0.100)},
    }
    return [qm9_record(0, y, y + e_id, y, y + e_ood, prop=prop, strategy=strategy, preset="tiny", variant=variant,
                       stand_in=stand_in)
            for (strategy, variant, stand_in), props in runs.items() for prop, (e_id, e_ood) in props.items()]


def test_ablation_avg_rmse_increase_computed_by_hand():
    from ood_bench.leaderboard.compare import ablation_layout, ablation_table

    s = summary_of_records(_ablation_records())
    (g,) = ablation_layout(s)
    assert g.baseline == "MFT (aux=SPICE2, auxdata=11111111)"  # the aux set the other runs used
    assert [(r.panel, r.label) for r in g.rows] == [
        ("c", "FT"), ("d", "MFT (fresh FF head)"), ("d", "Multi-task scratch"),
        ("e", "MFT (aux=OMat24, auxdata=22222222)")]
    by = {r.label: r for r in g.rows}
    # fresh head: ID (+10 % + 0 % + 5 %) / 3 = +5 %; OOD (0 % + 5 % + 0 %) / 3 = +1.67 %
    assert by["MFT (fresh FF head)"].increase == pytest.approx({"ID": 5.0, "OOD": 5 / 3})
    # multi-task scratch: +30 % ID and +10 % OOD on HOMO and GAP (no LUMO run: 2 properties)
    assert by["Multi-task scratch"].increase == pytest.approx({"ID": 30.0, "OOD": 10.0})
    assert by["FT"].increase == pytest.approx({"ID": 0.0, "OOD": 20.0})
    # OMat24 instead of SPICE2, GAP only: (0.044 - 0.040) / 0.040, (0.096 - 0.080) / 0.080
    assert by["MFT (aux=OMat24, auxdata=22222222)"].increase == pytest.approx({"ID": 10.0, "OOD": 20.0})
    table = ablation_table(s)
    assert _cols(table, "MFT (fresh FF head)")[3:] == ["(d) ablation", "MFT (fresh FF head)", "+5.0% (n=3)",
                                                       "+1.7% (n=3)", "HOMO, LUMO, GAP"]
    assert _cols(table, "Multi-task scratch")[5:] == ["+30.0% (n=2)", "+10.0% (n=2)", "HOMO, GAP"]
    assert _cols(table, "MFT (aux=OMat24, auxdata=22222222)")[3:] == [
        "(e) auxiliary task", "MFT (aux=OMat24, auxdata=22222222)", "+10.0% (n=1)", "+20.0% (n=1)", "GAP"]
    assert _cols(table, "FT")[:3] == ["qm9", "DPA3 (tiny, stand-in pretrained, measured)",
                                      "MFT (aux=SPICE2, auxdata=11111111)"]
    # Without an ablation or a second auxiliary set there is no ablation table.
    plain = [r for r in _ablation_records() if r["key"]["strategy"] in ("mft", "ft") and "OMat24" not in
             r["key"]["variant"]]
    assert ablation_layout(summary_of_records(plain)) == [] and ablation_table(summary_of_records(plain)) is None


def test_ablation_incomplete_cell_shows_no_number():
    from ood_bench.leaderboard.compare import ablation_table

    recs = []
    for strategy, loco_folds, e_rand, e_loco in (("mft", 50, 0.4, 0.5), ("mft-freshhead", 30, 0.5, 0.6)):
        recs += [make_record("matbench_dielectric", "random", f, "dpa3", strategy, 0, {"test": ([1.0], [1.0 + e_rand])},
                             prop="n") for f in range(5)]
        recs += [make_record("matbench_dielectric", "omee2024-LOCO", f, "dpa3", strategy, 0,
                             {"test": ([1.0], [1.0 + e_loco])}, prop="n") for f in range(loco_folds)]
    row = _cols(ablation_table(summary_of_records(recs)), "MFT (fresh FF head)")
    # ID: the Random split, (0.5 - 0.4) / 0.4; OOD: LOCO is 30/50 folds: no number
    assert row[5:] == ["+25.0% (n=1)", "partial", "ID: Random"]


def test_comparison_and_ablation_sections_in_the_leaderboard(tmp_path):
    results = tmp_path / "results"
    write(results, *_ablation_records())
    out = build_leaderboard(results, splits_dir=tmp_path / "none", figures_dir=results / "figures")
    md = out["markdown"].read_text()
    contents = next(line for line in md.splitlines() if line.startswith("Contents:"))
    assert ("[Strategy comparison](#strategy-comparison-fig-2a-c-quantities) · "
            "[Ablations](#ablations-fig-3c-e-layout) · [Figures](#figures)") in contents
    assert (md.index("## MatBench MAE") < md.index("## Strategy comparison (Fig. 2(a-c) quantities)")
            < md.index("## Ablations (Fig. 3(c-e) layout)") < md.index("## Figures"))
    assert [p.name for p in out["figures"] if p.name.startswith("ablation_")] == ["ablation_qm9_dpa3_tiny_stand-in.png"]
    ablations = md.split("## Ablations (Fig. 3(c-e) layout)")[1].split("## Figures")[0]
    assert "+5.0% (n=3)" in ablations and "(figures/ablation_qm9_dpa3_tiny_stand-in.png)" in ablations
    # Nothing to compare: neither section, nor its entry in the contents.
    other = tmp_path / "other"
    write(other, qm9_record(0, np.zeros(3), np.zeros(3) + 0.1, np.zeros(3), np.zeros(3) + 0.2))
    md = build_leaderboard(other, figures=False, splits_dir=tmp_path / "none")["markdown"].read_text()
    assert "Strategy comparison" not in md and "Ablations" not in md and "↑RMSE" not in md


def test_a_family_made_with_two_checkpoints_is_flagged(tmp_path, caplog):
    """Records of one run family from two pretrained checkpoints (a rebuilt stand-in) average two
    models: the page says so, by family, and the log warns; one checkpoint says nothing."""
    from ood_bench.leaderboard.build import build_leaderboard

    results = tmp_path / "results"
    recs = [make_record("matbench_dielectric", "random", f, "dpa3", "ft", 0, {"test": ([1.0, 2.0], [1.5, 2.5])},
                        stand_in=True) for f in range(5)]
    for r in recs:
        r["pretrained"]["sha256"] = "a" * 64
    write(results / "runs", *recs)
    out = build_leaderboard(results, figures=False)
    assert "mixed checkpoints" not in out["markdown"].read_text()
    recs[3]["pretrained"]["sha256"] = "b" * 64
    write(results / "runs", recs[3])
    out = build_leaderboard(results, figures=False)
    text = out["markdown"].read_text()
    assert "**Warning: mixed checkpoints.**" in text
    assert "- matbench_dielectric / random / DPA3-FT (stand-in pretrained, measured): 2 checkpoints" in text
    assert "mixes records from 2 pretrained checkpoints" in caplog.text
