"""Orbital-Field Matrix (OFM) features, as matminer's ``OrbitalFieldMatrix`` computes them, faster.

matminer's featurizer (Pham et al. 2017) builds a 3x3x3 supercell, finds its symmetry-distinct
sites and, for each, a Voronoi polyhedron from every atom within 13 Angstrom; the site OFM is
``sum_nb outer(ohv[nb], ohv[site]) * w_nb / d_nb / ANG_TO_BOHR`` (w = face solid angle over the
largest one, d = minimum-image distance in the supercell) and the structure OFM is the
count-weighted mean over distinct sites. Nearly all of its time goes to symmetry analysis of the
27x supercell and to pure-Python loops over every ridge of a ~600-point tessellation.

``ofm_fast`` computes the same numbers with the same formulas:

- symmetry classes from the unit cell (the supercell's classes are the unit cell's, 27 times
  over, because lattice translations are supercell symmetries);
- the Voronoi cell of a site from the atoms within a radius that grows until it provably holds
  the whole cell (all vertices closer than r/2), capped at matminer's 13 Angstrom, where it
  behaves as matminer does (open faces are dropped);
- ridges of the centre picked with array operations; solid angles with matminer's fan formula;
- distances as minimum-image distances in the 3x3x3 supercell lattice, as matminer's
  ``site.distance`` gives them.

Agreement with matminer is checked in the tests (features equal to ~1e-9 relative) and timed in
``benchmarks/featurize_ofm.py``. If the fast path fails on a structure, matminer itself is used.

``compute_ofm_features`` runs it in parallel with a progress bar and caches the matrix on disk,
keyed by the dataset checksum and the featurizer settings.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Settings that define the features; part of the cache key and of every split file's metadata.
OFM_SETTINGS = {
    "featurizer": "matminer.featurizers.structure.OrbitalFieldMatrix",
    "period_tag": False,
    "flatten": True,
    "dim": 1024,
    "supercell": [3, 3, 3],
    "voronoi": "VoronoiNN(allow_pathological=True, cutoff=13.0, weight='solid_angle', tol=0)",
    "symmetry": "SpacegroupAnalyzer(symprec=0.01, angle_tolerance=5)",
    "implementation": "ood_bench.features.ofm.ofm_fast/1",
}
MAX_CUTOFF = 13.0
START_CUTOFF = 7.0


@functools.cache
def _ang_to_bohr() -> float:
    import scipy.constants as const

    # matminer's constant, kept verbatim so features match it bit for bit in spirit.
    return const.value("Angstrom star") / const.value("Bohr radius")


@functools.cache
def _ohv_table() -> np.ndarray:
    """(95, 32) one-hot valence-shell vectors, row Z, from matminer's own ``get_ohv``."""
    from matminer.featurizers.structure import OrbitalFieldMatrix
    from pymatgen.core.periodic_table import Element

    f = OrbitalFieldMatrix.__new__(OrbitalFieldMatrix)
    f.size = 32
    table = np.zeros((95, 32))
    for z in range(1, 95):
        table[z] = np.asarray(f.get_ohv(Element.from_Z(z), False))
    return table


def _solid_angles(center: np.ndarray, verts: np.ndarray, faces: list[np.ndarray]) -> np.ndarray:
    """pymatgen's ``solid_angle`` (fan of tetrahedra from each face's first vertex), vectorised."""
    a_idx, b_idx, c_idx, owner = [], [], [], []
    for k, f in enumerate(faces):
        m = len(f) - 2
        if m <= 0:
            continue
        a_idx.append(np.full(m, f[0]))
        b_idx.append(f[1:-1])
        c_idx.append(f[2:])
        owner.append(np.full(m, k))
    out = np.zeros(len(faces))
    if not a_idx:
        return out
    a = verts[np.concatenate(a_idx)] - center
    b = verts[np.concatenate(b_idx)] - center
    c = verts[np.concatenate(c_idx)] - center
    ra, rb, rc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
    tp = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c)))
    de = ra * rb * rc + rc * np.einsum("ij,ij->i", a, b) + rb * np.einsum("ij,ij->i", a, c) \
        + ra * np.einsum("ij,ij->i", b, c)
    with np.errstate(divide="ignore", invalid="ignore"):
        ang = np.where(de == 0, 0.5 * np.pi, np.arctan(tp / np.where(de == 0, 1.0, de)))
    ang = np.where(ang > 0, ang, ang + np.pi) * 2
    np.add.at(out, np.concatenate(owner), ang)
    return out


def _voronoi_faces(points: np.ndarray):
    """Voronoi cell of points[0]: (neighbour rows, faces as vertex-index arrays, vertices, ok).

    ``ok`` is False when the cell is open (a face reaches infinity) or may be cut by points
    outside the given set (a vertex farther than half the radius of the set).
    """
    from scipy.spatial import Voronoi

    voro = Voronoi(points)
    rp = voro.ridge_points
    sel = np.nonzero((rp[:, 0] == 0) | (rp[:, 1] == 0))[0]
    others, faces, is_open = [], [], False
    for r in sel.tolist():
        vind = voro.ridge_vertices[r]
        if -1 in vind:
            is_open = True
            continue  # allow_pathological: matminer skips open faces
        i, j = rp[r]
        others.append(int(j if i == 0 else i))
        faces.append(np.asarray(vind, dtype=np.int64))
    return np.asarray(others, dtype=np.int64), faces, voro.vertices, is_open


def _site_environment(lattice, frac: np.ndarray, site: int, cart: np.ndarray):
    """(neighbour atom indices, neighbour displacement vectors, weights) of one site."""
    center = cart[site]
    r = START_CUTOFF
    while True:
        fc, dist, idx, _img = lattice.get_points_in_sphere(frac, center, r, zip_results=False)
        fc = np.asarray(fc, dtype=float).reshape(-1, 3)
        dist = np.asarray(dist, dtype=float)
        idx = np.asarray(idx, dtype=np.int64)
        order = np.argsort(dist, kind="stable")
        fc, dist, idx = fc[order], dist[order], idx[order]
        pts = lattice.get_cartesian_coords(fc)
        pts[0] = center  # the centre itself (distance 0) comes first, as in pymatgen
        last = r >= MAX_CUTOFF
        if len(pts) >= 5:
            try:
                others, faces, verts, is_open = _voronoi_faces(pts)
            except Exception:  # qhull errors: too few or degenerate points
                if last:
                    raise
                r = min(2 * r, MAX_CUTOFF)
                continue
            if faces:
                used = np.unique(np.concatenate(faces))
                reach = np.max(np.linalg.norm(verts[used] - center, axis=1))
            else:
                reach = np.inf
            if last or (not is_open and faces and 2 * reach < r):
                break
        elif last:
            raise RuntimeError("fewer than 5 atoms within 13 Angstrom")
        r = min(2 * r, MAX_CUTOFF)
    if not faces:
        raise ValueError("No Voronoi neighbors found for site")
    angles = _solid_angles(center, verts, faces)
    keep = angles > 0  # VoronoiNN: weight > tol * max with tol = 0
    return idx[others[keep]], pts[others[keep]] - center, angles[keep] / angles.max()


def ofm_fast(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Flattened 1024-dim OFM of one periodic structure (matminer's definition)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # spglib/numpy deprecation chatter
        return _ofm_fast(numbers, positions, cell)


def _ofm_fast(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    numbers = np.asarray(numbers, dtype=int)
    lattice = Lattice(cell)
    structure = Structure(lattice, numbers.tolist(), positions, coords_are_cartesian=True)
    classes = SpacegroupAnalyzer(structure).get_symmetrized_structure().equivalent_indices
    frac = structure.frac_coords
    cart = structure.cart_coords
    sup = Lattice(np.asarray(cell) * 3.0)
    ohv = _ohv_table()
    a2b = _ang_to_bohr()
    total = np.zeros((32, 32))
    count = 0
    for members in classes:
        site = members[0]
        nb_idx, disp, w = _site_environment(lattice, frac, site, cart)
        # matminer: site.distance(neighbour) in the supercell = minimum-image distance there
        d = sup.get_all_distances(np.zeros((1, 3)), sup.get_fractional_coords(disp))[0]
        coef = w / d / a2b
        ofm = ohv[numbers[nb_idx]].T @ (coef[:, None] * np.broadcast_to(ohv[numbers[site]], (len(coef), 32)))
        total += ofm * len(members)
        count += len(members)
    return (total / count).flatten()


def ofm_matminer(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """matminer's ``OrbitalFieldMatrix().featurize`` on the same structure (reference path)."""
    import warnings

    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice(cell), np.asarray(numbers, dtype=int).tolist(), positions, coords_are_cartesian=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # np.matrix and spglib deprecation chatter
        return np.asarray(_matminer_featurizer().featurize(s), dtype=float)


@functools.cache
def _matminer_featurizer():
    import warnings

    from matminer.featurizers.structure import OrbitalFieldMatrix

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return OrbitalFieldMatrix(period_tag=False, flatten=True)


def _featurize_one(args) -> tuple[np.ndarray, bool]:
    numbers, positions, cell = args
    try:
        return ofm_fast(numbers, positions, cell), False
    except Exception:  # noqa: BLE001 - any failure falls back to matminer itself
        try:
            return ofm_matminer(numbers, positions, cell), True
        except Exception:  # noqa: BLE001
            return np.full(1024, np.nan), True


def _worker_init() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def featurize_structures(structures, ids: Sequence | None = None, n_jobs: int | None = None,
                         progress: bool = True, description: str = "OFM features",
                         chunk_done=None) -> tuple[np.ndarray, int]:
    """OFM rows for ``ids`` of a ``Structures`` object, in parallel; returns (X, n_fallbacks)."""
    ids = list(structures.ids if ids is None else ids)
    n_jobs = n_jobs or os.cpu_count() or 1
    os.environ.setdefault("SPGLIB_WARNING", "OFF")  # spglib's C-level chatter on near-symmetric cells
    tasks = [structures.atoms_of(i) for i in ids]
    out = np.zeros((len(ids), 1024))
    fallbacks = 0
    bar = _progress(progress)
    with bar:
        task = bar.add_task(description, total=len(ids))
        if n_jobs == 1 or len(ids) < 4:
            results = map(_featurize_one, tasks)
            pool = None
        else:
            import multiprocessing as mp

            pool = mp.get_context("spawn" if os.name == "nt" else "fork").Pool(n_jobs, initializer=_worker_init)
            results = pool.imap(_featurize_one, tasks, chunksize=8)
        try:
            for k, (row, fell_back) in enumerate(results):
                out[k] = row
                fallbacks += int(fell_back)
                bar.advance(task)
                if chunk_done is not None:
                    chunk_done(k)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    return out, fallbacks


def _progress(enabled: bool):
    from ..progress import progress_bar

    return progress_bar(enabled, eta=True)


def settings_key() -> str:
    return hashlib.sha256(json.dumps(OFM_SETTINGS, sort_keys=True).encode()).hexdigest()[:12]


def cache_path(dataset: str, dataset_sha256: str, cache_root: Path | None = None) -> Path:
    from ..paths import cache_dir

    root = cache_root or cache_dir()
    return root / "features" / f"ofm-{dataset}-{dataset_sha256[:16]}-{settings_key()}.npz"


def compute_ofm_features(ds, n_jobs: int | None = None, progress: bool = True,
                         cache_root: Path | None = None, use_cache: bool = True) -> tuple[np.ndarray, dict]:
    """(X rows in ``ds.ids`` order, info) for a loaded MatBench dataset; cached on disk.

    The cache file is keyed by the dataset's sha256 and the featurizer settings, and holds the ids
    it was computed for, so a stale or foreign cache is never used.
    """
    from ..io_utils import atomic_write_bytes

    path = cache_path(ds.name, ds.sha256, cache_root)
    ids = [str(i) for i in ds.ids]
    if use_cache and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                if z["ids"].tolist() == ids and z["X"].shape == (len(ids), 1024):
                    X = z["X"]
                    meta = json.loads(str(z["meta"]))
                    return X, {**meta, "cache": str(path), "from_cache": True}
        except Exception:  # noqa: BLE001 - unreadable cache: recompute
            log.warning("ignoring unreadable feature cache %s", path)
    import time

    t0 = time.perf_counter()
    X, fallbacks = featurize_structures(ds.structures, ds.ids, n_jobs=n_jobs, progress=progress,
                                        description=f"OFM {ds.name}")
    wall = time.perf_counter() - t0
    bad = int((~np.isfinite(X).all(axis=1)).sum())
    if bad:
        from ..errors import OodBenchError

        raise OodBenchError(f"{ds.name}: OFM featurization failed for {bad} structures (matminer too)")
    meta = {"settings": OFM_SETTINGS, "n": len(ids), "matminer_fallbacks": fallbacks,
            "wall_s": round(wall, 1), "n_jobs": n_jobs or os.cpu_count()}
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, X=X, ids=np.array(ids), meta=np.array(json.dumps(meta)))
    atomic_write_bytes(path, buf.getvalue())
    return X, {**meta, "cache": str(path), "from_cache": False}
