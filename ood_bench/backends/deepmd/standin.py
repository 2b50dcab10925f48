"""Stand-in checkpoints as files: where they live, what they carry, and their auxiliary data.

A stand-in checkpoint is a deepmd ``.pt`` whose top level holds ``model`` (deepmd's own state,
read by ``DeepEval`` and ``dp --pt train --finetune``) and ``oodbench``: the stand-in flag, recipe,
provenance and held-out errors, so the flag travels with the weights, not in a sidecar. Its
auxiliary frames (the MFT auxiliary set) sit next to it in ``<name>.aux.npz`` and are written
out as deepmd systems in the cache on first use.

``oodbench-small`` ships inside the package (``ood_bench/pretrained/``); a copy rebuilt with
``oodbench pretrain`` lives in the cache and is used in its place.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CorruptFileError
from ...io_utils import sha256_file
from ...paths import cache_dir

SHIPPED = "oodbench-small"
META_KEY = "oodbench"


def shipped_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "pretrained"


def stand_in_dir(name: str) -> Path:
    return cache_dir() / "pretrained" / name


def stand_in_names() -> list[str]:
    from .pretrain import RECIPES

    return [cfg.name for cfg in RECIPES.values()]


def find_stand_in(name: str) -> Path | None:
    """A locally rebuilt copy first (the user asked for it), else the one shipped in the package."""
    for folder in (stand_in_dir(name), shipped_dir()):
        path = folder / f"{name}.pt"
        if path.exists():
            return path
    return None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A deepmd ``.pt`` as saved (one read serves its model parameters and its oodbench block)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CorruptFileError(f"{path}: not a readable deepmd checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise CorruptFileError(f"{path}: not a deepmd-kit PyTorch checkpoint")
    return state


def embedded_meta(state: dict[str, Any]) -> dict[str, Any] | None:
    meta = state.get(META_KEY)
    return json.loads(meta) if isinstance(meta, str) else None


def read_embedded_meta(path: Path) -> dict[str, Any] | None:
    """The ``oodbench`` block of a checkpoint, or None for any other deepmd checkpoint."""
    return embedded_meta(load_checkpoint(path))


def export_checkpoint(src: Path, dest: Path, meta: dict[str, Any], aux: dict[str, Any]) -> Path:
    """Write the model weights (no optimizer state) with ``meta`` embedded, and the auxiliary frames."""
    import torch

    state = torch.load(src, map_location="cpu", weights_only=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for branch, frames in aux.items():
        arrays.update(frames.arrays(branch))
    aux_path = dest.with_name(f"{dest.stem}.aux.npz")
    tmp = aux_path.with_name(aux_path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(aux_path)
    meta = dict(meta, aux_file={"name": aux_path.name, "sha256": sha256_file(aux_path),
                                "frames": {b: len(f) for b, f in aux.items()}})
    tmp = dest.with_name(dest.name + ".tmp")
    torch.save({"model": state.get("model", state), META_KEY: json.dumps(meta)}, tmp)
    tmp.replace(dest)
    return dest


@functools.cache
def aux_systems(checkpoint: Path, branch: str) -> list[str]:
    """The checkpoint's auxiliary frames of ``branch`` as deepmd systems (written once per content)."""
    from ...errors import DataMissingError
    from .auxdata import Frames
    from .data import write_systems

    meta = read_embedded_meta(checkpoint) or {}
    info = meta.get("aux_file") or {}
    path = checkpoint.with_name(info.get("name", f"{checkpoint.stem}.aux.npz"))
    if not path.exists():
        raise DataMissingError(f"{path.name} (auxiliary data of {checkpoint.name}) is missing; "
                               f"rebuild with `oodbench pretrain --force` or pass --aux-data")
    sha = sha256_file(path)
    if info.get("sha256") and sha != info["sha256"]:
        raise CorruptFileError(f"{path}: sha256 does not match the checkpoint's record; rebuild it")
    root = cache_dir() / "aux" / sha[:16] / branch
    done = root / ".complete"
    if not done.exists():
        with np.load(path) as arrays:
            frames = Frames.from_arrays(arrays, branch)
        systems = write_systems(root, frames.structures, frames.structures.ids, frames.labels())
        done.write_text("\n".join(str(s) for s in systems.systems))
    return sorted(str(p.parent) for p in root.glob("*/type.raw"))


def qm9_test_exclusion() -> tuple[set, dict[str, str]]:
    """Ids of every ID/OOD test molecule of the canonical QM9 BOOM splits, and those splits'
    content sha256: what a stand-in must never see."""
    from ...splits.methods import canonical_splits
    from ...splits.schema import load_split

    excluded: set = set()
    splits = {}
    for _, name in canonical_splits("qm9"):
        split = load_split("qm9", name)
        for fold in split.folds.values():
            for ids in fold.tests.values():
                excluded.update(ids)
        splits[name] = split.sha256
    return excluded, splits


def describe_errors(err: dict[str, Any]) -> str:
    """One line on a branch at its own job: held-out errors next to the labels' spread, and the
    same errors on training frames when the build measured them (close: it underfits)."""
    trained = "train_force_rmse_ev_per_a" in err  # older builds fitted the counting model in-sample
    spread = "counting atoms" if trained else "spread"
    line = (f"held-out energy RMSE {err['energy_rmse_ev_per_atom'] * 1000:.1f} meV/atom "
            f"({spread} {err['energy_spread_ev_per_atom'] * 1000:.1f}), force RMSE "
            f"{err['force_rmse_ev_per_a']:.3f} eV/A (spread {err['force_spread_ev_per_a']:.3f}), "
            f"{err['n_frames']} frames")
    if trained:
        line += (f"; on as many training frames: energy {err['train_energy_rmse_ev_per_atom'] * 1000:.1f} "
                 f"meV/atom, force {err['train_force_rmse_ev_per_a']:.3f} eV/A")
    return line
