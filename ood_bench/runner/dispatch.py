"""Cluster execution through dpdispatcher (Slurm, PBS, LSF, Bohrium, or its local Shell backend).

One dpdispatcher task per run. Each task runs ``python -m ood_bench.runner.task spec.json out``
in its own folder and writes its record under ``out/``; the driver validates every record that
comes back and moves it into the results tree (same path per run key: never duplicated). Records
left in task folders by a killed driver are collected on the next start. Failed tasks are
retried ``--retries`` times by dpdispatcher, then reported with their log tail while the other
runs go on (``continue_on_failure``).

dpdispatcher's own failures are one line each, never a task "failed": machine.json and
resources.json are checked with dpdispatcher's schema (``arginfo``) and the machine is set up
(an SSH login, a cloud API) before anything is written or queued; an exception out of
``run_submission`` that is not tasks failing (SSH dropped, authentication, the scheduler) stops
the sweep with its type and message, keeping whatever records arrived.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ..errors import OodBenchError, UsageError
from ..io_utils import read_json
from ..paths import results_dir as resolve_results
from ..records import RECORD_NAME, RunKey, record_path, validate_record
from .spec import RunSpec
from .sweep import SweepResult

log = logging.getLogger(__name__)
TASK_OUT = "out"
SIDE_FILES = ("train.log", "model.pt")


def dispatch_root(results: Path) -> Path:
    return results / "dispatch"


def _load_config(path: str | None, what: str) -> dict[str, Any]:
    if not path:
        raise UsageError(f"--executor dpdispatcher needs --{what} {what}.json (dpdispatcher's own format)")
    p = Path(path)
    if not p.exists():
        raise UsageError(f"--{what} {p}: no such file")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"--{what} {p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text[:400]}"


def check_configs(machine_cfg: Any, resources_cfg: Any, machine_file: str, resources_file: str) -> None:
    """dpdispatcher's own schema checks of machine.json and resources.json (its ``arginfo``, the
    one ``Machine.load_from_dict`` / ``Resources.load_from_dict`` apply), as one-line errors,
    before anything is queued or connected to."""
    from dpdispatcher import Machine, Resources

    for cfg, what, path in ((machine_cfg, "machine", machine_file), (resources_cfg, "resources", resources_file)):
        if not isinstance(cfg, dict):
            raise UsageError(f"--{what} {path}: expected a JSON object (dpdispatcher's {what}.json format)")
    batch_type = machine_cfg.get("batch_type")
    if isinstance(batch_type, str) and batch_type not in Machine.subclasses_dict:
        raise UsageError(f"--machine {machine_file}: unknown batch_type '{batch_type}'; dpdispatcher "
                         f"{_dpdispatcher_version()} knows {', '.join(sorted(Machine.options))}")
    try:
        schema = Machine.arginfo()
        schema.check_value(schema.normalize_value(dict(machine_cfg), trim_pattern="_*"), strict=False)
    except Exception as exc:
        raise UsageError(f"--machine {machine_file}: not a valid dpdispatcher machine ({_one_line(exc)})") from None
    try:
        Resources.load_from_dict(dict(resources_cfg))
    except Exception as exc:
        raise UsageError(f"--resources {resources_file}: not valid dpdispatcher resources "
                         f"({_one_line(exc)})") from None


def _dpdispatcher_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dpdispatcher")
    except PackageNotFoundError:
        return ""


def _tasks_failed_only(submission: Any) -> bool:
    """``run_submission`` raised because some tasks failed after their retries while the others
    finished (reported per task, with their logs), not because dpdispatcher itself stopped."""
    try:
        from dpdispatcher.utils.job_status import JobStatus

        states = [job.job_state for job in submission.belonging_jobs]
    except Exception:
        return False
    return (bool(states) and JobStatus.failed in states
            and all(s in (JobStatus.finished, JobStatus.failed) for s in states))


def _task_name(spec: RunSpec) -> str:
    digest = hashlib.sha256(json.dumps(spec.key.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    return f"task_{digest}"


def collect(results: Path) -> list[RunKey]:
    """Move every valid record found in task folders into the results tree (idempotent)."""
    moved = []
    root = dispatch_root(results)
    if not root.exists():
        return moved
    for rec_file in sorted(root.glob(f"*/task_*/{TASK_OUT}/runs/**/{RECORD_NAME}")):
        try:
            rec = read_json(rec_file)
        except OodBenchError:
            continue
        if validate_record(rec):
            continue
        key = RunKey.from_dict(rec["key"])
        dest = record_path(results, key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        for side in SIDE_FILES:
            if (rec_file.parent / side).exists():
                shutil.move(str(rec_file.parent / side), dest.parent / side)
        tmp = dest.with_suffix(".incoming")
        shutil.copyfile(rec_file, tmp)
        os.replace(tmp, dest)  # atomic: the record appears complete or not at all
        rec_file.unlink()
        moved.append(key)
    return moved


def run_with_dpdispatcher(specs: list[RunSpec], result: SweepResult, progress: Any,
                          options: dict[str, Any]) -> None:
    machine_cfg = _load_config(options.get("machine"), "machine")
    resources_cfg = _load_config(options.get("resources"), "resources")
    check_configs(machine_cfg, resources_cfg, options["machine"], options["resources"])
    results = resolve_results(specs[0].results_dir)
    collected = set(collect(results))  # a previous driver may have died after tasks finished
    pending = [s for s in specs if s.key not in collected]
    result.done.extend(s.key for s in specs if s.key in collected)
    if not pending:
        return
    sweep_id = hashlib.sha256("".join(sorted(_task_name(s) for s in pending)).encode()).hexdigest()[:12]
    local_root = dispatch_root(results) / f"sweep_{sweep_id}"
    machine_cfg.setdefault("retry_count", int(options.get("retries", 2)))
    machine_cfg["local_root"] = str(local_root)
    machine, resources = _connect(machine_cfg, resources_cfg, options["machine"])
    local_root.mkdir(parents=True, exist_ok=True)
    local = machine_cfg.get("context_type", "").lower().startswith("local")
    tasks = [_task(spec, local_root, sys.executable if local else "python") for spec in pending]
    overall = progress.add_task(f"dpdispatcher: {len(tasks)} tasks", total=len(pending))
    _submit(machine, resources, tasks, options, results, pending, result, progress, overall)
    _outcomes(pending, results, local_root, Path(getattr(machine.context, "remote_root", "") or local_root),
              result, progress, overall)
    if not any(p.name.startswith("task_") for p in local_root.iterdir()):
        shutil.rmtree(local_root, ignore_errors=True)  # only dpdispatcher's bookkeeping left


def _connect(machine_cfg: dict, resources_cfg: dict, machine_file: str):
    """dpdispatcher's Machine and Resources; connects (SSH, a cloud API) before anything is written."""
    from dpdispatcher import Machine, Resources

    try:
        return Machine.load_from_dict(machine_cfg), Resources.load_from_dict(resources_cfg)
    except Exception as exc:
        raise OodBenchError(f"dpdispatcher cannot set up the machine of --machine {machine_file} "
                            f"({_one_line(exc)}); nothing was submitted") from None


def _side_files(spec: RunSpec) -> tuple[str, ...]:
    """What a task sends back beside its record: the training log and model file, when the
    model's backend writes them (the scikit-learn baselines write neither)."""
    from ..backends import backend_for
    from ..models import MODELS

    backend = backend_for(MODELS.get(spec.key.model))
    return tuple(f for f in SIDE_FILES if f == "train.log" and backend.writes_log or f == backend.model_file)


def _task(spec: RunSpec, local_root: Path, python: str):
    from dpdispatcher import Task

    name = _task_name(spec)
    task_dir = local_root / name
    task_dir.mkdir(exist_ok=True)
    remote_spec = RunSpec.from_json(spec.to_json())
    remote_spec.results_dir = None  # the task writes under its own out/
    (task_dir / "spec.json").write_text(json.dumps(remote_spec.to_json(), indent=1))
    rel = Path(TASK_OUT) / "runs" / spec.key.relpath()
    return Task(command=f"{python} -m ood_bench.runner.task spec.json {TASK_OUT}", task_work_path=f"{name}/",
                forward_files=["spec.json"],
                backward_files=[str(rel / RECORD_NAME), *(str(rel / f) for f in _side_files(spec))],
                outlog="task.out", errlog="task.err")


def _submit(machine, resources, tasks, options, results, pending, result, progress, overall) -> None:
    from dpdispatcher import Submission

    submission = None
    try:
        submission = Submission(work_base="./", machine=machine, resources=resources, task_list=tasks)
        submission.run_submission(check_interval=int(options.get("check_interval", 30)),
                                  continue_on_failure=True)
    except Exception as exc:  # dpdispatcher surfaces scheduler and connection errors as plain exceptions
        if submission is None or not _tasks_failed_only(submission):
            # dpdispatcher itself stopped (SSH, authentication, the scheduler): one line for the
            # sweep, not every task "failed"; records that did arrive are kept
            arrived = set(collect(results))
            done = [s.key for s in pending if s.key in arrived]
            result.done.extend(done)
            progress.remove_task(overall)
            raise OodBenchError(
                f"dpdispatcher stopped the sweep ({_one_line(exc)}); {len(done)} of {len(pending)} runs "
                "finished; fix the cause and rerun the same command to resume") from None
        log.debug("dpdispatcher: %s", _one_line(exc))


def _outcomes(pending, results, local_root: Path, remote_root: Path, result, progress, overall) -> None:
    """Each task: its record arrived (done), or it failed after retries (reported with its log tail)."""
    arrived = set(collect(results))
    for spec in pending:
        if spec.key in arrived or record_path(results, spec.key).exists():
            result.done.append(spec.key)
            shutil.rmtree(local_root / _task_name(spec), ignore_errors=True)
        else:
            logs = [d / _task_name(spec) / "task.err" for d in (local_root, remote_root)]
            err = next((p for p in logs if p.exists() and p.stat().st_size), logs[0])
            tail = "\n".join(err.read_text(errors="replace").splitlines()[-15:]) if err.exists() else "(no log)"
            result.failed.append((spec.key, f"{spec.key.label()}: task failed after retries; {err}:\n{tail}"))
        progress.advance(overall)
