"""What a model is to the runner: a name, the backend that runs it, its presets, its version.

A model module registers one ``ModelSpec`` in ``MODELS``; the runner looks up the model's backend
and never branches on model names. Presets are the backend's own objects (a deepmd architecture
and schedule, a scikit-learn estimator recipe); each has ``name`` and ``summary``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    label: str  # display name in tables ("DPA3", "RF-SCM/Magpie")
    summary: str
    backend: str
    presets: dict[str, Any]
    default_preset: str
    default_strategy: str
    version: str = "1"  # bump when the model's implementation changes its numbers
    strategies: tuple[str, ...] | None = None  # None: every strategy its backend supports
    card: str | None = None  # baselines/<card>.yaml

    def preset(self, name: str | None) -> Any:
        name = name or self.default_preset
        try:
            return self.presets[name]
        except KeyError:
            raise UsageError(
                f"model {self.name} has no preset '{name}'; known: {', '.join(self.presets)}"
            ) from None

    def supported_strategies(self) -> list[str]:
        from ..strategies import STRATEGIES, ordered

        names = [n for n, s in STRATEGIES.items() if s.supports(self.backend)]
        if self.strategies is not None:
            names = [n for n in names if n in self.strategies]
        return ordered(names)

    def check_strategy(self, strategy: str) -> None:
        """One line naming what this model supports, before anything is loaded or trained."""
        from ..strategies import STRATEGIES

        STRATEGIES.get(strategy)
        supported = self.supported_strategies()
        if strategy not in supported:
            raise UsageError(f"model {self.name} cannot run strategy '{strategy}'; it supports: "
                             f"{', '.join(supported)}")


MODELS: Registry[ModelSpec] = Registry("model", "ood_bench.models")


def label_of(name: str) -> str:
    return MODELS.get(name).label if name in MODELS else name
