"""Seed ensembles derived from records (no training): numbers recomputed by hand with plain numpy."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from ood_bench.evaluate import evaluate_sets
from ood_bench.leaderboard import build_leaderboard
from ood_bench.leaderboard.baselines import load_cards
from ood_bench.leaderboard.ensembles import ensemble_frame, ensemble_table, miscalibration_area
from ood_bench.leaderboard.tables import qm9_decimals
from ood_bench.records import FORMAT, RunKey, validate_record, write_record

REPO = Path(__file__).resolve().parents[1]
IDS = [f"mol-{i}" for i in range(8)]
Y = np.array([0.31, -0.12, 0.58, 0.05, 0.77, -0.40, 0.22, 0.94])
# Member errors: id 7 has the same error for every member (zero spread); no ties otherwise.
OFFSETS = np.array([[0.10, -0.05, 0.30, 0.02, -0.20, 0.15, 0.01, 0.07],
                    [0.12, 0.04, -0.10, 0.03, 0.25, -0.05, 0.06, 0.07],
                    [0.05, -0.01, 0.06, -0.04, 0.40, 0.35, -0.02, 0.07]])


def member(seed: int, strategy: str = "ft", drop_ood: str | None = None) -> dict:
    """A valid QM9 record: val/ID/OOD test = Y + 0.5/1/2 x the seed's offsets (OOD without ``drop_ood``)."""
    def block(scale: float, drop: str | None = None) -> dict:
        keep = [i for i, name in enumerate(IDS) if name != drop]
        return {"id": [IDS[i] for i in keep], "y_true": [float(Y[i]) for i in keep],
                "y_pred": [float(Y[i] + scale * OFFSETS[seed][i]) for i in keep]}

    predictions = {"val": block(0.5), "id_test": block(1.0), "ood_test": block(2.0, drop_ood)}
    key = RunKey("qm9", "boom-gap", "0", "dpa3", strategy, seed, 1.0, "gap", "")
    rec = {"format": FORMAT, "status": "complete", "key": key.to_dict(), "config": {"preset": "tiny"},
           "versions": {"oodbench": "test"}, "data": {"n_train": 10}, "predictions": predictions,
           "metrics": evaluate_sets(predictions), "timing": {"train_s": 0.0}, "pretrained": {"stand_in": True}}
    assert validate_record(rec) == []
    return rec


def records() -> list[dict]:
    """FT: 3 seeds, seed 2 lacks mol-3 on the OOD test; MFT: a single seed (no ensemble)."""
    return [member(0), member(1), member(2, drop_ood="mol-3"), member(0, strategy="mft")]


def by_hand(scale: float, keep: list[int]) -> dict[str, float]:
    """Expected metrics, with loops: ensemble mean, population std, ranks, Gaussian interval counts."""
    y = [Y[i] for i in keep]
    preds = [[Y[i] + scale * OFFSETS[s][i] for i in keep] for s in range(3)]
    mean = [sum(p[j] for p in preds) / 3 for j in range(len(y))]
    spread = [math.sqrt(sum((p[j] - mean[j]) ** 2 for p in preds) / 3) for j in range(len(y))]
    err = [abs(m - t) for m, t in zip(mean, y, strict=True)]
    rmse = math.sqrt(sum(e * e for e in err) / len(err))
    member_rmse = sum(math.sqrt(sum((p[j] - y[j]) ** 2 for j in range(len(y))) / len(y)) for p in preds) / 3
    # Spearman without ties: 1 - 6 sum d^2 / (n (n^2 - 1)), zero-spread points left out.
    pairs = [(e, s) for e, s in zip(err, spread, strict=True) if s > 1e-12]
    n = len(pairs)
    rank_e = {v: r for r, v in enumerate(sorted(e for e, _ in pairs))}
    rank_s = {v: r for r, v in enumerate(sorted(s for _, s in pairs))}
    d2 = sum((rank_e[e] - rank_s[s]) ** 2 for e, s in pairs)
    rho = 1 - 6 * d2 / (n * (n * n - 1))
    # Miscalibration area: midpoints of 100 bins, tiny sigma for zero spread.
    area = 0.0
    for k in range(100):
        p = (k + 0.5) / 100
        z = NormalDist().inv_cdf(0.5 + p / 2)
        inside = sum(1 for e, s in zip(err, spread, strict=True) if e <= z * max(s, 1e-300))
        area += abs(inside / len(err) - p) / 100
    return {"ens_rmse": rmse, "member_rmse": member_rmse, "spearman": rho, "miscal_area": area,
            "ens_mae": sum(err) / len(err)}


def test_ensemble_metrics_match_a_hand_computation():
    frame = ensemble_frame(records())
    assert list(frame["strategy"]) == ["ft", "ft"]  # the single MFT seed makes no ensemble; val left out
    assert list(frame["set"]) == ["id_test", "ood_test"] and set(frame["n_members"]) == {3}
    assert list(frame["seeds"]) == ["0,1,2", "0,1,2"]
    id_row, ood_row = (frame[frame["set"] == s].iloc[0] for s in ("id_test", "ood_test"))
    assert (id_row.n_ids, id_row.n_dropped) == (8, 0)
    assert (ood_row.n_ids, ood_row.n_dropped) == (7, 1)  # mol-3 is missing in seed 2: dropped and counted
    for row, scale, keep in ((id_row, 1.0, list(range(8))), (ood_row, 2.0, [0, 1, 2, 4, 5, 6, 7])):
        for name, value in by_hand(scale, keep).items():
            assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_spearman_ignores_zero_spread_and_single_seed_groups_give_no_rows():
    frame = ensemble_frame([member(0), member(1), member(0, strategy="mft")])
    assert list(frame["n_members"]) == [2, 2] and set(frame["strategy"]) == {"ft"}
    assert ensemble_frame([member(0), member(0, strategy="mft")]).empty


def test_miscalibration_area_limits():
    rng = np.random.default_rng(0)
    mean, sigma = rng.normal(size=20000), rng.uniform(0.5, 2.0, size=20000)
    y = mean + sigma * rng.normal(size=20000)
    assert miscalibration_area(y, mean, sigma) < 0.01  # calibrated Gaussian
    assert miscalibration_area(y, mean, np.zeros_like(sigma)) == pytest.approx(0.5)  # no spread: all outside


def test_seed_ensembles_section_in_the_leaderboard(tmp_path):
    cards = load_cards(REPO / "baselines")
    results = tmp_path / "results"
    for rec in records():
        write_record(results, rec)
    md = build_leaderboard(results, figures=False, splits_dir=tmp_path / "none")["markdown"].read_text()
    contents = next(line for line in md.splitlines() if line.startswith("Contents:"))
    assert "[Seed ensembles](#seed-ensembles)" in contents
    section = md.split("## Seed ensembles")[1].split("\n## ")[0]
    assert section.strip().endswith(ensemble_table(ensemble_frame(records()), cards))
    d = qm9_decimals(cards)["gap"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("|")]
    ood = next(r for r in rows if r[6] == "OOD (ood_test)")
    exp = by_hand(2.0, [0, 1, 2, 4, 5, 6, 7])
    assert ood[:6] == ["", "", "", "DPA3 (tiny, stand-in pretrained, measured)", "FT", "3"]
    assert ood[7:] == ["RMSE", f"{exp['ens_rmse']:.{d}f}", f"{exp['member_rmse']:.{d}f}", f"{exp['spearman']:.2f}",
                       f"{exp['miscal_area']:.3f}", "1 fold, 7 ids (1 dropped)"]
    idr = next(r for r in rows if r[6] == "ID (id_test)")
    assert idr[:6] == ["qm9", "boom-gap", "gap", "DPA3 (tiny, stand-in pretrained, measured)", "FT", "3"]
    # One seed per run: no ensemble, no section, no contents entry.
    single = tmp_path / "single"
    write_record(single, member(0))
    md = build_leaderboard(single, figures=False, splits_dir=tmp_path / "none")["markdown"].read_text()
    assert "Seed ensembles" not in md
