"""The split-method registry: every way to make a split file, looked up by name.

A method module registers a ``SplitMethod``; ``oodbench split`` asks the registry which methods
apply to a dataset and calls ``build``. Modules in ``ood_bench.splits`` register on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..registry import Registry


@dataclass(frozen=True)
class SplitMethod:
    """One split method.

    ``build(ds, options) -> list[SplitSet]`` makes (does not save) the split sets.
    """

    name: str
    kind: Literal["molecules", "crystals"]
    description: str
    build: Callable[..., list]
    default: bool = True  # part of ``--method all``
    needs_features: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)
    # Methods sharing one ``batch_build(ds, names, options)`` are built together (one t-SNE, one
    # feature load for all OFM methods).
    batch_build: Callable[..., list] | None = None


# Omee et al. 2024's five OFM-based OOD methods, in the order of the MFT paper's Table 4; the
# published folds are imported as ``omee2024-<method>``, the official MatBench folds as ``random``.
OOD_METHODS = ("LOCO", "SparseXcluster", "SparseXsingle", "SparseYcluster", "SparseYsingle")
PUBLISHED_PREFIX = "omee2024-"


def canonical_splits(dataset: str) -> list[tuple[str, str]]:
    """(property, split file) of the benchmark's canonical splits: QM9 ``boom-<property>`` for every
    property; MatBench the five published OOD methods and the official random folds."""
    from ..datasets import get_spec

    spec = get_spec(dataset)
    if spec.kind == "molecules":
        return [(t.name, f"boom-{t.name}") for t in spec.targets]
    return [("", f"{PUBLISHED_PREFIX}{m}") for m in OOD_METHODS] + [("", "random")]


SPLIT_METHODS: Registry[SplitMethod] = Registry("split method", "ood_bench.splits")


def methods_for(kind: str, include_non_default: bool = False) -> list[SplitMethod]:
    return [m for _, m in SPLIT_METHODS.items() if m.kind == kind and (m.default or include_non_default)]


def library_versions() -> dict[str, str]:
    """Versions recorded in every split file's generator block."""
    from ..versions import package_versions

    return package_versions("oodbench", "numpy", "scipy", "scikit-learn", "pandas", "matminer", "pymatgen",
                            "spglib", missing="not installed")


def generator_block(name: str, params: dict[str, Any], notes: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "params": params, "versions": library_versions(), "notes": list(notes or []),
            "tool": "oodbench split"}
