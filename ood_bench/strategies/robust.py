"""Robust fine-tuning (RoFt-Mol's family, mapped to DPA3): post-hoc weight interpolation (WiSE-FT),
two-phase training (LP-FT), a penalty towards the pretrained weights (L2-SP), an exponential
moving average of the weights (EMA) and partial fine-tuning of chosen layer groups (surgical FT).

DPA3's layer groups, as these strategies name them: ``type_embedding``, ``edge_embedding``,
``angle_embedding``, ``layer<k>`` (repflow layer k; ``layer-1`` is the last) and the head (the
fitting net with its output bias and std). The backbone is the descriptor: every group but the head.
How deepmd runs each strategy is ``ood_bench/backends/deepmd/robust.py``; the mechanisms are
written down in ``docs/robust-finetuning.md``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .base import STRATEGIES, Param, Strategy

LAYER_GROUPS = ("type_embedding", "edge_embedding", "angle_embedding")
_LAYER = re.compile(r"^layer(-?\d+)$")


@dataclass(frozen=True)
class Bounded(Param):
    """A number within bounds (``lo``/``hi`` inclusive unless ``open_lo``/``open_hi``)."""

    lo: float = -math.inf
    hi: float = math.inf
    open_lo: bool = False
    open_hi: bool = False

    def parse(self, name: str, text: str) -> Any:
        value = super().parse(name, text)
        low_ok = value > self.lo if self.open_lo else value >= self.lo
        high_ok = value < self.hi if self.open_hi else value <= self.hi
        if not (math.isfinite(value) and low_ok and high_ok):
            left, right = "(" if self.open_lo else "[", ")" if self.open_hi else "]"
            raise UsageError(f"--strategy-param {name}={text}: must be in {left}{self.lo:g}, {self.hi:g}{right}")
        return value


@dataclass(frozen=True)
class AlphaGrid(Param):
    """Interpolation weights in [0, 1], comma-separated; kept as a canonical string (sorted, unique)."""

    kind: type = str

    def parse(self, name: str, text: str) -> Any:
        try:
            values = sorted({float(t) for t in text.split(",") if t.strip()})
        except ValueError:
            raise UsageError(f"--strategy-param {name}={text}: expected comma-separated numbers "
                             "in [0, 1], e.g. 0,0.5,1") from None
        if not values or not all(0.0 <= v <= 1.0 for v in values):
            raise UsageError(f"--strategy-param {name}={text}: expected comma-separated numbers in [0, 1], "
                             "e.g. 0,0.5,1")
        return ",".join(f"{v:g}" for v in values)


@dataclass(frozen=True)
class LayerGroups(Param):
    """DPA3 layer groups, comma-separated (``type_embedding,layer-1``); canonical string, in the
    order given, without repeats. Layer indices are checked against the model when the run starts."""

    kind: type = str

    def parse(self, name: str, text: str) -> Any:
        groups = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        bad = [g for g in groups if g not in LAYER_GROUPS and not _LAYER.match(g)]
        if not groups or bad:
            raise UsageError(f"--strategy-param {name}={text}: expected DPA3 layer groups from "
                             f"{', '.join(LAYER_GROUPS)}, layer<k> (k from 0; layer-1 the last)")
        return ",".join(groups)


def alphas_of(text: str) -> list[float]:
    return [float(t) for t in text.split(",")]


def groups_of(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


ALPHAS = AlphaGrid("0,0.25,0.5,0.75,1", "interpolation weights alpha of the fine-tuned backbone "
                   "(0: pretrained, 1: fine-tuned), comma-separated; each is one candidate, chosen on "
                   "validation only")
DELTA = Bounded(0.01, "L2-SP strength delta: + delta/2 ||theta_backbone - theta_pretrained||^2 added to "
                "deepmd's property loss of each step", lo=0.0)
DELTA_HEAD = Bounded(0.0, "weight decay of the new head: + delta_head/2 ||w_head||^2", lo=0.0)

STRATEGIES.add("wise-ft", Strategy(
    "wise-ft", "WiSE-FT", "FT, then the backbone interpolated between pretrained and fine-tuned weights "
    "(the fine-tuned head kept); alpha chosen on validation (post-hoc, no extra training)", order=20,
    backends=("deepmd",), needs_pretrained=True, params={"alphas": ALPHAS}))
STRATEGIES.add("mft-wise", Strategy(
    "mft-wise", "MFT + WiSE-FT", "MFT, then the shared backbone interpolated between pretrained and "
    "multi-task fine-tuned weights (heads kept); alpha chosen on validation", order=21,
    backends=("deepmd",), needs_pretrained=True, uses_aux=True, params={"alphas": ALPHAS}))
STRATEGIES.add("lp-ft", Strategy(
    "lp-ft", "LP-FT", "linear probing (backbone frozen), then full fine-tuning from the probed model "
    "(its head kept)", order=22, backends=("deepmd",), needs_pretrained=True,
    params={"lp_fraction": Bounded(0.5, "share of the training steps spent on linear probing "
                                   "(the rest fine-tunes everything)", lo=0.0, hi=1.0,
                                   open_lo=True, open_hi=True)}))
STRATEGIES.add("l2sp", Strategy(
    "l2sp", "L2-SP", "FT with a penalty pulling the backbone towards the pretrained weights "
    "(+ optional weight decay of the new head)", order=23, backends=("deepmd",), needs_pretrained=True,
    params={"delta": DELTA, "delta_head": DELTA_HEAD}))
STRATEGIES.add("mft-l2sp", Strategy(
    "mft-l2sp", "MFT + L2-SP", "MFT with the L2-SP penalty on the shared backbone in the property "
    "branch's loss", order=24, backends=("deepmd",), needs_pretrained=True, uses_aux=True,
    params={"delta": DELTA, "delta_head": DELTA_HEAD}))
STRATEGIES.add("ema", Strategy(
    "ema", "FT + EMA", "FT whose candidates are exponential moving averages of the weights "
    "(deepmd's enable_ema)", order=25, backends=("deepmd",), needs_pretrained=True,
    params={"decay": Bounded(0.999, "EMA decay: ema = decay * ema + (1 - decay) * weights, every step",
                             lo=0.0, hi=1.0, open_hi=True)}))
STRATEGIES.add("surgical", Strategy(
    "surgical", "Surgical FT", "FT of the chosen backbone layer groups and the new head; every other "
    "layer stays the pretrained one", order=26, backends=("deepmd",), needs_pretrained=True,
    params={"groups": LayerGroups("layer-1", "backbone layer groups that train, comma-separated: "
                                  f"{', '.join(LAYER_GROUPS)}, layer<k> (repflow layer k; layer-1 the "
                                  "last); the head always trains")}))
