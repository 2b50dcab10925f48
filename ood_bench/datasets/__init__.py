"""Dataset registry: ``qm9`` and the three MatBench tasks, loaded by name.

Each dataset module registers a ``DatasetSpec`` in ``DATASETS``; nothing loads until asked.
"""

from __future__ import annotations

from pathlib import Path

from .base import DATASETS, DatasetSpec, LoadedDataset, Structures, TargetInfo, concat_structures

__all__ = [
    "concat_structures",
    "DATASETS",
    "DatasetSpec",
    "LoadedDataset",
    "Structures",
    "TargetInfo",
    "get_spec",
    "load_dataset",
]

_CACHE: dict[tuple[str, str], LoadedDataset] = {}


def get_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def load_dataset(name: str, data_dir: str | Path | None = None, **options) -> LoadedDataset:
    """Load a registered dataset (memoised per process: splitting and running share one copy)."""
    from ..paths import data_dir as resolve

    spec = DATASETS.get(name)
    root = resolve(data_dir)
    key = (name, f"{root}|{sorted(options.items())}")
    if key not in _CACHE:
        _CACHE[key] = spec.loader(spec, root, **options)
    return _CACHE[key]
