"""The MFT paper's ablations (Fig. 3(c-e)): what MFT gains from the inherited force-field head and
from the pretrained backbone."""

from .base import STRATEGIES, Strategy

STRATEGIES.add("mft-freshhead", Strategy(
    "mft-freshhead", "MFT (fresh FF head)", "MFT with the pretrained backbone but a freshly initialised force-field "
    "head (ablation)", order=10, backends=("deepmd",), needs_pretrained=True, uses_aux=True,
    role="ablation"))
STRATEGIES.add("mtl-scratch", Strategy(
    "mtl-scratch", "Multi-task scratch", "property + force-field multi-task training from scratch, nothing "
    "transferred (ablation; the checkpoint lends its architecture and auxiliary branch)", order=11,
    backends=("deepmd",), uses_aux=True, role="ablation"))
