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
