"""DPA3 through deepmd-kit: presets ``paper`` (DPA-3.1-3M, Table 8), ``small`` and ``tiny`` (CPU)."""

from __future__ import annotations

from ..backends.deepmd.presets import PRESETS
from .base import MODELS, ModelSpec

MODELS.add("dpa3", ModelSpec(
    name="dpa3", label="DPA3", backend="deepmd", default_preset="tiny", default_strategy="ft",
    summary="DPA3 through deepmd-kit (dp --pt train); presets: paper (DPA-3.1-3M, Table 8), small "
            "(the shipped stand-in's architecture, CPU), tiny (tests)",
    presets=PRESETS,
))
