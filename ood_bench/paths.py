"""Where oodbench reads data and writes caches, splits and results.

Precedence everywhere: explicit option > environment variable > default. Nothing here touches the
file system at import time.
"""

from __future__ import annotations

import os
import re
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


def bundled(name: str) -> Path:
    """A folder oodbench ships (``splits``, ``baselines``): the source checkout's when running from
    one, else the copy built into the installed package (``ood_bench/bundled/<name>``). Never
    the current directory: oodbench works the same from any folder."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / name
    if checkout.is_dir() and (package.parent / "pyproject.toml").exists():
        return checkout
    return package / "bundled" / name


def splits_dir(option: str | Path | None = None) -> Path:
    """Split files: ``--splits-dir`` > ``$OODBENCH_SPLITS_DIR`` > the canonical ones oodbench ships."""
    chosen = option or os.environ.get("OODBENCH_SPLITS_DIR")
    return Path(chosen).expanduser().resolve() if chosen else bundled("splits")


def check_writable_splits_dir(option: str | Path | None = None) -> None:
    """New split files never go into an installed package's canonical copy."""
    from .errors import UsageError

    if not (option or os.environ.get("OODBENCH_SPLITS_DIR")) and "bundled" in splits_dir().parts[-2:]:
        raise UsageError("the canonical split files of this installed oodbench are read-only; pass --splits-dir "
                         "(or set OODBENCH_SPLITS_DIR) for the files you make")


def baselines_dir(option: str | Path | None = None) -> Path:
    """Baseline cards: ``--baselines-dir`` > ``$OODBENCH_BASELINES_DIR`` > the cards oodbench ships."""
    chosen = option or os.environ.get("OODBENCH_BASELINES_DIR")
    return Path(chosen).expanduser().resolve() if chosen else bundled("baselines")


def results_dir(option: str | Path | None = None) -> Path:
    return Path(option or os.environ.get("OODBENCH_RESULTS_DIR") or "results").resolve()


def portable_roots(data: str | Path | None = None, splits: str | Path | None = None,
                   results: str | Path | None = None) -> list[tuple[str, str]]:
    """(absolute prefix, portable name) pairs, most specific first: what a committed file says
    instead of this machine's paths."""
    import sys

    pairs = [(results_dir(results), "results"), (splits_dir(splits), "splits"),
             (data_dir(data), "$OODBENCH_DATA_DIR"), (cache_dir(), "$OODBENCH_CACHE_DIR"),
             (Path(sys.prefix).resolve(), "$PYTHON_PREFIX"), (Path.cwd().resolve(), "."),
             (Path.home().resolve(), "~")]
    seen, out = set(), []
    for path, name in sorted(pairs, key=lambda p: -len(str(p[0]))):
        if str(path) not in seen and str(path) != "/":
            seen.add(str(path))
            out.append((str(path), name))
    return out


# Paths that libraries print about where they were built (deepmd's build environment), not ours.
_FOREIGN = re.compile(r"/tmp/build-env-[A-Za-z0-9_]+")


def portable(obj, roots: list[tuple[str, str]]):
    """``obj`` (JSON-like) with every string's absolute prefixes replaced by their portable names."""
    if isinstance(obj, str):
        if "/" not in obj:
            return obj
        for prefix, name in roots:
            obj = obj.replace(prefix + "/", name + "/").replace(prefix, name) if prefix in obj else obj
        return _FOREIGN.sub("<build-env>", obj)
    if isinstance(obj, dict):
        return {k: portable(v, roots) for k, v in obj.items()}
    if isinstance(obj, list):
        return [portable(v, roots) for v in obj]
    return obj
