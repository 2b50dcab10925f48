"""Auxiliary force-field data made offline: perturbed structures labelled by a real calculator.

These are stand-ins for SPICE2 / OMat24 (the paper's MFT auxiliary sets): GFN2-xTB (tblite)
for molecules and CHGNet (weights shipped in its wheel) for crystals. Labellers are registered
by name; each returns energy (eV), forces (eV/A) and, for crystals, the virial (eV).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...datasets import Structures
from ...errors import OodBenchError
from ...registry import Registry

log = logging.getLogger(__name__)

GPA_TO_EV_A3 = 1.0 / 160.21766208


# (structures, on_progress(n_done)) -> labels
LabelFn = Callable[[Structures, Callable[[int], None]], dict[str, list]]


@dataclass(frozen=True)
class Labeller:
    name: str
    kind: str  # molecules | crystals
    summary: str
    label: LabelFn


LABELLERS: Registry[Labeller] = Registry("labeller")


def _xtb(st: Structures, on_progress: Callable[[int], None]) -> dict[str, list]:
    from ase.units import Bohr, Hartree
    from tblite.exceptions import TBLiteRuntimeError
    from tblite.interface import Calculator

    energy, force, keep = [], [], []
    for k, sid in enumerate(st.ids):
        z, pos, _ = st.atoms_of(sid)
        calc = Calculator("GFN2-xTB", z.astype(int), pos / Bohr)
        calc.set("verbosity", 0)
        try:
            res = calc.singlepoint()
        except TBLiteRuntimeError:  # SCF did not converge for this distorted geometry: leave it out
            on_progress(1)
            continue
        energy.append(float(res.get("energy")) * Hartree)
        force.append(-np.asarray(res.get("gradient")) * Hartree / Bohr)
        keep.append(k)
        on_progress(1)
    return {"energy": energy, "force": force, "keep": keep}


# CHGNet's graphs (with angles and the stress autograd) cost ~20 MiB per atom of a batch: 16
# crystals of ~40 atoms peaked at 6.5 GB, 128-atom batches at 2.2 GB.
CHGNET_BATCH_ATOMS = 128


def atom_batches(structures: list, max_atoms: int) -> list[list]:
    """Consecutive structures grouped while a group holds at most ``max_atoms`` atoms (a larger
    structure is a group of its own): memory follows atoms, not structures."""
    out: list[list] = []
    n = 0
    for s in structures:
        if not out or n + len(s) > max_atoms:
            out.append([])
            n = 0
        out[-1].append(s)
        n += len(s)
    return out


def _chgnet(st: Structures, on_progress: Callable[[int], None]) -> dict[str, list]:
    from chgnet.model import CHGNet

    model = CHGNet.load(verbose=False)
    structures = list(st.iter_pymatgen())
    preds = []
    for chunk in atom_batches(structures, CHGNET_BATCH_ATOMS):
        out = model.predict_structure(chunk, batch_size=len(chunk))
        preds.extend(out if isinstance(out, list) else [out])
        on_progress(len(chunk))
    energy, force, virial = [], [], []
    for s, p in zip(structures, preds, strict=True):
        n = len(s)
        energy.append(float(p["e"]) * n)  # CHGNet gives eV/atom
        force.append(np.asarray(p["f"]))
        stress = np.asarray(p["s"]) * GPA_TO_EV_A3  # GPa -> eV/A^3, ASE sign convention
        virial.append((-stress * s.volume).reshape(9))
    return {"energy": energy, "force": force, "virial": virial}


LABELLERS.add("gfn2-xtb", Labeller("gfn2-xtb", "molecules", "GFN2-xTB via tblite", _xtb))
LABELLERS.add("chgnet", Labeller("chgnet", "crystals", "CHGNet universal potential", _chgnet))


def perturb(st: Structures, n_copies: int, sigma: float, strain: float, seed: int) -> Structures:
    """Each structure ``n_copies`` times with Gaussian displacements (and random cell strain
    for crystals), so the force-field head sees off-equilibrium forces."""
    rng = np.random.default_rng(seed)
    ids, numbers, positions, offsets, cells = [], [], [], [0], []
    for sid in st.ids:
        z, pos, cell = st.atoms_of(sid)
        for c in range(n_copies):
            new_pos = pos + rng.normal(0.0, sigma, pos.shape)
            if cell is not None:
                eps = np.eye(3) + rng.uniform(-strain, strain, (3, 3))
                eps = (eps + eps.T) / 2
                new_pos = new_pos @ eps
                cells.append(cell @ eps)
            ids.append(f"{sid}#{c}")
            numbers.append(z)
            positions.append(new_pos)
            offsets.append(offsets[-1] + len(z))
    return Structures(ids, np.concatenate(numbers), np.concatenate(positions), np.array(offsets),
                      np.array(cells) if cells else None)


@dataclass
class Frames:
    """Labelled frames: structures plus energy (n,), per-atom forces aligned with
    ``structures.numbers`` (n_atoms, 3), and the virial (n, 9) for crystals."""

    structures: Structures
    energy: np.ndarray
    force: np.ndarray
    virial: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.structures)

    def take(self, rows: np.ndarray) -> Frames:
        st = self.structures
        ids = [st.ids[r] for r in rows]
        atom_idx = np.concatenate([np.arange(st.offsets[r], st.offsets[r + 1]) for r in rows]) \
            if len(rows) else np.zeros(0, dtype=np.int64)
        return Frames(st.subset(ids), self.energy[rows], self.force[atom_idx],
                      None if self.virial is None else self.virial[rows])

    def labels(self) -> dict[str, object]:
        """Per-frame label arrays as ``write_systems`` takes them."""
        o = self.structures.offsets
        out: dict[str, object] = {"energy": self.energy,
                                  "force": [self.force[o[k]:o[k + 1]] for k in range(len(self))]}
        if self.virial is not None:
            out["virial"] = self.virial
        return out

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        st = self.structures
        out = {"ids": np.asarray([str(i) for i in st.ids]), "numbers": st.numbers, "offsets": st.offsets,
               "positions": st.positions.astype(np.float32), "energy": self.energy,
               "force": self.force.astype(np.float32)}
        if st.cells is not None:
            out["cells"] = st.cells
        if self.virial is not None:
            out["virial"] = self.virial
        return {f"{prefix}/{k}": v for k, v in out.items()}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> Frames:
        def get(k):
            return arrays.get(f"{prefix}/{k}")

        st = Structures(list(get("ids")), get("numbers"), get("positions"), get("offsets"), get("cells"))
        return cls(st, np.asarray(get("energy"), dtype=np.float64), np.asarray(get("force"), dtype=np.float64),
                   get("virial"))


def label_frames(st: Structures, labeller: str, chunk_dir: Path, chunk: int = 2000, progress=None) -> Frames:
    """Label ``st`` in chunks saved under ``chunk_dir`` as they finish, so a killed run resumes
    where it stopped; frames the labeller cannot converge are left out (and counted)."""
    from .launcher import set_inference_threads

    set_inference_threads()  # one thread per calculator: oversubscribed BLAS is many times slower
    lab = LABELLERS.get(labeller)
    chunk_dir.mkdir(parents=True, exist_ok=True)
    task = progress.add_task(f"labelling {len(st)} frames with {lab.summary}", total=len(st)) if progress else None
    parts = []
    for k, start in enumerate(range(0, len(st), chunk)):
        path = chunk_dir / f"chunk{k:04d}.npz"
        ids = st.ids[start:start + chunk]
        if not path.exists():
            part = _label_chunk(st.subset(ids), lab, progress, task)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **part.arrays("f"))
            tmp.replace(path)
        elif progress is not None:
            progress.advance(task, len(ids))
        with np.load(path) as arrays:
            parts.append(Frames.from_arrays(arrays, "f"))
    return concat_frames(parts)


def _label_chunk(st: Structures, lab: Labeller, progress, task) -> Frames:
    labels = lab.label(st, (lambda n: progress.advance(task, n)) if progress is not None else (lambda n: None))
    keep = labels.pop("keep", None)
    rows = np.arange(len(st)) if keep is None else np.asarray(keep, dtype=np.int64)
    if keep is not None and len(rows) < len(st):
        log.warning("%s: %d of %d frames not converged, left out", lab.name, len(st) - len(rows), len(st))
    kept = st.subset([st.ids[r] for r in rows])
    virial = np.asarray(labels["virial"]) if "virial" in labels else None
    force = np.concatenate([np.asarray(f).reshape(-1, 3) for f in labels["force"]]) if len(rows) else np.zeros((0, 3))
    return Frames(kept, np.asarray(labels["energy"], dtype=np.float64), force, virial)


def concat_frames(parts: list[Frames]) -> Frames:
    from ...datasets import concat_structures

    if not parts or not sum(len(p) for p in parts):
        raise OodBenchError("no frame could be labelled")
    virial = None if parts[0].virial is None else np.concatenate([p.virial for p in parts])
    return Frames(concat_structures([p.structures for p in parts]), np.concatenate([p.energy for p in parts]),
                  np.concatenate([p.force for p in parts]), virial)
