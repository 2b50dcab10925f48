"""A run, fully specified: its identity (``RunKey``) plus the options that shape its result.

``RunSpec`` is plain data (JSON round-trip, no imports of the runner, nothing loaded) so a run can
be shipped to another process or a cluster node (dpdispatcher) and executed there with the same
code path as locally. Backend-specific options travel in it; only the backend reads them.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UsageError
from ..records import RunKey

_BATCH = re.compile(r"^(auto(:[1-9]\d*)?|[1-9]\d*)$")

# Where things are read from or written to: never part of a run's identity.
LOCATION_FIELDS = ("data_dir", "splits_dir", "results_dir", "keep_work")


@dataclass
class RunSpec:
    key: RunKey
    preset: str | None = None  # None: the model's default preset
    pretrained: str | None = None
    aux_branch: str | None = None
    aux_data: list[str] = field(default_factory=list)
    aux_prob: float = 0.5
    steps: int | None = None
    batch_size: str | None = None
    learning_rate: float | None = None
    selection: str = "best_val"
    # Data-efficiency protocol (paper Supplementary D.4): the training subset's seed (None: the
    # run's seed) and the pool it is drawn from ("train", or "train+val" as the paper's smallest
    # sets imply; validation then stays the fold's, for checkpoint selection).
    subset_seed: int | None = None
    subset_pool: str = "train"
    # --strategy-param KEY=VALUE (strings; the strategy types and validates them, see Strategy.params)
    strategy_params: dict[str, str] = field(default_factory=dict)
    # Data-parallel training processes, one per GPU (deepmd under torchrun; the paper's QM9 MFT: 2).
    gpus: int = 1
    data_dir: str | None = None
    splits_dir: str | None = None
    results_dir: str | None = None
    keep_work: bool = False

    def result_fields(self) -> dict[str, Any]:
        """The spec's own options that change the result (everything but locations)."""
        return {k: v for k, v in asdict(self).items() if k != "key" and k not in LOCATION_FIELDS}

    def check(self) -> None:
        """One-line errors for option values no run can use, before anything is loaded or queued."""
        problem = next((msg for bad, msg in self._checks() if bad), None)
        if problem:
            raise UsageError(problem)

    def _checks(self) -> list[tuple[bool, str]]:
        frac, lr = self.key.train_fraction, self.learning_rate
        return [
            (not (math.isfinite(frac) and 0 < frac <= 1), f"--train-fraction must be in (0, 1], got {frac:g}"),
            (self.steps is not None and self.steps < 1, f"--steps must be a positive integer, got {self.steps}"),
            (self.gpus < 1, f"--gpus must be at least 1, got {self.gpus}"),
            (not 0 < self.aux_prob < 1, f"--aux-prob is the share of steps on the auxiliary task, strictly between "
                                        f"0 and 1; got {self.aux_prob:g}"),
            (self.batch_size is not None and not _BATCH.match(self.batch_size),
             f"--batch-size takes N or auto or auto:N (e.g. auto:512), got {self.batch_size!r}"),
            (lr is not None and not (math.isfinite(lr) and lr > 0), f"--lr must be a positive number, got {lr}"),
            (self.selection not in ("best_val", "last"), f"--select takes best_val or last, got {self.selection!r}"),
            (self.subset_pool not in ("train", "train+val"),
             f"--subset-pool takes train or train+val, got {self.subset_pool!r}"),
        ]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["key"] = self.key.to_dict()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunSpec:
        d = dict(d)
        d["key"] = RunKey.from_dict(d["key"])
        return cls(**d)
