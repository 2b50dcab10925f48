"""Running a list of runs: everything checked up front (one line before anything trains), finished
runs skipped, the rest handed to an executor under a progress bar, and a summary. The CLI's
``oodbench run`` and the quickstart both call this; only the CLI adds the dry-run table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from ..progress import progress_bar
from .spec import RunSpec


def validate_up_front(specs: list[RunSpec]) -> None:
    """Everything a run checks before training (data, split, checkpoint, branches), once per
    distinct configuration, so a typo fails in a second instead of after queueing."""
    from .execute import prepare

    seen = set()
    for spec in specs:
        sig = (spec.key.dataset, spec.key.split, spec.key.strategy, spec.key.property, spec.pretrained,
               spec.aux_branch, tuple(spec.aux_data), spec.preset)
        if sig not in seen:
            seen.add(sig)
            prepare(spec)


def check_writable(specs: list[RunSpec]) -> None:
    """The results folder must take a file before anything trains (one line, not a traceback later)."""
    from ..io_utils import require_writable_dir
    from ..paths import results_dir

    for root in sorted({results_dir(s.results_dir) for s in specs}):
        require_writable_dir(root, "results folder", "; pass --results-dir to a folder you can write")


def run_sweep(specs: list[RunSpec], executor: str, options: dict[str, Any], force: bool = False,
              console: Console | None = None) -> bool:
    """Validate, then run what is not finished (``force``: everything); True when nothing failed
    or conflicted."""
    from .executors import EXECUTORS
    from .sweep import partition

    console = console or Console(stderr=True)
    validate_up_front(specs)
    check_writable(specs)
    todo, result = partition(specs, force)
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
