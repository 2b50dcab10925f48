"""MFT: multi-task fine-tuning (Zhang et al.): a new property head (``finetune_head: RANDOM``)
and the inherited force-field head (``finetune_head: <branch>``) share the pretrained backbone;
each step samples one branch by ``model_prob`` (deepmd's ``model_dict`` mechanism)."""

from __future__ import annotations

import copy
from typing import Any

from .base import ENER_LOSS, PROPERTY_BRANCH, STRATEGIES, VIRIAL_PREFS, RunContext, Strategy


class MultiTaskFineTune(Strategy):
    name = "mft"
    label = "MFT"
    summary = "pretrained backbone + new property head + inherited force-field head on auxiliary data"
    needs_pretrained = True
    uses_aux = True

    def build_input(self, ctx: RunContext) -> dict[str, Any]:
        assert ctx.pretrained is not None and ctx.aux_branch is not None
        aux = ctx.aux_branch
        aux_fitting = copy.deepcopy(ctx.pretrained.fittings[aux])
        prop_fitting = self.property_fitting(ctx)
        # The case embedding has one slot per pretrained branch; every head must agree.
        if aux_fitting.get("dim_case_embd"):
            prop_fitting["dim_case_embd"] = aux_fitting["dim_case_embd"]
        ener_loss = dict(ENER_LOSS, **(VIRIAL_PREFS if ctx.aux_has_virial else {}))
        common = self.training_common(ctx)
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
                **common,
            },
        }

    def train_args(self, ctx: RunContext) -> list[str]:
        assert ctx.pretrained is not None
        return ["--finetune", str(ctx.pretrained.path)]

    def eval_head(self) -> str | None:
        return PROPERTY_BRANCH


STRATEGIES.add("mft", MultiTaskFineTune())
