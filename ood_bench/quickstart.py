"""The embedded default: the whole pipeline on a laptop CPU in minutes, on real data.

Stand-in pretrained model -> QM9 BOOM gap split -> tiny DPA3 with Scratch, FT and MFT on a
seeded 2% subsample of the training set (full validation, ID and OOD test sets) -> leaderboard.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from .paths import data_dir as resolve_data_dir

log = logging.getLogger(__name__)


@dataclass
class QuickstartConfig:
    dataset: str = "qm9"
    property: str = "gap"
    strategies: list[str] = field(default_factory=lambda: ["scratch", "ft", "mft"])
    train_fraction: float = 0.02
    steps: int = 300
    seed: int = 0
    pretrain_steps: int = 800
    pretrain_molecules: int = 300
    pretrain_crystals: int = 120
    split_params: dict = field(default_factory=dict)  # generator overrides when the split file is made


def _matbench_available(data_dir: str | None) -> bool:
    root = resolve_data_dir(data_dir) / "matbench"
    return all((root / f"{n}.json.gz").exists()
               for n in ("matbench_dielectric", "matbench_log_gvrh", "matbench_perovskites"))


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

    from .backends.deepmd.pretrain import PretrainConfig, pretrain
    from .commands.run_report import execute_sweep
    from .leaderboard import build_leaderboard
    from .records import RunKey
    from .runner.spec import RunSpec

    console = console or Console(stderr=True)
    results_dir = results_dir or DEFAULT_RESULTS
    t0 = time.time()
    timings: dict[str, float] = {}

    console.rule("1/4  stand-in pretrained model (GFN2-xTB molecules, CHGNet crystals)")
    crystals = _matbench_available(data_dir)
    if not crystals:
        console.print("MatBench data not found locally: building a molecules-only stand-in")
    pretrain(PretrainConfig(n_molecules=cfg.pretrain_molecules, n_crystals=cfg.pretrain_crystals,
                            steps=cfg.pretrain_steps, crystals=crystals), data_dir)
    timings["pretrain_s"] = time.time() - t0

    console.rule(f"2/4  split: {cfg.dataset} BOOM {cfg.property}")
    t = time.time()
    split = split_step(cfg, data_dir, splits_dir, console)
    timings["split_s"] = time.time() - t

    console.rule(f"3/4  fine-tune tiny DPA3: {', '.join(cfg.strategies)}")
    t = time.time()
    specs = [
        RunSpec(key=RunKey(cfg.dataset, split, "0", "dpa3", s, cfg.seed, cfg.train_fraction, cfg.property),
                preset="tiny", steps=cfg.steps, data_dir=data_dir, splits_dir=splits_dir,
                results_dir=results_dir)
        for s in cfg.strategies
    ]
    ok = execute_sweep(specs, "local", {"jobs": 1}, force=True, console=console)
    timings["runs_s"] = time.time() - t

    console.rule("4/4  leaderboard")
    t = time.time()
    out = build_leaderboard(results_dir=results_dir, splits_dir=splits_dir)
    timings["leaderboard_s"] = time.time() - t
    timings["total_s"] = time.time() - t0
    console.print(f"leaderboard: {out.get('markdown')}")
    console.print("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return {"ok": ok, "leaderboard": out, "timings": timings, "records_dir": str(Path(results_dir))}
