"""DWiSE-FT and MFT + DWiSE-FT (per-layer-group interpolation weights fitted on the validation set)
through the normal runner, on tiny trainings with the stand-in checkpoint. Runs are shared between
tests (module fixtures)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from robust_helpers import STEPS, Run, identical, part, qm9, run, state

from ood_bench.backends.deepmd.dwise import DWISE_FILE, FIT_FILE, write_interpolation
from ood_bench.backends.deepmd.robust import all_groups, group_of
from ood_bench.errors import UsageError
from ood_bench.io_utils import read_json
from ood_bench.records import validate_record
from ood_bench.runner.execute import prepare
from ood_bench.runner.identity import canonical
from ood_bench.runner.sweep import status_of

pytestmark = pytest.mark.slow

# Few alpha steps, a large rate and a start far from both ends: the fit must visibly move.
FIT = {"alpha_steps": "15", "alpha_lr": "0.05", "alpha_init": "0.5", "alpha_batch": "16"}


def source_ckpt(r: Run) -> Path:
    return r.work / r.record["training"]["dwise"]["source_checkpoint"]


def groups(env) -> list[str]:
    return all_groups(int(env["stand_in"].descriptor["repflow"]["nlayers"]))


@pytest.fixture(scope="module")
def pretrained(env) -> dict[str, torch.Tensor]:
    return part(state(env["stand_in"].path), env["stand_in"].branches[0], "descriptor")


@pytest.fixture(scope="module")
def dwise(env) -> Run:
    return run(qm9("dwise-ft", env, params=FIT))


def val_rmse(checkpoint: Path, work: Path, head: str | None = None) -> float:
    """The checkpoint's validation RMSE, through deepmd's inference API (independent of the fit)."""
    from ood_bench.backends.deepmd.data import read_system_frames
    from ood_bench.backends.deepmd.predict import load_model

    model = load_model(checkpoint, head)
    err = []
    for system in sorted((work / "data" / "val").glob("nat*")):
        coord, box, atype = read_system_frames(system)
        y = np.asarray(model.eval(coord, box, atype, mixed_type=True)[0]).reshape(-1)
        err.append(y - np.load(system / "set.000" / "gap.npy").reshape(-1))
    return float(np.sqrt(np.mean(np.concatenate(err) ** 2)))


# --- tests --------------------------------------------------------------------------------------
def test_dwise_record_has_one_fitted_alpha_per_layer_group(dwise, env):
    rec = dwise.record
    assert validate_record(rec) == []
    info = rec["training"]["dwise"]
    assert list(info["alphas"]) == groups(env) == info["groups"]
    alphas = np.array(list(info["alphas"].values()))
    assert np.all((alphas >= 0) & (alphas <= 1)), alphas
    assert np.abs(alphas - 0.5).max() > 0.05, alphas  # the fit moved them from alpha_init
    assert info["source_step"] == STEPS and info["settings"]["steps"] == 15
    assert info["loss"] == {"type": "property", "loss_func": "mse"}  # QM9: the paper's MSE
    names = [c["candidate"] for c in rec["training"]["selection"]]
    assert names == [f"model.ckpt-{STEPS}.pt", DWISE_FILE]
    assert rec["training"]["checkpoint"] in names
    assert rec["config"]["strategy_params"] == {"alpha_steps": 15, "alpha_lr": 0.05, "alpha_init": 0.5,
                                                "alpha_batch": 16}


def test_dwise_checkpoint_holds_the_fitted_interpolation(dwise, pretrained):
    """dwise.pt is the per-group interpolation with the recorded alphas, the head as fine-tuned."""
    alphas = dwise.record["training"]["dwise"]["alphas"]
    ft = state(source_ckpt(dwise))
    out = state(dwise.work / DWISE_FILE)
    assert identical(part(out, "Default", "head"), part(ft, "Default", "head"))
    fine, mixed = part(ft, "Default", "descriptor"), part(out, "Default", "descriptor")
    for k in ("repflows.layers.0.node_self_mlp.matrix", "type_embedding.embedding.embedding_net.layers.0.matrix",
              "repflows.edge_embd.matrix"):
        a = alphas[group_of(k)]
        expect = ((1 - a) * pretrained[k].double() + a * fine[k].double()).to(fine[k].dtype)
        assert torch.equal(mixed[k], expect), k


def test_dwise_alpha_ends_are_the_pretrained_backbone_and_the_fine_tuned_model(dwise, env, pretrained, tmp_path):
    ft_path, pre_path = source_ckpt(dwise), env["stand_in"].path
    ft = state(ft_path)
    write_interpolation(pre_path, ft_path, dict.fromkeys(groups(env), 0.0), tmp_path / "zero.pt")
    write_interpolation(pre_path, ft_path, dict.fromkeys(groups(env), 1.0), tmp_path / "one.pt")
    zero, one = state(tmp_path / "zero.pt"), state(tmp_path / "one.pt")
    assert identical(part(zero, "Default", "descriptor"), pretrained)  # bit for bit
    assert identical(part(zero, "Default", "head"), part(ft, "Default", "head"))  # head, bias, std kept
    assert identical(one, ft)
    assert not torch.equal(part(ft, "Default", "descriptor")["repflows.layers.0.node_self_mlp.matrix"],
                           pretrained["repflows.layers.0.node_self_mlp.matrix"])  # FT moved it
    # one group at 0, the rest at 1: only that group is the pretrained one
    write_interpolation(pre_path, ft_path, {**dict.fromkeys(groups(env), 1.0), "layer0": 0.0}, tmp_path / "l0.pt")
    l0 = part(state(tmp_path / "l0.pt"), "Default", "descriptor")
    fine = part(ft, "Default", "descriptor")
    for k, v in l0.items():
        assert torch.equal(v, pretrained[k] if k.startswith("repflows.layers.0.") else fine[k]), k


def test_dwise_fit_lowers_the_validation_loss(dwise, env, tmp_path):
    info = dwise.record["training"]["dwise"]
    assert info["val_loss"]["fitted"] < info["val_loss"]["init"], info["val_loss"]
    # independently, through deepmd's inference API: the fitted model beats the starting point
    start = tmp_path / "init.pt"
    write_interpolation(env["stand_in"].path, source_ckpt(dwise), dict.fromkeys(groups(env), 0.5), start)
    fitted = val_rmse(dwise.work / DWISE_FILE, dwise.work)
    assert fitted < val_rmse(start, dwise.work)
    selected = {c["candidate"]: c["val_rmse"] for c in dwise.record["training"]["selection"]}
    assert selected[DWISE_FILE] == pytest.approx(fitted, rel=1e-6)


def fit_again(r: Run, env, tmp_path: Path, corrupt: list[str]) -> dict[str, float]:
    """The recipe's candidates hook, as the backend calls it, on a fresh copy of the run's fold
    data in which the labels of the ``corrupt`` sets are replaced by noise; returns the alphas."""
    from ood_bench.backends.base import FoldInputs
    from ood_bench.backends.deepmd.inputs import RECIPES
    from ood_bench.runner.execute import fold_sets

    prepared = prepare(r.spec)
    sets, _, _ = fold_sets(prepared)
    params = prepared.strategy.resolve_params(r.spec.strategy_params)
    inputs = FoldInputs(prepared.spec, prepared.model, prepared.strategy, prepared.dataset, prepared.target, sets,
                        tmp_path, prepared.resolution, prepared.model.preset(r.spec.preset), params)
    backend = prepared.backend
    systems, _ = backend._write_fold(inputs)
    rng = np.random.default_rng(7)
    for name in corrupt:
        for f in (tmp_path / "data" / name).glob("nat*/set.*/gap.npy"):
            np.save(f, rng.normal(5.0, 3.0, size=np.load(f).shape))
    shutil.copy(r.work / "out.json", tmp_path / "out.json")
    ckpt = shutil.copy(source_ckpt(r), tmp_path / source_ckpt(r).name)
    ctx = backend._context(inputs, systems)
    cands = RECIPES.get(r.spec.key.strategy).candidates(ctx, [(STEPS, Path(ckpt))])
    assert [p.name for _, p in cands] == [Path(ckpt).name, DWISE_FILE]
    return read_json(tmp_path / FIT_FILE)["alphas"]


def test_dwise_alphas_are_fitted_on_the_validation_set_only(dwise, env, tmp_path):
    """Train and test labels replaced by noise: the same alphas; validation labels replaced: others."""
    recorded = dwise.record["training"]["dwise"]["alphas"]
    tests = [n for n in dwise.record["predictions"] if n != "val"]
    assert tests  # id_test, ood_test
    same = fit_again(dwise, env, tmp_path / "a", ["train", *tests])
    np.testing.assert_allclose(list(same.values()), list(recorded.values()), rtol=1e-6, atol=1e-9)
    other = fit_again(dwise, env, tmp_path / "b", ["val"])
    assert np.abs(np.array(list(other.values())) - np.array(list(recorded.values()))).max() > 1e-3


def test_dwise_record_resumes_and_params_are_checked(dwise, env):
    assert status_of(canonical(dwise.spec)) == "complete"
    other = canonical(qm9("dwise-ft", env, params={**FIT, "alpha_steps": "16"}))
    assert "alpha_steps=16" in other.key.variant and status_of(other) == "todo"
    defaults = {"alpha_steps": "500", "alpha_lr": "0.01", "alpha_init": "0.9", "alpha_batch": "32"}
    assert canonical(qm9("dwise-ft", env, params=defaults)).key.variant == ""
    for key, bad in (("alpha_init", "1.5"), ("alpha_init", "-0.1"), ("alpha_steps", "0"), ("alpha_steps", "2.5"),
                     ("alpha_lr", "0"), ("alpha_batch", "0"), ("alpha_batch", "x")):
        with pytest.raises(UsageError, match=key):
            prepare(qm9("dwise-ft", env, params={key: bad}))


@pytest.fixture(scope="module")
def mft_dwise(env) -> Run:
    return run(qm9("mft-dwise", env, params=FIT))


def test_mft_dwise_interpolates_the_shared_backbone_and_keeps_both_heads(mft_dwise, env):
    rec = mft_dwise.record
    assert validate_record(rec) == []
    assert rec["training"]["eval_head"] == "property"
    info = rec["training"]["dwise"]
    assert list(info["alphas"]) == groups(env)
    assert all(0 <= a <= 1 for a in info["alphas"].values())
    assert info["val_loss"]["fitted"] < info["val_loss"]["init"]
    mft, out = state(source_ckpt(mft_dwise)), state(mft_dwise.work / DWISE_FILE)
    aux = rec["aux"]["branch"]
    assert identical(part(out, aux, "descriptor"), part(out, "property", "descriptor"))  # one shared backbone
    assert not identical(part(out, "property", "descriptor"), part(mft, "property", "descriptor"))
    for branch in (aux, "property"):
        assert identical(part(out, branch, "head"), part(mft, branch, "head")), branch
    assert status_of(canonical(mft_dwise.spec)) == "complete"
