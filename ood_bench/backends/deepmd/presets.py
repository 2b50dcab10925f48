"""DPA3 presets: architecture plus training hyper-parameters for ``dp --pt train``.

``paper`` is the DPA-3.1-3M architecture with the MFT paper's Table 8 schedule; ``small`` is the
architecture of the shipped stand-in ``oodbench-small`` (minutes per run on a 2-core CPU);
``tiny`` trains in seconds (tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """Architecture plus training hyper-parameters; ``extra["steps_mft_crystals"]`` lets MFT train
    longer on MatBench (the paper's MatBench MFT ran 200k steps against 100k for FT)."""

    name: str
    summary: str
    descriptor: dict[str, Any]
    fitting_neuron: list[int]
    steps: int
    batch_size: str
    aux_batch_size: str
    start_lr: float = 1e-3
    stop_lr: float = 1e-5
    decay_steps: int = 1000
    gradient_max_norm: float = 5.0
    save_checkpoints: int = 4
    extra: dict[str, Any] = field(default_factory=dict)


# DPA-3.1-3M descriptor (deepmd-kit's published config, also what dpa_adapt pins).
PAPER_DESCRIPTOR = {
    "type": "dpa3",
    "repflow": {
        "n_dim": 128, "e_dim": 64, "a_dim": 32, "nlayers": 16,
        "e_rcut": 6.0, "e_rcut_smth": 5.3, "e_sel": 1200,
        "a_rcut": 4.0, "a_rcut_smth": 3.5, "a_sel": 300,
        "axis_neuron": 4, "skip_stat": True,
        "a_compress_rate": 1, "a_compress_e_rate": 2, "a_compress_use_split": True,
        "update_angle": True, "smooth_edge_update": True,
        "use_dynamic_sel": True, "sel_reduce_factor": 10.0,
        "update_style": "res_residual", "update_residual": 0.1, "update_residual_init": "const",
        "n_multi_edge_message": 1, "optim_update": True, "use_exp_switch": True,
    },
    "activation_function": "silut:3.0",
    "precision": "float32",
    "use_tebd_bias": False,
    "concat_output_tebd": False,
    "use_econf_tebd": False,
}

TINY_DESCRIPTOR = {
    "type": "dpa3",
    "repflow": {
        "n_dim": 16, "e_dim": 8, "a_dim": 8, "nlayers": 2,
        "e_rcut": 6.0, "e_rcut_smth": 5.3, "e_sel": 40,
        "a_rcut": 4.0, "a_rcut_smth": 3.5, "a_sel": 20,
        "axis_neuron": 4, "update_angle": True, "smooth_edge_update": True,
        "use_dynamic_sel": True, "sel_reduce_factor": 10.0,
    },
    "activation_function": "silut:3.0",
    "precision": "float32",
}

# oodbench-small, the shipped stand-in: 3 layers, wider than tiny, sel large enough for crystals
# (dynamic sel only computes real neighbours, so molecules do not pay for it).
SMALL_DESCRIPTOR = {
    "type": "dpa3",
    "repflow": {
        "n_dim": 32, "e_dim": 16, "a_dim": 8, "nlayers": 3,
        "e_rcut": 6.0, "e_rcut_smth": 5.3, "e_sel": 120,
        "a_rcut": 4.0, "a_rcut_smth": 3.5, "a_sel": 40,
        "axis_neuron": 4, "update_angle": True, "smooth_edge_update": True,
        "use_dynamic_sel": True, "sel_reduce_factor": 10.0,
        "update_style": "res_residual", "update_residual": 0.1, "update_residual_init": "const",
    },
    "activation_function": "silut:3.0",
    "precision": "float32",
}

PRESETS = {
    "paper": Preset(
        name="paper",
        summary="DPA-3.1-3M architecture, Adam exp LR 1e-3->1e-5, 100k steps, batch auto:512",
        descriptor=PAPER_DESCRIPTOR,
        fitting_neuron=[240, 240, 240],
        steps=100_000,
        batch_size="auto:512",
        aux_batch_size="auto:128",
        decay_steps=1000,
        save_checkpoints=10,
        extra={"steps_mft_crystals": 200_000},
    ),
    "tiny": Preset(
        name="tiny",
        summary="2-layer DPA3 (n_dim 16), fitting [32,32], 200 steps, batch auto:128: trains on a laptop CPU",
        descriptor=TINY_DESCRIPTOR,
        fitting_neuron=[32, 32],
        steps=200,
        batch_size="auto:128",
        aux_batch_size="auto:64",
        decay_steps=50,
        save_checkpoints=2,
    ),
    "small": Preset(
        name="small",
        summary="3-layer DPA3 (n_dim 32, e_dim 16), fitting [64,64], 1000 steps, batch auto:128: "
                "oodbench-small's architecture; minutes per run on 2 CPU cores",
        descriptor=SMALL_DESCRIPTOR,
        fitting_neuron=[64, 64],
        steps=1000,
        batch_size="auto:128",
        aux_batch_size="auto:64",
        decay_steps=100,
        save_checkpoints=2,
    ),
}
