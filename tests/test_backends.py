"""The backend layer: every registered model runs through the same model-agnostic runner, an
unsupported model/strategy pair is one line, the reference baselines compute what they claim
(hand-checked), candidates are selected on validation only, records name their backend and model
version and hold no machine paths, and an installed oodbench finds its split files and cards from
any folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ood_bench.backends import BACKENDS, backend_for
from ood_bench.errors import UsageError
from ood_bench.io_utils import read_json
from ood_bench.models import MODELS
from ood_bench.records import RunKey, validate_record
from ood_bench.runner.execute import execute, prepare
from ood_bench.runner.spec import RunSpec
from ood_bench.runner.sweep import status_of
from ood_bench.strategies import STRATEGIES

REPO = Path(__file__).resolve().parents[1]
BASELINES = ("dummy", "rf-scm-magpie", "cm-krr", "dpa3-frozen")


def spec(model, dataset, env, results, strategy=None, **kw) -> RunSpec:
    split, prop = {"qm9": ("toy-gap", "gap"), "matbench_dielectric": ("toy", "n")}[dataset]
    strategy = strategy or MODELS.get(model).default_strategy
    return RunSpec(key=RunKey(dataset, split, "0", model, strategy, 0, 1.0, prop), data_dir=str(env["data"]),
                   splits_dir=str(env["splits"]), results_dir=str(results), **kw)


@pytest.fixture(scope="module")
def env(toy_splits, fixture_data):
    return {"splits": toy_splits, "data": fixture_data}


def test_registry_lists_dpa3_and_the_four_baselines():
    assert {"dpa3", *BASELINES} <= set(MODELS.names())
    for name, model in MODELS.items():
        assert model.backend in BACKENDS.names() or backend_for(model).name == model.backend
        assert model.default_strategy in model.supported_strategies(), name
        assert model.default_preset in model.presets, name
    for name, strategy in STRATEGIES.items():
        assert strategy.backends, name


def test_unsupported_pair_is_one_line_naming_what_the_model_supports(env, tmp_path):
    with pytest.raises(UsageError, match=r"model dummy cannot run strategy 'mft'; it supports: scratch$"):
        prepare(spec("dummy", "matbench_dielectric", env, tmp_path, strategy="mft"))
    from ood_bench.cli import main

    rc = subprocess.run([sys.executable, "-m", "ood_bench", "run", "--model", "dummy", "--strategy", "mft",
                         "--dataset", "matbench_dielectric", "--data-dir", str(env["data"]), "--dry-run"],
                        capture_output=True, text=True, cwd=tmp_path)
    assert rc.returncode == 2 and rc.stderr.strip().count("\n") == 0, rc.stderr
    assert "it supports: scratch" in rc.stderr and main  # the console script is this module's main


def test_dummy_predicts_the_training_mean(env, tmp_path):
    rec = read_json(execute(spec("dummy", "matbench_dielectric", env, tmp_path)))
    assert validate_record(rec) == []
    run = prepare(spec("dummy", "matbench_dielectric", env, tmp_path))
    train_mean = float(np.mean(run.dataset.target_values("n", run.fold.train)))
    for block in rec["predictions"].values():
        assert np.allclose(block["y_pred"], train_mean, rtol=1e-12)
    assert rec["config"]["backend"] == "sklearn" and rec["config"]["model_version"] == MODELS.get("dummy").version
    assert rec["training"]["model_file"] is None and rec["versions"]["scikit-learn"]


def test_records_hold_no_machine_paths_and_resume(env, tmp_path):
    s = spec("dummy", "matbench_dielectric", env, tmp_path)
    path = execute(s)
    text = json.dumps(read_json(path))
    for machine in (str(tmp_path), str(REPO), str(Path.home()), "/tmp/"):
        assert machine not in text, machine
    assert status_of(s) == "complete"
    other = RunSpec(**{**s.__dict__, "steps": 7})  # an option that changes the result: a different run
    assert status_of(other) == "conflict"


def test_kernel_ridge_selects_its_hyperparameters_on_validation_only(env, tmp_path):
    rec = read_json(execute(spec("cm-krr", "qm9", env, tmp_path)))
    assert validate_record(rec) == []
    scores = rec["training"]["selection"]
    assert len(scores) == len(MODELS.get("cm-krr").preset(None).grid) > 1
    best = min(scores, key=lambda s: s["val_rmse"])
    assert rec["training"]["checkpoint"] == best["candidate"]
    assert np.isclose(rec["metrics"]["val"]["rmse"], best["val_rmse"], rtol=1e-12)
    assert len({round(s["val_rmse"], 12) for s in scores}) > 1, "grid points must differ"


def test_rf_scm_magpie_fits_on_train_plus_val(env, tmp_path):
    rec = read_json(execute(spec("rf-scm-magpie", "matbench_dielectric", env, tmp_path)))
    assert validate_record(rec) == []
    n = rec["data"]["n"]
    assert rec["config"]["fit_on"] == "train+val" and rec["config"]["n_fit"] == n["train"] + n["val"]
    assert rec["config"]["estimator"]["n_estimators"] == 500
    with pytest.raises(UsageError, match="needs crystals"):
        prepare(spec("rf-scm-magpie", "qm9", env, tmp_path))


def test_dpa3_frozen_is_closed_form_linear_probing_on_the_pretrained_descriptor(env, stand_in, tmp_path):
    rec = read_json(execute(spec("dpa3-frozen", "qm9", env, tmp_path, pretrained=str(stand_in.path))))
    assert validate_record(rec) == []
    assert rec["pretrained"]["sha256"] == stand_in.sha256 and rec["pretrained"]["stand_in"] is True
    assert rec["config"]["featurizer"] == "dpa3-descriptor"
    # the mean-pooled half of the features is the model's own eval_descriptor, averaged
    from ood_bench.backends.deepmd.predict import load_model
    from ood_bench.datasets import load_dataset
    from ood_bench.features.base import FEATURIZERS, cached_features

    ds = load_dataset("qm9", env["data"])
    feat = FEATURIZERS.get("dpa3-descriptor")
    run = prepare(spec("dpa3-frozen", "qm9", env, tmp_path, pretrained=str(stand_in.path)))
    ctx = run.resolution.state["context"]
    ids, X, _ = cached_features(feat, ds, ctx.options, extra_key=ctx.cache_key)
    z, pos, _ = ds.structures.atoms_of(ids[3])
    model = load_model(stand_in.path, ctx.options["head"])
    index = {s: t for t, s in enumerate(model.get_type_map())}
    from ase.data import chemical_symbols

    atype = np.array([[index[chemical_symbols[int(a)]] for a in z]])
    desc = np.asarray(model.eval_descriptor(pos.reshape(1, -1), None, atype, mixed_type=True)).reshape(len(z), -1)
    assert np.allclose(X[3, :desc.shape[1]], desc.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert np.allclose(X[3, desc.shape[1]:], desc.sum(axis=0), rtol=1e-5, atol=1e-5)


def test_installed_package_finds_splits_and_cards_from_any_folder(tmp_path):
    """A built wheel carries the canonical split files and cards (ood_bench/bundled/) and the
    shipped stand-in checkpoint."""
    from ood_bench.io_utils import sha256_file

    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0 and "setuptools" in out.stderr and "Could not" in out.stderr:
        pytest.skip("no package index reachable to build the wheel's build environment")
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("oodbench-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "ood_bench" / "bundled" / "splits" / "qm9" / "boom-gap.json.xz").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OODBENCH_SPLITS") and k != "OODBENCH_BASELINES_DIR"}
    env["PYTHONPATH"] = str(site)
    code = ("import ood_bench, ood_bench.paths as p, pathlib;"
            f"assert pathlib.Path(ood_bench.__file__).is_relative_to(pathlib.Path(r'{site}'));"
            "print(p.splits_dir(), p.baselines_dir())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere, env=env)
    assert res.returncode == 0, res.stderr
    splits, cards = (Path(x) for x in res.stdout.split())
    assert splits == site / "ood_bench" / "bundled" / "splits" and cards.name == "baselines"
    listing = subprocess.run([sys.executable, "-m", "ood_bench", "split", "--list"], capture_output=True, text=True,
                             cwd=elsewhere, env=env)
    assert listing.returncode == 0, listing.stderr
    assert "boom-gap" in listing.stdout and "omee2024-LOCO" in listing.stdout
    # the shipped stand-in loads from the installed package (no rebuilt copy in an empty cache)
    env["OODBENCH_CACHE_DIR"] = str(tmp_path / "empty-cache")
    code = ("from ood_bench.backends.deepmd.pretrained import load_pretrained as l; m = l('oodbench-small');"
            "print(m.path, m.sha256, m.stand_in)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    path, sha, flag = res.stdout.split()
    shipped = REPO / "ood_bench" / "pretrained" / "oodbench-small.pt"
    assert Path(path).is_relative_to(site) and sha == sha256_file(shipped) and flag == "True"


def test_a_crash_between_model_and_record_never_leaves_an_old_record_beside_a_new_model(env, tmp_path,
                                                                                           monkeypatch):
    """--force rerun that dies after the new model file landed: no record at all (the old one was
    removed first), so resume redoes the run instead of trusting a record about another model."""
    import ood_bench.runner.execute as ex
    from ood_bench.io_utils import sha256_file

    s = spec("dpa3", "qm9", env, tmp_path, strategy="scratch", steps=2)
    first = execute(s)
    old_model = sha256_file(first.with_name("model.pt"))
    assert read_json(first)["training"]["model_sha256"] == old_model

    def crash(*args, **kwargs):
        raise RuntimeError("killed between model.pt and record.json")

    monkeypatch.setattr(ex, "write_record", crash)
    with pytest.raises(RuntimeError):
        execute(RunSpec(**{**s.__dict__, "steps": 3}))
    assert not first.exists(), "the old record must not survive next to the new model"
    assert sha256_file(first.with_name("model.pt")) != old_model
    monkeypatch.undo()
    assert status_of(s) == "todo"


def test_evaluation_threads_leave_busy_cores_alone(monkeypatch):
    """Torch threads on a core another process is using spin and slow evaluation down several
    times, so evaluation takes only the idle cores; OODBENCH_EVAL_THREADS overrides."""
    import time

    from ood_bench.backends.deepmd.launcher import inference_threads
    from ood_bench.procs import idle_cores, usable_cores

    monkeypatch.delenv("OODBENCH_EVAL_THREADS", raising=False)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert 1 <= inference_threads() <= max(1, usable_cores() - 1)
        assert 1 <= idle_cores() <= max(1, usable_cores() - 1)
    finally:
        busy.kill()
        busy.wait()
    monkeypatch.setenv("OODBENCH_EVAL_THREADS", "3")
    assert inference_threads() == 3


def test_idle_cores_ignores_a_momentary_runnable_thread(monkeypatch):
    """One /proc/loadavg sample often caught a thread of our own starting up while a model was
    loading, and the whole run then evaluated on one core: the fewest over a few samples counts."""
    from ood_bench import procs

    samples = iter([3, 1, 2, 1, 1])
    monkeypatch.setattr(procs, "_running_tasks", lambda wait_s: next(samples))
    monkeypatch.setattr(procs, "usable_cores", lambda: 2)
    assert procs.idle_cores() == 2
    samples = iter([2, 2, 2, 2, 2])
    assert procs.idle_cores() == 1


def test_a_sweep_logged_to_a_file_says_each_finished_run(env, tmp_path):
    import io

    from rich.console import Console

    from ood_bench.commands.run_report import execute_sweep

    specs = [RunSpec(**{**spec("dummy", "matbench_dielectric", env, tmp_path).__dict__,
                        "key": RunKey("matbench_dielectric", "toy", "0", "dummy", "scratch", seed, 1.0, "n")})
             for seed in (0, 1)]
    logged = io.StringIO()
    assert execute_sweep(specs, "local", {"jobs": 1}, console=Console(file=logged, width=200))
    lines = [ln for ln in logged.getvalue().splitlines() if ln.startswith("run ")]
    assert [ln.split(":")[0] for ln in lines] == ["run 1/2 done", "run 2/2 done"], logged.getvalue()
    assert "seed 1" in lines[1]
    live = io.StringIO()  # a terminal has the live bar instead
    specs = [RunSpec(**{**specs[0].__dict__, "key": RunKey("matbench_dielectric", "toy", "0", "dummy", "scratch",
                                                           2, 1.0, "n")})]
    assert execute_sweep(specs, "local", {"jobs": 1}, console=Console(file=live, width=200, force_terminal=True))
    assert "run 1/1 done" not in live.getvalue()


def test_library_code_never_imports_the_cli_layer():
    """The CLI (``cli.py``, ``commands/``) calls the library, never the other way round, so the
    library runs the same from a script, a notebook or a dpdispatcher task."""
    import ast

    package = REPO / "ood_bench"
    cli_layer = ("ood_bench.cli", "ood_bench.commands", "ood_bench.__main__")
    upward = []
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        if module.startswith(cli_layer):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = module.split(".")[: len(module.split(".")) - node.level] if node.level else []
                if path.name == "__init__.py" and node.level:
                    base = module.split(".")[: len(module.split(".")) - node.level + 1]
                names = [".".join([*base, node.module or ""]).rstrip(".")]
                names += [f"{names[0]}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            upward += [f"{module}: {n}" for n in names if n.startswith(cli_layer)]
    assert not upward, upward
