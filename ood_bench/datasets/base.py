"""What a dataset is to oodbench: stable ids, targets with units, structures, and provenance.

A registered ``DatasetSpec`` knows how to load its data; ``load_dataset`` returns a
``LoadedDataset`` with the id-indexed target table, the structures (as compact arrays, turned
into pymatgen/ASE objects on demand) and the sha256 of the file the numbers came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import CorruptFileError
from ..io_utils import read_json
from ..registry import Registry

TargetKind = Literal["intensive", "extensive", "special"]


@dataclass(frozen=True)
class TargetInfo:
    """One predictable property; ``kind`` follows the MFT paper, Supplementary D.2."""

    name: str
    unit: str
    kind: TargetKind
    description: str
    # How deepmd's property head pools atomic contributions; for "special" targets (QM9 mu, r2)
    # the paper used custom heads that deepmd's property fitting does not offer.
    pool_intensive: bool
    # Per-type least-squares bias (paper eq. 17); off for dielectric (unseen elements in test).
    per_type_bias: bool = True
    # The prediction head the paper used (Supplementary D.2): "property" (eq. 16), or for QM9 mu
    # and r2 "dipole-norm" / "spatial-extent" (ood_bench.backends.deepmd.plugins).
    paper_head: str = "property"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: Literal["molecules", "crystals"]
    targets: tuple[TargetInfo, ...]
    expected_count: int
    description: str
    loader: Callable[..., LoadedDataset] = field(repr=False)
    # The headline metric, as the paper reports it: RMSE for QM9 (Table 3), MAE for MatBench (Table 4).
    metric: Literal["rmse", "mae"] = "mae"
    # Display name in tables ("QM9", "dielectric").
    label: str = ""

    def target(self, name: str | None = None) -> TargetInfo:
        from ..errors import UsageError

        if name is None:
            return self.targets[0]
        for t in self.targets:
            if t.name == name:
                return t
        known = ", ".join(t.name for t in self.targets)
        raise UsageError(f"dataset {self.name} has no property '{name}'; known: {known}")


DATASETS: Registry[DatasetSpec] = Registry("dataset", "ood_bench.datasets")


class Structures:
    """Many structures in flat arrays: cheap to cache, slice and convert to deepmd format.

    ``numbers``/``positions`` hold all atoms back to back; ``offsets[i]:offsets[i+1]`` are the
    atoms of structure i; ``cells`` is (n, 3, 3) for periodic data or None for molecules.
    """

    def __init__(
        self,
        ids: list,
        numbers: np.ndarray,
        positions: np.ndarray,
        offsets: np.ndarray,
        cells: np.ndarray | None,
    ) -> None:
        self.ids = list(ids)
        self.numbers = np.asarray(numbers, dtype=np.int16)
        self.positions = np.asarray(positions, dtype=np.float64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.cells = None if cells is None else np.asarray(cells, dtype=np.float64)
        self._row = {sid: i for i, sid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, sid: object) -> bool:
        return sid in self._row

    @property
    def periodic(self) -> bool:
        return self.cells is not None

    def row(self, sid) -> int:
        return self._row[sid]

    def natoms(self) -> np.ndarray:
        return np.diff(self.offsets)

    def atoms_of(self, sid) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(atomic numbers, cartesian positions in Angstrom, cell or None)."""
        i = self._row[sid]
        a, b = self.offsets[i], self.offsets[i + 1]
        cell = None if self.cells is None else self.cells[i]
        return self.numbers[a:b], self.positions[a:b], cell

    def subset(self, ids: Iterable) -> Structures:
        ids = list(ids)
        rows = [self._row[s] for s in ids]
        nat = self.natoms()[rows]
        offsets = np.concatenate([[0], np.cumsum(nat)])
        idx = np.concatenate(
            [np.arange(self.offsets[r], self.offsets[r + 1]) for r in rows]
        ) if rows else np.zeros(0, dtype=np.int64)
        cells = None if self.cells is None else self.cells[rows]
        return Structures(ids, self.numbers[idx], self.positions[idx], offsets, cells)

    def to_pymatgen(self, sid):
        """A pymatgen Structure (crystals) or Molecule (molecules)."""
        from pymatgen.core import Lattice, Molecule, Structure

        z, pos, cell = self.atoms_of(sid)
        species = [int(x) for x in z]
        if cell is None:
            return Molecule(species, pos)
        return Structure(Lattice(cell), species, pos, coords_are_cartesian=True)

    def to_ase(self, sid):
        from ase import Atoms

        z, pos, cell = self.atoms_of(sid)
        if cell is None:
            return Atoms(numbers=z, positions=pos)
        return Atoms(numbers=z, positions=pos, cell=cell, pbc=True)

    def iter_pymatgen(self, ids: Iterable | None = None) -> Iterator:
        for sid in self.ids if ids is None else ids:
            yield self.to_pymatgen(sid)

    def save(self, path: Path) -> None:
        import io

        from ..io_utils import atomic_write_bytes

        buf = io.BytesIO()
        ids = np.array(self.ids)
        extra = {} if self.cells is None else {"cells": self.cells}
        np.savez_compressed(
            buf, ids=ids, numbers=self.numbers, positions=self.positions, offsets=self.offsets,
            **extra,
        )
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> Structures:
        with np.load(path, allow_pickle=False) as z:
            ids = z["ids"].tolist()
            cells = z["cells"] if "cells" in z.files else None
            return cls(ids, z["numbers"], z["positions"], z["offsets"], cells)


def concat_structures(parts: list[Structures]) -> Structures:
    """Several ``Structures`` back to back (all molecules, or all periodic)."""
    ids, offsets = [], [0]
    for st in parts:
        ids += st.ids
        offsets.extend((st.offsets[1:] + offsets[-1]).tolist())
    cells = None if parts[0].cells is None else np.concatenate([st.cells for st in parts])
    return Structures(ids, np.concatenate([st.numbers for st in parts]),
                      np.concatenate([st.positions for st in parts]), np.array(offsets), cells)


@dataclass
class LoadedDataset:
    """A dataset read from disk: the table of targets (index = id) plus provenance."""

    spec: DatasetSpec
    table: pd.DataFrame
    source: str
    sha256: str
    checksum_status: str
    structures_loader: Callable[[], Structures] = field(repr=False)
    notes: list[str] = field(default_factory=list)
    # Ids a split file may name: the table's, unless the source is a known subset of a larger id
    # space (QM9 from qm9pack alone lacks the 3,054 uncharacterised gdb indices).
    universe: list | None = field(default=None, repr=False)
    _structures: Structures | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ids(self) -> list:
        return self.table.index.tolist()

    @property
    def known_ids(self) -> list:
        return self.universe if self.universe is not None else self.ids

    def __len__(self) -> int:
        return len(self.table)

    @property
    def structures(self) -> Structures:
        if self._structures is None:
            self._structures = self.structures_loader()
        return self._structures

    def ids_with_structures(self, ids: Iterable | None = None) -> list:
        st = self.structures
        return [i for i in (self.ids if ids is None else ids) if i in st]

    def target_values(self, target: str, ids: Iterable | None = None) -> np.ndarray:
        col = self.table[self.spec.target(target).name]
        return (col if ids is None else col.loc[list(ids)]).to_numpy(dtype=float)


def read_fixture_marker(directory: Path) -> dict | None:
    """A data dir may declare itself a subset of the real data (tests ship such fixtures).

    Then count checks use the declared count and checksum status says 'fixture'.
    """
    marker = directory / "oodbench-fixture.json"
    if not marker.exists():
        return None
    meta = read_json(marker)
    if not isinstance(meta, dict):
        raise CorruptFileError(f"{marker}: expected a JSON object")
    return meta


def check_count(spec: DatasetSpec, n: int, path: Path, fixture: dict | None) -> None:
    expected = spec.expected_count
    if fixture is not None:
        expected = int(fixture.get("counts", {}).get(spec.name, n))
    if n != expected:
        raise CorruptFileError(
            f"{path}: {spec.name} has {n} entries, expected {expected}; the file is truncated or "
            "not the right dataset (delete it and re-download, or point --data-dir elsewhere)"
        )
