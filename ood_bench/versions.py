"""One home for "which code made this": package versions and the oodbench commit (with a dirty
flag, so a record made by uncommitted code says so)."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def package_versions(*packages: str, missing: str | None = None) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = missing
    return out


@functools.cache
def code_version() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout oodbench runs from
    (None when it is an installed copy outside git)."""
    here = Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no", "--", str(here))
    return {"commit": commit.strip(), "dirty": bool(status and status.strip())}


def run_versions(extra: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The ``versions`` block of a record: oodbench, its commit and dirty flag, numpy, python, and
    the backend's own libraries."""
    from . import __version__

    code = code_version()
    return {"oodbench": __version__, "oodbench_commit": code["commit"], "oodbench_dirty": code["dirty"],
            **package_versions("numpy"), "python": platform.python_version(), **(extra or {})}
