"""Running deepmd-kit's own ``dp --pt train`` as a subprocess: one log file per run, the exit
code checked, and a failure reported with the log's last lines (never a silent ``os.system``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import RunFailedError
from ...procs import EVAL_THREADS_ENV, die_with_parent, idle_cores

# On small CPUs one thread per op is fastest for training small models (2 threads were 3-6x
# slower). Inference batches of 256 atoms beat deepmd's 1024 on a 2-core CPU (cache-sized
# tensors; 128/256/512/1024 gave 412/433/367/338 structures/s; see benchmarks/eval_speed.py).
THREAD_DEFAULTS = {
    "OMP_NUM_THREADS": "1",
    "DP_INTRA_OP_PARALLELISM_THREADS": "1",
    "DP_INTER_OP_PARALLELISM_THREADS": "1",
    "NUM_WORKERS": "0",
    "DP_INFER_BATCH_SIZE": "256",
}


def dp_env() -> dict[str, str]:
    env = dict(os.environ)
    for k, v in THREAD_DEFAULTS.items():
        env.setdefault(k, v)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def set_inference_threads() -> None:
    """Apply the same thread defaults in-process before torch is imported for inference."""
    for k, v in THREAD_DEFAULTS.items():
        os.environ.setdefault(k, v)


def inference_threads() -> int:
    """Threads for evaluating a trained model. Evaluation starts after ``dp train`` has exited,
    so it may use every idle core (2 threads: 1.6x on an idle 2-core machine, unlike training);
    ``--jobs N`` sets ``OODBENCH_EVAL_THREADS`` to cores // N in its workers."""
    value = os.environ.get(EVAL_THREADS_ENV)
    return max(1, int(value)) if value else idle_cores()


_BATCH = re.compile(r"Batch\s+(\d+):")


def step_of(line: str) -> int | None:
    """The training step a ``dp train`` log line reports, if any."""
    m = _BATCH.search(line)
    return int(m.group(1)) if m else None


def tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def launch_prefix(processes: int) -> list[str]:
    """``python`` for one process; ``python -m torch.distributed.run --nproc_per_node N`` (torchrun) for N."""
    if processes <= 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]


def dp_train(
    config: dict[str, Any],
    workdir: Path,
    extra_args: list[str],
    label: str,
    on_line: Callable[[str], None] | None = None,
    processes: int = 1,
) -> tuple[Path, float]:
    """Write ``input.json`` in ``workdir`` and run ``dp --pt train`` there; with ``processes`` > 1,
    deepmd's distributed data-parallel training under ``torchrun`` (one process per GPU; gloo on
    CPU), as the paper trained QM9 MFT on 2 GPUs.

    Returns the log path and the peak resident memory of the training process in MiB.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    inp = workdir / "input.json"
    inp.write_text(json.dumps(config, indent=1))
    log = workdir / "train.log"
    cmd = [*launch_prefix(processes), "-m", "deepmd", "--pt", "train", str(inp), "--skip-neighbor-stat", *extra_args]
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=workdir, env=dp_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1, preexec_fn=die_with_parent)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if on_line is not None:
                on_line(line)
        _, status, usage = os.wait4(proc.pid, 0)  # rusage of this child only
        rc = os.waitstatus_to_exitcode(status)
        proc.returncode = rc
    if rc != 0:
        raise RunFailedError(f"{label}: dp --pt train exited with code {rc}; log {log}:\n{tail(log)}")
    return log, usage.ru_maxrss / 1024.0


def read_lcurve(path: Path) -> list[dict[str, float]]:
    """deepmd's own learning-curve file (``lcurve.out``): one dict per logged step."""
    if not path.exists():
        return []
    header: list[str] = []
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            toks = line[1:].split()
            if toks and toks[0] == "step":
                header = toks
            continue
        vals = line.split()
        if header and len(vals) == len(header):
            rows.append({h: float(v) for h, v in zip(header, vals, strict=True)})
    return rows
