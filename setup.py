"""Build hook: the canonical split files and the baseline cards live at the top of the source tree
(``splits/``, ``baselines/``) and are copied into the package as ``ood_bench/bundled/`` when a wheel
is built, so an installed oodbench finds them from any working directory (``ood_bench.paths.bundled``).
Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLED = ("splits", "baselines")


class BuildPyWithBundledData(build_py):
    def run(self) -> None:
        super().run()
        root = Path(__file__).resolve().parent
        for name in BUNDLED:
            dest = Path(self.build_lib) / "ood_bench" / "bundled" / name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(root / name, dest, ignore=shutil.ignore_patterns("__pycache__", "*.tmp"))


setup(cmdclass={"build_py": BuildPyWithBundledData})
