"""A run, fully specified: its identity (``RunKey``) plus the options that shape its result.

``RunSpec`` is plain data (JSON round-trip, no imports of the runner, nothing loaded) so a run can
be shipped to another process or a cluster node (dpdispatcher) and executed there with the same
code path as locally. Backend-specific options travel in it; only the backend reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..records import RunKey

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
    data_dir: str | None = None
    splits_dir: str | None = None
    results_dir: str | None = None
    keep_work: bool = False

    def result_fields(self) -> dict[str, Any]:
        """The spec's own options that change the result (everything but locations)."""
        return {k: v for k, v in asdict(self).items() if k != "key" and k not in LOCATION_FIELDS}

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["key"] = self.key.to_dict()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunSpec:
        d = dict(d)
        d["key"] = RunKey.from_dict(d["key"])
        return cls(**d)
