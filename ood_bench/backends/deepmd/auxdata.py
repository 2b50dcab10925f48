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


def _chgnet(st: Structures, on_progress: Callable[[int], None]) -> dict[str, list]:
    from chgnet.model import CHGNet

    model = CHGNet.load(verbose=False)
    structures = list(st.iter_pymatgen())
    preds = []
    for k in range(0, len(structures), 32):
        chunk = structures[k:k + 32]
        out = model.predict_structure(chunk, batch_size=16)
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


def build_aux_set(st: Structures, labeller: str, out: Path, n_copies: int = 2, sigma: float = 0.05,
                  strain: float = 0.02, seed: int = 0, progress=None):
    """Perturb, label and write deepmd systems; returns the ``SystemSet``. ``progress`` is an
    optional rich Progress to report labelling on."""
    from .data import write_systems
    from .launcher import set_inference_threads

    set_inference_threads()  # one thread per calculator: oversubscribed BLAS is many times slower
    lab = LABELLERS.get(labeller)
    pert = perturb(st, n_copies, sigma, strain if lab.kind == "crystals" else 0.0, seed)
    if progress is not None:
        task = progress.add_task(f"labelling {len(pert)} frames with {lab.summary}", total=len(pert))

        def advance(n: int) -> None:
            progress.advance(task, n)
    else:
        def advance(n: int) -> None:
            return None
    labels = lab.label(pert, advance)
    keep = labels.pop("keep", None)
    ids = pert.ids if keep is None else [pert.ids[k] for k in keep]
    if not ids:
        raise OodBenchError(f"{lab.name}: no frame could be labelled")
    if keep is not None and len(ids) < len(pert):
        log.warning("%s: %d of %d frames not converged, left out", lab.name, len(pert) - len(ids), len(pert))
    arrays = {k: (v if k == "force" else np.asarray(v)) for k, v in labels.items()}
    return write_systems(out, pert, ids, arrays)
