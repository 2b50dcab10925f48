"""Where runs execute. ``local``: in this process, or ``--jobs N`` worker processes on this
machine. ``dpdispatcher``: one task per run on Slurm/PBS/LSF/Bohrium or dpdispatcher's local
Shell backend (see ``dispatch.py``). Registered by name; the CLI never branches on it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from ..errors import OodBenchError
from ..procs import pool_worker
from ..registry import Registry
from .spec import RunSpec
from .sweep import SweepResult, planned_steps

log = logging.getLogger(__name__)

# (specs, result, progress, options) -> None
ExecutorFn = Callable[[list[RunSpec], SweepResult, Any, dict[str, Any]], None]


@dataclass(frozen=True)
class Executor:
    name: str
    summary: str
    run: ExecutorFn


EXECUTORS: Registry[Executor] = Registry("executor")


def _run_one_in_process(spec_json: dict[str, Any]) -> str:
    from .execute import execute
    from .spec import RunSpec as _RunSpec

    return str(execute(_RunSpec.from_json(spec_json)))


def step_progress(progress: Any, task: Any, spec: RunSpec) -> Callable[[str], None]:
    """A training-log line callback that moves a rich progress task to the backend's current step."""
    from ..backends import backend_for
    from ..models import MODELS
    from ..progress import step_callback

    return step_callback(progress, task, backend_for(MODELS.get(spec.key.model)).step_of)


def _line_per_run(progress: Any, total: int) -> Callable[[RunSpec, SweepResult], None]:
    """Where no live bar is drawn (output to a file: nohup, a batch job's log), one line per
    finished run, so a log being followed shows how far a long sweep has come."""
    started = time.monotonic()
    finished = 0

    def say(spec: RunSpec, result: SweepResult) -> None:
        nonlocal finished
        finished += 1
        if progress.console.is_terminal:
            return
        outcome = "failed" if result.failed and result.failed[-1][0] == spec.key else "done"
        elapsed = time.monotonic() - started
        progress.console.print(f"run {finished}/{total} {outcome}: {spec.key.label()} "
                               f"({elapsed / 60:.1f} min into the sweep)", highlight=False, soft_wrap=True)

    return say


def _local(specs: list[RunSpec], result: SweepResult, progress: Any, options: dict[str, Any]) -> None:
    from .execute import execute

    jobs = int(options.get("jobs") or 1)
    overall = progress.add_task("runs", total=len(specs))
    say = _line_per_run(progress, len(specs))
    if jobs <= 1:
        for spec in specs:
            sub = progress.add_task(f"  {spec.key.label()}", total=planned_steps(spec) or None)
            try:
                execute(spec, on_line=step_progress(progress, sub, spec))
                result.done.append(spec.key)
            except OodBenchError as exc:
                result.failed.append((spec.key, str(exc)))
                progress.console.print(f"[red]FAILED[/red] {exc}")
            finally:
                progress.remove_task(sub)
                progress.advance(overall)
                say(spec, result)
        return
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=pool_worker,
                             initargs=(jobs,)) as pool:
        futures = {pool.submit(_run_one_in_process, s.to_json()): s for s in specs}
        for fut in as_completed(futures):
            spec = futures[fut]
            try:
                fut.result()
                result.done.append(spec.key)
            except OodBenchError as exc:
                result.failed.append((spec.key, str(exc)))
                progress.console.print(f"[red]FAILED[/red] {exc}")
            except Exception as exc:  # a worker crash must not stop the sweep
                result.failed.append((spec.key, f"{spec.key.label()}: {type(exc).__name__}: {exc}"))
                progress.console.print(f"[red]FAILED[/red] {spec.key.label()}: {exc}")
            progress.advance(overall)
            say(spec, result)


EXECUTORS.add("local", Executor("local", "this machine; --jobs N runs N at once", _local))


def _dpdispatcher(specs: list[RunSpec], result: SweepResult, progress: Any, options: dict[str, Any]) -> None:
    from .dispatch import run_with_dpdispatcher

    run_with_dpdispatcher(specs, result, progress, options)


EXECUTORS.add("dpdispatcher", Executor(
    "dpdispatcher", "one task per run via dpdispatcher (Slurm/PBS/LSF/Bohrium/Shell)", _dpdispatcher))
