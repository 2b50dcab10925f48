"""Representation-based robust fine-tuning (feature-map / DELTA and BSS: deepmd loss plugins that
add a term on the descriptor output of each batch) through the normal runner, on tiny trainings
shared between tests (module fixtures), plus the two terms checked by hand on small tensors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from robust_helpers import Run, identical, run, state
from robust_helpers import qm9 as tiny_spec

from ood_bench.errors import UsageError
from ood_bench.records import validate_record
from ood_bench.runner.execute import prepare
from ood_bench.runner.identity import canonical
from ood_bench.runner.spec import RunSpec
from ood_bench.runner.sweep import status_of

pytestmark = pytest.mark.slow


def qm9(strategy, env, *, params=None, **kw) -> RunSpec:
    """The shared tiny spec, selecting the last checkpoint (compared bit for bit with FT's)."""
    return tiny_spec(strategy, env, params=params, selection="last", **kw)


@pytest.fixture(scope="module")
def ft(env) -> Run:
    return run(qm9("ft", env))


@pytest.fixture(scope="module")
def feature_map(env) -> dict[str, Run]:
    return {delta: run(qm9("feature-map", env, params={"delta": delta})) for delta in ("0", "1e4")}


@pytest.fixture(scope="module")
def bss(env) -> dict[str, Run]:
    return {"0": run(qm9("bss", env, params={"eta": "0"})), "default": run(qm9("bss", env))}


# --- the terms, by hand -----------------------------------------------------------------------
BASE = {"type": "property", "task_dim": 1, "var_name": "gap", "intensive": True}


def features() -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """(nf=3, nloc=4, d=5) features, atom types with one phantom atom (-1) in frame 1, the mask."""
    from ood_bench.backends.deepmd.plugins.robust_losses import real_atoms

    f = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    atype = torch.zeros(3, 4, dtype=torch.int64)
    atype[1, 3] = -1
    return f, {"atype": atype}, real_atoms({"atype": atype}, f)


def test_bss_term_is_the_k_smallest_squared_singular_values_of_the_pooled_features():
    from ood_bench.backends.deepmd.plugins.robust_losses import BSSLoss

    f, _, mask = features()
    pooled = np.stack([f[0].double().mean(0).numpy(), f[1, :3].double().mean(0).numpy(),
                       f[2].double().mean(0).numpy()])  # the phantom atom left out
    sigma = np.linalg.svd(pooled, compute_uv=False)  # descending, 3 values
    assert sigma[-1] > 0
    # k >= the number of singular values (3 frames): nothing to shrink but the whole representation
    for k, expected in ((1, sigma[-1] ** 2), (2, sigma[-1] ** 2 + sigma[-2] ** 2), (3, 0.0), (9, 0.0)):
        loss = BSSLoss(BASE, eta=0.5, k=k)
        term = loss.term(torch.nn.Identity(), ((), {}, (f.requires_grad_(),)), mask)
        assert np.isclose(float(term), 0.5 * expected, rtol=1e-10, atol=0), k
        assert term.requires_grad == bool(expected), k  # the penalty trains the descriptor


class Shifted(torch.nn.Module):
    """A stand-in "pretrained descriptor": its input plus 1 (as a deepmd descriptor, a tuple)."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x + self.shift, None


def test_feature_map_term_is_the_mean_squared_distance_per_frame_summed(env):
    from ood_bench.backends.deepmd.plugins.robust_losses import FeatureMapLoss

    f, _, mask = features()
    x = torch.zeros_like(f)
    loss = FeatureMapLoss(BASE, str(env["stand_in"].path), delta=3.0)
    loss._frozen.append(Shifted())  # f_pretrained(x) = 1
    term = loss.term(torch.nn.Identity(), ((x,), {}, (f,)), mask)
    d2 = (f.double() - 1.0) ** 2
    expected = 1.5 * (d2[0].mean() + d2[1, :3].mean() + d2[2].mean())  # phantom atom left out
    assert math.isclose(float(term), float(expected), rel_tol=1e-12)
    assert not term.requires_grad  # no gradient through the pretrained side (f has none here)
    assert list(loss.parameters()) == []  # the frozen copy is no submodule: never optimised nor saved


# --- zero weight: FT ----------------------------------------------------------------------------
def test_zero_weight_trains_exactly_what_ft_trains(ft, feature_map, bss):
    """Same seed, same steps: delta 0 / eta 0 add no term, so the checkpoints are FT's bit for bit."""
    for zero, loss_type, column in ((feature_map["0"], "oodbench_feature_map", "feature_map_trn"),
                                    (bss["0"], "oodbench_bss", "bss_trn")):
        loss = zero.record["config"]["deepmd_input"]["loss"]
        assert loss["type"] == loss_type and loss["base"]["type"] == "property", loss
        ours, theirs = state(zero.last()), state(ft.last())
        assert identical(ours, theirs), loss_type
        assert zero.curve(column) and set(zero.curve(column)) == {0.0}


# --- the terms in training ----------------------------------------------------------------------
def test_feature_map_term_starts_at_zero_then_pulls_and_changes_training(ft, feature_map):
    held = feature_map["1e4"]
    terms = held.curve("feature_map_trn")
    # Logged at step 1 from the forward pass before the first update: the live descriptor is the
    # pretrained one, so the frozen copy (built from the checkpoint) must give exactly its output.
    assert terms[0] == 0.0
    assert len(terms) > 2 and all(math.isfinite(t) and t > 0 for t in terms[1:]), terms
    assert all(math.isfinite(t) and t > 0 for t in held.curve("feature_map_val")), held.curve("feature_map_val")
    ours, theirs = state(held.last()), state(ft.last())
    assert ours.keys() == theirs.keys()  # the frozen copy never enters a checkpoint
    assert not identical(ours, theirs)


def test_bss_term_is_logged_and_changes_training(ft, bss):
    run_ = bss["default"]
    assert run_.record["config"]["deepmd_input"]["loss"]["eta"] == 0.001
    assert run_.record["config"]["deepmd_input"]["loss"]["k"] == 1
    for column in ("bss_trn", "bss_val"):
        terms = run_.curve(column)  # 0 where a batch holds a single frame (systems of 1 frame)
        assert terms and all(math.isfinite(t) and t >= 0 for t in terms), (column, terms)
        assert sum(t > 0 for t in terms) > len(terms) / 2, (column, terms)
    assert not identical(state(run_.last()), state(ft.last()))


def descriptor_outputs(checkpoint: Path, head: str | None, system: Path) -> np.ndarray:
    from ood_bench.backends.deepmd.data import read_system_frames
    from ood_bench.backends.deepmd.predict import load_model

    coord, box, atype = read_system_frames(system)
    return np.asarray(load_model(checkpoint, head).eval_descriptor(coord, box, atype, mixed_type=True))


def test_huge_feature_map_delta_keeps_the_descriptor_output_near_the_pretrained_one(env, ft, feature_map):
    systems = sorted((ft.work / "data" / "train").glob("nat*"))  # FT's training frames
    assert systems
    pre, far, near = 0.0, 0.0, 0.0
    for system in systems:
        anchor = descriptor_outputs(env["stand_in"].path, env["stand_in"].branches[0], system)
        pre += float(np.sum(anchor ** 2))
        far += float(np.sum((descriptor_outputs(ft.last(), None, system) - anchor) ** 2))
        near += float(np.sum((descriptor_outputs(feature_map["1e4"].last(), None, system) - anchor) ** 2))
    far, near = (far / pre) ** 0.5, (near / pre) ** 0.5
    assert far > 1e-4 and near < 0.5 * far, (near, far)


# --- records, parameters, deepmd's registry -------------------------------------------------------
def test_records_validate_resume_and_params_are_checked(env, feature_map, bss):
    for r in (*feature_map.values(), *bss.values()):
        assert validate_record(r.record) == [], r.spec.key
        assert status_of(canonical(r.spec)) == "complete", r.spec.key
    assert canonical(qm9("feature-map", env, params={"delta": "1e4"})).key.variant == "delta=10000"
    assert canonical(qm9("bss", env, params={"eta": "0.001", "k": "1"})).key.variant == ""
    other = canonical(qm9("bss", env, params={"k": "2"}))
    assert other.key.variant == "k=2" and status_of(other) == "todo"
    for strategy, params, name in (("feature-map", {"delta": "-1"}, "delta"), ("feature-map", {"delta": "x"}, "delta"),
                                   ("bss", {"eta": "-0.1"}, "eta"), ("bss", {"k": "0"}, "k"),
                                   ("bss", {"k": "1.5"}, "k"), ("bss", {"kk": "1"}, "kk")):
        with pytest.raises(UsageError, match=name):
            prepare(qm9(strategy, env, params=params))


def test_deepmd_resolves_both_losses_by_name(env):
    """`import deepmd.pt` loads oodbench's entry points; the trainer's get_loss finds the plugins."""
    import deepmd.pt  # noqa: F401
    from deepmd.pt.loss.loss import TaskLoss

    from ood_bench.backends.deepmd.plugins.robust_losses import BSSLoss, FeatureMapLoss

    assert TaskLoss.get_class_by_type("oodbench_feature_map") is FeatureMapLoss
    assert TaskLoss.get_class_by_type("oodbench_bss") is BSSLoss
    fm = FeatureMapLoss.get_loss({"type": "oodbench_feature_map", "pretrained": str(env["stand_in"].path),
                                  "delta": 2.0, "base": BASE, "starter_learning_rate": 1e-3})
    b = BSSLoss.get_loss({"type": "oodbench_bss", "eta": 0.01, "k": 3, "base": BASE, "starter_learning_rate": 1e-3})
    for loss in (fm, b):
        assert [r.key for r in loss.label_requirement] == ["gap"]
        assert not any(True for _ in loss.buffers()) and not any(True for _ in loss.parameters())
        again = type(loss).deserialize(loss.serialize())
        assert again.serialize() == loss.serialize()
    assert (FeatureMapLoss.deserialize(fm.serialize()).delta, BSSLoss.deserialize(b.serialize()).k) == (2.0, 3)


def test_oodbench_strategies_lists_both_with_their_parameters():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ood_bench", "strategies"], capture_output=True, text=True,
                         check=True).stdout
    for name, params in (("feature-map", ("delta=<float> (default 1.0)",)),
                         ("bss", ("eta=<float> (default 0.001)", "k=<int> (default 1)"))):
        block = out.split(f"\n{name} (", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
        lines = block.splitlines()
        for param in params:
            assert any(line.strip().startswith(f"--strategy-param {param}") for line in lines[:len(params)]), \
                (name, param, block)
