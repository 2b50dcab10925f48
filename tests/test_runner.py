"""The runner on tiny real trainings: every strategy on a QM9 and a MatBench fixture, frozen
weights stay frozen, fine-tuning starts from the pretrained backbone, the inherited force-field
head beats a fresh one, seeds repeat, resume skips, and a killed run leaves no record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ood_bench.errors import OodBenchError, UsageError
from ood_bench.io_utils import read_json
from ood_bench.records import RunKey, record_path, validate_record
from ood_bench.runner.execute import execute, prepare
from ood_bench.runner.spec import RunSpec

pytestmark = pytest.mark.slow

CASES = {"qm9": ("toy-gap", "gap", ["val", "id_test", "ood_test"]),
         "matbench_dielectric": ("toy", "n", ["val", "test"])}


def spec_for(dataset, strategy, env, results, *, seed=0, steps=20, fold="0", **kw) -> RunSpec:
    split, prop, _ = CASES[dataset]
    return RunSpec(key=RunKey(dataset, split, fold, "dpa3", strategy, seed, kw.pop("train_fraction", 1.0), prop),
                   preset="tiny", pretrained=str(env["stand_in"].path), steps=steps,
                   data_dir=str(env["data"]), splits_dir=str(env["splits"]), results_dir=str(results), **kw)


@pytest.fixture(scope="module")
def env(stand_in, toy_splits, fixture_data):
    return {"stand_in": stand_in, "splits": toy_splits, "data": fixture_data}


@pytest.fixture(scope="module")
def runs(env, tmp_path_factory):
    """Every strategy on both fixtures (20 steps each); records by (dataset, strategy)."""
    results = tmp_path_factory.mktemp("results")
    out = {}
    for dataset in CASES:
        for strategy in ("scratch", "lp", "ft", "mft"):
            out[dataset, strategy] = _record(execute(spec_for(dataset, strategy, env, results)))
    return out


@pytest.mark.parametrize("dataset", list(CASES))
@pytest.mark.parametrize("strategy", ["scratch", "lp", "ft", "mft"])
def test_every_strategy_writes_a_valid_record(runs, env, dataset, strategy):
    rec = runs[dataset, strategy]
    assert validate_record(rec) == []
    assert list(rec["predictions"]) == CASES[dataset][2]
    for block in rec["predictions"].values():
        assert len(block["id"]) == len(block["y_true"]) == len(block["y_pred"]) > 0
        assert np.isfinite(block["y_pred"]).all()
    # the record's metrics equal the textbook formulas on its saved predictions (computed here,
    # not by ood_bench.evaluate, so a wrong formula or a metric of other predictions fails)
    assert set(rec["metrics"]) == set(rec["predictions"])
    for name, block in rec["predictions"].items():
        t, p = np.asarray(block["y_true"], float), np.asarray(block["y_pred"], float)
        m = rec["metrics"][name]
        assert m["n"] == len(t)
        assert m["mae"] == pytest.approx(np.abs(p - t).mean(), rel=1e-9)
        assert m["rmse"] == pytest.approx(np.sqrt(((p - t) ** 2).mean()), rel=1e-9)
        assert m["max_error"] == pytest.approx(np.abs(p - t).max(), rel=1e-9)
        assert m["r2"] == pytest.approx(1 - ((p - t) ** 2).sum() / ((t - t.mean()) ** 2).sum(), rel=1e-9)
    assert rec["config"]["deepmd_input"] and rec["versions"]["deepmd-kit"].startswith("3.2")
    assert rec["data"]["split_sha256"] and rec["data"]["dataset_sha256"]
    assert rec["training"]["learning_curve"], "lcurve parsed"
    assert (rec["pretrained"] is None) == (strategy == "scratch")
    if strategy == "mft":
        # the branch the stand-in declares for this kind of data, recorded in both places, and a
        # branch of the multi-task deepmd input
        kind = "molecules" if dataset == "qm9" else "crystals"
        expected = env["stand_in"].meta["aux_branch_for"][kind]
        assert rec["aux"]["branch"] == rec["pretrained"]["branch"] == expected
        assert expected in rec["config"]["deepmd_input"]["model"]["model_dict"]
        assert "model_dict" in rec["config"]["deepmd_input"]["model"]
    assert _model_path(rec).exists()


def test_qm9_molecules_without_coordinates_are_counted(runs):
    rec = runs["qm9", "ft"]
    dropped = rec["data"]["dropped_without_structure"]
    total = sum(dropped.values())
    assert total == 8  # the fixture's uncharacterised molecules, reported per set
    assert rec["data"]["n_train"] == rec["data"]["n"]["train"] - dropped["train"]


def _descriptor_tensors(path: Path) -> dict[str, np.ndarray]:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    out = {}
    for k, v in state.items():
        if ".descriptor." in k and hasattr(v, "numpy"):
            out[k.split(".descriptor.", 1)[1]] = v.detach().cpu().numpy()
    assert out, f"no descriptor tensors in {path}"
    return out


def _record(path: Path) -> dict:
    rec = read_json(path)
    rec["_path"] = str(path)
    return rec


def _model_path(rec) -> Path:
    return Path(rec["_path"]).with_name("model.pt")


@pytest.mark.parametrize("dataset", list(CASES))
def test_lp_leaves_every_descriptor_tensor_bit_identical(runs, env, dataset):
    pre = _descriptor_tensors(env["stand_in"].path)
    lp = _descriptor_tensors(_model_path(runs[dataset, "lp"]))
    ft = _descriptor_tensors(_model_path(runs[dataset, "ft"]))
    assert set(lp) <= set(pre) and len(lp) > 5
    for k, v in lp.items():
        assert np.array_equal(v, pre[k]), f"LP changed descriptor tensor {k}"
    assert any(not np.array_equal(v, pre[k]) for k, v in ft.items() if k in pre), "FT must train the descriptor"


def test_finetuning_starts_from_the_pretrained_descriptor(env, tmp_path):
    """With a vanishing learning rate, FT/LP/MFT descriptors stay at the pretrained weights,
    while Scratch's is a fresh random one."""
    pre = _descriptor_tensors(env["stand_in"].path)
    for strategy in ("ft", "lp", "mft", "scratch"):
        rec = _record(execute(spec_for("qm9", strategy, env, tmp_path, seed=7, steps=2, learning_rate=1e-12)))
        desc = _descriptor_tensors(_model_path(rec))
        keys = [k for k, v in desc.items() if k in pre and v.shape == pre[k].shape and v.dtype.kind == "f"]
        a = np.concatenate([desc[k].ravel() for k in keys])
        b = np.concatenate([pre[k].ravel() for k in keys])
        rel = np.linalg.norm(a - b) / np.linalg.norm(b)
        if strategy == "scratch":
            assert rel > 0.1, "scratch must start from random weights"
        else:
            assert rel < 1e-3, f"{strategy} did not start from the pretrained descriptor (rel. change {rel:.2e})"


def test_mft_inherited_head_beats_a_fresh_head(env, tmp_path):
    """The force-field head MFT keeps has lower energy error on its auxiliary data than a
    freshly initialised head (deepmd 'RANDOM', which still fits per-element energy bias)."""
    from ood_bench.backends.deepmd.data import read_system_frames
    from ood_bench.backends.deepmd.launcher import dp_train
    from ood_bench.backends.deepmd.predict import list_checkpoints, load_model

    spec = spec_for("qm9", "mft", env, tmp_path / "inherited", steps=1, learning_rate=1e-12, keep_work=True)
    rec = _record(execute(spec))
    branch = rec["aux"]["branch"]
    # records keep portable paths ("$OODBENCH_CACHE_DIR/..."): this machine's path back
    systems = [Path(os.path.expanduser(os.path.expandvars(s))) for s in rec["aux"]["systems"]]
    assert all(s.is_dir() for s in systems), systems

    # the same MFT input, but the force-field head starts fresh instead of inherited
    from ood_bench.runner.execute import work_dir

    cfg = json.loads((work_dir(spec) / "input.json").read_text())
    cfg["model"]["model_dict"][branch]["finetune_head"] = "RANDOM"
    fresh = tmp_path / "fresh"
    cfg["training"]["save_ckpt"] = str(fresh / "model.ckpt")
    cfg["training"]["disp_file"] = str(fresh / "lcurve.out")
    dp_train(cfg, fresh, ["--finetune", str(env["stand_in"].path)], "fresh head")

    def energy_rmse(ckpt: Path) -> float:
        model = load_model(ckpt, branch)
        err = []
        for s in systems:
            coord, box, atype = read_system_frames(s)
            e = model.eval(coord, box, atype, mixed_type=True)[0].reshape(-1)
            ref = np.concatenate([np.load(p) for p in sorted(s.glob("set.*/energy.npy"))]).reshape(-1)
            err.append((e - ref) / atype.shape[1])
        return float(np.sqrt(np.mean(np.concatenate(err) ** 2)))

    inherited = energy_rmse(_model_path(rec))
    fresh_rmse = energy_rmse(list_checkpoints(fresh)[-1][1])
    assert inherited < fresh_rmse, (inherited, fresh_rmse)


def test_same_seed_same_predictions(env, tmp_path):
    a = _record(execute(spec_for("matbench_dielectric", "ft", env, tmp_path / "a", seed=3)))
    b = _record(execute(spec_for("matbench_dielectric", "ft", env, tmp_path / "b", seed=3)))
    assert a["predictions"]["test"]["id"] == b["predictions"]["test"]["id"]
    assert np.allclose(a["predictions"]["test"]["y_pred"], b["predictions"]["test"]["y_pred"], rtol=0, atol=1e-6)


def test_train_fraction_subsamples_seeded(env, tmp_path):
    rec = _record(execute(spec_for("qm9", "scratch", env, tmp_path, steps=5, train_fraction=0.25)))
    assert rec["data"]["n"]["train"] == 50  # 25% of the 200 training ids
    assert rec["key"]["train_fraction"] == 0.25


def test_resume_skips_finished_and_force_reruns(env, tmp_path):
    from ood_bench.commands.run_report import execute_sweep

    specs = [spec_for("matbench_dielectric", "scratch", env, tmp_path, fold="0", steps=5, selection="last")]
    assert execute_sweep(specs, "local", {"jobs": 1})
    paths = [record_path(tmp_path, s.key) for s in specs]
    mtimes = [p.stat().st_mtime_ns for p in paths]
    assert execute_sweep(specs, "local", {"jobs": 1})
    assert [p.stat().st_mtime_ns for p in paths] == mtimes, "finished runs must be skipped"
    # other options: a conflict, not a silent mix
    other = [spec_for("matbench_dielectric", "scratch", env, tmp_path, fold="0", steps=6, selection="last")]
    assert not execute_sweep(other, "local", {"jobs": 1})
    assert execute_sweep(other, "local", {"jobs": 1}, force=True)
    assert read_json(paths[0])["config"]["steps"] == 6


def test_killed_run_leaves_no_complete_record_and_reruns(env, tmp_path):
    spec = spec_for("qm9", "scratch", env, tmp_path, steps=400)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec.to_json()))
    proc = subprocess.Popen([sys.executable, "-m", "ood_bench.runner.task", str(spec_file)],
                            env=dict(os.environ), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from ood_bench.runner.execute import work_dir

    lcurve = work_dir(spec) / "lcurve.out"
    deadline = time.time() + 120
    while time.time() < deadline and not (lcurve.exists() and lcurve.stat().st_size > 200):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and deepmd, mid-training
    proc.wait()
    assert not record_path(tmp_path, spec.key).exists()
    from ood_bench.runner.sweep import status_of

    assert status_of(spec) == "todo"
    spec.steps = 5
    rec = _record(execute(spec))  # redone from scratch over the leftovers
    assert validate_record(rec) == []


def test_bad_inputs_fail_before_training(env, tmp_path):
    base = spec_for("matbench_dielectric", "mft", env, tmp_path)
    with pytest.raises(UsageError, match="no branch 'nope'.*qm9_gfn2"):
        prepare(RunSpec(**{**base.__dict__, "aux_branch": "nope"}))
    with pytest.raises(OodBenchError, match="not found"):
        prepare(RunSpec(**{**base.__dict__, "pretrained": str(tmp_path / "missing.pt")}))
    with pytest.raises(UsageError, match="no split 'nosuch'"):
        prepare(RunSpec(**{**base.__dict__, "key": RunKey("matbench_dielectric", "nosuch", "0", "dpa3", "ft", 0)}))
    with pytest.raises(UsageError, match="no fold '7'"):
        prepare(RunSpec(**{**base.__dict__, "key": RunKey("matbench_dielectric", "toy", "7", "dpa3", "ft", 0)}))
    with pytest.raises(UsageError, match="unknown strategy"):
        prepare(RunSpec(**{**base.__dict__, "key": RunKey("matbench_dielectric", "toy", "0", "dpa3", "sft", 0)}))


def test_backend_layer_keeps_the_deepmd_predictions(runs, env):
    """A tiny DPA3 run with a fixed seed predicts what it predicted before the backend layer
    (reference made by commit 3279ccd from the same fixtures, stand-in recipe, split and seed)."""
    import torch

    ref = json.loads((Path(__file__).parent / "fixtures" / "reference" / "dpa3_tiny_predictions.json").read_text())
    state = torch.load(env["stand_in"].path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    sums = {k: float(v.double().sum()) for k, v in state.items() if hasattr(v, "double") and v.is_floating_point()}
    assert set(sums) == set(ref["stand_in_weight_sums"])
    if not all(np.isclose(sums[k], v, rtol=1e-5, atol=1e-6) for k, v in ref["stand_in_weight_sums"].items()):
        pytest.skip("the stand-in built here differs from the reference's (other torch/tblite build)")
    for strategy, sets in ref["predictions"].items():
        rec = runs["qm9", strategy]
        for name, expected in sets.items():
            got = dict(zip(map(str, rec["predictions"][name]["id"]), rec["predictions"][name]["y_pred"], strict=True))
            assert got.keys() == expected.keys(), (strategy, name)
            np.testing.assert_allclose([got[i] for i in expected], list(expected.values()), rtol=1e-5, atol=1e-7,
                                       err_msg=f"{strategy}/{name}")
