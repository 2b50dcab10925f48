"""Driving a sweep from the CLI: the dry-run table, or the sweep itself (``runner.drive``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ..runner.drive import run_sweep, validate_up_front
from ..runner.spec import RunSpec

STATUS_TEXT = {"corrupt": "redo (corrupt record)"}


def execute_sweep(specs: list[RunSpec], executor: str, options: dict[str, Any], force: bool = False,
                  dry_run: bool = False, steps_per_second: float | None = None,
                  console: Console | None = None) -> bool:
    if not dry_run:
        return run_sweep(specs, executor, options, force=force, console=console)
    show_plan(specs, force, steps_per_second)
    return True


def show_plan(specs: list[RunSpec], force: bool, steps_per_second: float | None) -> None:
    """``--dry-run``: what would run, each run's status, and the training steps still to do."""
    from ..runner.sweep import estimate_steps, partition, status_of

    validate_up_front(specs)
    todo, _ = partition(specs, force)
    table = Table(title=f"{len(specs)} runs ({len(todo)} to do)")
    for col in ("dataset", "property", "split", "fold", "strategy", "seed", "fraction", "status"):
        table.add_column(col)
    for s in specs[:200]:
        k = s.key
        status = "force" if force else status_of(s)
        table.add_row(k.dataset, k.property, k.split, k.fold, k.strategy, str(k.seed),
                      f"{k.train_fraction:g}", STATUS_TEXT.get(status, status))
    if len(specs) > 200:
        table.add_row("...", "", "", "", "", "", "", f"+{len(specs) - 200} more")
    Console().print(table)
    steps = estimate_steps(todo)
    line = f"runs: {len(specs)}, to do: {len(todo)}, training steps to do: {steps:,}"
    if steps_per_second:
        line += f", about {steps / steps_per_second / 3600:.1f} GPU hours at {steps_per_second:g} steps/s"
    Console().print(line)
