"""Layer-wise learning-rate decay (``llrd``, docs/robust-finetuning.md) through the normal runner, on
tiny trainings: deepmd's trainer in one process with its optimiser split into DPA3 layer groups at
lr * gamma^(depth below the head). Runs are shared between tests (module fixtures)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from robust_helpers import Run, identical, last_checkpoint, qm9, run, state

from ood_bench.errors import OodBenchError, UsageError
from ood_bench.records import validate_record
from ood_bench.runner.execute import execute, prepare
from ood_bench.runner.identity import canonical
from ood_bench.runner.sweep import status_of

pytestmark = pytest.mark.slow

GAMMA = 0.5  # strong, so that the groups' update sizes are far apart (defaults to 0.8)
# Depth below the head (L - depth) of each group of the 2-layer stand-in: lr_g = lr * GAMMA ** BELOW[g].
BELOW = {"head": 0, "layer1": 1, "layer0": 2, "type_embedding": 3, "edge_embedding": 3, "angle_embedding": 3}


def moves(after: dict, before: dict) -> dict[str, torch.Tensor]:
    """|after - before| of every value of each layer group (head: the fitting net), flattened."""
    from ood_bench.backends.deepmd.llrd import param_group_of

    out: dict[str, list[torch.Tensor]] = {}
    for key, value in after.items():
        if key not in before:  # the new head, against the pretrained model
            continue
        try:
            group = param_group_of(key)
        except OodBenchError:  # statistics, output bias and std: not trained by the optimiser
            continue
        out.setdefault(group, []).append((value.double() - before[key].double()).abs().flatten())
    return {g: torch.cat(v) for g, v in out.items()}


@pytest.fixture(scope="module")
def ft(env) -> Run:
    return run(qm9("ft", env, selection="last"))


@pytest.fixture(scope="module")
def llrd(env) -> Run:
    return run(qm9("llrd", env, params={"gamma": str(GAMMA)}))


@pytest.fixture(scope="module")
def pretrained(env) -> dict[str, torch.Tensor]:
    """The stand-in's descriptor, named as in a fine-tuned checkpoint: where every backbone group starts."""
    s = state(env["stand_in"].path)
    branch = f"model.{env['stand_in'].branches[0]}.atomic_model.descriptor."
    return {"model.Default.atomic_model.descriptor." + k[len(branch):]: v for k, v in s.items()
            if k.startswith(branch)}


@pytest.fixture(scope="module")
def one_step(env, tmp_path_factory) -> Run:
    """An llrd run of a single step (its own results folder: the run folder does not name the steps)."""
    return run(qm9("llrd", env, params={"gamma": str(GAMMA)}, steps=1, results=tmp_path_factory.mktemp("one-step")))


def test_llrd_gives_each_layer_group_its_decayed_learning_rate(llrd):
    """The optimiser deepmd trains with, as run: one group per layer group, head first, each at
    lr * gamma^(depth below the head); deepmd's own step lr (lcurve.out) is the head's."""
    groups = json.loads((llrd.work / "llrd-groups.json").read_text())
    assert [g["group"] for g in groups] == ["head", "layer1", "layer0", "type_embedding", "edge_embedding",
                                            "angle_embedding"]
    head_lr = groups[0]["start_lr"]
    assert head_lr == pytest.approx(llrd.record["config"]["learning_rate"], rel=1e-12)
    for g in groups:
        assert g["lr_factor"] == GAMMA ** BELOW[g["group"]]
        assert g["start_lr"] / head_lr == pytest.approx(GAMMA ** BELOW[g["group"]], rel=1e-12), g
        assert g["tensors"] > 0
    assert llrd.record["training"]["learning_curve"][0]["lr"] == pytest.approx(head_lr, rel=1e-6)
    log = (llrd.work / "train.log").read_text()
    assert "oodbench layer-wise learning rates (group: factor, lr at step 0): head: 1, " in log
    assert "type_embedding: 0.125, " in log


def test_llrd_first_step_moves_each_group_by_its_learning_rate(one_step, pretrained):
    """Adam's first step moves every value with a gradient by lr * g / (|g| + eps), i.e. by its
    group's learning rate: the largest move of each backbone group is lr * gamma^(depth below the
    head), where FT would move every group by lr."""
    lr = one_step.record["config"]["learning_rate"]
    moved = moves(state(last_checkpoint(one_step.work)), pretrained)
    assert set(moved) == set(BELOW) - {"head"}  # the new head has no pretrained counterpart
    for group, delta in moved.items():
        expected = lr * GAMMA ** BELOW[group]
        assert float(delta.max()) == pytest.approx(expected, rel=2e-2), (group, float(delta.max()), expected)


def test_llrd_update_sizes_shrink_with_depth_unlike_ft(llrd, ft, pretrained):
    """After 12 steps, each backbone group's mean move relative to FT's (same seed and data) follows
    gamma^(depth below the head), loosely: the trajectories differ, the ratios of learning rates do not."""
    ours = moves(state(last_checkpoint(llrd.work)), pretrained)
    theirs = moves(state(last_checkpoint(ft.work)), pretrained)
    ratios = {g: float(ours[g].mean() / theirs[g].mean()) for g in ours}
    for group, ratio in ratios.items():
        expected = GAMMA ** BELOW[group]
        assert expected / 1.3 < ratio < expected * 1.3, (group, ratios)


def test_llrd_with_gamma_one_is_dp_train_fine_tuning(env, ft):
    """The rebuilt optimiser and schedule are deepmd's when every factor is 1: the FT checkpoint,
    bit for bit (same seed, same steps), and the same learning curve."""
    plain = run(qm9("llrd", env, params={"gamma": "1"}, selection="last"))
    assert {g["lr_factor"] for g in plain.record["training"]["llrd"]["param_groups"]} == {1.0}
    assert identical(state(last_checkpoint(plain.work)), state(last_checkpoint(ft.work)))
    assert plain.record["training"]["learning_curve"] == ft.record["training"]["learning_curve"]


def test_llrd_record_names_every_groups_factor_and_resumes(llrd, env):
    rec = llrd.record
    assert validate_record(rec) == []
    info = rec["training"]["llrd"]
    assert info["gamma"] == GAMMA
    assert info["lr_factors"] == {g: GAMMA ** b for g, b in BELOW.items()}
    assert info["depths"] == {"type_embedding": 0, "edge_embedding": 0, "angle_embedding": 0, "layer0": 1,
                              "layer1": 2, "head": 3}
    assert {g["group"]: g["lr_factor"] for g in info["param_groups"]} == info["lr_factors"]
    assert rec["config"]["strategy_params"] == {"gamma": GAMMA}
    assert rec["config"]["dp_train_args"][0] == "--finetune"
    assert status_of(canonical(llrd.spec)) == "complete"  # the sweep asks with the canonical spec
    assert canonical(llrd.spec).key.variant == "gamma=0.5"
    assert canonical(qm9("llrd", env, params={"gamma": "0.8"})).key.variant == ""
    assert status_of(canonical(qm9("llrd", env, params={"gamma": "0.7"}))) == "todo"


def test_llrd_gamma_and_processes_are_checked(env, tmp_path):
    for bad in ("0", "1.5", "-0.5", "nan", "x"):
        with pytest.raises(UsageError, match="gamma"):
            prepare(qm9("llrd", env, params={"gamma": bad}))
    with pytest.raises(UsageError, match="layer-wise learning-rate decay trains in one process"):
        execute(qm9("llrd", env, gpus=2, results=tmp_path))


def test_llrd_factors_and_groups():
    from ood_bench.backends.deepmd.llrd import lr_factors, param_group_of

    assert lr_factors(0.8, 3) == {"head": 1.0, "layer2": 0.8, "layer1": 0.8 ** 2, "layer0": 0.8 ** 3,
                                  "type_embedding": 0.8 ** 4, "edge_embedding": 0.8 ** 4,
                                  "angle_embedding": 0.8 ** 4}
    assert list(lr_factors(0.8, 3))[:2] == ["head", "layer2"]  # the optimiser's first group is the head's
    assert param_group_of("model.Default.atomic_model.fitting_net.filter_layers.networks.0.w") == "head"
    assert param_group_of("model.Default.atomic_model.descriptor.repflows.layers.1.node_self_mlp.matrix") == "layer1"
    with pytest.raises(OodBenchError, match="no DPA3 layer group"):
        param_group_of("model.Default.atomic_model.descriptor.repflows.something_new")


def test_oodbench_strategies_lists_llrd_and_gamma():
    out = subprocess.run([sys.executable, "-m", "ood_bench", "strategies"], capture_output=True, text=True,
                         check=True).stdout
    block = out.split("\nllrd (FT + layer-wise LR decay)", 1)[1].split("\n", 2)[1]
    assert block.lstrip().startswith("--strategy-param gamma=<float> (default 0.8)")
