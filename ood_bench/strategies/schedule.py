"""Learning-rate schedules across DPA3's layers: layer-wise learning-rate decay (LLRD, Howard &
Ruder 2018's discriminative fine-tuning, used by JMP for fine-tuning).

Each layer group trains at lr * gamma^(L - depth): the head at depth L (the full learning rate),
the last repflow layer at L - 1, ..., repflow layer 0 at depth 1 and the type/edge/angle
embeddings at depth 0 (lr * gamma^L). How deepmd runs it is ``ood_bench/backends/deepmd/llrd.py``;
the mechanism is written down in ``docs/robust-finetuning.md``.
"""

from __future__ import annotations

from .base import STRATEGIES, Strategy
from .robust import Bounded

# The MFT paper (Supplementary B) fine-tunes JMP-L with JMP's own LLRD and gives no factor; JMP-L's
# fine-tuning config (facebookresearch/JMP, configs/finetune/jmp_l.py) scales blocks by hand-set
# factors (embedding 0.3, interaction blocks 0.55, 0.40, 0.30, 0.40, 0.55, 0.625), not one gamma.
GAMMA = Bounded(0.8, "layer-wise learning-rate decay gamma: a layer group at depth d below the head trains at "
                "lr * gamma^d (head: lr; last repflow layer: lr * gamma; type/edge/angle embeddings: "
                "lr * gamma^(nlayers + 1)); 1 is plain FT. 0.8 is our default: the MFT paper (Supp. B) "
                "fine-tunes JMP-L with JMP's LLRD but gives no factor", lo=0.0, hi=1.0, open_lo=True)

STRATEGIES.add("llrd", Strategy(
    "llrd", "FT + layer-wise LR decay", "FT in which each DPA3 layer group's learning rate decays "
    "geometrically with its depth below the head (the embeddings slowest)", order=29, backends=("deepmd",),
    needs_pretrained=True, params={"gamma": GAMMA}))
