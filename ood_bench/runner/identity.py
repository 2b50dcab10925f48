"""The single definition of "the same run": a fingerprint over everything that changes the result.

It hashes the spec's own result-changing options plus what the model's backend says identifies
the run beyond them (a checkpoint's sha256: a rebuilt stand-in is a different model). A record
whose fingerprint differs is a different run: resume reports it as a conflict, never mixes it in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from ..models import MODELS
from .spec import RunSpec


def with_default_preset(spec: RunSpec) -> RunSpec:
    """The preset by name, so a default and an explicit default are the same run; a non-default
    preset is the run's variant (its records live apart from the default's)."""
    model = MODELS.get(spec.key.model)
    preset = spec.preset or model.default_preset
    variant = "" if preset == model.default_preset else preset
    if spec.preset == preset and spec.key.variant == variant:
        return spec
    return dataclasses.replace(spec, preset=preset, key=dataclasses.replace(spec.key, variant=variant))


def fingerprint_of(spec: RunSpec, backend_identity: dict[str, Any]) -> str:
    fields = {**spec.result_fields(), **backend_identity}
    blob = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint(spec: RunSpec) -> str:
    """Fingerprint of a planned run (cheap: resolves the checkpoint, loads no dataset)."""
    from ..backends import backend_for
    from ..strategies import STRATEGIES

    spec = with_default_preset(spec)
    model = MODELS.get(spec.key.model)
    identity = backend_for(model).identity(spec, model, STRATEGIES.get(spec.key.strategy))
    return fingerprint_of(spec, identity)
