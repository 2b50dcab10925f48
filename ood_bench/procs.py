"""Child processes that do not outlive their parent (Linux ``PR_SET_PDEATHSIG``).

A killed driver (``kill -9``) must not leave workers or ``dp train`` processes running: each
child asks the kernel for SIGKILL when its parent dies. Elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Call in the child (a pool initializer, a Popen ``preexec_fn``)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


EVAL_THREADS_ENV = "OODBENCH_EVAL_THREADS"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def idle_cores(samples: int = 5, interval_s: float = 0.02) -> int:
    """Usable cores not taken by other runnable work (Linux ``/proc/loadavg``'s count of running
    tasks, this one included): torch threads on a busy core spin and run several times slower
    than one thread (measured: 2 threads with one core busy, 0.4x). The fewest running over a few
    samples 20 ms apart: one sample often caught a thread of our own starting up (a model load)
    and halved evaluation for the whole run. Elsewhere: all cores."""
    try:
        running = min(_running_tasks(interval_s if i else 0.0) for i in range(samples))
    except (OSError, ValueError, IndexError):
        return usable_cores()
    return max(1, usable_cores() - max(0, running - 1))


def _running_tasks(wait_s: float) -> int:
    time.sleep(wait_s)
    return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])


def pool_worker(workers: int) -> None:
    """Pool initializer for ``--jobs N``: die with the parent, and let each worker evaluate on
    its share of the cores (N workers each using every core would oversubscribe them)."""
    die_with_parent()
    os.environ.setdefault(EVAL_THREADS_ENV, str(max(1, usable_cores() // workers)))
