"""Split generators on the small real fixtures: BOOM (QM9), OFM-based OOD folds, MatBench random,
published-fold import, determinism, corrupt-file rejection and the ``oodbench split`` CLI."""

from __future__ import annotations

import gzip
import json
import lzma
import math
import random
from pathlib import Path

import numpy as np
import pytest

from ood_bench.errors import CorruptFileError, DataMissingError, UsageError
from ood_bench.splits import load_split, load_split_file, save_split
from ood_bench.splits.boom import BoomParams, boom_assign, boom_log_density, boom_select, build_boom

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OODBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "split-cache"))


def _ds(name):
    from ood_bench.datasets import load_dataset

    return load_dataset(name, FIXTURES)


def _assert_disjoint_covering(split, all_ids, covering=True):
    for k, fold in split.folds.items():
        sets = fold.all_sets()
        seen = set()
        for name, ids in sets.items():
            assert not seen & set(ids), f"fold {k}: {name} overlaps"
            seen |= set(ids)
        if covering:
            assert seen == set(all_ids), f"fold {k} does not cover the dataset"


# ---------------------------------------------------------------- BOOM (QM9)

def _numpy_introselect(values: np.ndarray, n: int) -> np.ndarray:
    """Sorted ``np.argpartition(values, n)[:n]`` exactly as numpy runs it without SIMD dispatch (its
    introselect: what every numpy < 2.0 returns on every CPU), computed in a fresh interpreter with
    numpy's own switch NPY_DISABLE_CPU_FEATURES; not through ood_bench."""
    import os
    import subprocess
    import sys
    import tempfile

    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2.0 has no SIMD argpartition
        return np.sort(np.argpartition(values, n)[:n])
    off = " ".join(f for f in __cpu_dispatch__ if __cpu_features__.get(f))
    code = ("import sys, numpy as np\n"
            "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
            "assert not any(f.get(k) for k in sys.argv[3].split()), 'SIMD still on'\n"
            "d = np.load(sys.argv[1])\n"
            "np.save(sys.argv[1], np.sort(np.argpartition(d, int(sys.argv[2]))[:int(sys.argv[2])]))\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "d.npy")
        np.save(path, np.asarray(values, dtype=np.float64))
        subprocess.run([sys.executable, "-c", code, path, str(n), off], check=True,
                       env={**os.environ, "NPY_DISABLE_CPU_FEATURES": off})
        return np.load(path)


def _boom_literal(values: np.ndarray, n_ood: int, ood_indices: np.ndarray | None = None):
    """BOOM's prepare_splits_qm9 loop, transcribed (FLASK-LLNL/BOOM @ 2bb1d83): returns (OOD rows, ID rows).
    ``ood_indices`` defaults to the plain ``np.argpartition`` call as this process runs it."""
    from sklearn.neighbors import KernelDensity

    state = random.getstate()
    random.seed(42)
    property_values = np.array(list(values)).reshape(-1, 1).astype(np.float64)
    property_kde_scores = KernelDensity(kernel="gaussian", bandwidth="scott").fit(
        property_values).score_samples(property_values)
    if ood_indices is None:
        ood_indices = np.argpartition(np.exp(property_kde_scores), n_ood)[0:n_ood]
    ood, iid = [], []
    for counter in range(len(property_values)):
        if counter in ood_indices:
            ood.append(counter)
        elif random.random() < 0.05:
            iid.append(counter)
    random.setstate(state)
    return ood, iid, property_kde_scores


def _tied_values(n=1500, seed=3):
    """Like QM9's few significant digits: many molecules share a value, hence a density (here 13
    share the density at the n=150 boundary, 7 of them enter OOD)."""
    rng = np.random.default_rng(seed)
    return np.round(np.concatenate([rng.normal(0, 1, n - n // 5), rng.normal(4, 0.5, n // 5)]), 1)


def test_boom_density_is_sklearn_score_samples_bit_for_bit():
    from sklearn.neighbors import KernelDensity

    for v in (_ds("qm9").table["gap"].to_numpy(), _tied_values()):
        X = v.reshape(-1, 1)
        ref = KernelDensity(kernel="gaussian", bandwidth="scott").fit(X).score_samples(X)
        assert np.array_equal(boom_log_density(v), ref)  # exact, not allclose
    # the parallel path (distinct values split over processes) gives the same bits
    from ood_bench.splits import boom

    boom._DENSITY_CACHE.clear()
    v = np.random.default_rng(0).normal(0, 1, 4500)
    ref = KernelDensity(kernel="gaussian", bandwidth="scott").fit(v.reshape(-1, 1)).score_samples(v.reshape(-1, 1))
    assert np.array_equal(boom_log_density(v + 0.0, n_jobs=2), ref)


def test_boom_select_is_numpy_introselect_on_ties():
    # 8 zeros and 8 ones: n=10 takes the zeros and 2 of the ones; which 2 is the selection algorithm's
    # choice. numpy 1.24.4 (BOOM's environment) returns these; numpy >= 2.0 on AVX-512 returns 13, 18.
    d = ((np.arange(40) * 7) % 5).astype(np.float64)
    assert boom_select(d, 10).tolist() == [0, 5, 10, 15, 18, 20, 25, 28, 30, 35]
    # a BOOM-like density with ties at the boundary: exactly np.argpartition(score, n)[:n]
    score = np.exp(boom_log_density(_tied_values()))
    n = 150
    kth = np.sort(score)[n - 1]
    below, tied = np.nonzero(score < kth)[0], np.nonzero(score == kth)[0]
    assert len(below) < n < len(below) + len(tied)  # the boundary splits a group of tied molecules
    assert np.array_equal(boom_select(score, n), _numpy_introselect(score, n))
    # the other tie orders
    assert np.array_equal(boom_select(score, n, "native"), np.sort(np.argpartition(score, n)[:n]))
    assert boom_select(score, n, "gdb").tolist() == sorted([*below, *tied[: n - len(below)]])


def test_boom_assign_is_boom_code():
    v = _tied_values()
    n = 150
    a = boom_assign(v, BoomParams(n_ood=n, val_fraction=0.0))
    # BOOM's own loop, with the OOD indices numpy's introselect gives for np.argpartition(exp(score), n)
    score = boom_log_density(v)
    ood, iid, scores = _boom_literal(v, n, _numpy_introselect(np.exp(score), n))
    assert np.array_equal(scores, score)
    assert a.ood.tolist() == ood and a.id_test.tolist() == iid
    assert sorted(a.train.tolist() + ood + iid) == list(range(len(v)))
    assert a.info["tied_at_boundary"] > a.info["tied_at_boundary_in_ood"] > 0
    assert a.info["tie_order"] == "introselect" and a.info["exp_strictly_increasing"]
    assert set(a.info["computed_with"]) == {"numpy", "scikit-learn"}
    # tie_order="native" is the literal call as this process runs it
    b = boom_assign(v, BoomParams(n_ood=n, val_fraction=0.0, tie_order="native"))
    ood, iid, _ = _boom_literal(v, n)
    assert b.ood.tolist() == ood and b.id_test.tolist() == iid


def test_boom_fixture_split_follows_the_procedure():
    from sklearn.neighbors import KernelDensity

    ds = _ds("qm9")
    s = build_boom(ds, "gap", params=BoomParams(n_ood=30))
    assert s.name == "boom-gap" and s.test_sets == ["id_test", "ood_test"] and list(s.folds) == ["0"]
    assert s.generator["split_version"] == 2 and s.generator["params"]["tie_order"] == "introselect"
    _assert_disjoint_covering(s, ds.ids)
    fold = s.fold(0)
    assert len(fold.tests["ood_test"]) == 30
    # OOD = np.argpartition(np.exp(score), 30)[:30] over the molecules in gdb order
    table = ds.table.sort_index()
    X = table["gap"].to_numpy().reshape(-1, 1)
    score = KernelDensity(kernel="gaussian", bandwidth="scott").fit(X).score_samples(X)
    rows = _numpy_introselect(np.exp(score), 30)
    assert fold.tests["ood_test"] == [int(table.index[r]) for r in rows]
    # ID: random.seed(42), one draw per non-OOD molecule in gdb order
    rnd = random.Random(42)
    ood = set(fold.tests["ood_test"])
    expected_id = [i for i in table.index if i not in ood and rnd.random() < 0.05]
    assert fold.tests["id_test"] == expected_id
    # val: 5% of train, seeded
    n_train_all = len(fold.train) + len(fold.val)
    assert len(fold.val) == round(0.05 * n_train_all)
    assert s.provenance["counts"]["ood_test"] == 30
    # molecules without coordinates, per set, counted here from the fixture's coordinate file
    import pandas as pd

    with_xyz = set(pd.read_csv(FIXTURES / "qm9" / "coordinates.csv.gz", usecols=["Index"])["Index"].astype(int))
    missing = {k: sum(1 for i in v if int(i) not in with_xyz) for k, v in fold.all_sets().items()}
    assert sum(missing.values()) == len(ds) - len(with_xyz) == 8
    assert s.provenance["ids_without_structure"] == missing
    # the versions the generator block records are the installed ones
    from importlib.metadata import version

    for pkg in ("numpy", "scipy", "scikit-learn", "pandas"):
        assert s.generator["versions"][pkg] == version(pkg), pkg
    dens = s.provenance["density"]
    assert dens["computed_with"]["numpy"] == np.__version__ and "introselect" in dens["tie_rule"]


def test_boom_tie_orders_on_exact_ties():
    values = np.array([1.0] * 6 + [50.0] * 4 + [100.0] * 6)  # the 4 middle ones are least dense
    a = boom_assign(values, BoomParams(n_ood=2, val_fraction=0.0, tie_order="gdb"))
    assert a.ood.tolist() == [6, 7]  # split version 1's rule: lowest gdb index
    assert a.info["tied_at_boundary"] == 4 and a.info["tied_at_boundary_in_ood"] == 2
    b = boom_assign(values, BoomParams(n_ood=2, val_fraction=0.0))
    assert b.ood.tolist() == _numpy_introselect(np.exp(boom_log_density(values)), 2).tolist()
    assert set(b.ood) < {6, 7, 8, 9}
    with pytest.raises(UsageError):
        BoomParams(tie_order="lowest")


def test_boom10pct_variant_and_determinism(tmp_path):
    ds = _ds("qm9")
    s = build_boom(ds, "r2", variant="boom10pct")
    assert s.name == "boom10pct-r2"
    assert len(s.fold(0).tests["ood_test"]) == math.floor(0.10 * len(ds))
    p1 = save_split(build_boom(ds, "r2", params=BoomParams(n_ood=25)), tmp_path / "a")
    p2 = save_split(build_boom(ds, "r2", params=BoomParams(n_ood=25)), tmp_path / "b")
    assert p1.read_bytes() == p2.read_bytes()


def test_boom_refuses_without_the_full_table(tmp_path):
    import dataclasses

    # what load_dataset("qm9") gives when only qm9pack's 130,831 molecules are found
    ds = dataclasses.replace(_ds("qm9"), checksum_status="qm9pack only (130,831; no BOOM table)",
                             source=str(tmp_path))
    with pytest.raises(DataMissingError) as exc:
        build_boom(ds, "gap", params=BoomParams(n_ood=10))
    msg = str(exc.value)
    assert "\n" not in msg and "133,885" in msg and "qm9_properties_133885.csv.gz" in msg


# ---------------------------------------------------------------- OFM features

def test_ofm_fast_equals_matminer():
    from ood_bench.features.ofm import ofm_fast, ofm_matminer

    st = _ds("matbench_dielectric").structures
    for sid in st.ids[:6]:
        a = st.atoms_of(sid)
        fast, ref = ofm_fast(*a), ofm_matminer(*a)
        assert fast.shape == (1024,)
        np.testing.assert_allclose(fast, ref, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def dielectric_features(tmp_path_factory):
    import os

    from ood_bench.features.ofm import compute_ofm_features

    old = os.environ.get("OODBENCH_CACHE_DIR")
    os.environ["OODBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("ofm-cache"))
    try:
        ds = _ds("matbench_dielectric")
        X, info = compute_ofm_features(ds, progress=False)
        X2, info2 = compute_ofm_features(ds, progress=False)  # second call: from the cache
        yield ds, X, info, X2, info2
    finally:
        if old is None:
            os.environ.pop("OODBENCH_CACHE_DIR", None)
        else:
            os.environ["OODBENCH_CACHE_DIR"] = old


def test_ofm_features_are_cached(dielectric_features):
    ds, X, info, X2, info2 = dielectric_features
    assert X.shape == (len(ds), 1024) and np.isfinite(X).all()
    assert not info["from_cache"] and info2["from_cache"]
    assert np.array_equal(X, X2)
    assert ds.sha256[:16] in info["cache"]


# ---------------------------------------------------------------- MatBench OOD folds

SMALL = dict(n_clusters=6, n_low_density=40, n_neighbours=3)


@pytest.fixture(scope="module")
def ood_splits(dielectric_features):
    from ood_bench.splits.ofm_folds import OOD_METHODS, OfmFoldParams, build_ofm_splits

    ds, X, info, _, _ = dielectric_features
    sets = build_ofm_splits(ds, OOD_METHODS, X, info, OfmFoldParams(**SMALL))
    return ds, X, {s.name: s for s in sets}


def test_loco_test_sets_partition_the_dataset(ood_splits):
    ds, _, sets = ood_splits
    s = sets["LOCO"]
    tests = [t for f in s.folds.values() for t in f.tests["test"]]
    assert sorted(tests) == sorted(ds.ids)  # each id tested exactly once
    _assert_disjoint_covering(s, ds.ids)
    for f in s.folds.values():
        assert len(f.val) == math.ceil(0.2 * (len(ds) - len(f.tests["test"])))


def test_single_and_cluster_sizes(ood_splits):
    ds, _, sets = ood_splits
    for name in ("SparseXsingle", "SparseYsingle", "SparseXcluster", "SparseYcluster"):
        s = sets[name]
        assert len(s.folds) == SMALL["n_clusters"]
        want = 1 if name.endswith("single") else SMALL["n_neighbours"] + 1
        all_tests = []
        for f in s.folds.values():
            assert len(f.tests["test"]) == want == len(set(f.tests["test"]))
            all_tests += f.tests["test"]
        assert len(all_tests) == len(set(all_tests)), f"{name}: test sets reuse a sample"
        _assert_disjoint_covering(s, ds.ids)
        single = sets[name.replace("cluster", "single")]
        # cluster folds start with the single method's anchor
        assert [f.tests["test"][0] for f in s.folds.values()] == [f.tests["test"][0] for f in single.folds.values()]


def test_sparse_y_anchors_are_low_density_targets(ood_splits):
    from scipy.stats import gaussian_kde

    ds, _, sets = ood_splits
    y = ds.table["n"].to_numpy()
    dens = gaussian_kde(y)(y)
    threshold = np.sort(dens)[SMALL["n_low_density"] - 1]
    row = {sid: i for i, sid in enumerate(ds.ids)}
    anchors = [row[f.tests["test"][0]] for f in sets["SparseYsingle"].folds.values()]
    assert all(dens[a] <= threshold for a in anchors)
    # not the published bug: anchors are not simply the first 100 rows
    assert not all(a < 100 for a in anchors) or len(ds) <= 100
    # the corrected procedure, recomputed here with sklearn directly: KMeans of the lowest-density
    # samples (target KDE at each sample, ties by row), each cluster's lowest-density member
    from sklearn.cluster import KMeans

    X = ood_splits[1]
    X = X[:, (X != 0).any(axis=0)]
    low = np.argsort(dens, kind="stable")[:SMALL["n_low_density"]]
    labels = KMeans(n_clusters=SMALL["n_clusters"], max_iter=500, random_state=222, n_init=1).fit_predict(X[low])
    expected = [int(low[labels == k][np.argmin(dens[low[labels == k]])]) for k in range(SMALL["n_clusters"])]
    assert anchors == expected


def test_sparse_x_anchor_is_lowest_density_member_of_its_cluster(dielectric_features):
    from ood_bench.splits.ofm_folds import OfmFoldParams, kde_at_samples, kmeans_labels, sparse_anchors

    ds, X, _, _, _ = dielectric_features
    p = OfmFoldParams(**SMALL)
    dens = kde_at_samples(np.random.default_rng(0).normal(size=(len(X), 2)))
    anchors, info = sparse_anchors(dens, X, p)
    low = np.argsort(dens, kind="stable")[: p.n_low_density]
    labels = kmeans_labels(X[low], p)
    for k, a in enumerate(anchors):
        members = low[labels == k]
        assert a in members and dens[a] == dens[members].min()


def test_expand_anchors_never_repeats_or_reuses():
    from ood_bench.splits.ofm_folds import expand_anchors

    X = np.zeros((30, 3))
    X[:, 0] = np.arange(30) // 2  # pairs of identical points: ties everywhere
    sets = expand_anchors(X, [0, 1, 10], 4)
    flat = [int(i) for s in sets for i in s]
    assert len(flat) == len(set(flat)) == 15
    assert [int(s[0]) for s in sets] == [0, 1, 10]
    assert sets[0].tolist() == [0, 2, 3, 4, 5]  # 1 is another anchor; ties broken by row order


def test_ofm_splits_are_deterministic(tmp_path, dielectric_features):
    from ood_bench.splits.ofm_folds import OfmFoldParams, build_ofm_splits

    ds, X, info, _, _ = dielectric_features
    paths = []
    for sub in ("a", "b"):
        (s,) = build_ofm_splits(ds, ["SparseXcluster"], X, info, OfmFoldParams(**SMALL))
        paths.append(save_split(s, tmp_path / sub))
    assert paths[0].read_bytes() == paths[1].read_bytes()


# ---------------------------------------------------------------- MatBench random, published import

def test_random_split_uses_official_matbench_folds():
    from ood_bench.splits.mb_random import build_random, validation_file

    ds = _ds("matbench_dielectric")
    (s,) = build_random(ds, {})
    official = json.loads(validation_file().read_text())["splits"]["matbench_dielectric"]
    assert len(s.folds) == 5
    for k, f in s.folds.items():
        assert f.tests["test"] == [i for i in official[f"fold_{k}"]["test"] if i in set(ds.ids)]
        assert len(f.val) == math.ceil(0.2 * (len(f.train) + len(f.val)))
    _assert_disjoint_covering(s, ds.ids, covering=False)
    assert all(set(f.train) | set(f.val) | set(f.tests["test"]) == set(ds.ids) for f in s.folds.values())


def test_random_split_missing_package_is_one_line(monkeypatch):
    from ood_bench.splits import mb_random

    monkeypatch.setattr(mb_random, "find_spec", lambda name: None)
    with pytest.raises(DataMissingError, match="pip install --no-deps matbench==0.6") as exc:
        mb_random.validation_file()
    assert "\n" not in str(exc.value)


def _fake_published(folder: Path, ds, method: str) -> dict:
    ids = ds.ids
    folds = {}
    for k in range(3):
        test = [ids[10 * k], *ids[10 * k + 1: 10 * k + 5], ids[10 * k]]  # anchor repeated, as published
        rest = [i for i in ids if i not in set(test)]
        folds[f"fold_{k}"] = {"train": rest[::-1][: len(rest) - 30], "val": rest[::-1][len(rest) - 30:], "test": test}
    body = {"metadata": {"method": method, "train_reconstructed": True}, "folds": folds}
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{ds.name}_{method}.json.gz", "wt") as fh:
        json.dump(body, fh)
    return body


def test_import_published_is_verbatim(tmp_path):
    from ood_bench.splits.published import import_published

    ds = _ds("matbench_dielectric")
    body = _fake_published(tmp_path / "pub", ds, "SparseXcluster")
    s = import_published(ds, "SparseXcluster", tmp_path / "pub")
    assert s.name == "omee2024-SparseXcluster"
    path = save_split(s, tmp_path / "splits")
    back = load_split_file(path, known_ids=ds.ids)
    for k in range(3):
        src = body["folds"][f"fold_{k}"]
        f = back.fold(k)
        assert (f.train, f.val, f.tests["test"]) == (src["train"], src["val"], src["test"])
    assert back.provenance["train_reconstructed"] is True
    assert back.provenance["test_duplicates"] == {"0": 1, "1": 1, "2": 1}
    assert len(back.provenance["source_sha256"]) == 64


# ---------------------------------------------------------------- validation of split files

def _saved(tmp_path):
    ds = _ds("qm9")
    return ds, save_split(build_boom(ds, "gap", params=BoomParams(n_ood=30)), tmp_path)


@pytest.mark.parametrize("damage", ["edit", "truncate", "overlap", "unknown-id", "not-json"])
def test_corrupt_split_files_are_rejected_in_one_line(tmp_path, damage):
    ds, path = _saved(tmp_path)
    body = json.loads(lzma.decompress(path.read_bytes()))
    known = ds.ids
    if damage == "edit":
        body["folds"]["0"]["train"][0] = body["folds"]["0"]["val"][-1] + 1_000_000
    elif damage == "overlap":
        body["folds"]["0"]["val"].append(body["folds"]["0"]["train"][0])
    elif damage == "unknown-id":
        from ood_bench.splits.schema import content_sha256

        body["folds"]["0"]["train"].append(999_999_999)
        body["content_sha256"] = content_sha256(body)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "not-json":
        path.write_bytes(lzma.compress(b"{not json"))
    else:
        path.write_bytes(lzma.compress(json.dumps(body).encode()))
    with pytest.raises(CorruptFileError) as exc:
        load_split_file(path, known_ids=known)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg


def test_load_split_by_name(tmp_path):
    ds, path = _saved(tmp_path)
    s = load_split("qm9", "boom-gap", tmp_path, known_ids=ds.ids)
    assert s.sha256 and s.generator["name"] == "boom"


# ---------------------------------------------------------------- CLI

def _cli(args):
    from ood_bench.cli import main

    return main(args)


def test_cli_help_has_example(capsys):
    assert _cli(["split", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example:" in out and "oodbench split qm9 --property gap" in out


def test_cli_qm9_and_check(tmp_path, capsys):
    args = ["--data-dir", str(FIXTURES), "--splits-dir", str(tmp_path)]
    assert _cli(["split", "qm9", "--property", "gap", "--param", "n_ood=30", *args]) == 0
    assert (tmp_path / "qm9" / "boom-gap.json.xz").exists()
    assert _cli(["split", "qm9", "--check", *args]) == 0
    # damage it: --check fails with one line naming the file, exit 1
    p = tmp_path / "qm9" / "boom-gap.json.xz"
    p.write_bytes(p.read_bytes()[:-50])
    capsys.readouterr()
    assert _cli(["split", "qm9", "--check", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "boom-gap.json.xz" in err and err.startswith("oodbench: error:")


def test_cli_usage_errors(tmp_path, capsys):
    args = ["--data-dir", str(FIXTURES), "--splits-dir", str(tmp_path)]
    assert _cli(["split", "qm9", "--method", "LOCO", *args]) == 2
    assert _cli(["split", "qm9", "--property", "nope", *args]) == 2
    assert _cli(["split", "qm9", "--param", "bogus=1", *args]) == 2
    assert _cli(["split", "qm9", "--param", "tie_order=lowest", *args]) == 2
    assert _cli(["split", "nodataset", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_cli_matbench_random_and_list(tmp_path, capsys):
    args = ["--data-dir", str(FIXTURES), "--splits-dir", str(tmp_path)]
    assert _cli(["split", "matbench_dielectric", "--list", *args]) == 0
    assert _cli(["split", "matbench_dielectric", "--method", "random", *args]) == 0
    s = load_split("matbench_dielectric", "random", tmp_path)
    assert len(s.folds) == 5


def test_quickstart_split_step_makes_the_file_through_the_library(tmp_path, monkeypatch):
    """Called from Python with a splits folder that lacks boom-gap, the quickstart's split step makes
    it through the split library, byte-identical to what `oodbench split` writes, and never through
    the command line; a file that is there is used as it is."""
    import ood_bench.cli as cli_module
    from ood_bench.quickstart import QuickstartConfig, split_step

    args = ["--data-dir", str(FIXTURES), "--splits-dir", str(tmp_path / "cli")]
    assert _cli(["split", "qm9", "--property", "gap", "--param", "n_ood=30", *args]) == 0
    monkeypatch.setattr(cli_module.cli, "main", lambda *a, **k: pytest.fail("the quickstart called the CLI"))
    cfg = QuickstartConfig(split_params={"n_ood": 30})
    lib = tmp_path / "lib"
    assert not (lib / "qm9").exists()
    assert split_step(cfg, str(FIXTURES), str(lib)) == "boom-gap"
    made = lib / "qm9" / "boom-gap.json.xz"
    assert made.read_bytes() == (tmp_path / "cli" / "qm9" / "boom-gap.json.xz").read_bytes()
    fold = load_split("qm9", "boom-gap", lib).fold(0)
    assert len(fold.tests["ood_test"]) == 30
    assert sorted(fold.train + fold.val + fold.tests["id_test"] + fold.tests["ood_test"]) == sorted(_ds("qm9").ids)
    before = made.stat().st_mtime_ns
    assert split_step(QuickstartConfig(split_params={"n_ood": 99}), str(FIXTURES), str(lib)) == "boom-gap"
    assert made.stat().st_mtime_ns == before
