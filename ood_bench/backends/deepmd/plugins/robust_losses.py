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
"""

from __future__ import annotations

from typing import Any

import torch
from dargs import Argument
from deepmd.pt.loss.loss import TaskLoss
from deepmd.pt.loss.property import PropertyLoss
from deepmd.utils.argcheck import loss_args_plugin
from deepmd.utils.data import DataRequirementItem
from deepmd.utils.version import check_version_compatibility

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


@TaskLoss.register(L2SP_LOSS_TYPE)
class L2SPLoss(TaskLoss):
    def __init__(self, base: dict[str, Any], pretrained: str, delta: float = 0.01, delta_head: float = 0.0,
                 pretrained_branch: str | None = None, starter_learning_rate: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__()
        self.base_config = dict(base)
        self.base = _base_loss(self.base_config, starter_learning_rate)
        self.pretrained = str(pretrained)
        self.pretrained_branch = pretrained_branch
        self.delta = float(delta)
        self.delta_head = float(delta_head)
        self.starter_learning_rate = starter_learning_rate
        # name inside the descriptor -> pretrained tensor; plain attributes (never in a state dict)
        self._anchor = {k: v for k, v in backbone(read_state(self.pretrained), pretrained_branch).items()
                        if torch.is_tensor(v) and v.is_floating_point()}
        self._anchor_on: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    @classmethod
    def get_loss(cls, loss_params: dict) -> L2SPLoss:
        params = dict(loss_params)
        params.pop("type", None)
        return cls(**params)

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

    @property
    def label_requirement(self) -> list[DataRequirementItem]:
        return self.base.label_requirement

    def serialize(self) -> dict:
        return {"@class": "L2SPLoss", "@version": 1, "base": self.base_config, "pretrained": self.pretrained,
                "pretrained_branch": self.pretrained_branch, "delta": self.delta, "delta_head": self.delta_head,
                "starter_learning_rate": self.starter_learning_rate}

    @classmethod
    def deserialize(cls, data: dict) -> L2SPLoss:
        data = data.copy()
        check_version_compatibility(data.pop("@version"), 1, 1)
        data.pop("@class")
        return cls(**data)


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
