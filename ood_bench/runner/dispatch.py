"""Cluster execution through dpdispatcher (Slurm, PBS, LSF, Bohrium, or its local Shell backend).

One dpdispatcher task per run. Each task runs ``python -m ood_bench.runner.task spec.json out``
in its own folder and writes its record under ``out/``; the driver validates every record that
comes back and moves it into the results tree (same path per run key: never duplicated). Records
left in task folders by a killed driver are collected on the next start. Failed tasks are
retried ``--retries`` times by dpdispatcher, then reported with their log tail while the other
runs go on (``continue_on_failure``).
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
    from dpdispatcher import Machine, Resources, Submission, Task

    machine_cfg = _load_config(options.get("machine"), "machine")
    resources_cfg = _load_config(options.get("resources"), "resources")
    results = resolve_results(specs[0].results_dir)
    collected = set(collect(results))  # a previous driver may have died after tasks finished
    pending = [s for s in specs if s.key not in collected]
    for s in specs:
        if s.key in collected:
            result.done.append(s.key)
    if not pending:
        return
    sweep_id = hashlib.sha256("".join(sorted(_task_name(s) for s in pending)).encode()).hexdigest()[:12]
    local_root = dispatch_root(results) / f"sweep_{sweep_id}"
    local_root.mkdir(parents=True, exist_ok=True)
    machine_cfg.setdefault("retry_count", int(options.get("retries", 2)))
    machine_cfg["local_root"] = str(local_root)
    local = machine_cfg.get("context_type", "").lower().startswith("local")
    python = sys.executable if local else "python"
    tasks = []
    for spec in pending:
        name = _task_name(spec)
        task_dir = local_root / name
        task_dir.mkdir(exist_ok=True)
        remote_spec = RunSpec.from_json(spec.to_json())
        remote_spec.results_dir = None  # the task writes under its own out/
        (task_dir / "spec.json").write_text(json.dumps(remote_spec.to_json(), indent=1))
        rel = Path(TASK_OUT) / "runs" / spec.key.relpath()
        tasks.append(Task(
            command=f"{python} -m ood_bench.runner.task spec.json {TASK_OUT}",
            task_work_path=f"{name}/", forward_files=["spec.json"],
            backward_files=[str(rel / RECORD_NAME), *(str(rel / f) for f in SIDE_FILES)],
            outlog="task.out", errlog="task.err",
        ))
    machine = Machine.load_from_dict(machine_cfg)
    resources = Resources.load_from_dict(resources_cfg)
    submission = Submission(work_base="./", machine=machine, resources=resources, task_list=tasks)
    overall = progress.add_task(f"dpdispatcher: {len(tasks)} tasks", total=len(pending))
    try:
        submission.run_submission(check_interval=int(options.get("check_interval", 30)),
                                  continue_on_failure=True)
    except Exception as exc:  # dpdispatcher surfaces scheduler errors as plain exceptions
        log.error("dpdispatcher stopped: %s: %s", type(exc).__name__, exc)
    remote_root = Path(getattr(machine.context, "remote_root", "") or local_root)
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
    if not any(p.name.startswith("task_") for p in local_root.iterdir()):
        shutil.rmtree(local_root, ignore_errors=True)  # only dpdispatcher's bookkeeping left
