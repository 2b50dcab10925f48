"""Execute one run: build the fold's deepmd data, train with deepmd-kit, select a checkpoint on
validation, predict every evaluation set, and write one self-describing record atomically.

A run that dies leaves only its work folder (no record), so rerunning redoes it from scratch.
"""

from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..datasets import LoadedDataset, load_dataset
from ..errors import OodBenchError, UsageError
from ..evaluate import evaluate_sets, regression_metrics
from ..models import MODELS
from ..models.deepmd_data import SystemSet, full_type_map, write_systems
from ..paths import results_dir as resolve_results
from ..pretrained import STAND_IN, PretrainedModel, load_pretrained
from ..records import FORMAT, record_path, write_record
from ..splits import Fold, load_split
from ..strategies import STRATEGIES, RunContext, Strategy
from .predict import list_checkpoints, load_model, predict
from .spec import RunSpec

log = logging.getLogger(__name__)
MODEL_FILE = "model.pt"


@dataclass
class PreparedRun:
    """Everything resolved and validated before any training (cheap: seconds)."""

    spec: RunSpec
    dataset: LoadedDataset
    strategy: Strategy
    fold: Fold
    split_sha256: str
    split_path: str
    pretrained: PretrainedModel | None
    aux_branch: str | None
    aux_systems: list[str]
    aux_has_virial: bool


def default_split(dataset_kind: str, prop: str) -> str:
    return f"boom-{prop}" if dataset_kind == "molecules" else "omee2024-LOCO"


def default_pretrained(preset: str) -> str:
    return "DPA-3.1-3M" if preset == "paper" else STAND_IN


def prepare(spec: RunSpec) -> PreparedRun:
    """Resolve and validate a run: dataset, split file, fold, strategy, checkpoint, branches.

    Every problem surfaces here as a one-line error, before anything is queued or trained.
    """
    key = spec.key
    MODELS.get(key.model).preset(spec.preset)
    strategy = STRATEGIES.get(key.strategy)
    ds = load_dataset(key.dataset, spec.data_dir)
    target = ds.spec.target(key.property or None)
    split = load_split(key.dataset, key.split, spec.splits_dir, known_ids=ds.known_ids)
    if split.property and split.property != target.name:
        raise UsageError(f"split {key.split} was made for property {split.property}, not {target.name}")
    fold = split.fold(key.fold)
    pretrained = None
    if strategy.needs_pretrained or spec.pretrained:
        pretrained = load_pretrained(spec.pretrained or default_pretrained(spec.preset))
    aux_branch, aux_systems, aux_virial = None, [], False
    if strategy.uses_aux:
        assert pretrained is not None
        aux_branch = pretrained.check_branch(spec.aux_branch or pretrained.default_aux_branch(ds.spec.kind))
        if spec.aux_data:
            aux_systems = _expand_systems(spec.aux_data)
        else:
            info = pretrained.meta.get("aux_data", {}).get(aux_branch)
            if not info:
                raise UsageError(f"pass --aux-data (deepmd-format force-field data for branch {aux_branch})")
            aux_systems = info["systems"]
            missing = [s for s in aux_systems if not Path(s).exists()]
            if missing:
                raise OodBenchError(f"auxiliary data {missing[0]} is gone; rerun `oodbench pretrain --force`")
        aux_virial = any(Path(s).glob("set.*/virial.npy") for s in aux_systems)
    elif spec.aux_branch:
        assert pretrained is not None
        pretrained.check_branch(spec.aux_branch)
    return PreparedRun(spec, ds, strategy, fold, split.sha256, str(split.path), pretrained,
                       aux_branch, aux_systems, aux_virial)


def _expand_systems(paths: list[str]) -> list[str]:
    """A deepmd system is a folder with ``type.raw``; a parent folder stands for all below it."""
    out: list[str] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UsageError(f"--aux-data {p}: no such folder")
        found = [p] if (p / "type.raw").exists() else sorted(t.parent for t in p.rglob("type.raw"))
        if not found:
            raise UsageError(f"--aux-data {p}: no deepmd systems (folders with type.raw) inside")
        out.extend(str(f.resolve()) for f in found)
    return out


def _labels(ds: LoadedDataset, target: str, ids: list, where: str) -> np.ndarray:
    y = ds.target_values(target, ids)
    bad = ~np.isfinite(y)
    if bad.any():
        example = ids[int(np.flatnonzero(bad)[0])]
        raise OodBenchError(
            f"{int(bad.sum())} {target} labels in {where} are NaN/inf (e.g. id {example}); fix the data "
            "file or remove those ids from the split"
        )
    return y


def subsample_ids(ids: list, fraction: float, seed: int) -> list:
    if not 0 < fraction <= 1:
        raise UsageError(f"--train-fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return ids
    n = max(1, int(round(fraction * len(ids))))
    rng = np.random.default_rng([seed, int(round(fraction * 1e6))])
    keep = np.sort(rng.choice(len(ids), n, replace=False))
    return [ids[i] for i in keep]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, Any]:
    from importlib.metadata import version

    def v(pkg: str) -> str | None:
        try:
            return version(pkg)
        except Exception:
            return None

    return {"oodbench": __version__, "oodbench_commit": _git_commit(), "deepmd-kit": v("deepmd-kit"),
            "torch": v("torch"), "numpy": v("numpy"), "python": platform.python_version()}


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu ({platform.processor() or platform.machine()})"


def work_dir(spec: RunSpec) -> Path:
    return resolve_results(spec.results_dir) / "work" / spec.key.relpath()


def execute(spec: RunSpec, on_line: Callable[[str], None] | None = None) -> Path:
    """Run one training + evaluation and write its record; returns the record path."""
    t_start = time.time()
    run = prepare(spec)
    prepare_seconds = time.time() - t_start
    key, ds, strat = spec.key, run.dataset, run.strategy
    target = ds.spec.target(key.property or None)
    preset = MODELS.get(key.model).preset(spec.preset)
    results = resolve_results(spec.results_dir)
    work = work_dir(spec)
    if work.exists():
        shutil.rmtree(work)  # leftovers of a killed attempt: redo from scratch
    work.mkdir(parents=True)

    # --- data: only this fold's frames, written once per run -------------------------------
    t0 = time.time()
    st = ds.structures
    sets = {"train": subsample_ids(run.fold.train, key.train_fraction, key.seed), "val": run.fold.val,
            **run.fold.tests}
    dropped = {}
    systems: dict[str, SystemSet] = {}
    y_true: dict[str, np.ndarray] = {}  # labels in the order deepmd systems (and predict) yield ids
    for name, ids in sets.items():
        have = [i for i in ids if i in st]
        dropped[name] = len(ids) - len(have)
        if not have:
            raise OodBenchError(f"{key.label()}: set '{name}' has no structures")
        y = _labels(ds, target.name, have, f"{key.dataset} {name}")
        systems[name] = write_systems(work / "data" / name, st, have, {target.name: y[:, None]})
        truth = dict(zip(have, y, strict=True))
        y_true[name] = np.array([truth[i] for i in systems[name].ids])
    data_seconds = time.time() - t0
    data_bytes = sum(s.nbytes() for s in systems.values())

    # --- train -----------------------------------------------------------------------------
    pre = run.pretrained
    descriptor = pre.descriptor if pre is not None else preset.descriptor
    steps = spec.steps or preset.steps
    if strat.uses_aux and ds.spec.kind == "crystals" and spec.steps is None:
        steps = preset.extra.get("steps_mft_crystals", steps)
    ctx = RunContext(
        target=target, dataset_kind=ds.spec.kind, preset=preset, descriptor=descriptor,
        type_map=pre.type_map if pre is not None else full_type_map(),
        train_systems=[str(s) for s in systems["train"].systems],
        val_systems=[str(s) for s in systems["val"].systems],
        workdir=work, steps=steps, batch_size=spec.batch_size or preset.batch_size,
        start_lr=spec.learning_rate or preset.start_lr, seed=key.seed, pretrained=pre,
        aux_branch=run.aux_branch, aux_systems=run.aux_systems, aux_has_virial=run.aux_has_virial,
        aux_prob=spec.aux_prob, aux_batch_size=preset.aux_batch_size,
    )
    config = strat.build_input(ctx)
    args = strat.train_args(ctx)
    from ..deepmd_cli import dp_train, read_lcurve

    t0 = time.time()
    train_log, peak_mb = dp_train(config, work, args, label=key.label(), on_line=on_line)
    train_seconds = time.time() - t0

    # --- select on validation only, then predict every set ------------------------------------
    t0 = time.time()
    ckpts = list_checkpoints(work)
    if not ckpts:
        raise OodBenchError(f"{key.label()}: deepmd wrote no checkpoint (see {train_log})")
    candidates = ckpts if spec.selection == "best_val" else ckpts[-1:]
    selection = []
    best = None
    for step, path in candidates:
        model = load_model(path, strat.eval_head())
        _, yv = predict(model, systems["val"])
        rmse = regression_metrics(y_true["val"], yv)["rmse"]
        selection.append({"step": step, "val_rmse": rmse})
        if best is None or rmse < best[0]:
            best = (rmse, step, path, model)
    assert best is not None
    _, best_step, best_path, model = best
    predictions = {}
    for name, sset in systems.items():
        if name == "train":
            continue
        ids, yp = predict(model, sset)
        predictions[name] = {"id": ids, "y_true": y_true[name].tolist(), "y_pred": yp.tolist()}
    eval_seconds = time.time() - t0

    record = {
        "format": FORMAT,
        "status": "complete",
        "key": key.to_dict(),
        "config": {
            "preset": spec.preset, "unit": target.unit, "target_kind": target.kind,
            "strategy_label": strat.label, "steps": steps, "batch_size": ctx.batch_size,
            "learning_rate": ctx.start_lr, "aux_prob": spec.aux_prob if strat.uses_aux else None,
            "selection": spec.selection, "fingerprint": spec.fingerprint(), "spec": spec.to_json(),
            "deepmd_input": config, "dp_train_args": args,
            "architecture_from": pre.name if pre is not None else f"preset {spec.preset}",
        },
        "versions": _versions(),
        "data": {
            "dataset_source": ds.source, "dataset_sha256": ds.sha256, "dataset_checksum_status": ds.checksum_status,
            "split_file": run.split_path, "split_sha256": run.split_sha256,
            "n": {k: len(v) for k, v in sets.items()}, "n_train": len(sets["train"]) - dropped["train"],
            "dropped_without_structure": dropped,
            "fold_data_bytes": data_bytes, "fold_data_seconds": round(data_seconds, 3),
        },
        # Scratch may borrow a checkpoint's architecture, never its weights: not "pretrained".
        "pretrained": pre.record(run.aux_branch) if pre is not None and strat.needs_pretrained else None,
        "aux": {"branch": run.aux_branch, "systems": run.aux_systems} if strat.uses_aux else None,
        "environment": {"device": _device(), "host": platform.node()},
        "timing": {"prepare_s": round(prepare_seconds, 2), "data_s": round(data_seconds, 2),
                   "train_s": round(train_seconds, 2), "eval_s": round(eval_seconds, 2),
                   "wall_s": round(time.time() - t_start, 2),
                   "peak_train_mem_mb": round(peak_mb, 1)},
        "training": {"steps": steps, "selected_step": best_step, "selection": selection,
                     "checkpoint": best_path.name,
                     "model_file": MODEL_FILE, "eval_head": strat.eval_head(),
                     "learning_curve": read_lcurve(work / "lcurve.out")},
        "predictions": predictions,
        "metrics": evaluate_sets(predictions),
    }
    out = record_path(results, key)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(train_log, out.parent / "train.log")
    # The selected model stays beside its record (git-ignored) for analysis and reuse.
    shutil.copyfile(best_path, out.parent / MODEL_FILE)
    path = write_record(results, record)
    if not spec.keep_work:
        shutil.rmtree(work, ignore_errors=True)
        _prune_empty(work.parent, results / "work")
    return path


def _prune_empty(path: Path, stop: Path) -> None:
    while path != stop and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        path = path.parent
