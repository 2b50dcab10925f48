"""Representation-based robust fine-tuning (RoFt-Mol's family, on DPA3): FT with a penalty on what
the backbone computes rather than on its weights. Feature-map (DELTA without attention) pulls the
descriptor output of each batch towards the pretrained descriptor's on the same batch; BSS (batch
spectral shrinkage) shrinks the smallest singular values of the batch's pooled representations.
How deepmd runs them is ``ood_bench/backends/deepmd/feature_reg.py``; the mechanisms are written
down in ``docs/robust-finetuning.md``.
"""

from __future__ import annotations

from .base import STRATEGIES, Strategy
from .robust import Bounded

STRATEGIES.add("feature-map", Strategy(
    "feature-map", "Feature-map", "FT with a penalty pulling the descriptor output of each batch towards "
    "the pretrained descriptor's (DELTA without attention)", order=30, backends=("deepmd",), needs_pretrained=True,
    params={"delta": Bounded(1.0, "feature-map strength delta: + delta/2 sum over the batch's frames of the mean "
                             "over atoms and features of (f - f_pretrained)^2, f the descriptor output. Default 1 "
                             "(RoFt-Mol's trade-off): a mean squared feature change of 2 then costs a frame as much "
                             "as an error of one label std in deepmd's property loss", lo=0.0)}))
STRATEGIES.add("bss", Strategy(
    "bss", "BSS", "FT with batch spectral shrinkage: a penalty on the smallest singular values of the batch's "
    "per-frame mean descriptors", order=31, backends=("deepmd",), needs_pretrained=True,
    params={"eta": Bounded(0.001, "BSS weight eta: + eta * sum of the k smallest squared singular values of the "
                           "(frames x features) matrix of per-frame mean descriptors", lo=0.0),
            "k": Bounded(1, "how many of the smallest singular values are penalised (a batch of k frames or "
                         "fewer adds nothing)", kind=int, lo=1)}))
