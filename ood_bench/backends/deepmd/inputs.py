"""Strategies as deepmd-kit inputs (MFT paper Table 1 / Fig. 1): the deepmd side of each strategy.

A ``Recipe`` turns a ``RunContext`` into the exact ``dp --pt train`` input and arguments. Recipes
are registered under the name of the strategy they implement (``RECIPES``); the strategy itself
(label, summary, which backends support it) lives in ``ood_bench.strategies``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...datasets import TargetInfo
from ...errors import UsageError
from ...registry import Registry
from .plugins import FITTING_TYPES, HEAD_LOSS_TYPE, HEADS, MODEL_TYPES, PLAIN_HEAD
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
    params: dict[str, Any] = field(default_factory=dict)  # the strategy's parameters, typed (--strategy-param)

    @property
    def loss_func(self) -> str:
        """Paper: MSE on QM9, smooth MAE on MatBench."""
        return "mse" if self.dataset_kind == "molecules" else "smooth_mae"


class Recipe:
    """Single-task property model (Scratch / FT / LP share this shape); subclasses change parts."""

    def head_name(self, ctx: RunContext) -> str:
        """The property head this run trains: ``property`` (deepmd's pooled scalar, paper eq. 16),
        or the paper's own head for QM9 mu (``dipole-norm``) and r2 (``spatial-extent``),
        Supplementary D.2. The paper's heads are used with the ``paper`` preset, or with any preset
        whose ``extra["paper_heads"]`` is true; otherwise every target gets the plain scalar."""
        paper = bool(ctx.preset.extra.get("paper_heads", ctx.preset.name == "paper"))
        head = getattr(ctx.target, "paper_head", PLAIN_HEAD) if paper else PLAIN_HEAD
        if head not in HEADS:
            raise UsageError(f"property {ctx.target.name}: unknown head {head!r}; known: {', '.join(HEADS)}")
        if head != PLAIN_HEAD and ctx.dataset_kind != "molecules":
            raise UsageError(f"the {head} head of {ctx.target.name} is defined for isolated molecules only "
                             f"(QM9, no periodic cell), not for {ctx.dataset_kind}")
        return head

    def property_model(self, ctx: RunContext) -> dict[str, Any]:
        """Model-level keys of the property model: the deepmd model type of a coordinate head
        (registered by ``plugins/heads.py``); nothing for deepmd's plain property model."""
        head = self.head_name(ctx)
        return {} if head == PLAIN_HEAD else {"type": MODEL_TYPES[head]}

    def property_fitting(self, ctx: RunContext) -> dict[str, Any]:
        head = self.head_name(ctx)
        fit = {
            "type": FITTING_TYPES[head],
            "property_name": ctx.target.name,
            "task_dim": 1,
            # The coordinate heads sum per-atom contributions (their own reductions).
            "intensive": ctx.target.pool_intensive if head == PLAIN_HEAD else False,
            "neuron": list(ctx.preset.fitting_neuron),
            "resnet_dt": True,
            "activation_function": "tanh",
            "seed": ctx.seed,
        }
        if not ctx.target.per_type_bias:
            fit["distinguish_types"] = False
        return fit

    def property_loss(self, ctx: RunContext) -> dict[str, Any]:
        if self.head_name(ctx) != PLAIN_HEAD:
            # deepmd's property loss on the frame-level target, scaled by the labels' spread.
            return {"type": HEAD_LOSS_TYPE, "property_name": ctx.target.name, "loss_func": ctx.loss_func,
                    "metric": ["mae", "rmse"]}
        return {"type": "property", "loss_func": ctx.loss_func, "metric": ["mae", "rmse"]}

    def descriptor(self, ctx: RunContext) -> dict[str, Any]:
        desc = copy.deepcopy(ctx.descriptor)
        desc["seed"] = ctx.seed
        return desc

    def learning_rate(self, ctx: RunContext) -> dict[str, Any]:
        """Exponential decay; a start below the preset's stop never turns into a rising schedule
        (deepmd would also scale the energy/force loss prefactors by lr/start_lr beyond their range)."""
        return {"type": "exp", "start_lr": ctx.start_lr, "stop_lr": min(ctx.preset.stop_lr, ctx.start_lr),
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
                **self.property_model(ctx),
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

    # Hooks for recipes that do more than one `dp --pt train` (robust.py): several phases, an
    # in-process trainer, candidates made from the checkpoints after training.
    def launch(self, ctx: RunContext, config: dict[str, Any], args: list[str], *, label: str,
               on_line: Callable[[str], None] | None, processes: int) -> tuple[Path, float]:
        """Train in ``ctx.workdir``; returns the training log and peak memory (MiB)."""
        from .launcher import dp_train

        return dp_train(config, ctx.workdir, args, label=label, on_line=on_line, processes=processes)

    def candidates(self, ctx: RunContext, checkpoints: list[tuple[int, Path]]) -> list[tuple[int, Path]]:
        """(step, file) the runner selects among on validation; default: deepmd's checkpoints."""
        return checkpoints

    def training_info(self, ctx: RunContext) -> dict[str, Any]:
        """Entries added to (or replacing in) the record's ``training`` block."""
        return {}


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
                    PROPERTY_BRANCH: {**self.property_model(ctx), "type_map": "type_map_all",
                                      "descriptor": "dpa3_descriptor", "fitting_net": prop_fitting,
                                      "finetune_head": "RANDOM"},
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


class MftFreshHead(MultiTaskFineTune):
    """Ablation (paper Fig. 3(c-e)): MFT with the backbone transferred but the force-field head
    freshly initialised (``finetune_head: RANDOM`` on both branches)."""

    def build_input(self, ctx: RunContext) -> dict[str, Any]:
        config = super().build_input(ctx)
        config["model"]["model_dict"][ctx.aux_branch]["finetune_head"] = "RANDOM"
        return config


class MultiTaskScratch(MultiTaskFineTune):
    """Ablation (paper Fig. 3(c-e)): the same two-branch multi-task training from scratch, nothing
    transferred (the checkpoint only lends its architecture and auxiliary branch)."""

    def build_input(self, ctx: RunContext) -> dict[str, Any]:
        config = super().build_input(ctx)
        for branch in config["model"]["model_dict"].values():
            branch.pop("finetune_head", None)
        return config

    def train_args(self, ctx: RunContext) -> list[str]:
        return []


RECIPES.add("mft-freshhead", MftFreshHead())
RECIPES.add("mtl-scratch", MultiTaskScratch())
