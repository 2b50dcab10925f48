"""The embedded default: the whole pipeline on a laptop CPU in minutes, on real data.

Shipped stand-in pretrained model (``oodbench-small``) -> QM9 BOOM gap split -> DPA3 with
Scratch, FT and MFT on a seeded 2% subsample of the training set (full validation, ID and OOD
test sets) -> leaderboard, and a summary of those measured rows in the terminal.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class QuickstartConfig:
    dataset: str = "qm9"
    property: str = "gap"
    strategies: list[str] = field(default_factory=lambda: ["scratch", "ft", "mft"])
    train_fraction: float = 0.02
    steps: int = 300
    seed: int = 0
    pretrained: str = "oodbench-small"
    preset: str = "small"
    jobs: int = 2
    split_params: dict = field(default_factory=dict)  # generator overrides when the split file is made


DEFAULT_RESULTS = "results/quickstart"


def split_step(cfg: QuickstartConfig, data_dir: str | None = None, splits_dir: str | None = None,
               console=None) -> str:
    """The BOOM split of ``cfg.property``: the versioned file when there is one, else made here
    through the split library (never the command line). Returns the split's name."""
    from .splits import split_path
    from .splits.generate import generate_splits

    split = f"boom-{cfg.property}"
    path = split_path(cfg.dataset, split, splits_dir)
    if path.exists():
        if console is not None:
            console.print(f"using the versioned split file {path}")
        return split
    written = generate_splits(cfg.dataset, ["boom"], cfg.property, data_dir=data_dir, splits_dir=splits_dir,
                              params=cfg.split_params)
    if console is not None:
        console.print(f"made the split file {written[0]}")
    return split


def run_quickstart(cfg: QuickstartConfig, data_dir: str | None = None, splits_dir: str | None = None,
                   results_dir: str | None = None, console=None) -> dict:
    """Always runs (``force``): it demonstrates the pipeline, so finished records of an earlier
    quickstart in its own results folder (default ``results/quickstart``) are replaced."""
    from rich.console import Console

    from .leaderboard import build_leaderboard
    from .records import RunKey
    from .runner.drive import run_sweep
    from .runner.identity import canonical
    from .runner.spec import RunSpec

    console = console or Console(stderr=True)
    results_dir = results_dir or DEFAULT_RESULTS
    t0 = time.time()
    timings: dict[str, float] = {}

    console.rule("1/4  pretrained model")
    describe_pretrained(cfg.pretrained, console)
    timings["pretrained_s"] = time.time() - t0

    console.rule(f"2/4  split: {cfg.dataset} BOOM {cfg.property}")
    t = time.time()
    split = split_step(cfg, data_dir, splits_dir, console)
    timings["split_s"] = time.time() - t

    console.rule(f"3/4  fine-tune DPA3 ({cfg.preset}): {', '.join(cfg.strategies)}")
    t = time.time()
    specs = [  # canonical: the key carries the variant (+small) its record is filed under
        canonical(RunSpec(key=RunKey(cfg.dataset, split, "0", "dpa3", s, cfg.seed, cfg.train_fraction, cfg.property),
                          preset=cfg.preset, steps=cfg.steps, pretrained=cfg.pretrained, data_dir=data_dir,
                          splits_dir=splits_dir, results_dir=results_dir))
        for s in cfg.strategies
    ]
    ok = run_sweep(specs, "local", {"jobs": cfg.jobs}, force=True, console=console)
    timings["runs_s"] = time.time() - t

    console.rule("4/4  leaderboard")
    t = time.time()
    out = build_leaderboard(results_dir=results_dir, splits_dir=splits_dir)
    timings["leaderboard_s"] = time.time() - t
    timings["total_s"] = time.time() - t0
    console.print(summary_table(Path(results_dir), specs))
    console.print(f"leaderboard: {out.get('markdown')}")
    console.print("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return {"ok": ok, "leaderboard": out, "timings": timings, "records_dir": str(Path(results_dir))}


def describe_pretrained(name: str, console) -> None:
    """Say which checkpoint the runs start from, and how good it is at its own job."""
    from .backends.deepmd.pretrained import load_pretrained
    from .backends.deepmd.standin import describe_errors

    pre = load_pretrained(name)
    console.print(f"{pre.name} ({'stand-in, ' if pre.stand_in else ''}sha256 {pre.sha256[:12]}): {pre.path}")
    for branch, err in (pre.meta.get("holdout_errors") or {}).items():
        console.print(f"  {branch}: {describe_errors(err)}")


def summary_table(results_dir: Path, specs: list):
    """The quickstart's own measured rows (ID, OOD, OOD/ID per strategy), read from its records."""
    from rich.table import Table

    from .io_utils import read_json
    from .records import record_path

    table = Table(title="measured here: RMSE on the full ID and OOD test sets")
    for col in ("strategy", "ID test", "OOD test", "OOD/ID"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for spec in specs:
        path = record_path(results_dir, spec.key)
        if not path.exists():
            table.add_row(spec.key.strategy, "failed", "", "")
            continue
        m = read_json(path)["metrics"]
        a, b = m["id_test"]["rmse"], m["ood_test"]["rmse"]
        table.add_row(spec.key.strategy, f"{a:.4f}", f"{b:.4f}", f"{b / a:.2f}")
    return table
