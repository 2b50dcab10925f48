"""Baseline features: MatBench RF-SCM/Magpie (matminer) and the Coulomb-matrix eigenspectrum."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from ood_bench.datasets.base import Structures
from ood_bench.features.base import FEATURIZERS, cached_features


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _transformed(st: Structures, ids, seed: int, rotate: bool = True, shift: bool = True,
                 permute: bool = True) -> Structures:
    """The same structures with atoms shuffled, rigidly rotated and translated."""
    rng = np.random.default_rng(seed)
    rot = _rotation(seed) if rotate else np.eye(3)
    nums, pos, cells, offsets = [], [], [], [0]
    for sid in ids:
        z, r, cell = st.atoms_of(sid)
        perm = rng.permutation(len(z)) if permute else np.arange(len(z))
        t = rng.normal(scale=3.0, size=3) if shift else np.zeros(3)
        nums.append(z[perm])
        pos.append((r[perm] + t) @ rot.T)
        if cell is not None:
            cells.append(cell @ rot.T)
        offsets.append(offsets[-1] + len(z))
    return Structures(list(ids), np.concatenate(nums), np.concatenate(pos), np.array(offsets),
                      np.array(cells) if cells else None)


def _close(a: np.ndarray, b: np.ndarray, rel: float = 1e-10) -> None:
    """Equal to ``rel`` relative to each row's largest magnitude (NaN where the other is NaN)."""
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    scale = np.nanmax(np.abs(b), axis=1, keepdims=True)
    err = np.nan_to_num(np.abs(a - b))
    np.testing.assert_array_less(err, np.broadcast_to(rel * scale + 1e-300, err.shape))


@pytest.fixture(scope="module")
def dielectric(fixture_data, session_cache):
    from ood_bench.datasets import load_dataset

    return load_dataset("matbench_dielectric", fixture_data)


@pytest.fixture(scope="module")
def qm9(fixture_data, session_cache):
    from ood_bench.datasets import load_dataset

    return load_dataset("qm9", fixture_data)


@pytest.fixture(scope="module")
def scm_features(dielectric):
    return cached_features(FEATURIZERS.get("scm-magpie"), dielectric, {"n_jobs": 2, "progress": False})


@pytest.fixture(scope="module")
def cm_features(qm9):
    return cached_features(FEATURIZERS.get("cm-eigenspectrum"), qm9, {"progress": False})


def test_registered_with_kinds_and_settings():
    scm, cm = FEATURIZERS.get("scm-magpie"), FEATURIZERS.get("cm-eigenspectrum")
    assert scm.kinds == ("crystals",) and cm.kinds == ("molecules",)
    assert scm.settings["structure_featurizer"] == "matminer.featurizers.structure.SineCoulombMatrix"
    assert scm.settings["composition_preset"] == "magpie"
    assert scm.settings["structure_featurizer_args"]["flatten"] is True
    assert "implementation" in scm.settings and "implementation" in cm.settings
    assert scm.key() != cm.key()


def test_scm_magpie_fixed_width_and_no_nan(dielectric, scm_features):
    from ood_bench.features.scm_magpie import feature_labels

    ids, X, info = scm_features
    n_max = int(dielectric.structures.natoms().max())
    assert ids == dielectric.ids_with_structures()
    assert X.shape == (len(ids), 132 + n_max) == (info["n"], info["dim"])
    assert len(feature_labels(n_max)) == X.shape[1]
    assert np.isfinite(X).all()  # every fixture crystal featurizes
    # padding: the SCM block has exactly natoms nonzero eigenvalues per row, then zeros
    nat = dielectric.structures.natoms()
    scm = X[:, 132:]
    for k in range(len(ids)):
        assert np.all(scm[k, nat[k]:] == 0) and np.all(scm[k, :nat[k]] != 0)
        assert np.all(np.diff(np.abs(scm[k])) <= 0)  # decreasing |eigenvalue|


def test_scm_magpie_matches_matminer(dielectric, scm_features):
    from matminer.featurizers.composition import ElementProperty
    from matminer.featurizers.structure import SineCoulombMatrix

    ids, X, _ = scm_features
    st = dielectric.structures
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scm = SineCoulombMatrix(flatten=True).fit([st.to_pymatgen(i) for i in ids])
        magpie = ElementProperty.from_preset("magpie")
        nat = st.natoms()
        picks = [int(np.argmax(nat)), int(np.argmin(nat)), 3, 17, 42, 101]
        for k in picks:
            s = st.to_pymatgen(ids[k])
            mag = np.asarray(magpie.featurize(s.composition.reduced_composition), dtype=float)
            eigs = np.real(np.asarray(scm.featurize(s)))
            ref = np.concatenate([mag, eigs[np.argsort(-np.abs(eigs), kind="stable")]])
            np.testing.assert_array_equal(X[k, :132], mag)
            _close(X[k:k + 1], ref[None], rel=1e-10)


def test_scm_magpie_invariant_to_atom_order_translation_rotation(dielectric, scm_features):
    from ood_bench.features.scm_magpie import featurize_structures

    ids, X, _ = scm_features
    st = dielectric.structures
    small = [i for i, n in zip(ids, st.natoms()[[st.row(i) for i in ids]], strict=True) if 2 <= n <= 12][:8]
    moved = _transformed(st, small, seed=1)
    # width fitted on the moved subset; compare the common (largest-cell) columns
    Y, failures = featurize_structures(moved, n_jobs=1, progress=False)
    rows = [ids.index(i) for i in small]
    assert failures == 0
    _close(Y, X[rows][:, :Y.shape[1]], rel=1e-9)
    assert np.all(X[rows][:, Y.shape[1]:] == 0)


def test_scm_magpie_failed_block_is_nan(dielectric):
    from ood_bench.features.scm_magpie import featurize_one, fitted_scm

    st = dielectric.structures
    nat = st.natoms()
    small, big = st.ids[int(np.argmin(nat))], st.ids[int(np.argmax(nat))]
    scm = fitted_scm([st.to_pymatgen(small)])  # too narrow for the big cell: matminer raises
    row, failed = featurize_one(st.to_pymatgen(big), scm)
    assert failed == 1
    assert np.isfinite(row[:132]).all() and np.isnan(row[132:]).all()


def test_cm_fixed_width_and_matches_matminer(qm9, cm_features):
    from matminer.featurizers.structure import CoulombMatrix

    ids, X, info = cm_features
    st = qm9.structures
    n_max = int(st.natoms().max())
    assert ids == qm9.ids_with_structures() and len(ids) < len(qm9)  # fixture has molecules without xyz
    assert X.shape == (len(ids), n_max) == (info["n"], info["dim"])
    picks = list(range(0, len(ids), max(1, len(ids) // 50)))[:50]
    mols = [st.to_pymatgen(ids[k]) for k in picks]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cm = CoulombMatrix(diag_elems=True, flatten=True).fit([st.to_pymatgen(i) for i in ids])
        ref = np.array([np.real(np.asarray(cm.featurize(m))) for m in mols])
    ref = np.take_along_axis(ref, np.argsort(-np.abs(ref), axis=1, kind="stable"), axis=1)
    assert len(picks) >= 45
    _close(X[picks], ref, rel=1e-10)
    # Rupp et al.: the largest eigenvalue of a heavy-atom molecule exceeds the largest 0.5 Z^2.4
    assert np.all(np.abs(X[:, 0]) >= 0.5 * 6 ** 2.4 - 1e-9)


def test_cm_invariant_to_atom_order_translation_rotation(qm9, cm_features):
    from ood_bench.features.coulomb import cm_eigenspectrum

    ids, X, _ = cm_features
    st = qm9.structures
    for seed, kw in enumerate([dict(rotate=False, shift=False), dict(permute=False, rotate=False),
                               dict(permute=False, shift=False), {}]):
        moved = _transformed(st, ids, seed=seed, **kw)
        _close(cm_eigenspectrum(moved, width=X.shape[1]), X, rel=1e-10)
    # and it is not trivially invariant: moving one atom changes the spectrum
    bent = _transformed(st, ids[:1], seed=0, rotate=False, shift=False, permute=False)
    bent.positions[0] += 0.3
    assert not np.allclose(cm_eigenspectrum(bent, width=X.shape[1]), X[:1])


def test_cache_hit_is_identical_and_does_not_recompute(qm9, monkeypatch, tmp_path):
    monkeypatch.setenv("OODBENCH_CACHE_DIR", str(tmp_path))
    base = FEATURIZERS.get("cm-eigenspectrum")
    calls = []

    def counting(structures, ids, options):
        calls.append(len(ids))
        return base.compute(structures, ids, options)

    def forbidden(structures, ids, options):
        raise AssertionError("recomputed despite a cache hit")

    ids1, X1, info1 = cached_features(dataclasses.replace(base, compute=counting), qm9, {"progress": False})
    ids2, X2, info2 = cached_features(dataclasses.replace(base, compute=forbidden), qm9, {"progress": False})
    assert calls == [len(ids1)] and not info1["from_cache"] and info2["from_cache"]
    assert ids1 == ids2 and X1.dtype == X2.dtype and np.array_equal(X1, X2)
    assert len(list((tmp_path / "features").glob("cm-eigenspectrum-qm9-*.npz"))) == 1
    # different settings -> different key -> recomputed, not served the old matrix
    other = dataclasses.replace(base, settings={**base.settings, "implementation": "test/2"}, compute=counting)
    cached_features(other, qm9, {"progress": False})
    assert len(calls) == 2


def test_kind_mismatch_is_refused(qm9, dielectric):
    from ood_bench.errors import UsageError

    with pytest.raises(UsageError):
        cached_features(FEATURIZERS.get("scm-magpie"), qm9)
    with pytest.raises(UsageError):
        cached_features(FEATURIZERS.get("cm-eigenspectrum"), dielectric)
