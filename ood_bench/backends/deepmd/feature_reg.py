"""Representation-based robust fine-tuning on deepmd-kit (the deepmd side of
``ood_bench/strategies/representation.py``): FT whose property loss is wrapped in a loss plugin
(``plugins/robust_losses.py``) that adds a term on the descriptor output of each batch.

- feature-map (DELTA without attention): ``oodbench_feature_map``, + delta/2 times the squared
  distance between the descriptor output and the pretrained descriptor's on the same batch.
- BSS (batch spectral shrinkage): ``oodbench_bss``, + eta times the k smallest squared singular
  values of the batch's per-frame mean descriptors.

Both are resolved by name by ``dp --pt train`` itself (``TaskLoss`` registry), as L2-SP is.
"""

from __future__ import annotations

from typing import Any

from .inputs import RECIPES, FineTune, RunContext
from .robust import WrappedPropertyLoss

FEATURE_MAP_LOSS_TYPE = "oodbench_feature_map"
BSS_LOSS_TYPE = "oodbench_bss"


class FeatureMapFineTune(WrappedPropertyLoss, FineTune):
    strategy = "feature-map"
    loss_type = FEATURE_MAP_LOSS_TYPE

    def loss_params(self, ctx: RunContext) -> dict[str, Any]:
        assert ctx.pretrained is not None
        return {"delta": self.params(ctx)["delta"], "pretrained": str(ctx.pretrained.path)}


class BSSFineTune(WrappedPropertyLoss, FineTune):
    strategy = "bss"
    loss_type = BSS_LOSS_TYPE

    def loss_params(self, ctx: RunContext) -> dict[str, Any]:
        p = self.params(ctx)
        return {"eta": p["eta"], "k": p["k"]}


RECIPES.add("feature-map", FeatureMapFineTune())
RECIPES.add("bss", BSSFineTune())
