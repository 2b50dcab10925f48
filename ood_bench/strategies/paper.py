"""The MFT paper's four strategies (Table 1 / Fig. 1)."""

from .base import STRATEGIES, Strategy

STRATEGIES.add("scratch", Strategy(
    "scratch", "Scratch", "random init of backbone and property head, trained end to end (or a reference "
    "model fitted from scratch)", order=0, backends=("deepmd", "sklearn"), reference=True))
STRATEGIES.add("lp", Strategy(
    "lp", "LP", "pretrained backbone frozen, only the new property head trains (closed form for sklearn heads)",
    order=1, backends=("deepmd", "sklearn"), needs_pretrained=True))
STRATEGIES.add("ft", Strategy(
    "ft", "FT", "pretrained backbone + new property head, all parameters trained", order=2,
    backends=("deepmd",), needs_pretrained=True, role="fine-tune"))
STRATEGIES.add("mft", Strategy(
    "mft", "MFT", "pretrained backbone + new property head + inherited force-field head on auxiliary data",
    order=3, backends=("deepmd",), needs_pretrained=True, uses_aux=True, role="multi-task"))
