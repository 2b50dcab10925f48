"""Coulomb-matrix eigenvalue spectrum of molecules (Rupp et al., PRL 108, 058301, 2012).

    M_ii = 0.5 Z_i^2.4,        M_ij = Z_i Z_j / |R_i - R_j|   (i != j)

with the conventions of matminer's ``CoulombMatrix(diag_elems=True, flatten=True)``, so the numbers
are matminer's: distances are pymatgen's Angstrom distances times matminer's ``ANG_TO_BOHR``
(scipy's "Angstrom star" / "Bohr radius", i.e. Bohr as in the original paper), and the matrix
width is fitted to the largest molecule of the dataset (29 atoms for QM9), shorter spectra being
zero padded. matminer stores ``np.linalg.eig``'s eigenvalues in LAPACK's (unsorted) order; here
they are sorted by decreasing absolute value (Rupp et al.; padding last), which makes the vector
invariant to atom order. The tests check equality with matminer's (sorted) output.

matminer builds the matrix with a double Python loop per molecule (QM9: 130,831 molecules), so
this computes the same formula batched: molecules of equal size are stacked, the matrices built
with array operations and diagonalised with ``np.linalg.eigvalsh`` (exact for symmetric matrices).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import FEATURIZERS, Featurizer

EIGENVALUE_ORDER = "decreasing |eigenvalue|, zero padding last"
BATCH = 4096  # molecules per eigvalsh call: (4096, 29, 29) float64 is 28 MB

SETTINGS: dict[str, Any] = {
    "reference": "Rupp et al., Phys. Rev. Lett. 108, 058301 (2012)",
    "convention": "matminer.featurizers.structure.CoulombMatrix",
    "convention_args": {"diag_elems": True, "flatten": True},
    "diagonal": "0.5 * Z**2.4",
    "off_diagonal": "Z_i * Z_j / (|R_i - R_j| [Angstrom] * matminer ANG_TO_BOHR)",
    "eigenvalue_order": EIGENVALUE_ORDER,
    "width": "largest molecule of the dataset (fit), zero padded",
    "implementation": "ood_bench.features.coulomb.cm_eigenspectrum/1",
}


@functools.cache
def ang_to_bohr() -> float:
    """matminer's constant (``matminer.featurizers.structure.matrix.ANG_TO_BOHR``)."""
    import scipy.constants as const

    return const.value("Angstrom star") / const.value("Bohr radius")


def coulomb_matrices(numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(B, n, n) Coulomb matrices of B molecules of n atoms: numbers (B, n), positions (B, n, 3)."""
    z = np.asarray(numbers, dtype=np.float64)
    r = np.asarray(positions, dtype=np.float64)
    n = z.shape[1]
    diff = r[:, :, None, :] - r[:, None, :, :]
    dist = np.sqrt(np.einsum("bijk,bijk->bij", diff, diff)) * ang_to_bohr()
    eye = np.eye(n, dtype=bool)
    dist[:, eye] = 1.0  # the diagonal is set below; avoid 0/0
    m = z[:, :, None] * z[:, None, :] / dist
    m[:, eye] = 0.5 * z ** 2.4
    return m


def eigenspectra(numbers: np.ndarray, positions: np.ndarray, width: int) -> np.ndarray:
    """(B, width) sorted, zero-padded eigenvalue spectra of B molecules of the same size."""
    n = numbers.shape[1]
    out = np.zeros((numbers.shape[0], width))
    for a in range(0, numbers.shape[0], BATCH):
        eigs = np.linalg.eigvalsh(coulomb_matrices(numbers[a:a + BATCH], positions[a:a + BATCH]))
        order = np.argsort(-np.abs(eigs), axis=1, kind="stable")
        out[a:a + BATCH, :n] = np.take_along_axis(eigs, order, axis=1)
    return out


def cm_eigenspectrum(structures, ids: Sequence | None = None, width: int | None = None,
                     progress: bool = False) -> np.ndarray:
    """(len(ids), width) spectra for molecules of a ``Structures``; width defaults to the largest."""
    from .ofm import _progress

    ids = list(structures.ids if ids is None else ids)
    rows = np.array([structures.row(i) for i in ids], dtype=np.int64)
    natoms = structures.natoms()[rows]
    starts = structures.offsets[rows]
    width = int(natoms.max()) if width is None else int(width)
    if len(ids) and natoms.max() > width:
        raise ValueError(f"a molecule has {natoms.max()} atoms, more than width {width}")
    out = np.zeros((len(ids), width))
    sizes = np.unique(natoms)
    with _progress(progress) as bar:
        task = bar.add_task("Coulomb matrix spectra", total=len(ids))
        for n in sizes:
            sel = np.nonzero(natoms == n)[0]
            idx = starts[sel][:, None] + np.arange(n)[None, :]
            out[sel] = eigenspectra(structures.numbers[idx], structures.positions[idx], width)
            bar.advance(task, len(sel))
    return out


def compute(structures, ids: Sequence, options: dict[str, Any]) -> np.ndarray:
    if structures.periodic:
        raise ValueError("cm-eigenspectrum is for molecules (non-periodic structures)")
    return cm_eigenspectrum(structures, ids, progress=options.get("progress", True))


CM_EIGENSPECTRUM = Featurizer(
    name="cm-eigenspectrum",
    summary="Coulomb-matrix eigenvalue spectrum (Rupp et al. 2012; matminer CoulombMatrix "
            "conventions), sorted by |eigenvalue|, zero padded to the largest molecule",
    kinds=("molecules",),
    settings=SETTINGS,
    compute=compute,
    libraries=("scipy",),  # scipy's CODATA constants give ANG_TO_BOHR
)
FEATURIZERS.add("cm-eigenspectrum", CM_EIGENSPECTRUM)
