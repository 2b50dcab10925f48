"""The paper's protocol beyond the four strategies: the Fig. 3(c-e) ablations, auxiliary data as
part of a run's identity, the data-efficiency subset rules (Supplementary D.4) and the
representative fold."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ood_bench.analysis.representative import representative_fold
from ood_bench.errors import UsageError
from ood_bench.io_utils import read_json
from ood_bench.records import RunKey, validate_record
from ood_bench.runner.execute import execute, fold_sets, prepare
from ood_bench.runner.identity import canonical, fingerprint
from ood_bench.runner.spec import RunSpec
from ood_bench.runner.sweep import status_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(stand_in, toy_splits, fixture_data):
    return {"stand_in": stand_in, "splits": toy_splits, "data": fixture_data}


def qm9(strategy, env, results, **kw) -> RunSpec:
    frac = kw.pop("train_fraction", 1.0)
    return RunSpec(key=RunKey("qm9", "toy-gap", "0", "dpa3", strategy, kw.pop("seed", 0), frac, "gap"),
                   preset="tiny", pretrained=str(env["stand_in"].path), data_dir=str(env["data"]),
                   splits_dir=str(env["splits"]), results_dir=str(results), **kw)


def _state(path: Path) -> dict[str, np.ndarray]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    return {k: v.detach().numpy() for k, v in state.items() if hasattr(v, "numpy") and v.is_floating_point()}


def _part(state: dict, branch: str, part: str) -> dict[str, np.ndarray]:
    """Trainable weights (matrices and biases) of one branch's descriptor or fitting net."""
    prefix = f"model.{branch}.atomic_model.{part}."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)
            and k.endswith(("matrix", "bias")) and "bias_atom" not in k}


def _same(a: dict, b: dict) -> bool:
    """Relative distance below 1e-3 (a vanishing learning rate still moves weights a hair); a fresh
    initialisation is far above 1e-2."""
    assert a and a.keys() == b.keys()
    diff = np.sqrt(sum(float(np.sum((a[k] - b[k]) ** 2)) for k in a))
    norm = np.sqrt(sum(float(np.sum(b[k] ** 2)) for k in b))
    rel = diff / norm
    assert rel < 1e-3 or rel > 1e-2, f"ambiguous relative distance {rel:.2e}"
    return bool(rel < 1e-3)


def test_ablations_transfer_what_they_claim(env, tmp_path):
    """With a vanishing learning rate: MFT keeps the pretrained force-field head and backbone;
    the fresh-head ablation keeps the backbone only; multi-task scratch keeps neither."""
    pre = _state(env["stand_in"].path)
    branch = env["stand_in"].meta["aux_branch_for"]["molecules"]
    out = {}
    for strategy in ("mft", "mft-freshhead", "mtl-scratch"):
        path = execute(qm9(strategy, env, tmp_path, steps=2, learning_rate=1e-12, seed=3))
        assert validate_record(read_json(path)) == [], strategy
        out[strategy] = _state(path.with_name("model.pt"))
    pre_desc, pre_fit = _part(pre, branch, "descriptor"), _part(pre, branch, "fitting_net")
    for strategy, keeps_backbone, keeps_head in (("mft", True, True), ("mft-freshhead", True, False),
                                                 ("mtl-scratch", False, False)):
        assert _same(_part(out[strategy], branch, "descriptor"), pre_desc) is keeps_backbone, strategy
        assert _same(_part(out[strategy], branch, "fitting_net"), pre_fit) is keeps_head, strategy


def test_auxiliary_branch_is_part_of_the_run_identity(env, tmp_path):
    branches = env["stand_in"].branches
    assert len(branches) >= 2
    specs = [canonical(qm9("mft", env, tmp_path, aux_branch=b)) for b in branches[:2]]
    assert specs[0].key.relpath() != specs[1].key.relpath()
    assert fingerprint(specs[0]) != fingerprint(specs[1])
    implicit = canonical(qm9("mft", env, tmp_path))
    assert implicit.key.variant == "" and "aux=" in specs[0].key.variant
    other_data = canonical(dataclasses.replace(specs[0], aux_data=[str(tmp_path)]))
    assert other_data.key.relpath() != specs[0].key.relpath()


def test_subset_seed_is_independent_of_the_training_seed(env, tmp_path):
    def train_ids(**kw):
        sets, _, _ = fold_sets(prepare(qm9("ft", env, tmp_path, train_fraction=0.25, **kw)))
        return sets["train"].ids

    assert train_ids(seed=0) != train_ids(seed=1)  # default: the subset follows the run's seed
    assert train_ids(seed=0, subset_seed=5) == train_ids(seed=1, subset_seed=5)
    assert canonical(qm9("ft", env, tmp_path, subset_seed=5)).key.variant == "subset=5"


def test_train_plus_val_pool_keeps_selection_clean(env, tmp_path):
    run = prepare(qm9("ft", env, tmp_path, train_fraction=0.5, subset_pool="train+val"))
    sets, n, _ = fold_sets(run)
    train, val = set(sets["train"].ids), set(sets["val"].ids)
    assert not train & val
    assert train & set(run.fold.val), "the pool includes validation ids"
    assert n["train"] == round(0.5 * (len(run.fold.train) + len(run.fold.val)))
    with pytest.raises(UsageError, match="subset-pool"):
        qm9("ft", env, tmp_path, subset_pool="val").check()


def test_representative_fold_is_closest_to_the_mean():
    def rec(fold, seed, mae):
        return {"key": {"dataset": "matbench_dielectric", "split": "s", "model": "dpa3", "strategy": "ft",
                        "fold": str(fold), "seed": seed, "train_fraction": 1.0, "variant": ""},
                "metrics": {"val": {"mae": 9.0}, "test": {"mae": mae}}}

    # fold means: 0 -> 1.0, 1 -> 2.0 (seeds 1.5, 2.5), 2 -> 6.0; mean over folds 3.0 -> fold 1
    records = [rec(0, 0, 1.0), rec(1, 0, 1.5), rec(1, 1, 2.5), rec(2, 0, 6.0),
               {**rec(2, 0, 0.0), "key": {**rec(2, 0, 0.0)["key"], "train_fraction": 0.5}}]
    rep = representative_fold(records, "matbench_dielectric", "s")
    assert (rep.fold, rep.error, rep.mean_error, rep.n_folds, rep.metric) == ("1", 2.0, 3.0, 3, "mae")
    with pytest.raises(UsageError, match="no full-data"):
        representative_fold(records, "matbench_dielectric", "other")


def test_dry_run_counts_the_longer_mft_schedule_on_matbench(env):
    from ood_bench.runner.sweep import estimate_steps, planned_steps

    def steps(dataset, strategy):
        return planned_steps(RunSpec(key=RunKey(dataset, "x", "0", "dpa3", strategy, 0, 1.0, ""), preset="paper"))

    assert steps("matbench_dielectric", "mft") == 200_000 and steps("matbench_dielectric", "ft") == 100_000
    assert steps("qm9", "mft") == 100_000
    soup = RunSpec(key=RunKey("qm9", "x", "0", "dpa3", "soup", 0, 1.0, ""), preset="paper", steps=20,
                   strategy_params={"members": "4"})
    assert planned_steps(soup) == 20 and estimate_steps([soup]) == 80  # each member trains all 20 steps
    assert status_of(qm9("ft", env, Path("/nonexistent-results"))) == "todo"


def test_gpus_launch_deepmd_data_parallel_under_torchrun(env, tmp_path):
    """--gpus N runs `python -m torch.distributed.run --nproc_per_node N -m deepmd --pt train`
    (deepmd 3.2 initialises NCCL unconditionally, so two CPU processes cannot train here: only the
    launch is checked), is validated, and is part of the run's identity."""
    import sys

    from ood_bench.backends.deepmd.launcher import launch_prefix

    assert launch_prefix(1) == [sys.executable]
    assert launch_prefix(2)[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    with pytest.raises(UsageError, match="--gpus"):
        qm9("mft", env, tmp_path, gpus=0).check()
    assert fingerprint(qm9("mft", env, tmp_path, gpus=2)) != fingerprint(qm9("mft", env, tmp_path))
