"""Datasets in deepmd/npy "mixed type" format.

Each set of ids becomes one deepmd system per atom count (mixed type: ``type.raw`` all zeros,
per-frame ``real_atom_types.npy``), written straight from the in-memory ``Structures`` arrays:
no per-structure files, no copy of the whole dataset per fold, only the fold's frames.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...datasets import Structures


@functools.cache
def full_type_map() -> list[str]:
    """The 118-element type map the paper's models use (index = atomic number - 1)."""
    from ase.data import chemical_symbols

    return list(chemical_symbols[1:119])


@dataclass
class SystemSet:
    """Where one evaluation set lives on disk, and which ids (in order) each system holds."""

    root: Path
    systems: list[Path]
    ids_per_system: list[list]

    @property
    def ids(self) -> list:
        return [i for ids in self.ids_per_system for i in ids]

    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())


def write_systems(
    root: Path,
    structures: Structures,
    ids: Sequence,
    labels: dict[str, np.ndarray] | None = None,
    type_map: list[str] | None = None,
) -> SystemSet:
    """Write ``ids`` as deepmd mixed-type systems under ``root`` (one per atom count).

    ``labels`` maps a label file name (e.g. the property name, or energy/force/virial) to an
    array aligned with ``ids``: per-frame (n, k) or, for force, a list/array of per-atom (nat, 3).
    """
    type_map = type_map or full_type_map()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    ids = list(ids)
    rows = np.array([structures.row(i) for i in ids], dtype=np.int64)
    natoms = structures.natoms()[rows]
    systems, ids_per_system = [], []
    for nat in np.unique(natoms):
        sel = np.flatnonzero(natoms == nat)
        sys_dir = root / f"nat{int(nat):04d}"
        set_dir = sys_dir / "set.000"
        set_dir.mkdir(parents=True)
        starts = structures.offsets[rows[sel]]
        atom_idx = starts[:, None] + np.arange(nat)[None, :]
        z = structures.numbers[atom_idx]
        coord = structures.positions[atom_idx].reshape(len(sel), -1)
        np.save(set_dir / "coord.npy", coord.astype(np.float64))
        np.save(set_dir / "real_atom_types.npy", (z - 1).astype(np.int64))
        if structures.cells is not None:
            np.save(set_dir / "box.npy", structures.cells[rows[sel]].reshape(len(sel), 9))
        else:
            (sys_dir / "nopbc").write_text("")
        for name, values in (labels or {}).items():
            if name == "force":  # ragged: one (nat, 3) array per frame
                part = np.stack([np.asarray(values[k]).reshape(-1) for k in sel])
            else:
                part = np.asarray(values)[sel].reshape(len(sel), -1)
            np.save(set_dir / f"{name}.npy", part.astype(np.float64))
        (sys_dir / "type.raw").write_text("\n".join(["0"] * int(nat)) + "\n")
        (sys_dir / "type_map.raw").write_text("\n".join(type_map) + "\n")
        systems.append(sys_dir)
        ids_per_system.append([ids[k] for k in sel])
    return SystemSet(root, systems, ids_per_system)


def read_system_frames(system: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(coords (nf, nat*3), boxes (nf, 9) or None, atom types (nf, nat)) of one mixed system."""
    sets = sorted(system.glob("set.*"))
    coord = np.concatenate([np.load(s / "coord.npy") for s in sets])
    atype = np.concatenate([np.load(s / "real_atom_types.npy") for s in sets])
    box = None
    if not (system / "nopbc").exists():
        box = np.concatenate([np.load(s / "box.npy") for s in sets])
    return coord, box, atype
