"""One home for progress display: rich bars with the same columns everywhere, and the callback
that moves a bar to the step a training log line reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def progress_bar(enabled: bool = True, transient: bool = False, eta: bool = False, console: Any = None):
    """A rich ``Progress`` (description, bar, n/total, elapsed[, remaining]) on stderr."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if eta:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console or Console(stderr=True), disable=not enabled, transient=transient)


def step_callback(progress: Any, task: Any, step_of: Callable[[str], int | None]) -> Callable[[str], None]:
    """A log-line callback that moves ``task`` to the step ``step_of(line)`` reports, if any."""

    def on_line(line: str) -> None:
        step = step_of(line)
        if step is not None:
            progress.update(task, completed=step)

    return on_line
