"""The stand-in pretrained models: the shipped ``oodbench-small`` carries its flag, provenance and
exclusion inside the checkpoint, is good at its own job, and its auxiliary data loads; a build
labels in resumable chunks and reuses an identical finished build."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ood_bench.backends.deepmd.auxdata import Frames
from ood_bench.backends.deepmd.pretrain import CRYSTAL_BRANCH, MOLECULE_BRANCH, RECIPES
from ood_bench.backends.deepmd.standin import (
    SHIPPED,
    aux_systems,
    qm9_test_exclusion,
    read_embedded_meta,
    shipped_dir,
)
from ood_bench.datasets import Structures

SHIPPED_PT = shipped_dir() / f"{SHIPPED}.pt"


@pytest.fixture(scope="module")
def shipped_meta() -> dict:
    assert SHIPPED_PT.exists(), f"{SHIPPED_PT} is not in the package"
    meta = read_embedded_meta(SHIPPED_PT)
    assert meta is not None, "the shipped checkpoint has no embedded oodbench metadata"
    return meta


def test_shipped_checkpoint_says_it_is_a_stand_in_and_how_it_was_made(shipped_meta):
    assert shipped_meta["stand_in"] is True and shipped_meta["name"] == SHIPPED
    assert shipped_meta["config"] == dataclasses.asdict(RECIPES["small"])
    assert shipped_meta["recipe_command"].startswith("oodbench pretrain --recipe small")
    mol = shipped_meta["data"][MOLECULE_BRANCH]
    assert mol["labeller"] == "gfn2-xtb" and mol["n_frames"] + mol["n_holdout"] >= 50_000


def test_shipped_stand_in_never_saw_a_boom_test_molecule(shipped_meta):
    """The exclusion is recorded against the split files as they are now: a changed split file
    means the stand-in must be rebuilt, and this test says so."""
    excluded = shipped_meta["data"][MOLECULE_BRANCH]["source"]["excluded"]
    ids, splits = qm9_test_exclusion()
    assert excluded["splits"] == splits, "canonical QM9 splits changed since the stand-in was built: rebuild it"
    assert excluded["n_excluded"] == len(ids) and excluded["overlap_checked"] is True


@pytest.mark.parametrize("branch", [
    MOLECULE_BRANCH,
    pytest.param(CRYSTAL_BRANCH, marks=pytest.mark.xfail(strict=True, reason=(
        "the shipped build's crystal branch has not learned its forces: held-out RMSE 0.91 of the spread, and "
        "0.91 on its own training frames (benchmarks/standin_quality.py), so it underfits; a 36,000-step "
        "build reached 0.79. A build trained long enough on crystals must make this pass, and then this "
        "mark goes"))),
])
def test_shipped_stand_in_is_good_at_its_own_job(shipped_meta, branch):
    """Held-out force errors well below the spread of the labels: it learned the force field."""
    err = shipped_meta["holdout_errors"][branch]
    assert err["n_frames"] > 0
    assert err["force_rmse_ev_per_a"] < 0.5 * err["force_spread_ev_per_a"], err


def test_shipped_aux_frames_become_deepmd_systems(shipped_meta, tmp_path, monkeypatch):
    monkeypatch.setenv("OODBENCH_CACHE_DIR", str(tmp_path))
    aux_systems.cache_clear()
    for branch, n in shipped_meta["aux_file"]["frames"].items():
        systems = aux_systems(SHIPPED_PT, branch)
        assert systems and all(str(tmp_path) in s for s in systems)
        frames = sum(len(np.load(f"{s}/set.000/energy.npy")) for s in systems)
        assert frames == n, branch
    aux_systems.cache_clear()


def test_labelling_resumes_from_its_chunks(fixture_data, tmp_path):
    from ood_bench.backends.deepmd.auxdata import label_frames, perturb
    from ood_bench.datasets import load_dataset

    qm9 = load_dataset("qm9", fixture_data)
    st = perturb(qm9.structures.subset(qm9.ids_with_structures()[:24]), 1, 0.05, 0.0, 0)
    first = label_frames(st, "gfn2-xtb", tmp_path, chunk=10)
    chunks = sorted(tmp_path.glob("chunk*.npz"))
    assert len(chunks) == 3
    kept = {p: p.stat().st_mtime_ns for p in chunks[:2]}
    chunks[2].unlink()  # killed before the last chunk landed
    again = label_frames(st, "gfn2-xtb", tmp_path, chunk=10)
    assert {p: p.stat().st_mtime_ns for p in chunks[:2]} == kept  # finished chunks not redone
    assert again.structures.ids == first.structures.ids
    np.testing.assert_allclose(again.energy, first.energy, rtol=0, atol=1e-8)
    np.testing.assert_allclose(again.force, first.force, rtol=0, atol=1e-8)


def test_built_stand_in_embeds_its_metadata_and_is_reused(stand_in, fixture_data):
    from ood_bench.backends.deepmd.pretrain import pretrain

    meta = read_embedded_meta(stand_in.path)
    assert stand_in.stand_in and meta["stand_in"] is True
    assert set(meta["holdout_errors"]) == set(meta["data"]) and meta["aux_file"]["frames"]
    for err in meta["holdout_errors"].values():  # training-frame errors tell underfitting from too little data
        assert err["n_train_frames"] == err["n_frames"]
        assert err["train_force_rmse_ev_per_a"] > 0 and err["train_force_spread_ev_per_a"] > 0
    cfg = RECIPES["tiny"].__class__(**meta["config"])
    before = stand_in.path.stat().st_mtime_ns
    assert pretrain(cfg, str(fixture_data)) == stand_in.path and stand_in.path.stat().st_mtime_ns == before


def test_chgnet_batches_are_bounded_by_atoms_not_structures():
    """CHGNet's memory follows the atoms of a batch: groups keep order, stay within the budget,
    and a structure larger than the budget is a group of its own."""
    from ood_bench.backends.deepmd.auxdata import atom_batches

    sizes = [50, 50, 50, 200, 10, 10, 128]
    groups = atom_batches([[0] * n for n in sizes], 128)
    assert [[len(s) for s in g] for g in groups] == [[50, 50], [50], [200], [10, 10], [128]]
    assert [len(s) for g in groups for s in g] == sizes


def _frames(compositions: list[dict[int, int]], energy) -> Frames:
    numbers = [np.repeat(list(c), list(c.values())) for c in compositions]
    offsets = np.concatenate([[0], np.cumsum([len(z) for z in numbers])])
    st = Structures([str(k) for k in range(len(numbers))], np.concatenate(numbers),
                    np.zeros((offsets[-1], 3)), offsets, None)
    return Frames(st, np.asarray(energy, dtype=float), np.zeros((offsets[-1], 3)))


def test_energy_spread_is_a_counting_fit_made_on_training_frames():
    """Energies linear in composition leave no spread; with more elements than the held-out frames
    can pin down, an in-sample fit would leave none either, while the training-set fit shows the
    real per-atom error of counting atoms."""
    from ood_bench.backends.deepmd.pretrain import counting_rmse

    rng = np.random.default_rng(0)
    per_element = {1: -3.0, 6: -8.0, 8: -5.0, 26: -7.0}
    comps = [{z: int(rng.integers(1, 5)) for z in rng.choice(list(per_element), 3, replace=False)} for _ in range(40)]
    exact = [sum(n * per_element[z] for z, n in c.items()) for c in comps]
    train, held = _frames(comps[:30], exact[:30]), _frames(comps[30:], exact[30:])
    assert counting_rmse(train, held) < 1e-9
    noisy = np.asarray(exact) + rng.normal(0, 1.0, len(exact)) * np.asarray([sum(c.values()) for c in comps])
    few = _frames(comps[30:33], noisy[30:33])  # 3 frames, 4 elements: an in-sample fit is exact
    assert counting_rmse(few, few) < 1e-9
    assert counting_rmse(_frames(comps[:30], noisy[:30]), few) > 0.1
