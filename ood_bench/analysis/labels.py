"""Geometry-only class labels for the representation analysis (paper Supplementary D.1).

Nodes: element plus number of covalent neighbours, where two atoms are neighbours when their
distance is below ``1.15 x`` the sum of their covalent radii (``ase.data.covalent_radii``); a
carbon with four neighbours is ``C4``, a hydroxyl oxygen ``O2``.

Edges: directed pairs centred on a carbon, with a hydrogen or oxygen neighbour, in three distance
classes: *near* (covalent bond, same 1.15 rule), *middle* (3-4 A: non-bonded, inside DPA3's 4 A
angular cutoff) and *far* (5-6 A: non-bonded, edge features updated without angles). Other pairs
get no class. Labels depend on geometry only, so every model sees the same atoms and edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

COVALENT_FACTOR = 1.15
MIDDLE = (3.0, 4.0)
FAR = (5.0, 6.0)
EDGE_CENTRES = ("C",)
EDGE_PARTNERS = ("H", "O")
EDGE_CUTOFF = FAR[1]


def symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


def covalent_radius(z: np.ndarray) -> np.ndarray:
    from ase.data import covalent_radii

    return np.asarray(covalent_radii)[np.asarray(z, dtype=int)]


def pairs_within(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray | None,
                 cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed pairs (i, j, distance) with ``0 < d < cutoff``; periodic images count for crystals.

    Molecules use one dense distance matrix (fast for QM9-sized molecules); crystals use ASE's
    neighbour list, which returns one row per periodic image within the cutoff.
    """
    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=np.float64)
    if cell is None:
        diff = positions[None, :, :] - positions[:, None, :]
        dist = np.sqrt((diff ** 2).sum(-1))
        i, j = np.nonzero((dist < cutoff) & ~np.eye(len(numbers), dtype=bool))
        return i, j, dist[i, j]
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(numbers=numbers, positions=positions, cell=np.asarray(cell).reshape(3, 3), pbc=True)
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    keep = d > 1e-8
    return i[keep], j[keep], d[keep]


def is_bonded(zi: np.ndarray, zj: np.ndarray, d: np.ndarray, factor: float = COVALENT_FACTOR) -> np.ndarray:
    return d < factor * (covalent_radius(zi) + covalent_radius(zj))


def covalent_neighbour_counts(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray | None = None,
                              factor: float = COVALENT_FACTOR) -> np.ndarray:
    """Number of covalent neighbours of each atom (distance < factor x sum of covalent radii)."""
    numbers = np.asarray(numbers)
    rmax = 2 * factor * float(covalent_radius(numbers).max()) if len(numbers) else 0.0
    i, j, d = pairs_within(numbers, positions, cell, rmax + 1e-6)
    bonded = is_bonded(numbers[i], numbers[j], d, factor)
    return np.bincount(i[bonded], minlength=len(numbers))


def node_labels(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray | None = None) -> list[str]:
    """``<element><number of covalent neighbours>`` for each atom, e.g. ``['C4', 'O2', 'H1', ...]``."""
    counts = covalent_neighbour_counts(numbers, positions, cell)
    return [f"{symbol(z)}{n}" for z, n in zip(numbers, counts, strict=True)]


def edge_class(zi: int, zj: int, d: float) -> str | None:
    """``'C-H near'``, ``'C-O middle'``, ... for a directed pair, or None when it has no class."""
    si, sj = symbol(zi), symbol(zj)
    if si not in EDGE_CENTRES or sj not in EDGE_PARTNERS:
        return None
    if is_bonded(np.array([zi]), np.array([zj]), np.array([d]))[0]:
        band = "near"
    elif MIDDLE[0] <= d <= MIDDLE[1]:
        band = "middle"
    elif FAR[0] <= d <= FAR[1]:
        band = "far"
    else:
        return None
    return f"{si}-{sj} {band}"


@dataclass
class EdgeList:
    """Classified directed edges of one structure: centre i, neighbour j, distance, class."""

    i: np.ndarray
    j: np.ndarray
    dist: np.ndarray
    label: list[str]


def classified_edges(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray | None = None) -> EdgeList:
    """Every directed C-H / C-O edge of one structure that falls in a near/middle/far class
    (vectorised: same rules as ``edge_class``)."""
    numbers = np.asarray(numbers)
    syms = np.array([symbol(z) for z in numbers])
    centre = np.isin(syms, EDGE_CENTRES)
    partner = np.isin(syms, EDGE_PARTNERS)
    if not centre.any() or not partner.any():
        return EdgeList(np.zeros(0, int), np.zeros(0, int), np.zeros(0), [])
    i, j, d = pairs_within(numbers, positions, cell, EDGE_CUTOFF + 1e-9)
    keep = centre[i] & partner[j]
    i, j, d = i[keep], j[keep], d[keep]
    near = is_bonded(numbers[i], numbers[j], d)
    middle = ~near & (d >= MIDDLE[0]) & (d <= MIDDLE[1])
    far = ~near & (d >= FAR[0]) & (d <= FAR[1])
    band = np.where(near, "near", np.where(middle, "middle", np.where(far, "far", "")))
    ok = band != ""
    labels = [f"{a}-{b} {c}" for a, b, c in zip(syms[i[ok]], syms[j[ok]], band[ok], strict=True)]
    return EdgeList(i[ok], j[ok], d[ok], labels)


def sample_per_class(labels: Sequence[str], cap: int, seed: int) -> np.ndarray:
    """Indices of at most ``cap`` items of each class, drawn without replacement (seeded), sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = []
    for cls in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == cls)
        if len(idx) > cap:
            idx = np.sort(rng.choice(idx, size=cap, replace=False))
        picked.append(idx)
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=int)


def sample_uniform(n: int, size: int, seed: int) -> np.ndarray:
    """At most ``size`` of ``range(n)``, without replacement (seeded), sorted."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
