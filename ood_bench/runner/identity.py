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


def variant_of(spec: RunSpec, default_preset: str) -> str:
    """Options that make a different run of the same model and strategy, as a short canonical
    string (part of the record path, so such runs coexist): a non-default preset, non-default
    strategy parameters, an explicit
    auxiliary branch or data set, a training subset drawn apart from the training seed or from
    train+val."""
    from ..strategies import STRATEGIES

    parts = [] if spec.preset == default_preset else [str(spec.preset)]
    params = STRATEGIES.get(spec.key.strategy).param_variant(spec.strategy_params)
    if params:
        parts.append(params)
    if spec.aux_branch:
        parts.append(f"aux={spec.aux_branch}")
    if spec.aux_data:
        digest = hashlib.sha256(json.dumps(sorted(spec.aux_data)).encode()).hexdigest()[:8]
        parts.append(f"auxdata={digest}")
    if spec.subset_seed is not None:
        parts.append(f"subset={spec.subset_seed}")
    if spec.subset_pool != "train":
        parts.append(f"pool={spec.subset_pool}")
    return ",".join(parts)


def canonical(spec: RunSpec) -> RunSpec:
    """The preset by name, so a default and an explicit default are the same run, and the key's
    variant derived from the options (never set by hand)."""
    model = MODELS.get(spec.key.model)
    preset = spec.preset or model.default_preset
    spec = spec if spec.preset == preset else dataclasses.replace(spec, preset=preset)
    variant = variant_of(spec, model.default_preset)
    if spec.key.variant == variant:
        return spec
    return dataclasses.replace(spec, key=dataclasses.replace(spec.key, variant=variant))


def fingerprint_of(spec: RunSpec, backend_identity: dict[str, Any]) -> str:
    return _digest({**spec.result_fields(), **backend_identity})


def _digest(fields: dict[str, Any]) -> str:
    blob = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint(spec: RunSpec) -> str:
    """Fingerprint of a planned run (cheap: resolves the checkpoint, loads no dataset)."""
    spec = canonical(spec)
    return fingerprint_of(spec, _identity(spec))


def _identity(spec: RunSpec) -> dict[str, Any]:
    from ..backends import backend_for
    from ..strategies import STRATEGIES

    model = MODELS.get(spec.key.model)
    return backend_for(model).identity(spec, model, STRATEGIES.get(spec.key.strategy))


def same_run(record_config: dict[str, Any], spec: RunSpec) -> bool:
    """Whether a record was made by this planned run. A record written before an option existed
    was made with that option's default behaviour: when the planned run leaves every such option at
    its default, the fingerprint the older code gave it (the same fields without them, the same
    backend identity) must match instead, so adding an option never orphans finished runs."""
    spec = canonical(spec)
    identity = _identity(spec)
    stored = record_config.get("fingerprint")
    if stored == fingerprint_of(spec, identity):
        return True
    known = set(record_config.get("spec") or {})
    fields = spec.result_fields()
    newer = {k for k in fields if k not in known}
    defaults = RunSpec(key=spec.key).result_fields()
    if not known or not newer or any(fields[k] != defaults[k] for k in newer):
        return False
    older = {k: v for k, v in fields.items() if k not in newer}
    return stored == _digest({**older, **identity})
