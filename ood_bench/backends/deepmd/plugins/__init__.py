"""deepmd-kit plugins shipped by oodbench, and the names that tie them to oodbench.

The plugins themselves live in ``heads.py``; deepmd imports that module through the entry point
group ``deepmd.pt`` (see ``pyproject.toml``) whenever ``deepmd.pt`` is imported, so ``dp --pt
train`` and ``DeepEval`` resolve the model, fitting and loss types below by name. This module only
holds the names and a reader for stored deepmd inputs: importing it loads neither torch nor deepmd.

Heads (paper Supplementary D.2, "special cases"):

- ``property``: deepmd's own property head (paper eq. 16), a pooled scalar.
- ``dipole-norm``: QM9 mu as the norm of a predicted dipole vector (norm of dipole moment vectors, [84]).
- ``spatial-extent``: QM9 <R^2> as sum_i q_i |r_i - r_c|^2 (the head of ET, JMP and GotenNet [70, 67, 4]).
"""

from __future__ import annotations

from typing import Any

PLAIN_HEAD = "property"
DIPOLE_NORM = "dipole-norm"
SPATIAL_EXTENT = "spatial-extent"

# head name -> deepmd model type (``model.type``) registered by heads.py
MODEL_TYPES = {DIPOLE_NORM: "oodbench_dipole_norm", SPATIAL_EXTENT: "oodbench_spatial_extent"}
# head name -> deepmd fitting type (``model.fitting_net.type``)
FITTING_TYPES = {PLAIN_HEAD: "property", DIPOLE_NORM: "oodbench_dipole_norm", SPATIAL_EXTENT: "property"}
# The loss of both coordinate heads (``loss.type``).
HEAD_LOSS_TYPE = "oodbench_head"
HEADS = (PLAIN_HEAD, DIPOLE_NORM, SPATIAL_EXTENT)


def head_of_model(model: dict[str, Any]) -> str:
    """The head of one deepmd model section (a single-task ``model`` or one ``model_dict`` branch)."""
    by_type = {v: k for k, v in MODEL_TYPES.items()}
    return by_type.get(str(model.get("type", "standard")), PLAIN_HEAD)


def head_of_input(deepmd_input: dict[str, Any], branch: str | None = None) -> str:
    """The head a stored ``dp --pt train`` input trains: ``property``, ``dipole-norm`` or
    ``spatial-extent`` (multi-task inputs: the given branch, else the branch whose loss is not an
    energy loss). Works on records written before heads were recorded."""
    model = deepmd_input.get("model", {})
    if "model_dict" not in model:
        return head_of_model(model)
    branches = model["model_dict"]
    if branch is None:
        losses = deepmd_input.get("loss_dict", {})
        props = [k for k in branches if str(losses.get(k, {}).get("type", "ener")) not in ("ener", "ener_hess")]
        branch = props[0] if props else next(iter(branches))
    return head_of_model(branches[branch])
