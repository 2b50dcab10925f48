"""The leaderboard reduce: records -> cells -> markdown tables and figures. No training: records
are built from arrays with ``write_record``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ood_bench.evaluate import evaluate_sets
from ood_bench.leaderboard import build_leaderboard
from ood_bench.leaderboard.aggregate import FoldCounter, measured_label, records_frame, summarize
from ood_bench.leaderboard.baselines import load_cards
from ood_bench.leaderboard.tables import (
    competition_ranks,
    matbench_layout,
    matbench_ranks,
    matbench_table,
    qm9_ranks,
    qm9_rows,
    qm9_table,
)
from ood_bench.records import FORMAT, RunKey, load_records, record_path, write_record
from ood_bench.splits import Fold, SplitSet, save_split

REPO = Path(__file__).resolve().parents[1]


def make_record(dataset: str, split: str, fold, model: str, strategy: str, seed: int,
                sets: dict[str, tuple], *, prop: str = "", preset: str = "paper", stand_in: bool | None = None,
                train_fraction: float = 1.0, n_train: int = 100) -> dict:
    """A valid record from arrays: ``sets`` maps an evaluation set to (y_true, y_pred)."""
    predictions = {
        name: {"id": [f"{name}-{i}" for i in range(len(t))], "y_true": [float(v) for v in t],
               "y_pred": [float(v) for v in p]}
        for name, (t, p) in sets.items()
    }
    key = RunKey(dataset, split, str(fold), model, strategy, seed, train_fraction, prop)
    rec = {
        "format": FORMAT, "status": "complete", "key": key.to_dict(),
        "config": {"preset": preset, "unit": "Hartree" if dataset == "qm9" else "unitless"},
        "versions": {"oodbench": "test"}, "data": {"n_train": n_train},
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
    assert mb.per_seed == pytest.approx(expected_mae, rel=1e-12)
    q = cell(s, dataset="qm9", set="id_test", metric="rmse")
    mean = sum(expected_rmse.values()) / 3
    assert q.mean == pytest.approx(mean, rel=1e-12)
    assert q.std == pytest.approx(np.std(list(expected_rmse.values())), rel=1e-12)


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


def test_regenerated_splits_are_their_own_rows(tmp_path, cards):
    for f in range(50):
        write(tmp_path, make_record("matbench_dielectric", "LOCO", f, "dpa3", "mft", 0, {"test": ([1.0], [1.2])}))
    s = summary_of(tmp_path)
    layout = matbench_layout(cards, s)
    assert ("LOCO", "matbench_dielectric") in layout.row_keys
    row = layout.row_keys.index(("LOCO", "matbench_dielectric"))
    assert layout.labels[row][0] == "LOCO (regenerated)"
    col = layout.columns.index("DPA3-MFT (measured)")
    assert layout.entries[row][col].render() == "0.2000 [measured 50/50 folds, 1 seed]"
    assert all(e.kind == "missing" for e in layout.entries[row][:col])  # no reported number on our splits
    published = layout.row_keys.index(("omee2024-LOCO", "matbench_dielectric"))
    assert layout.entries[published][col].kind == "missing"
    # Only datasets with measured regenerated runs get a row.
    assert ("LOCO", "matbench_log_gvrh") not in layout.row_keys


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
    wrong.write_text(json.dumps(rec))
    out = build_leaderboard(results, figures=False, splits_dir=tmp_path / "none")
    assert out["n_records"] == 1
    assert sorted(p.name for p, _ in out["skipped"]) == ["record.json", "record.json"]
    assert {Path(p).parent.name for p, _ in out["skipped"]} == {"fold0-seed1-frac1", "fold0-seed2-frac1"}
    md = out["markdown"].read_text()
    assert "## Skipped records" in md and "not readable JSON" in md and "does not match the saved predictions" in md
    assert "0.0200 [measured 1 seed]" in md


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
                     "id_vs_ood_dpa3_tiny.png", "id_vs_ood_reported.png"]
    assert all(p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG" for p in out["figures"])
    md = out["markdown"].read_text()
    assert out["markdown"] == results / "LEADERBOARD.md"
    assert "(figures/fold_errors_matbench-dielectric.png)" in md and "(analysis/collapse.md)" in md
    assert "DPA3-MFT (tiny, measured)" in md and "partial 6/50 folds" in md
    assert "[measured 2 seeds]" in md
    assert "## Other measured results" in md and "train fraction 0.25" in md
    assert "How to read this" in md and "competition ranking" in md


def test_cli_prints_where_files_are_and_warns_about_skipped(tmp_path, capsys):
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


def test_committed_leaderboard_is_up_to_date(tmp_path):
    """results/LEADERBOARD.md is what `oodbench leaderboard` makes from the committed records."""
    committed = REPO / "results" / "LEADERBOARD.md"
    if not committed.exists():
        pytest.skip("results/LEADERBOARD.md not generated yet")
    if (REPO / "results" / "runs").exists():
        pytest.skip("local result records present: the committed file reflects the published state only")
    out = build_leaderboard(tmp_path, tmp_path / "LEADERBOARD.md", figures=False, splits_dir=tmp_path / "none")
    fresh = out["markdown"].read_text().replace(f"`{tmp_path.name}", "`")
    assert _tables(fresh) == _tables(committed.read_text())


def _tables(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]
