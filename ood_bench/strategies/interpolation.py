"""Learned per-layer weight interpolation: DWiSE-FT (RoFt-Mol's ``DWISE.py``) on DPA3.

One coefficient per DPA3 layer group (``type_embedding``, ``edge_embedding``, ``angle_embedding``,
``layer0`` .. ``layer<L-1>``), theta_l = alpha_l theta_ft,l + (1 - alpha_l) theta_pt,l, the
pretrained and fine-tuned weights frozen, the fine-tuned head kept, only the alphas trained (Adam)
on the validation set with the run's training loss. How deepmd runs it is
``ood_bench/backends/deepmd/dwise.py``; the mechanism is in ``docs/robust-finetuning.md``.
"""

from __future__ import annotations

from .base import STRATEGIES, Strategy
from .robust import Bounded

PARAMS = {
    "alpha_steps": Bounded(500, "Adam steps fitting the per-group alphas on the validation set (one batch "
                           "of validation frames per step, epochs over the set in a seeded order)", kind=int, lo=1),
    "alpha_lr": Bounded(0.01, "Adam learning rate of the alphas", lo=0.0, open_lo=True),
    "alpha_init": Bounded(0.9, "initial alpha of every group (0: pretrained, 1: fine-tuned; RoFt-Mol's default)",
                          lo=0.0, hi=1.0),
    "alpha_batch": Bounded(32, "validation frames per alpha step (at most; frames of one atom count per batch)",
                           kind=int, lo=1),
}

STRATEGIES.add("dwise-ft", Strategy(
    "dwise-ft", "DWiSE-FT", "FT, then one interpolation weight per backbone layer group between pretrained "
    "and fine-tuned weights, fitted on the validation set (fine-tuned head kept)", order=32,
    backends=("deepmd",), needs_pretrained=True, params=PARAMS))
STRATEGIES.add("mft-dwise", Strategy(
    "mft-dwise", "MFT + DWiSE-FT", "MFT, then the shared backbone interpolated per layer group between "
    "pretrained and multi-task fine-tuned weights, weights fitted on the validation set (heads kept)", order=33,
    backends=("deepmd",), needs_pretrained=True, uses_aux=True, params=PARAMS))
