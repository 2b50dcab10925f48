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
from .robust import _WithParams

FEATURE_MAP_LOSS_TYPE = "oodbench_feature_map"
BSS_LOSS_TYPE = "oodbench_bss"


class _WrappedPropertyLoss(_WithParams):
    """The property loss wrapped in ``loss_type`` with ``loss_params``, as ``_L2SP`` wraps it."""

    loss_type = ""

    def loss_params(self, ctx: RunContext) -> dict[str, Any]:
        raise NotImplementedError

    def property_loss(self, ctx: RunContext) -> dict[str, Any]:
        base = super().property_loss(ctx)  # type: ignore[misc]
        if base["type"] == "property":  # what deepmd's get_loss fills in from the model
            fit = self.property_fitting(ctx)  # type: ignore[attr-defined]
            base = {**base, "task_dim": fit["task_dim"], "var_name": fit["property_name"],
                    "intensive": fit["intensive"]}
        return {"type": self.loss_type, "base": base, **self.loss_params(ctx)}


class FeatureMapFineTune(_WrappedPropertyLoss, FineTune):
    strategy = "feature-map"
    loss_type = FEATURE_MAP_LOSS_TYPE

    def loss_params(self, ctx: RunContext) -> dict[str, Any]:
        assert ctx.pretrained is not None
        return {"delta": self.params(ctx)["delta"], "pretrained": str(ctx.pretrained.path)}


class BSSFineTune(_WrappedPropertyLoss, FineTune):
    strategy = "bss"
    loss_type = BSS_LOSS_TYPE

    def loss_params(self, ctx: RunContext) -> dict[str, Any]:
        p = self.params(ctx)
        return {"eta": p["eta"], "k": p["k"]}


RECIPES.add("feature-map", FeatureMapFineTune())
RECIPES.add("bss", BSSFineTune())
