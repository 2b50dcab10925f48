"""L2-SP (Li et al. 2018) as a deepmd-kit loss plugin: loss type ``oodbench_l2sp``.

deepmd's trainer resolves a loss type it does not know through ``TaskLoss``'s plugin registry
(``deepmd.pt.train.training.get_loss``, last branch), and ``import deepmd.pt`` imports this module
through the ``deepmd.pt`` entry-point group (``pyproject.toml``), so ``dp --pt train`` itself
trains with it. Nothing in deepmd is patched.

The loss wraps a base loss (deepmd's ``property`` loss, or oodbench's ``oodbench_head``) and adds,
every step it is used (in a multi-task run: the steps of its branch only)::

    delta / 2 * ||theta_backbone - theta_pretrained||^2 + delta_head / 2 * ||w_head||^2

theta_backbone: the trainable parameters of the model's descriptor (DPA3: type embedding,
edge/angle embeddings, repflow layers), compared name by name with the descriptor of the
pretrained checkpoint given in the loss config (``pretrained``, optionally ``pretrained_branch``;
a multi-task checkpoint shares one descriptor). w_head: the trainable parameters of the fitting
net. The penalty is in the units of the base loss as deepmd computes it (for ``property`` with
``mse``: the sum over the batch's frames of squared residuals divided by the label std), and is
shown as ``l2sp`` in ``lcurve.out``. A zero weight adds no term at all, so ``delta 0`` trains
exactly what FT trains.

The pretrained tensors are plain attributes, not buffers: they never enter the checkpoints.

Two representation-based losses wrap a base loss the same way and add a term on the descriptor
output of the batch (``f``: nf x nloc x d), captured with a forward hook on the model's descriptor
that lives only for the base loss's call (deepmd's code is called, never changed). Phantom atoms
(``atype < 0``, padding of a mixed batch) are left out of both.

- ``oodbench_feature_map`` (DELTA without attention, RoFt-Mol's "feature-map")::

      delta / 2 * sum_frames mean_{atoms, features} (f(theta, x) - f(theta_pretrained, x))^2

  f(theta_pretrained, x): a frozen copy of the descriptor (no gradient, eval mode) holding every
  tensor of the pretrained checkpoint's descriptor (statistics included), called on the inputs the
  live descriptor received. Logged as ``feature_map``.
- ``oodbench_bss`` (batch spectral shrinkage, Chen et al. 2019)::

      eta * sum_{i <= k} sigma_{-i}^2

  the k smallest singular values of the batch's pooled representations (frames x features: each
  frame's mean of f over its atoms); nothing for a batch of k frames or fewer. Logged as ``bss``.

Both are summed over the batch's frames like deepmd's property loss (BSS: one matrix per batch),
and a zero weight adds no term at all (no hook, no frozen copy).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from dargs import Argument
from deepmd.pt.loss.loss import TaskLoss
from deepmd.pt.loss.property import PropertyLoss
from deepmd.utils.argcheck import loss_args_plugin
from deepmd.utils.data import DataRequirementItem
from deepmd.utils.version import check_version_compatibility

from ..feature_reg import BSS_LOSS_TYPE, FEATURE_MAP_LOSS_TYPE
from ..robust import L2SP_LOSS_TYPE, backbone, read_state


def _base_loss(base: dict[str, Any], start_lr: float | None) -> TaskLoss:
    params = dict(base)
    kind = params.pop("type", "property")
    if kind == "property":
        # deepmd's get_loss takes task_dim, var_name and intensive from the model; the recipe
        # writes them into the base config instead.
        return PropertyLoss(**params)
    if start_lr is not None:
        params["starter_learning_rate"] = start_lr
    params["type"] = kind
    return TaskLoss.get_class_by_type(kind).get_loss(params)


class _WrappedLoss(TaskLoss):
    """A registered loss around a base loss (``base``: deepmd's ``property`` or any registered type):
    what every oodbench wrapper shares (construction from its config, label requirements and
    deepmd's serialize/deserialize of the constructor's arguments, ``config``)."""

    def __init__(self, base: dict[str, Any], starter_learning_rate: float | None = None) -> None:
        super().__init__()
        self.base_config = dict(base)
        self.base = _base_loss(self.base_config, starter_learning_rate)
        self.starter_learning_rate = starter_learning_rate

    @classmethod
    def get_loss(cls, loss_params: dict) -> _WrappedLoss:
        params = dict(loss_params)
        params.pop("type", None)
        return cls(**params)

    @property
    def label_requirement(self) -> list[DataRequirementItem]:
        return self.base.label_requirement

    def config(self) -> dict[str, Any]:
        """The constructor's arguments (what ``serialize`` writes)."""
        return {"base": self.base_config, "starter_learning_rate": self.starter_learning_rate}

    def serialize(self) -> dict:
        return {"@class": type(self).__name__, "@version": 1, **self.config()}

    @classmethod
    def deserialize(cls, data: dict) -> _WrappedLoss:
        data = data.copy()
        check_version_compatibility(data.pop("@version"), 1, 1)
        data.pop("@class")
        return cls(**data)


@TaskLoss.register(L2SP_LOSS_TYPE)
class L2SPLoss(_WrappedLoss):
    def __init__(self, base: dict[str, Any], pretrained: str, delta: float = 0.01, delta_head: float = 0.0,
                 pretrained_branch: str | None = None, starter_learning_rate: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(base, starter_learning_rate)
        self.pretrained = str(pretrained)
        self.pretrained_branch = pretrained_branch
        self.delta = float(delta)
        self.delta_head = float(delta_head)
        # name inside the descriptor -> pretrained tensor; plain attributes (never in a state dict)
        self._anchor = {k: v for k, v in backbone(read_state(self.pretrained), pretrained_branch).items()
                        if torch.is_tensor(v) and v.is_floating_point()}
        self._anchor_on: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}


    def _anchor_for(self, name: str, like: torch.Tensor) -> torch.Tensor:
        key = (name, like.device, like.dtype)
        if key not in self._anchor_on:
            if name not in self._anchor:
                raise RuntimeError(f"{L2SP_LOSS_TYPE}: descriptor parameter {name} is not in the pretrained "
                                   f"checkpoint {self.pretrained}")
            anchor = self._anchor[name]
            if anchor.shape != like.shape:
                raise RuntimeError(f"{L2SP_LOSS_TYPE}: descriptor parameter {name} has shape {tuple(like.shape)}, "
                                   f"the pretrained one {tuple(anchor.shape)}")
            self._anchor_on[key] = anchor.to(device=like.device, dtype=like.dtype)
        return self._anchor_on[key]

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        atomic = model.atomic_model
        total = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
        # A zero weight adds no term at all (not even zero gradients): delta 0 trains exactly as FT.
        for name, param in atomic.descriptor.named_parameters() if self.delta else ():
            if param.requires_grad:
                diff = param - self._anchor_for(name, param)
                total = total + 0.5 * self.delta * torch.sum(diff * diff).to(torch.float64)
        if self.delta_head:
            for param in atomic.fitting_net.parameters():
                if param.requires_grad:
                    total = total + 0.5 * self.delta_head * torch.sum(param * param).to(torch.float64)
        return total

    def forward(self, input_dict: dict[str, torch.Tensor], model: torch.nn.Module, label: dict[str, torch.Tensor],
                natoms: int, learning_rate: float = 0.0, mae: bool = False,
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
        model_pred, loss, more_loss = self.base(input_dict, model, label, natoms, learning_rate, mae=mae)
        penalty = self.penalty(model)
        more_loss["l2sp"] = penalty.detach()
        return model_pred, loss + penalty.to(loss.dtype), more_loss

    def config(self) -> dict[str, Any]:
        return {**super().config(), "pretrained": self.pretrained, "pretrained_branch": self.pretrained_branch,
                "delta": self.delta, "delta_head": self.delta_head}


@loss_args_plugin.register(L2SP_LOSS_TYPE, doc="oodbench: L2-SP, a base loss + delta/2 ||theta_backbone - "
                           "theta_pretrained||^2 + delta_head/2 ||w_head||^2.")
def _l2sp_loss_args() -> list[Argument]:
    return [
        Argument("base", dict, optional=False, doc="The wrapped loss: a `property` loss (with task_dim, var_name "
                 "and intensive, which deepmd otherwise reads from the model) or any registered loss type."),
        Argument("pretrained", str, optional=False, doc="The pretrained checkpoint (.pt) whose descriptor is "
                 "theta_pretrained."),
        Argument("pretrained_branch", [str, None], optional=True, default=None, doc="Branch of a multi-task "
                 "checkpoint to read the descriptor from (default: the first; branches share it)."),
        Argument("delta", [float, int], optional=True, default=0.01, doc="Strength of the pull towards the "
                 "pretrained backbone."),
        Argument("delta_head", [float, int], optional=True, default=0.0, doc="Weight decay of the head (fitting net)."),
    ]


# --- representation-based: feature-map (DELTA) and BSS ------------------------------------------
Call = tuple[tuple, dict, Any]  # one descriptor call: positional args, keyword args, output


@contextmanager
def descriptor_calls(descriptor: torch.nn.Module) -> Iterator[list[Call]]:
    """Record the descriptor's calls (inputs and output) while the block runs; the hook is removed
    afterwards, whatever happens."""
    calls: list[Call] = []
    handle = descriptor.register_forward_hook(lambda _m, args, kwargs, out: calls.append((args, kwargs, out)),
                                              with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def real_atoms(input_dict: dict[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
    """(nf, nloc) 1 for real atoms, 0 for phantom ones (``atype < 0``), as deepmd's loss masks them."""
    mask = (input_dict["atype"] >= 0).to(torch.float64)
    if mask.shape != features.shape[:2]:
        raise RuntimeError(f"descriptor output {tuple(features.shape)} does not match the batch's atom types "
                           f"{tuple(mask.shape)}")
    return mask


def frame_means(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(nf, d): each frame's mean of the (nf, nloc, d) features over its real atoms, in float64."""
    return (features.to(torch.float64) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


class _DescriptorTermLoss(_WrappedLoss):
    """A base loss plus ``term`` of the descriptor's output on the same batch (subclasses)."""

    type_name = ""
    key = ""  # its name in lcurve.out

    @property
    def weight(self) -> float:
        raise NotImplementedError

    def term(self, descriptor: torch.nn.Module, call: Call, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_dict: dict[str, torch.Tensor], model: torch.nn.Module, label: dict[str, torch.Tensor],
                natoms: int, learning_rate: float = 0.0, mae: bool = False,
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
        if not self.weight:  # no term at all (no hook, nothing computed): trains exactly as FT
            model_pred, loss, more_loss = self.base(input_dict, model, label, natoms, learning_rate, mae=mae)
            more_loss[self.key] = torch.zeros((), dtype=torch.float64, device=loss.device)
            return model_pred, loss, more_loss
        descriptor = model.atomic_model.descriptor
        with descriptor_calls(descriptor) as calls:
            model_pred, loss, more_loss = self.base(input_dict, model, label, natoms, learning_rate, mae=mae)
        if len(calls) != 1:
            raise RuntimeError(f"{self.type_name}: the model called its descriptor {len(calls)} times in one loss "
                               "evaluation; expected once")
        features = calls[0][2][0]
        term = self.term(descriptor, calls[0], real_atoms(input_dict, features))
        more_loss[self.key] = term.detach()
        return model_pred, loss + term.to(loss.dtype), more_loss



@TaskLoss.register(FEATURE_MAP_LOSS_TYPE)
class FeatureMapLoss(_DescriptorTermLoss):
    """+ delta/2 sum_frames mean_{atoms, features} (f(theta, x) - f(theta_pretrained, x))^2."""

    type_name = FEATURE_MAP_LOSS_TYPE
    key = "feature_map"

    def __init__(self, base: dict[str, Any], pretrained: str, delta: float = 1.0, pretrained_branch: str | None = None,
                 starter_learning_rate: float | None = None, **kwargs: Any) -> None:
        super().__init__(base, starter_learning_rate)
        self.pretrained = str(pretrained)
        self.pretrained_branch = pretrained_branch
        self.delta = float(delta)
        # The frozen pretrained descriptor, built on first use: in a plain list, so that it is no
        # submodule of the loss (deepmd's wrapper holds the loss: it would enter the checkpoints
        # and the optimiser).
        self._frozen: list[torch.nn.Module] = []

    @property
    def weight(self) -> float:
        return self.delta

    def frozen(self, live: torch.nn.Module) -> torch.nn.Module:
        """The pretrained descriptor: a copy of the live one (same class, type map, device) loaded
        strictly with every tensor of the checkpoint's descriptor, statistics included."""
        if not self._frozen:
            frozen = copy.deepcopy(live)
            try:
                frozen.load_state_dict(backbone(read_state(self.pretrained), self.pretrained_branch), strict=True)
            except RuntimeError as err:
                raise RuntimeError(f"{FEATURE_MAP_LOSS_TYPE}: the descriptor of {self.pretrained} does not fit the "
                                   f"model's: {err}") from None
            self._frozen.append(frozen.requires_grad_(False).eval())
        return self._frozen[0]

    def term(self, descriptor: torch.nn.Module, call: Call, mask: torch.Tensor) -> torch.Tensor:
        args, kwargs, out = call
        with torch.no_grad():
            anchor = self.frozen(descriptor)(*args, **kwargs)[0]
        diff = out[0].to(torch.float64) - anchor.to(torch.float64)
        per_atom = (diff * diff).mean(-1)  # mean over features
        per_frame = (per_atom * mask).sum(1) / mask.sum(1)  # mean over real atoms
        return 0.5 * self.delta * per_frame.sum()

    def config(self) -> dict[str, Any]:
        return {**super().config(), "pretrained": self.pretrained, "pretrained_branch": self.pretrained_branch,
                "delta": self.delta}


@TaskLoss.register(BSS_LOSS_TYPE)
class BSSLoss(_DescriptorTermLoss):
    """+ eta * sum of the k smallest squared singular values of the (frames x features) matrix of
    per-frame mean descriptors. A batch with no more than k singular values (k frames or fewer)
    adds nothing: there, "the smallest" would be all of them, shrinking the whole representation."""

    type_name = BSS_LOSS_TYPE
    key = "bss"

    def __init__(self, base: dict[str, Any], eta: float = 0.001, k: int = 1, starter_learning_rate: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(base, starter_learning_rate)
        self.eta = float(eta)
        self.k = int(k)
        if self.k < 1:
            raise ValueError(f"{BSS_LOSS_TYPE}: k must be >= 1, got {k}")

    @property
    def weight(self) -> float:
        return self.eta

    def term(self, descriptor: torch.nn.Module, call: Call, mask: torch.Tensor) -> torch.Tensor:
        sigma = torch.linalg.svdvals(frame_means(call[2][0], mask))  # descending
        if sigma.numel() <= self.k:  # k frames or fewer: every singular value, no tail to shrink
            return torch.zeros((), dtype=sigma.dtype, device=sigma.device)
        smallest = sigma[-self.k:]
        return self.eta * torch.sum(smallest * smallest)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "eta": self.eta, "k": self.k}


def _base_arg() -> Argument:
    return Argument("base", dict, optional=False, doc="The wrapped loss: a `property` loss (with task_dim, var_name "
                    "and intensive, which deepmd otherwise reads from the model) or any registered loss type.")


@loss_args_plugin.register(FEATURE_MAP_LOSS_TYPE, doc="oodbench: feature-map (DELTA without attention), a base loss "
                           "+ delta/2 sum_frames mean_{atoms,features} (f(theta,x) - f(theta_pretrained,x))^2 on the "
                           "descriptor output f.")
def _feature_map_loss_args() -> list[Argument]:
    return [
        _base_arg(),
        Argument("pretrained", str, optional=False, doc="The pretrained checkpoint (.pt) whose descriptor gives "
                 "f(theta_pretrained, x)."),
        Argument("pretrained_branch", [str, None], optional=True, default=None, doc="Branch of a multi-task "
                 "checkpoint to read the descriptor from (default: the first; branches share it)."),
        Argument("delta", [float, int], optional=True, default=1.0, doc="Strength of the pull of the descriptor "
                 "output towards the pretrained one."),
    ]


@loss_args_plugin.register(BSS_LOSS_TYPE, doc="oodbench: batch spectral shrinkage, a base loss + eta * the sum of the "
                           "k smallest squared singular values of the batch's per-frame mean descriptors.")
def _bss_loss_args() -> list[Argument]:
    return [
        _base_arg(),
        Argument("eta", [float, int], optional=True, default=0.001, doc="Weight of the spectral penalty."),
        Argument("k", int, optional=True, default=1, doc="How many of the smallest singular values are penalised."),
    ]
