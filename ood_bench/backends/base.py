"""Backends: what is model-specific about a run.

The runner (``ood_bench/runner``) is model-agnostic: it resolves the spec, the fold's ids and
labels, the training subset, timing, checkpoint selection on validation, the record and its
atomic write. A ``Backend`` does the rest: validate its own options, train (given a strategy),
list candidate checkpoints, predict a set, keep a model file, and optionally read out per-atom and
per-edge representations for ``oodbench analyze collapse``.

Adding a backend is one package under ``ood_bench/backends`` that registers itself in ``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UsageError
from ..registry import Registry

if TYPE_CHECKING:
    from ..datasets import LoadedDataset, TargetInfo
    from ..models import ModelSpec
    from ..runner.spec import RunSpec
    from ..strategies import Strategy


# A finished training stage's stamp (a soup's init and members): the runner keeps such subfolders
# of a killed run's work folder; the backend checks the stamp's contents before reusing them.
FINISHED_STAGE = "oodbench-finished.json"


@dataclass
class EvalSet:
    """One set of a fold: ids with a structure, and their labels in the same order."""

    name: str
    ids: list
    y: np.ndarray


@dataclass
class Resolution:
    """A backend's validated view of a run, made before anything trains.

    ``identity``: what changes the result beyond the spec's own fields (a checkpoint's sha256);
    part of the run fingerprint. ``record``: top-level record blocks (``pretrained``, ``aux``).
    ``state``: the backend's private resolved objects.
    """

    identity: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    state: Any = None


@dataclass
class FoldInputs:
    """What the runner hands a backend to train one run."""

    spec: RunSpec
    model: ModelSpec
    strategy: Strategy
    dataset: LoadedDataset
    target: TargetInfo
    sets: dict[str, EvalSet]  # "train" (subsampled), "val", then the split's test sets
    workdir: Path
    resolution: Resolution
    preset: Any
    params: dict[str, Any] = field(default_factory=dict)  # the strategy's parameters, typed, defaults filled


@dataclass
class Candidate:
    """A model the runner may select on validation (a checkpoint, a hyper-parameter setting)."""

    step: int
    name: str
    handle: Any


@dataclass
class Trained:
    candidates: list[Candidate]
    config: dict[str, Any]  # the backend's exact training input, recorded as config.backend_input
    training: dict[str, Any] = field(default_factory=dict)  # learning curve, eval head...
    data: dict[str, Any] = field(default_factory=dict)  # fold-data bytes/seconds
    peak_mem_mb: float | None = None
    log_file: Path | None = None
    state: Any = None  # the backend's own (written data, fitted objects)


class Backend:
    name: str = ""
    summary: str = ""
    model_file: str | None = None  # file kept beside the record (None: nothing worth keeping)
    writes_log: bool = False  # a training log (train.log) is kept beside the record

    def versions(self) -> dict[str, str | None]:
        """Versions of the libraries that produce this backend's numbers."""
        return {}

    def planned_steps(self, spec: RunSpec, model: ModelSpec, strategy: Strategy, dataset_kind: str) -> int:
        """Training steps of a run (0 for closed-form fits); for progress and ``--dry-run``."""
        return 0

    def step_of(self, line: str) -> int | None:
        """The training step a line of the training log reports, if any (progress bars)."""
        return None

    def identity(self, spec: RunSpec, model: ModelSpec, strategy: Strategy) -> dict[str, Any]:
        """Cheap part of ``resolve`` the fingerprint needs (no dataset loading)."""
        return {}

    def resolve(self, spec: RunSpec, model: ModelSpec, strategy: Strategy,
                dataset: LoadedDataset) -> Resolution:
        """Validate backend options and find what the run needs; one-line errors only."""
        return Resolution(identity=self.identity(spec, model, strategy))

    def train(self, inputs: FoldInputs, on_line: Callable[[str], None] | None = None) -> Trained:
        raise NotImplementedError

    def predict(self, inputs: FoldInputs, trained: Trained, candidate: Candidate, eval_set: EvalSet) -> np.ndarray:
        """Predictions for ``eval_set.ids``, in that order."""
        raise NotImplementedError

    def save_model(self, trained: Trained, candidate: Candidate, dest: Path) -> None:
        """Write the selected model to ``dest`` (called only when ``model_file`` is set)."""

    def representation_model(self, model_path: Path, record: dict[str, Any]) -> Any:
        """An object with ``evaluate(structures, ids, requests)`` (see analysis), if supported."""
        raise UsageError(f"backend {self.name} gives no per-atom representations; "
                         "`analyze collapse` needs a deepmd model")


BACKENDS: Registry[Backend] = Registry("backend")


def backend_for(model: ModelSpec) -> Backend:
    _load_backends()
    return BACKENDS.get(model.backend)


def _load_backends() -> None:
    from . import deepmd, sklearn  # noqa: F401  (each registers itself)
