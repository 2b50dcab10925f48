"""The single definition of "the same run": a fingerprint over everything that changes the result.

It hashes the spec's own result-changing options plus what the model's backend says identifies
the run beyond them (a checkpoint's sha256: a rebuilt stand-in is a different model). A record
whose fingerprint differs is a different run: resume reports it as a conflict, never mixes it in.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .spec import RunSpec


def fingerprint_of(spec: RunSpec, backend_identity: dict[str, Any]) -> str:
    fields = {**spec.result_fields(), **backend_identity}
    blob = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint(spec: RunSpec) -> str:
    """Fingerprint of a planned run (cheap: resolves the checkpoint, loads no dataset)."""
    from ..backends import backend_for
    from ..models import MODELS
    from ..strategies import STRATEGIES

    model = MODELS.get(spec.key.model)
    identity = backend_for(model).identity(spec, model, STRATEGIES.get(spec.key.strategy))
    return fingerprint_of(spec, identity)
