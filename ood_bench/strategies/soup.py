"""Uniform model soups (Wortsman et al. 2022, "Model soups"): several models fine-tuned from the same
start, differing only in the order they see the data, and their weights averaged into one model.

One run trains every member (``member<i>/`` in its work folder) and evaluates the soup only; the
members' validation errors are recorded beside it. How deepmd runs it is
``ood_bench/backends/deepmd/soup.py``; the mechanism is written down in ``docs/robust-finetuning.md``.
A seed *ensemble* (averaged predictions of separate runs) needs no strategy: see
``ood_bench/leaderboard/ensembles.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .base import STRATEGIES, Param, Strategy


@dataclass(frozen=True)
class MemberCount(Param):
    """How many fine-tuned models a soup averages: an integer, at least 2."""

    kind: type = int

    def parse(self, name: str, text: str) -> Any:
        value = super().parse(name, text)
        if value < 2:
            raise UsageError(f"--strategy-param {name}={text}: a soup averages at least 2 members; "
                             f"pass {name}=2 or more")
        return value


MEMBERS = MemberCount(3, "how many models are fine-tuned (same recipe, steps and head initialisation; member i "
                      "shuffles the data with seed + 1000 i) and averaged into the soup")

STRATEGIES.add("soup", Strategy(
    "soup", "FT uniform soup", "FT trained several times (members differ only in data order), then the "
    "members' final weights averaged uniformly into one model", order=34, backends=("deepmd",),
    needs_pretrained=True, params={"members": MEMBERS}, trainings_param="members"))
STRATEGIES.add("mft-soup", Strategy(
    "mft-soup", "MFT uniform soup", "MFT trained several times (members differ only in data order), then "
    "the members' final weights (backbone and both heads) averaged uniformly into one model", order=35,
    backends=("deepmd",), needs_pretrained=True, uses_aux=True, params={"members": MEMBERS},
    trainings_param="members"))
