"""A run, fully specified: its identity (``RunKey``) plus the options that shape its result.

``RunSpec`` is plain data (JSON round-trip) so a run can be shipped to another process or a
cluster node (dpdispatcher) and executed there with the same code path as locally.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..records import RunKey


@dataclass
class RunSpec:
    key: RunKey
    preset: str = "tiny"
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

    def fingerprint_fields(self) -> dict[str, Any]:
        """Options that change the result; a record made with others is not this run. The
        checkpoint counts by content (sha256), not by name: a rebuilt stand-in is a new model."""
        fields = {k: getattr(self, k) for k in ("preset", "pretrained", "aux_branch", "aux_data",
                                                "aux_prob", "steps", "batch_size", "learning_rate",
                                                "selection")}
        fields["pretrained_sha256"] = self.pretrained_sha256()
        return fields

    def pretrained_sha256(self) -> str | None:
        from ..pretrained import load_pretrained
        from ..strategies import STRATEGIES
        from .execute import default_pretrained

        if not (STRATEGIES.get(self.key.strategy).needs_pretrained or self.pretrained):
            return None
        return load_pretrained(self.pretrained or default_pretrained(self.preset)).sha256

    def fingerprint(self) -> str:
        blob = json.dumps(self.fingerprint_fields(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["key"] = self.key.to_dict()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunSpec:
        d = dict(d)
        d["key"] = RunKey.from_dict(d["key"])
        return cls(**d)
