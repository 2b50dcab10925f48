"""The paper's QM9 heads as deepmd-kit plugins (ood_bench/backends/deepmd/plugins): registered by
the ``deepmd.pt`` entry point, invariant to rotations and translations, equal to their formulas
(centre of mass with atomic masses), trainable end to end by ``dp --pt train`` and predicted
through ``DeepEval``; the recipes pick them only for the paper's setup and leave gap unchanged."""

from __future__ import annotations

import copy
import dataclasses
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from ood_bench.backends.deepmd.data import full_type_map
from ood_bench.backends.deepmd.inputs import RECIPES, RunContext
from ood_bench.backends.deepmd.plugins import (
    DIPOLE_NORM,
    FITTING_TYPES,
    HEAD_LOSS_TYPE,
    MODEL_TYPES,
    PLAIN_HEAD,
    SPATIAL_EXTENT,
    head_of_input,
)
from ood_bench.backends.deepmd.presets import PRESETS, TINY_DESCRIPTOR
from ood_bench.datasets import DATASETS, TargetInfo, load_dataset
from ood_bench.errors import UsageError

HEAD_PROPERTY = {DIPOLE_NORM: "mu", SPATIAL_EXTENT: "r2"}


@pytest.fixture(scope="module")
def qm9(fixture_data, session_cache):
    return load_dataset("qm9", fixture_data)


def molecules(ds, n=4):
    """(positions (nat, 3), type indices in the full type map, id) of n fixture molecules of
    different sizes, each with a heavy atom other than carbon (so the centre of mass is not the
    geometric centre)."""
    st, out, sizes = ds.structures, [], set()
    for i in st.ids:
        r = st.row(i)
        z = st.numbers[st.offsets[r]:st.offsets[r + 1]]
        if len(z) in sizes or not np.isin(z, (7, 8, 9)).any():
            continue
        sizes.add(len(z))
        out.append((st.positions[st.offsets[r]:st.offsets[r + 1]].astype(np.float64), (z - 1).astype(np.int64), i))
        if len(out) == n:
            break
    return out


def build_model(head: str, precision: str = "float64", seed: int = 1):
    """A tiny model of the head, built by deepmd's own ``get_model`` from the registered type."""
    import deepmd.pt  # noqa: F401  (loads the entry points)
    from deepmd.pt.model.model import get_model

    desc = copy.deepcopy(TINY_DESCRIPTOR)
    desc.update(precision=precision, seed=seed)
    params = {"type": MODEL_TYPES[head], "type_map": full_type_map(), "descriptor": desc,
              "fitting_net": {"type": FITTING_TYPES[head], "property_name": HEAD_PROPERTY[head], "task_dim": 1,
                              "intensive": False, "neuron": [16, 16], "seed": seed + 1}}
    return get_model(params)


def set_statistics(model, ds, mols) -> None:
    """The head's statistics from labelled frames, as ``dp train`` sets them."""
    var = model.get_var_name()
    samples = [{"coord": torch.tensor(x[None]), "atype": torch.tensor(t[None]), "box": None,
                var: torch.tensor([[float(ds.table.loc[i, var])]]), "find_" + var: 1.0} for x, t, i in mols]
    model.atomic_model.compute_or_load_out_stat(samples)


def predict(model, x, t):
    out = model(torch.tensor(x[None]), torch.tensor(t[None]))
    var = model.get_var_name()
    return out[var].detach().numpy().ravel(), out["atom_" + var].detach().numpy().ravel()


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_entry_point_registers_heads_fitting_and_loss():
    eps = metadata.entry_points(group="deepmd.pt")
    assert "ood_bench.backends.deepmd.plugins.heads" in {ep.value for ep in eps}
    import deepmd.pt  # noqa: F401
    from deepmd.pt.loss.loss import TaskLoss
    from deepmd.pt.model.model.model import BaseModel
    from deepmd.pt.model.task.base_fitting import BaseFitting

    from ood_bench.backends.deepmd.plugins import heads

    assert BaseModel.get_class_by_type(MODEL_TYPES[DIPOLE_NORM]) is heads.DipoleNormModel
    assert BaseModel.get_class_by_type(MODEL_TYPES[SPATIAL_EXTENT]) is heads.SpatialExtentModel
    assert BaseFitting.get_class_by_type(FITTING_TYPES[DIPOLE_NORM]) is heads.DipoleNormFittingNet
    assert TaskLoss.get_class_by_type(HEAD_LOSS_TYPE) is heads.HeadLoss


@pytest.mark.parametrize("head", [DIPOLE_NORM, SPATIAL_EXTENT])
def test_heads_are_rotation_and_translation_invariant(qm9, head):
    model = build_model(head)
    mols = molecules(qm9)
    set_statistics(model, qm9, mols)
    rng = np.random.default_rng(0)
    values = []
    for x, t, _ in mols:
        y, atom = predict(model, x, t)
        assert np.isfinite(y).all() and atom.sum() == pytest.approx(y[0], rel=1e-9)
        for _ in range(2):
            rot, shift = random_rotation(rng), rng.normal(scale=5.0, size=3)
            y2, atom2 = predict(model, x @ rot.T + shift, t)
            np.testing.assert_allclose(y2, y, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(atom2, atom, rtol=1e-7, atol=1e-9)  # per-atom parts too
        values.append(y[0])
    assert np.ptp(values) > 1e-3 * np.abs(values).max()  # not a constant
    if head == DIPOLE_NORM:  # a vector head: a centrosymmetric molecule (CO2) has no dipole
        co2 = np.array([[0.3, -0.2, 0.5], [1.46, -0.2, 0.5], [-0.86, -0.2, 0.5]])
        assert predict(model, co2, np.array([5, 7, 7]))[0][0] < 1e-9 * np.abs(values).max()


@pytest.mark.parametrize("head", [DIPOLE_NORM, SPATIAL_EXTENT])
def test_heads_compute_their_formulas(qm9, head):
    """mu = |sigma sum_i (q_i (r_i - r_c) + d_i)|, <R^2> = sum_i (sigma MLP_i + p(Z_i)) |r_i - r_c|^2,
    r_c the centre of mass (ASE masses), recomputed here from the fitting net's raw outputs."""
    from ase.data import atomic_masses
    from deepmd.pt.utils.nlist import extend_input_and_build_neighbor_list

    model = build_model(head)
    mols = molecules(qm9)
    set_statistics(model, qm9, mols)
    am = model.atomic_model
    sigma = am.out_std[0, :, 0].detach().numpy()
    bias = am.out_bias[0, :, 0].detach().numpy()
    if head == SPATIAL_EXTENT:
        assert np.abs(bias).max() > 0  # the distance-weighted per-type fit did something
    else:
        assert not bias.any()  # a per-type bias would break rotation invariance
    for x, t, _ in mols:
        coord, atype = torch.tensor(x[None]), torch.tensor(t[None])
        ext, ext_t, mapping, nlist = extend_input_and_build_neighbor_list(
            coord, atype, am.get_rcut(), am.get_sel(), mixed_types=True, box=None)
        raw = am.forward_atomic(ext, ext_t, nlist, mapping=mapping)[model.get_var_name()][0].detach().numpy()
        m = atomic_masses[t + 1]
        rel = x - (m[:, None] * x).sum(0) / m.sum()
        if head == SPATIAL_EXTENT:
            expected = np.sum((raw[:, 0] * sigma[t] + bias[t]) * (rel ** 2).sum(1))
        else:
            expected = np.linalg.norm(sigma[0] * (raw[:, :1] * rel + raw[:, 1:4]).sum(0))
            assert np.abs(raw[:, 1:4]).max() > 0  # the equivariant vectors are used
        assert predict(model, x, t)[0][0] == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("head", [DIPOLE_NORM, SPATIAL_EXTENT])
def test_gradients_reach_descriptor_and_head(qm9, head):
    from deepmd.pt.loss.loss import TaskLoss

    model = build_model(head, precision="float32")
    mols = molecules(qm9, n=2)
    set_statistics(model, qm9, mols)
    var = model.get_var_name()
    loss_fn = TaskLoss.get_class_by_type(HEAD_LOSS_TYPE).get_loss(
        {"type": HEAD_LOSS_TYPE, "property_name": var, "loss_func": "mse", "starter_learning_rate": 1e-3})
    x, t, i = mols[0]
    _, loss, more = loss_fn({"coord": torch.tensor(x[None]), "atype": torch.tensor(t[None]), "box": None},
                            model, {var: torch.tensor([[float(qm9.table.loc[i, var])]])}, natoms=len(t))
    assert torch.isfinite(loss) and loss > 0 and {"mae", "rmse"} <= set(more)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    for part in ("descriptor", "fitting_net"):
        named = {n: g for n, g in grads.items() if f".{part}." in f".{n}"}
        assert named, part
        assert all(g is None or torch.isfinite(g).all() for g in named.values())
        moved = [n for n, g in named.items() if g is not None and g.abs().max() > 0]
        # every fitting tensor; in DPA3 the last layer's edge/angle updates feed no atomic output
        need = len(named) if part == "fitting_net" else 0.6 * len(named)
        assert len(moved) >= need, f"{part}: gradient in {len(moved)}/{len(named)} tensors"
    last = model.atomic_model.fitting_net.filter_layers.networks[0].layers[-1].matrix.grad
    assert last[:, 0].abs().max() > 0  # the charge-like scalar
    if head == DIPOLE_NORM:
        assert last[:, 1:].abs().max() > 0  # the coefficients of the equivariant vectors


def test_periodic_input_is_refused(qm9):
    model = build_model(SPATIAL_EXTENT)
    x, t, _ = molecules(qm9, n=1)[0]
    with pytest.raises(RuntimeError, match="isolated molecules"):
        model(torch.tensor(x[None]), torch.tensor(t[None]), box=torch.eye(3, dtype=torch.float64)[None] * 20)


# --- recipes ----------------------------------------------------------------------------------
class _Pretrained:
    fittings = {"SPICE2": {"type": "ener", "neuron": [8], "dim_case_embd": 2}}
    path = Path("/ckpt/pre.pt")


def _ctx(target: TargetInfo, preset: str | object = "paper", kind: str = "molecules") -> RunContext:
    pre = PRESETS[preset] if isinstance(preset, str) else preset
    return RunContext(target=target, dataset_kind=kind, preset=pre, descriptor={"type": "dpa3"},
                      type_map=["H", "C"], train_systems=["/d/train"], val_systems=["/d/val"], workdir=Path("/w"),
                      steps=100, batch_size="auto:8", start_lr=1e-3, seed=3, pretrained=_Pretrained(),
                      aux_branch="SPICE2", aux_systems=["/d/aux"])


def test_recipes_use_the_paper_heads_only_in_the_paper_setup():
    spec = DATASETS.get("qm9")
    scratch, mft = RECIPES.get("scratch"), RECIPES.get("mft")
    assert {t.name: t.paper_head for t in spec.targets if t.paper_head != PLAIN_HEAD} == \
        {"mu": DIPOLE_NORM, "r2": SPATIAL_EXTENT}
    for prop, head in (("mu", DIPOLE_NORM), ("r2", SPATIAL_EXTENT), ("gap", PLAIN_HEAD)):
        ctx = _ctx(spec.target(prop))
        assert scratch.head_name(ctx) == mft.head_name(ctx) == head
        single, multi = scratch.build_input(ctx), mft.build_input(ctx)
        branch = multi["model"]["model_dict"]["property"]
        assert head_of_input(single) == head_of_input(multi) == head
        assert single["model"]["fitting_net"]["type"] == branch["fitting_net"]["type"] == FITTING_TYPES[head]
        assert single["loss"] == multi["loss_dict"]["property"]
        if head != PLAIN_HEAD:
            assert single["model"]["type"] == branch["type"] == MODEL_TYPES[head]
            assert single["loss"] == {"type": HEAD_LOSS_TYPE, "property_name": prop, "loss_func": "mse",
                                      "metric": ["mae", "rmse"]}
            assert single["model"]["fitting_net"]["intensive"] is False
        # the tiny preset keeps deepmd's pooled scalar unless it asks for the paper's heads
        assert scratch.head_name(_ctx(spec.target(prop), "tiny")) == PLAIN_HEAD
        asks = dataclasses.replace(PRESETS["tiny"], extra={"paper_heads": True})
        assert scratch.head_name(_ctx(spec.target(prop), asks)) == head
    crystal = dataclasses.replace(spec.target("mu"), name="n")
    with pytest.raises(UsageError, match="isolated molecules only"):
        scratch.build_input(_ctx(crystal, kind="crystals"))


def test_gap_input_is_unchanged():
    """The plain property path writes exactly what it wrote before the heads existed."""
    ctx = _ctx(DATASETS.get("qm9").target("gap"))
    cfg, multi = RECIPES.get("scratch").build_input(ctx), RECIPES.get("mft").build_input(ctx)
    fitting = {"type": "property", "property_name": "gap", "task_dim": 1, "intensive": True,
               "neuron": [240, 240, 240], "resnet_dt": True, "activation_function": "tanh", "seed": 3}
    expected_model = {"type_map": ["H", "C"], "descriptor": {"type": "dpa3", "seed": 3}, "fitting_net": fitting}
    expected_loss = {"type": "property", "loss_func": "mse", "metric": ["mae", "rmse"]}
    assert json.dumps(cfg["model"]) == json.dumps(expected_model)
    assert json.dumps(cfg["loss"]) == json.dumps(expected_loss)
    branch = {"type_map": "type_map_all", "descriptor": "dpa3_descriptor",
              "fitting_net": {**fitting, "dim_case_embd": 2}, "finetune_head": "RANDOM"}
    assert json.dumps(multi["model"]["model_dict"]["property"]) == json.dumps(branch)
    assert json.dumps(multi["loss_dict"]["property"]) == json.dumps(expected_loss)


def test_deepmd_input_check_accepts_the_plugin_types():
    import deepmd.pt  # noqa: F401
    from deepmd.pt.utils.multi_task import preprocess_shared_params
    from deepmd.utils.argcheck import normalize

    ctx = _ctx(DATASETS.get("qm9").target("mu"))
    ctx.descriptor = copy.deepcopy(TINY_DESCRIPTOR)
    for name, multi in (("scratch", False), ("mft", True)):
        cfg = RECIPES.get(name).build_input(ctx)
        if multi:  # as `dp --pt train` does before its input check
            cfg["model"], _ = preprocess_shared_params(cfg["model"])
        cfg = normalize(cfg, multi_task=multi)
        model = cfg["model"]["model_dict"]["property"] if multi else cfg["model"]
        assert model["type"] == MODEL_TYPES[DIPOLE_NORM]


# --- end to end -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def head_runs(qm9, fixture_data, tmp_path_factory):
    """One oodbench run per head (Scratch, 10 steps of ``dp --pt train``), through the runner,
    with a tiny preset that asks for the paper's heads; records by head."""
    from ood_bench.io_utils import read_json
    from ood_bench.records import RunKey
    from ood_bench.runner.execute import execute
    from ood_bench.runner.spec import RunSpec
    from ood_bench.splits import Fold, SplitSet, save_split

    root = tmp_path_factory.mktemp("heads")
    ids = list(qm9.structures.ids)[:70]
    mp = pytest.MonkeyPatch()
    mp.setitem(PRESETS, "tiny-heads", dataclasses.replace(PRESETS["tiny"], name="tiny-heads",
                                                          extra={"paper_heads": True}, save_checkpoints=1))
    out = {}
    try:
        for head, prop in HEAD_PROPERTY.items():
            fold = Fold("0", ids[:46], ids[46:54], {"id_test": ids[54:62], "ood_test": ids[62:70]})
            save_split(SplitSet("qm9", f"toy-{prop}", {"0": fold}, ["id_test", "ood_test"], property=prop,
                                dataset_sha256=qm9.sha256), root / "splits")
            spec = RunSpec(key=RunKey("qm9", f"toy-{prop}", "0", "dpa3", "scratch", 0, 1.0, prop),
                           preset="tiny-heads", steps=10, batch_size="auto:64", data_dir=str(fixture_data),
                           splits_dir=str(root / "splits"), results_dir=str(root / "results"))
            path = execute(spec)
            out[head] = (read_json(path), path)
    finally:
        mp.undo()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("head", [DIPOLE_NORM, SPATIAL_EXTENT])
def test_dp_train_with_a_head_writes_a_valid_record(head_runs, head):
    from ood_bench.backends.deepmd.predict import load_model
    from ood_bench.records import validate_record

    rec, path = head_runs[head]
    assert validate_record(rec) == []
    deepmd_input = rec["config"]["deepmd_input"]
    assert deepmd_input["model"]["type"] == MODEL_TYPES[head] and head_of_input(deepmd_input) == head
    assert deepmd_input["loss"]["type"] == HEAD_LOSS_TYPE
    for block in rec["predictions"].values():
        assert len(block["y_pred"]) == len(block["y_true"]) > 0
        assert np.isfinite(block["y_pred"]).all()
    assert rec["training"]["learning_curve"]
    # the saved checkpoint through DeepEval: one value per frame, the sum of its atomic parts
    dp = load_model(Path(path).with_name("model.pt"))
    assert dp.get_var_name() == HEAD_PROPERTY[head]
    x = np.array([[0.0, 0.0, 0.12], [0.0, 0.76, -0.47], [0.0, -0.76, -0.47]])  # water
    y, atomic = dp.eval(x[None], None, np.array([[7, 0, 0]]), atomic=True, mixed_type=True)
    assert y.shape == (1, 1) and np.isfinite(y).all() and abs(y[0, 0]) > 1e-6
    assert atomic.sum() == pytest.approx(y[0, 0], rel=1e-9)
