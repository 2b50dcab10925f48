"""Driving a sweep from the CLI: validation up front, the dry-run table, progress, the summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..progress import progress_bar
from ..runner.spec import RunSpec


def validate_up_front(specs: list[RunSpec]) -> None:
    """Everything a run checks before training (data, split, checkpoint, branches), once per
    distinct configuration, so a typo fails in a second instead of after queueing."""
    from ..runner.execute import prepare

    seen = set()
    for spec in specs:
        sig = (spec.key.dataset, spec.key.split, spec.key.strategy, spec.key.property, spec.pretrained,
               spec.aux_branch, tuple(spec.aux_data), spec.preset)
        if sig not in seen:
            seen.add(sig)
            prepare(spec)


STATUS_TEXT = {"corrupt": "redo (corrupt record)"}


def check_writable(specs: list[RunSpec]) -> None:
    """The results folder must take a file before anything trains (one line, not a traceback later)."""
    import tempfile

    from ..errors import OodBenchError
    from ..paths import results_dir

    for root in sorted({results_dir(s.results_dir) for s in specs}):
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=root, prefix=".oodbench-write-test-"):
                pass
        except OSError as exc:
            raise OodBenchError(f"results folder {root} is not writable ({exc.strerror}); pass --results-dir "
                                "to a folder you can write") from None


def execute_sweep(specs: list[RunSpec], executor: str, options: dict[str, Any], force: bool = False,
                  dry_run: bool = False, steps_per_second: float | None = None,
                  console: Console | None = None) -> bool:
    from ..runner.executors import EXECUTORS
    from ..runner.sweep import estimate_steps, partition, status_of

    console = console or Console(stderr=True)
    validate_up_front(specs)
    if not dry_run:
        check_writable(specs)
    todo, result = partition(specs, force)
    if dry_run:
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
        return True
    for key in result.conflicts:
        console.print(f"[yellow]conflict[/yellow] {key.label()}: a record made with other options exists; "
                      "use --force to replace it or --results-dir for a separate sweep")
    if result.skipped:
        console.print(f"skipping {len(result.skipped)} finished runs")
    if todo:
        with progress_bar(console=console) as progress:
            EXECUTORS.get(executor).run(todo, result, progress, options)
    console.print(f"done: {len(result.done)}, skipped: {len(result.skipped)}, failed: {len(result.failed)}, "
                  f"conflicts: {len(result.conflicts)}")
    for _key, msg in result.failed:
        console.print(Text("failed ", style="red") + Text(msg), soft_wrap=True, highlight=False)
    return result.ok
