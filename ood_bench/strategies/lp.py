"""LP (linear probing): FT with the pretrained descriptor frozen (``trainable: false``)."""

from __future__ import annotations

from typing import Any

from .base import STRATEGIES, RunContext
from .ft import FineTune


class LinearProbe(FineTune):
    name = "lp"
    label = "LP"
    summary = "pretrained backbone frozen, only the new property head trains"

    def descriptor(self, ctx: RunContext) -> dict[str, Any]:
        desc = super().descriptor(ctx)
        desc["trainable"] = False
        return desc


STRATEGIES.add("lp", LinearProbe())
