"""Fine-tuning strategies as deepmd-kit inputs (MFT paper Table 1 / Fig. 1).

A strategy turns a ``RunContext`` into the exact ``dp --pt train`` input and arguments; adding
one is adding a module that registers itself in ``STRATEGIES``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..datasets import TargetInfo
from ..models import Preset
from ..pretrained import PretrainedModel
from ..registry import Registry

PROPERTY_BRANCH = "property"
# Paper Table 8: energy 0.2 -> 20, force 100 -> 60, virial 0.02 -> 1 (virial only with stresses).
ENER_LOSS = {"type": "ener", "start_pref_e": 0.2, "limit_pref_e": 20, "start_pref_f": 100,
             "limit_pref_f": 60}
VIRIAL_PREFS = {"start_pref_v": 0.02, "limit_pref_v": 1}


@dataclass
class RunContext:
    """Everything a strategy needs to write one training input."""

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


class Strategy:
    name: str = ""
    label: str = ""
    summary: str = ""
    needs_pretrained: bool = False
    uses_aux: bool = False

    # -- pieces shared by all strategies ---------------------------------------------------
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

    # -- what differs ----------------------------------------------------------------------
    def build_input(self, ctx: RunContext) -> dict[str, Any]:
        """Single-task property model (Scratch / FT / LP share this shape)."""
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


STRATEGIES: Registry[Strategy] = Registry("strategy", "ood_bench.strategies")
