"""FT: pretrained backbone, new random property head, everything trainable.

``dp --pt train --finetune CKPT`` without ``--model-branch`` re-initialises the fitting net; passing
``--model-branch`` with a property head can silently copy the energy head (deepmd pitfall).
"""

from __future__ import annotations

from .base import STRATEGIES, RunContext, Strategy


class FineTune(Strategy):
    name = "ft"
    label = "FT"
    summary = "pretrained backbone + new property head, all parameters trained"
    needs_pretrained = True

    def train_args(self, ctx: RunContext) -> list[str]:
        assert ctx.pretrained is not None
        return ["--finetune", str(ctx.pretrained.path)]


STRATEGIES.add("ft", FineTune())
