"""Robust fine-tuning (RoFt-Mol's family on DPA3, docs/robust-finetuning.md) through the normal
runner, on tiny trainings: WiSE-FT and MFT + WiSE-FT (checkpoint arithmetic), LP-FT (two deepmd
runs), L2-SP and MFT + L2-SP (a deepmd loss plugin), EMA (deepmd's own) and surgical FT (deepmd's
trainer in-process, single layer groups frozen). Runs are shared between tests (module fixtures)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from robust_helpers import STEPS, Run, distance, identical, last_checkpoint, part, qm9, run, state

from ood_bench.errors import UsageError
from ood_bench.records import validate_record
from ood_bench.runner.execute import execute, prepare
from ood_bench.runner.identity import canonical
from ood_bench.runner.sweep import status_of

pytestmark = pytest.mark.slow

DESC = ".atomic_model.descriptor."


@pytest.fixture(scope="module")
def pretrained(env) -> dict[str, torch.Tensor]:
    s = state(env["stand_in"].path)
    return part(s, env["stand_in"].branches[0], "descriptor")


# --- WiSE-FT ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wise(env) -> Run:
    return run(qm9("wise-ft", env))


def test_wise_ft_alpha_grid_is_the_candidate_set(wise):
    rec = wise.record
    assert validate_record(rec) == []
    names = [c["candidate"] for c in rec["training"]["selection"]]
    assert names == ["wise-alpha0.pt", "wise-alpha0.25.pt", "wise-alpha0.5.pt", "wise-alpha0.75.pt",
                     "wise-alpha1.pt"]
    assert rec["training"]["checkpoint"] in names
    info = rec["training"]["wise_ft"]
    assert info["source_step"] == STEPS and info["alphas"] == [0, 0.25, 0.5, 0.75, 1]
    assert rec["config"]["strategy_params"] == {"alphas": "0,0.25,0.5,0.75,1"}
    assert rec["config"]["dp_train_args"][0] == "--finetune"


def test_wise_ft_ends_are_the_pretrained_backbone_and_the_fine_tuned_model(wise, pretrained):
    ft = state(last_checkpoint(wise.work))
    a0, a1 = state(wise.work / "wise-alpha0.pt"), state(wise.work / "wise-alpha1.pt")
    assert identical(part(a0, "Default", "descriptor"), pretrained)  # bit for bit
    assert identical(part(a0, "Default", "head"), part(ft, "Default", "head"))  # head kept, bias/std too
    assert identical(a1, ft)
    assert distance(part(ft, "Default", "descriptor"), pretrained) > 1e-4  # FT moved the backbone
    half = part(state(wise.work / "wise-alpha0.5.pt"), "Default", "descriptor")
    fine = part(ft, "Default", "descriptor")
    for k, v in half.items():
        torch.testing.assert_close(v.double(), 0.5 * (pretrained[k].double() + fine[k].double()))


def test_wise_ft_record_resumes_and_params_are_checked(wise, env):
    assert status_of(wise.spec) == "complete"
    other = canonical(qm9("wise-ft", env, params={"alphas": "1, 0.5,0"}))
    assert other.key.variant == "alphas=0,0.5,1" and status_of(other) == "todo"
    assert canonical(qm9("wise-ft", env, params={"alphas": "0,0.25,0.5,0.75,1"})).key.variant == ""
    for bad in ("1.5", "x", ""):
        with pytest.raises(UsageError, match="alphas"):
            prepare(qm9("wise-ft", env, params={"alphas": bad}))


@pytest.fixture(scope="module")
def mft_wise(env) -> Run:
    return run(qm9("mft-wise", env, params={"alphas": "0,0.5,1"}))


def test_mft_wise_interpolates_the_shared_backbone_only(mft_wise, env, pretrained):
    rec = mft_wise.record
    assert validate_record(rec) == []
    assert rec["training"]["eval_head"] == "property"
    assert [c["candidate"] for c in rec["training"]["selection"]] == [
        "wise-alpha0.pt", "wise-alpha0.5.pt", "wise-alpha1.pt"]
    mft = state(last_checkpoint(mft_wise.work))
    a0 = state(mft_wise.work / "wise-alpha0.pt")
    aux = rec["aux"]["branch"]
    for branch in (aux, "property"):
        assert identical(part(a0, branch, "descriptor"), pretrained), branch
        assert identical(part(a0, branch, "head"), part(mft, branch, "head")), branch
    assert identical(state(mft_wise.work / "wise-alpha1.pt"), mft)


# --- LP-FT ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lp_ft(env) -> Run:
    return run(qm9("lp-ft", env, params={"lp_fraction": "0.5"}))


def test_lp_ft_probes_with_the_pretrained_backbone_then_fine_tunes(lp_ft, pretrained):
    rec = lp_ft.record
    assert validate_record(rec) == []
    info = rec["training"]["lp_ft"]
    assert (info["lp_steps"], info["ft_steps"]) == (STEPS // 2, STEPS - STEPS // 2)
    assert info["lp_input"]["model"]["descriptor"]["trainable"] is False
    assert rec["config"]["dp_train_args"][0] == "--init-model"
    assert rec["config"]["deepmd_input"]["model"]["descriptor"].get("trainable", True) is True
    assert rec["config"]["deepmd_input"]["training"]["numb_steps"] == info["ft_steps"]
    phases = [row["phase"] for row in rec["training"]["learning_curve"]]
    assert phases == sorted(phases) and set(phases) == {1, 2}
    assert all(c["step"] > info["lp_steps"] for c in rec["training"]["selection"])
    lp = state(lp_ft.work / "lp" / info["lp_checkpoint"])
    assert identical(part(lp, "Default", "descriptor"), pretrained)  # phase 1: backbone untouched
    ft = state(last_checkpoint(lp_ft.work))
    assert distance(part(ft, "Default", "descriptor"), pretrained) > 1e-4  # phase 2 trains it


def test_lp_ft_phase_two_starts_from_the_probed_head(lp_ft):
    """Phase 2 exactly as the recipe runs it (its recorded input and arguments), for 0 steps:
    deepmd then saves the model it starts from, which must be the LP model, bias and std included
    (``--finetune`` would have shifted the head's bias)."""
    from ood_bench.backends.deepmd.launcher import dp_train

    config = json.loads((lp_ft.work / "input.json").read_text())  # phase 2's input, as run
    command = (lp_ft.work / "train.log").read_text().splitlines()[0].split()  # "$ python -m deepmd ..."
    args = command[command.index("--skip-neighbor-stat") + 1:]
    assert args[0] == "--init-model" and args[1].endswith("/lp/model.ckpt.pt")
    start = lp_ft.work / "phase2-start"
    config["training"].update(numb_steps=0, save_ckpt=str(start / "model.ckpt"), disp_file=str(start / "lcurve.out"))
    dp_train(config, start, args, label="phase 2 at step 0")
    lp = state(lp_ft.work / "lp" / lp_ft.record["training"]["lp_ft"]["lp_checkpoint"])
    at_start = state(start / "model.ckpt-0.pt")
    assert identical(part(at_start, "Default", "head"), part(lp, "Default", "head"))
    assert identical(part(at_start, "Default", "descriptor"), part(lp, "Default", "descriptor"))


def test_lp_fraction_is_validated(env):
    for bad in ("0", "1", "-0.1", "nan"):
        with pytest.raises(UsageError, match="lp_fraction"):
            prepare(qm9("lp-ft", env, params={"lp_fraction": bad}))


# --- L2-SP ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def l2sp(env) -> dict[str, Run]:
    return {delta: run(qm9("l2sp", env, params={"delta": delta}, selection="last")) for delta in ("0", "1e4")}


def test_l2sp_with_zero_delta_is_ft(l2sp, wise):
    """Same seed, same steps: delta 0 trains exactly what FT trains (the wise-ft run's FT part)."""
    rec = l2sp["0"].record
    assert validate_record(rec) == []
    loss = rec["config"]["deepmd_input"]["loss"]
    assert loss["type"] == "oodbench_l2sp" and loss["delta"] == 0 and loss["base"]["type"] == "property"
    ours, ft = state(last_checkpoint(l2sp["0"].work)), state(last_checkpoint(wise.work))
    assert ours.keys() == ft.keys()  # the pretrained anchor never enters a checkpoint
    assert identical(ours, ft)
    assert rec["training"]["learning_curve"][-1]["l2sp_trn"] == 0  # the penalty, shown in lcurve.out


def test_l2sp_with_huge_delta_stays_near_the_pretrained_backbone(l2sp, pretrained):
    free = distance(part(state(last_checkpoint(l2sp["0"].work)), "Default", "descriptor"), pretrained)
    held = distance(part(state(last_checkpoint(l2sp["1e4"].work)), "Default", "descriptor"), pretrained)
    assert validate_record(l2sp["1e4"].record) == []
    assert held < 0.25 * free, (held, free)


@pytest.fixture(scope="module")
def mft_l2sp(env) -> Run:
    return run(qm9("mft-l2sp", env, params={"delta": "1e4"}, selection="last"))


def test_mft_l2sp_penalises_the_shared_backbone_in_the_property_loss(mft_l2sp, mft_wise, pretrained):
    rec = mft_l2sp.record
    assert validate_record(rec) == []
    losses = rec["config"]["deepmd_input"]["loss_dict"]
    assert losses["property"]["type"] == "oodbench_l2sp" and losses[rec["aux"]["branch"]]["type"] == "ener"
    held = distance(part(state(last_checkpoint(mft_l2sp.work)), "property", "descriptor"), pretrained)
    free = distance(part(state(last_checkpoint(mft_wise.work)), "property", "descriptor"), pretrained)
    assert held < free, (held, free)


# --- EMA --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ema(env) -> Run:
    return run(qm9("ema", env, params={"decay": "0.9"}))


def test_ema_candidates_are_deepmds_ema_checkpoints(ema, pretrained):
    from ood_bench.backends.deepmd.robust import list_ema_checkpoints

    rec = ema.record
    assert validate_record(rec) == []
    training = rec["config"]["deepmd_input"]["training"]
    assert training["enable_ema"] is True and training["ema_decay"] == 0.9
    names = [c["candidate"] for c in rec["training"]["selection"]]
    assert names and all(n.startswith("model_ema.ckpt-") for n in names)
    (step, path), regular = list_ema_checkpoints(ema.work)[-1], state(last_checkpoint(ema.work))
    averaged = state(path)
    assert step == STEPS and averaged.keys() == regular.keys()
    # The average lags behind the weights: closer to where training started.
    assert 0 < distance(part(averaged, "Default", "descriptor"), pretrained) < \
        distance(part(regular, "Default", "descriptor"), pretrained)


# --- surgical FT ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def surgical(env) -> Run:
    return run(qm9("surgical", env))  # default: the last repflow layer (+ head) trains


def test_surgical_ft_keeps_every_frozen_group_bit_identical(surgical, pretrained):
    from ood_bench.backends.deepmd.robust import group_of

    rec = surgical.record
    assert validate_record(rec) == []
    info = rec["training"]["surgical"]
    assert info["trained_groups"] == ["layer1", "head"]
    assert info["frozen_groups"] == ["type_embedding", "edge_embedding", "angle_embedding", "layer0"]
    trained = part(state(last_checkpoint(surgical.work)), "Default", "descriptor")
    by_group: dict[str, list[str]] = {}
    for name in trained:
        by_group.setdefault(group_of(name), []).append(name)
    assert set(info["frozen_groups"]) <= set(by_group)
    for group in info["frozen_groups"]:
        names = by_group[group]
        assert identical({n: trained[n] for n in names}, {n: pretrained[n] for n in names}), group
    layer1 = by_group["layer1"]
    assert distance({n: trained[n] for n in layer1}, {n: pretrained[n] for n in layer1}) > 1e-4
    assert "oodbench surgical fine-tuning: training layer1 + head" in (surgical.work / "train.log").read_text()


def test_surgical_with_every_group_trainable_is_dp_train_fine_tuning(env, wise):
    """The in-process trainer is `dp --pt train --finetune`: with nothing frozen it trains exactly
    what FT trains (the wise-ft run's FT part: same seed, same steps), bit for bit."""
    every = run(qm9("surgical", env, params={"groups": "type_embedding,edge_embedding,angle_embedding,layer0,layer1"},
                    selection="last"))
    assert every.record["training"]["surgical"]["frozen_groups"] == []
    assert identical(state(last_checkpoint(every.work)), state(last_checkpoint(wise.work)))


def test_surgical_groups_are_checked(env, tmp_path):
    with pytest.raises(UsageError, match="groups"):
        prepare(qm9("surgical", env, params={"groups": "layer1,decoder"}))
    with pytest.raises(UsageError, match="2 repflow layers"):
        execute(qm9("surgical", env, params={"groups": "layer2"}, results=tmp_path))


# --- registry ---------------------------------------------------------------------------------
def test_oodbench_strategies_lists_the_robust_methods_and_their_parameters():
    out = subprocess.run([sys.executable, "-m", "ood_bench", "strategies"], capture_output=True, text=True,
                         check=True).stdout
    for name, param in (("wise-ft", "alphas"), ("mft-wise", "alphas"), ("lp-ft", "lp_fraction"),
                        ("l2sp", "delta"), ("mft-l2sp", "delta_head"), ("ema", "decay"), ("surgical", "groups")):
        assert f"\n{name} (" in out, name
        block = out.split(f"\n{name} (", 1)[1].split("\n", 1)[1]
        assert block.lstrip().startswith("--strategy-param") and f"--strategy-param {param}=" in block, name


def test_deepmd_resolves_the_l2sp_loss_by_name(env):
    """`import deepmd.pt` loads oodbench's entry points; the trainer's get_loss finds the plugin."""
    import deepmd.pt  # noqa: F401
    from deepmd.pt.loss.loss import TaskLoss

    from ood_bench.backends.deepmd.plugins.robust_losses import L2SPLoss

    assert TaskLoss.get_class_by_type("oodbench_l2sp") is L2SPLoss
    loss = L2SPLoss.get_loss({"type": "oodbench_l2sp", "pretrained": str(env["stand_in"].path), "delta": 2.0,
                              "base": {"type": "property", "task_dim": 1, "var_name": "gap", "intensive": True},
                              "starter_learning_rate": 1e-3})
    assert not any(True for _ in loss.buffers()) and not any(True for _ in loss.parameters())
    assert [r.key for r in loss.label_requirement] == ["gap"]
    assert json.loads(json.dumps(loss.serialize()))["delta"] == 2.0
    assert np.isclose(L2SPLoss.deserialize(loss.serialize()).delta, 2.0)
