"""Resolve ``--pretrained`` to a checkpoint file and read what fine-tuning needs from it.

Accepted: a path to a deepmd ``.pt`` checkpoint; a name from deepmd-kit's own pretrained
registry (``DPA-3.1-3M``..., downloaded and sha256-checked by deepmd into its cache); or an
oodbench stand-in: ``oodbench-small`` (shipped in the package) or one ``oodbench pretrain`` built.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import CorruptFileError, DataMissingError, UsageError
from ...io_utils import sha256_file
from .standin import SHIPPED, embedded_meta, find_stand_in, load_checkpoint, stand_in_names

STAND_IN = SHIPPED


@dataclass
class PretrainedModel:
    name: str
    path: Path
    sha256: str
    branches: list[str]
    type_map: list[str]
    descriptor: dict[str, Any]
    fittings: dict[str, dict[str, Any]]
    stand_in: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def check_branch(self, branch: str) -> str:
        if branch not in self.branches:
            raise UsageError(
                f"{self.name} has no branch '{branch}'; its branches: {', '.join(self.branches)}"
            )
        return branch

    def default_aux_branch(self, dataset_kind: str) -> str:
        """The stand-in declares which branch suits molecules vs crystals; others must say."""
        branch = self.meta.get("aux_branch_for", {}).get(dataset_kind)
        if branch:
            return branch
        raise UsageError(
            f"pass --aux-branch for {self.name} (branches: {', '.join(self.branches[:12])}"
            f"{', ...' if len(self.branches) > 12 else ''}); e.g. SPICE2 for molecules"
        )

    def record(self, branch: str | None = None) -> dict[str, Any]:
        return {
            "name": self.name, "path": str(self.path), "sha256": self.sha256, "branch": branch,
            "stand_in": self.stand_in,
            "note": self.meta.get("note", ""),
        }


def _registry_names() -> list[str]:
    from deepmd.pretrained.registry import MODEL_REGISTRY

    return sorted(MODEL_REGISTRY)


def resolve_path(spec: str) -> tuple[str, Path]:
    p = Path(spec).expanduser()
    if p.exists():
        return p.stem, p.resolve()
    if spec in stand_in_names():
        path = find_stand_in(spec)
        if path is None:
            recipe = spec.removeprefix("oodbench-")
            raise DataMissingError(f"stand-in {spec} not built yet; run `oodbench pretrain --recipe {recipe}` first")
        return spec, path
    if spec.endswith((".pt", ".pth")) or "/" in spec:
        raise DataMissingError(f"pretrained checkpoint {spec} not found; check the path")
    names = _registry_names()
    if spec not in names:
        raise UsageError(
            f"unknown pretrained model '{spec}'; give a .pt path, {' or '.join(stand_in_names())}, "
            f"or one of: {', '.join(names)}"
        )
    try:
        return spec, _download_quietly(spec)
    except Exception as exc:  # urllib/OS errors of many kinds
        raise DataMissingError(
            f"could not get {spec} ({type(exc).__name__}: {str(exc)[:80]}); download it where there is "
            f"internet with `dp pretrained download {spec}` and pass --pretrained PATH, or use "
            f"--pretrained {STAND_IN} (shipped with oodbench, an offline stand-in)"
        ) from None


def _download_quietly(name: str) -> Path:
    """deepmd's own download (sha256-checked), its retry chatter kept off the terminal: a failure
    becomes one line, and a success is reported by the caller."""
    import contextlib
    import io
    import logging

    from deepmd.pretrained.download import resolve_model_path

    sink = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            return Path(resolve_model_path(name))
    finally:
        logging.disable(previous)


def _model_params(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    if "model" in state:
        state = state["model"]
    try:
        return state["_extra_state"]["model_params"]
    except (KeyError, TypeError):
        raise CorruptFileError(f"{path}: no model_params in checkpoint (not a deepmd-kit PyTorch .pt)") from None


@functools.cache
def load_pretrained(spec: str) -> PretrainedModel:
    name, path = resolve_path(spec)
    state = load_checkpoint(path)
    params = _model_params(path, state)
    meta = embedded_meta(state) or {}
    if "model_dict" in params:
        shared = params.get("shared_dict", {})
        branches = list(params["model_dict"])
        first = params["model_dict"][branches[0]]

        def resolve(v):
            return shared.get(v, v) if isinstance(v, str) else v

        descriptor = resolve(first["descriptor"])
        type_map = resolve(first["type_map"])
        fittings = {b: params["model_dict"][b]["fitting_net"] for b in branches}
    else:
        branches = ["Default"]
        descriptor = params["descriptor"]
        type_map = params["type_map"]
        fittings = {"Default": params["fitting_net"]}
    return PretrainedModel(
        name=name, path=path, sha256=sha256_file(path), branches=branches, type_map=list(type_map),
        descriptor=dict(descriptor), fittings=fittings, stand_in=bool(meta.get("stand_in", False)),
        meta=meta,
    )
