"""What a model is to the runner: named presets that produce deepmd model/training sections.

A model module registers one ``ModelSpec`` in ``MODELS``; the runner never branches on names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..registry import Registry


@dataclass(frozen=True)
class Preset:
    """Architecture plus training hyper-parameters; ``steps_mft`` lets MFT train longer
    (the paper's MatBench MFT ran 200k steps against 100k for FT)."""

    name: str
    summary: str
    descriptor: dict[str, Any]
    fitting_neuron: list[int]
    steps: int
    batch_size: str
    aux_batch_size: str
    start_lr: float = 1e-3
    stop_lr: float = 1e-5
    decay_steps: int = 1000
    gradient_max_norm: float = 5.0
    save_checkpoints: int = 4
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str
    presets: dict[str, Preset]
    default_preset: str

    def preset(self, name: str | None) -> Preset:
        name = name or self.default_preset
        try:
            return self.presets[name]
        except KeyError:
            raise UsageError(
                f"model {self.name} has no preset '{name}'; known: {', '.join(self.presets)}"
            ) from None


MODELS: Registry[ModelSpec] = Registry("model", "ood_bench.models")
