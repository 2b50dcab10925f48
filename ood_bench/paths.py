"""Where oodbench reads data and writes caches, splits and results.

Precedence everywhere: explicit option > environment variable > default. Nothing here touches the
file system at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "OODBENCH_DATA_DIR"
CACHE_ENV = "OODBENCH_CACHE_DIR"


def data_dir(option: str | Path | None = None) -> Path:
    """Directory holding ``qm9/`` and ``matbench/`` (offline copies or downloads)."""
    if option:
        return Path(option).expanduser().resolve()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser().resolve()
    return cache_dir() / "data"


def cache_dir() -> Path:
    """Directory for derived, re-computable things (features, deepmd-format data)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve()
    return Path.home() / ".cache" / "oodbench"


def splits_dir(option: str | Path | None = None) -> Path:
    return Path(option or os.environ.get("OODBENCH_SPLITS_DIR") or "splits").resolve()


def results_dir(option: str | Path | None = None) -> Path:
    return Path(option or os.environ.get("OODBENCH_RESULTS_DIR") or "results").resolve()
