"""Strategies as deepmd-kit inputs (MFT paper Table 1 / Fig. 1): the deepmd side of each strategy.

A ``Recipe`` turns a ``RunContext`` into the exact ``dp --pt train`` input and arguments. Recipes
are registered under the name of the strategy they implement (``RECIPES``); the strategy itself
(label, summary, which backends support it) lives in ``ood_bench.strategies``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...datasets import TargetInfo
from ...registry import Registry
from .presets import Preset
from .pretrained import PretrainedModel

PROPERTY_BRANCH = "property"
# Paper Table 8: energy 0.2 -> 20, force 100 -> 60, virial 0.02 -> 1 (virial only with stresses).
ENER_LOSS = {"type": "ener", "start_pref_e": 0.2, "limit_pref_e": 20, "start_pref_f": 100,
             "limit_pref_f": 60}
VIRIAL_PREFS = {"start_pref_v": 0.02, "limit_pref_v": 1}


@dataclass
class RunContext:
    """Everything a recipe needs to write one training input."""

    target: TargetInfo
    dataset_kind: str
    preset: Preset
    descriptor: dict[str, Any]
    type_map: list[str]
    train_systems: list[str]
    val_systems: list[str]
    workdir: Path
    steps: int
    batch_size: str
    start_lr: float
    seed: int
    pretrained: PretrainedModel | None = None
    aux_branch: str | None = None
    aux_systems: list[str] = field(default_factory=list)
    aux_has_virial: bool = False
    aux_prob: float = 0.5
    aux_batch_size: str = "auto:128"

    @property
    def loss_func(self) -> str:
        """Paper: MSE on QM9, smooth MAE on MatBench."""
        return "mse" if self.dataset_kind == "molecules" else "smooth_mae"


class Recipe:
    """Single-task property model (Scratch / FT / LP share this shape); subclasses change parts."""

    def property_fitting(self, ctx: RunContext) -> dict[str, Any]:
        fit = {
            "type": "property",
            "property_name": ctx.target.name,
            "task_dim": 1,
            "intensive": ctx.target.pool_intensive,
            "neuron": list(ctx.preset.fitting_neuron),
            "resnet_dt": True,
            "activation_function": "tanh",
            "seed": ctx.seed,
        }
        if not ctx.target.per_type_bias:
            fit["distinguish_types"] = False
        return fit

    def property_loss(self, ctx: RunContext) -> dict[str, Any]:
        return {"type": "property", "loss_func": ctx.loss_func, "metric": ["mae", "rmse"]}

    def descriptor(self, ctx: RunContext) -> dict[str, Any]:
        desc = copy.deepcopy(ctx.descriptor)
        desc["seed"] = ctx.seed
        return desc

    def learning_rate(self, ctx: RunContext) -> dict[str, Any]:
        return {"type": "exp", "start_lr": ctx.start_lr, "stop_lr": ctx.preset.stop_lr,
                "decay_steps": min(ctx.preset.decay_steps, max(1, ctx.steps // 4))}

    def training_common(self, ctx: RunContext) -> dict[str, Any]:
        save_freq = max(1, ctx.steps // max(1, ctx.preset.save_checkpoints))
        return {
            "numb_steps": ctx.steps,
            "seed": ctx.seed,
            "disp_file": str(ctx.workdir / "lcurve.out"),
            "disp_freq": max(1, min(1000, ctx.steps // 50)),
            "save_freq": save_freq,
            "save_ckpt": str(ctx.workdir / "model.ckpt"),
            "max_ckpt_keep": ctx.preset.save_checkpoints + 2,
            "gradient_max_norm": ctx.preset.gradient_max_norm,
        }

    def data(self, systems: list[str], batch: str) -> dict[str, Any]:
        return {"systems": systems, "batch_size": batch}

    def build_input(self, ctx: RunContext) -> dict[str, Any]:
        return {
            "model": {
                "type_map": ctx.type_map,
                "descriptor": self.descriptor(ctx),
                "fitting_net": self.property_fitting(ctx),
            },
            "learning_rate": self.learning_rate(ctx),
            "loss": self.property_loss(ctx),
            "training": {
                "training_data": self.data(ctx.train_systems, ctx.batch_size),
                "validation_data": self.data(ctx.val_systems, ctx.batch_size),
                **self.training_common(ctx),
            },
        }

    def train_args(self, ctx: RunContext) -> list[str]:
        """Extra ``dp --pt train`` arguments."""
        return []

    def eval_head(self) -> str | None:
        """Head to predict with (multi-task checkpoints only)."""
        return None


RECIPES: Registry[Recipe] = Registry("deepmd recipe")


class Scratch(Recipe):
    """Random backbone and head, same architecture as the pretrained model when given."""


class FineTune(Recipe):
    """Pretrained backbone, new random property head, everything trainable.

    ``dp --pt train --finetune CKPT`` without ``--model-branch`` re-initialises the fitting net;
    passing ``--model-branch`` with a property head can silently copy the energy head (deepmd
    pitfall).
    """

    def train_args(self, ctx: RunContext) -> list[str]:
        assert ctx.pretrained is not None
        return ["--finetune", str(ctx.pretrained.path)]


class LinearProbe(FineTune):
    """FT with the pretrained descriptor frozen (``trainable: false``)."""

    def descriptor(self, ctx: RunContext) -> dict[str, Any]:
        desc = super().descriptor(ctx)
        desc["trainable"] = False
        return desc


class MultiTaskFineTune(FineTune):
    """A new property head (``finetune_head: RANDOM``) and the inherited force-field head
    (``finetune_head: <branch>``) share the pretrained backbone; each step samples one branch by
    ``model_prob`` (deepmd's ``model_dict`` mechanism)."""

    def build_input(self, ctx: RunContext) -> dict[str, Any]:
        assert ctx.pretrained is not None and ctx.aux_branch is not None
        aux = ctx.aux_branch
        aux_fitting = copy.deepcopy(ctx.pretrained.fittings[aux])
        prop_fitting = self.property_fitting(ctx)
        # The case embedding has one slot per pretrained branch; every head must agree.
        if aux_fitting.get("dim_case_embd"):
            prop_fitting["dim_case_embd"] = aux_fitting["dim_case_embd"]
        ener_loss = dict(ENER_LOSS, **(VIRIAL_PREFS if ctx.aux_has_virial else {}))
        return {
            "model": {
                "shared_dict": {"type_map_all": ctx.type_map, "dpa3_descriptor": self.descriptor(ctx)},
                "model_dict": {
                    aux: {"type_map": "type_map_all", "descriptor": "dpa3_descriptor",
                          "fitting_net": aux_fitting, "finetune_head": aux},
                    PROPERTY_BRANCH: {"type_map": "type_map_all", "descriptor": "dpa3_descriptor",
                                      "fitting_net": prop_fitting, "finetune_head": "RANDOM"},
                },
            },
            "learning_rate": self.learning_rate(ctx),
            "loss_dict": {aux: ener_loss, PROPERTY_BRANCH: self.property_loss(ctx)},
            "training": {
                "model_prob": {aux: ctx.aux_prob, PROPERTY_BRANCH: 1.0 - ctx.aux_prob},
                "data_dict": {
                    aux: {"training_data": self.data(ctx.aux_systems, ctx.aux_batch_size)},
                    PROPERTY_BRANCH: {
                        "training_data": self.data(ctx.train_systems, ctx.batch_size),
                        "validation_data": self.data(ctx.val_systems, ctx.batch_size),
                    },
                },
                **self.training_common(ctx),
            },
        }

    def eval_head(self) -> str | None:
        return PROPERTY_BRANCH


RECIPES.add("scratch", Scratch())
RECIPES.add("ft", FineTune())
RECIPES.add("lp", LinearProbe())
RECIPES.add("mft", MultiTaskFineTune())
