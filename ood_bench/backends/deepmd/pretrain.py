"""Build ``oodbench-tiny``: a small multi-branch DPA3 force-field checkpoint made offline.

It stands in for DPA-3.1-3M where that cannot be downloaded (tests, the quickstart, machines
without internet). Two branches, each trained on data this module generates and labels itself:
``qm9_gfn2`` (perturbed QM9 conformers, GFN2-xTB) and ``matbench_chgnet`` (perturbed MatBench
crystals, CHGNet). The same data is the default MFT auxiliary set for such runs.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...datasets import DATASETS, load_dataset
from ...errors import CorruptFileError, OodBenchError
from ...io_utils import read_json
from .auxdata import build_aux_set
from .data import full_type_map
from .inputs import ENER_LOSS, VIRIAL_PREFS
from .launcher import dp_train
from .presets import PRESETS
from .pretrained import STAND_IN, stand_in_dir

log = logging.getLogger(__name__)

MOLECULE_BRANCH = "qm9_gfn2"
CRYSTAL_BRANCH = "matbench_chgnet"
PRETRAIN_SEED_OFFSET = 10_000
CRYSTAL_SOURCES = ("matbench_dielectric", "matbench_log_gvrh", "matbench_perovskites")


@dataclass
class PretrainConfig:
    n_molecules: int = 400
    n_crystals: int = 240
    n_copies: int = 2
    steps: int = 1500
    seed: int = 0
    preset: str = "tiny"
    crystals: bool = True  # False: molecules-only stand-in (no MatBench data on this machine)


def _sample(ids: list, n: int, rng: np.random.Generator) -> list:
    if n >= len(ids):
        return list(ids)
    return [ids[i] for i in sorted(rng.choice(len(ids), n, replace=False))]


def build_aux_data(cfg: PretrainConfig, data_dir: str | None, out: Path, progress=None) -> dict[str, dict[str, Any]]:
    """Generate and label both auxiliary sets; returns per-branch provenance."""
    rng = np.random.default_rng(cfg.seed)
    qm9 = load_dataset("qm9", data_dir)
    mol_ids = _sample(qm9.ids_with_structures(), cfg.n_molecules, rng)
    t = time.time()
    mol = build_aux_set(qm9.structures.subset(mol_ids), "gfn2-xtb", out / MOLECULE_BRANCH,
                        n_copies=cfg.n_copies, sigma=0.05, seed=cfg.seed, progress=progress)
    info = {MOLECULE_BRANCH: {"labeller": "gfn2-xtb", "source": "qm9", "n_structures": len(mol_ids),
                              "n_frames": len(mol.ids), "seconds": round(time.time() - t, 1),
                              "systems": [str(s) for s in mol.systems], "virial": False}}
    if not cfg.crystals:
        return info
    per = max(1, cfg.n_crystals // len(CRYSTAL_SOURCES))
    parts = []
    for name in CRYSTAL_SOURCES:
        ds = load_dataset(name, data_dir)
        parts.append((name, _sample(ds.ids_with_structures(), per, rng), ds.structures))
    crystals = _concat([st.subset(ids) for _, ids, st in parts])
    t = time.time()
    cry = build_aux_set(crystals, "chgnet", out / CRYSTAL_BRANCH, n_copies=cfg.n_copies, sigma=0.03,
                        strain=0.02, seed=cfg.seed, progress=progress)
    info[CRYSTAL_BRANCH] = {"labeller": "chgnet", "source": "+".join(n for n, _, _ in parts),
                            "n_structures": len(crystals), "n_frames": len(cry.ids),
                            "seconds": round(time.time() - t, 1),
                            "systems": [str(s) for s in cry.systems], "virial": True}
    return info


def _concat(parts):
    from ...datasets import Structures

    ids, nums, pos, cells, offs = [], [], [], [], [0]
    for st in parts:
        ids += st.ids
        nums.append(st.numbers)
        pos.append(st.positions)
        cells.append(st.cells)
        offs.extend((st.offsets[1:] + offs[-1]).tolist())
    return Structures(ids, np.concatenate(nums), np.concatenate(pos), np.array(offs), np.concatenate(cells))


def multitask_input(aux: dict[str, dict[str, Any]], workdir: Path, cfg: PretrainConfig) -> dict[str, Any]:
    preset = PRESETS[cfg.preset]
    branches = list(aux)
    init_seed = PRETRAIN_SEED_OFFSET + cfg.seed  # never the same init as a seed-k Scratch run
    desc = dict(preset.descriptor, seed=init_seed)
    fitting = {"type": "ener", "neuron": list(preset.fitting_neuron), "resnet_dt": True,
               "activation_function": "silut:3.0", "dim_case_embd": len(branches), "seed": init_seed}
    return {
        "model": {
            "shared_dict": {"type_map_all": full_type_map(), "dpa3_descriptor": desc},
            "model_dict": {b: {"type_map": "type_map_all", "descriptor": "dpa3_descriptor",
                               "fitting_net": dict(fitting)} for b in branches},
        },
        "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-5,
                          "decay_steps": max(1, cfg.steps // 10)},
        "loss_dict": {b: dict(ENER_LOSS, **(VIRIAL_PREFS if aux[b]["virial"] else {})) for b in branches},
        "training": {
            "model_prob": {b: 1.0 / len(branches) for b in branches},
            "data_dict": {b: {"training_data": {"systems": aux[b]["systems"], "batch_size": "auto:64"}}
                          for b in branches},
            "numb_steps": cfg.steps, "seed": cfg.seed, "disp_freq": max(1, cfg.steps // 20),
            "save_freq": cfg.steps, "save_ckpt": str(workdir / "model.ckpt"),
            "disp_file": str(workdir / "lcurve.out"),
        },
    }


def pretrain(cfg: PretrainConfig, data_dir: str | None = None, force: bool = False) -> Path:
    """Build (or reuse) the stand-in checkpoint; returns its path."""
    out = stand_in_dir()
    ckpt = out / f"{STAND_IN}.pt"
    sidecar = ckpt.with_suffix(".json")
    if ckpt.exists() and sidecar.exists() and not force:
        try:
            meta = read_json(sidecar)
        except CorruptFileError:
            meta = {}  # unreadable metadata: the checkpoint cannot be trusted to match; rebuild it
        if isinstance(meta, dict) and meta.get("config") == asdict(cfg):
            log.info("stand-in pretrained model already built: %s (use --force to rebuild)", ckpt)
            return ckpt
    missing = [n for n in ("qm9", *(CRYSTAL_SOURCES if cfg.crystals else ())) if n not in DATASETS]
    if missing:
        raise OodBenchError(f"datasets not registered: {missing}")
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    t0 = time.time()
    from ...progress import progress_bar, step_callback
    from .launcher import step_of

    with progress_bar() as progress:
        aux = build_aux_data(cfg, data_dir, out / "aux", progress)
        config = multitask_input(aux, work, cfg)
        task = progress.add_task(f"training the stand-in ({len(aux)} branches)", total=cfg.steps)
        dp_train(config, work, [], label="oodbench pretrain", on_line=step_callback(progress, task, step_of))
    shutil.copyfile(work / "model.ckpt.pt", ckpt)
    meta = {
        "stand_in": True,
        "note": (f"{STAND_IN}: small offline stand-in for DPA-3.1-3M, trained by `oodbench pretrain` on "
                 "GFN2-xTB-labelled QM9 conformers and CHGNet-labelled MatBench crystals (stand-ins "
                 "for SPICE2/OMat24); not comparable to published DPA3 numbers"),
        "aux_branch_for": {"molecules": MOLECULE_BRANCH, **({"crystals": CRYSTAL_BRANCH} if cfg.crystals else {})},
        "aux_data": aux,
        "config": asdict(cfg),
        "train_seconds": round(time.time() - t0, 1),
        "deepmd_input": config,
    }
    sidecar.write_text(json.dumps(meta, indent=1))
    log.info("stand-in pretrained model written to %s (%.0f s)", ckpt, time.time() - t0)
    return ckpt
