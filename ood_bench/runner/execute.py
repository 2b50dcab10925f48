"""Execute one run, model-agnostically: resolve it, hand the fold's labelled sets to the model's
backend to train, select a candidate on validation only, predict every evaluation set, and write
one self-describing record atomically, last (after the log and the model file).

A run that dies leaves only its work folder (no new record), so rerunning redoes it from scratch,
except the training stages a backend stamped as finished (``FINISHED_STAGE``), which it may reuse.
"""

from __future__ import annotations

import logging
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import FINISHED_STAGE, Backend, Candidate, EvalSet, FoldInputs, Resolution, Trained, backend_for
from ..datasets import LoadedDataset, TargetInfo, load_dataset
from ..errors import OodBenchError, UsageError
from ..evaluate import evaluate_sets, regression_metrics
from ..io_utils import atomic_write_bytes, sha256_file
from ..models import MODELS, ModelSpec
from ..paths import portable, portable_roots
from ..paths import results_dir as resolve_results
from ..records import FORMAT, LEGACY_RECORD_NAME, record_path, write_record
from ..splits import Fold, load_split
from ..strategies import STRATEGIES, Strategy
from ..versions import run_versions
from .identity import canonical, fingerprint_of
from .spec import RunSpec

log = logging.getLogger(__name__)


@dataclass
class PreparedRun:
    """Everything resolved and validated before any training (cheap: seconds)."""

    spec: RunSpec
    model: ModelSpec
    backend: Backend
    strategy: Strategy
    dataset: LoadedDataset
    target: TargetInfo
    fold: Fold
    split_sha256: str
    split_path: str
    resolution: Resolution

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.spec, self.resolution.identity)


def default_split(dataset_kind: str, prop: str) -> str:
    return f"boom-{prop}" if dataset_kind == "molecules" else "omee2024-LOCO"


def prepare(spec: RunSpec) -> PreparedRun:
    """Resolve and validate a run: model, strategy, dataset, split file, fold, the backend's options.

    Every problem surfaces here as a one-line error, before anything is queued or trained.
    """
    spec = canonical(spec)
    key = spec.key
    model = MODELS.get(key.model)
    model.check_strategy(key.strategy)
    model.preset(spec.preset)
    strategy = STRATEGIES.get(key.strategy)
    strategy.resolve_params(spec.strategy_params)
    ds = load_dataset(key.dataset, spec.data_dir)
    target = ds.spec.target(key.property or None)
    split = load_split(key.dataset, key.split, spec.splits_dir, known_ids=ds.known_ids)
    if split.property and split.property != target.name:
        raise UsageError(f"split {key.split} was made for property {split.property}, not {target.name}")
    fold = split.fold(key.fold)
    backend = backend_for(model)
    resolution = backend.resolve(spec, model, strategy, ds)
    return PreparedRun(spec, model, backend, strategy, ds, target, fold, split.sha256, str(split.path), resolution)


def training_ids(fold: Fold, spec: RunSpec) -> list:
    """The run's training set: a seeded subsample (``train_fraction``) of the subset pool, drawn
    with ``subset_seed`` (default: the run's seed). With pool train+val, the validation ids drawn
    for training leave the validation set (``fold_sets``): selection never sees a training id."""
    pool = fold.train + (fold.val if spec.subset_pool == "train+val" else [])
    seed = spec.key.seed if spec.subset_seed is None else spec.subset_seed
    return subsample_ids(pool, spec.key.train_fraction, seed)


def subsample_ids(ids: list, fraction: float, seed: int) -> list:
    if not 0 < fraction <= 1:
        raise UsageError(f"--train-fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return ids
    n = max(1, int(round(fraction * len(ids))))
    rng = np.random.default_rng([seed, int(round(fraction * 1e6))])
    keep = np.sort(rng.choice(len(ids), n, replace=False))
    return [ids[i] for i in keep]


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


def fold_sets(run: PreparedRun) -> tuple[dict[str, EvalSet], dict[str, int], dict[str, int]]:
    """The fold's sets (train subsampled) restricted to ids with a structure, with their labels;
    plus each set's size in the split and how many ids were dropped for lack of a structure."""
    key, ds = run.spec.key, run.dataset
    train = training_ids(run.fold, run.spec)
    drawn = set(train)
    wanted = {"train": train, "val": [i for i in run.fold.val if i not in drawn],
              **run.fold.tests}
    st = ds.structures
    sets, n, dropped = {}, {}, {}
    for name, ids in wanted.items():
        have = [i for i in ids if i in st]
        n[name], dropped[name] = len(ids), len(ids) - len(have)
        if not have:
            raise OodBenchError(f"{key.label()}: set '{name}' has no structures")
        sets[name] = EvalSet(name, have, _labels(ds, run.target.name, have, f"{key.dataset} {name}"))
    return sets, n, dropped


# The runs' scratch folders (checkpoints, deepmd data), under the results folder, git-ignored.
SCRATCH = "scratch"


def work_dir(spec: RunSpec) -> Path:
    return resolve_results(spec.results_dir) / SCRATCH / spec.key.relpath()


def _fresh(path: Path) -> Path:
    """The run's work folder, emptied of a killed attempt's leftovers, except subfolders stamped
    as finished stages (the backend checks each stamp before reusing the stage)."""
    if path.exists():
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                if not (child / FINISHED_STAGE).is_file():
                    shutil.rmtree(child)
            else:
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def select(run: PreparedRun, inputs: FoldInputs, trained: Trained
           ) -> tuple[Candidate, list[dict[str, Any]], np.ndarray]:
    """The candidate with the lowest validation RMSE (``--select last``: the last one), its scores
    and the chosen one's validation predictions (so they are not computed twice)."""
    candidates = trained.candidates if run.spec.selection == "best_val" else trained.candidates[-1:]
    val = inputs.sets["val"]
    scored, preds = [], []
    for cand in candidates:
        preds.append(np.asarray(run.backend.predict(inputs, trained, cand, val)))
        rmse = regression_metrics(val.y, preds[-1])["rmse"]
        scored.append({"step": cand.step, "candidate": cand.name, "val_rmse": rmse})
    best = min(range(len(scored)), key=lambda i: scored[i]["val_rmse"])
    return candidates[best], scored, preds[best]


def predict_sets(run: PreparedRun, inputs: FoldInputs, trained: Trained, best: Candidate,
                 known: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Predictions of ``best`` on every evaluation set; ``known`` ones (validation) are reused."""
    out = {}
    for name, eval_set in inputs.sets.items():
        if name == "train":
            continue
        y = (known or {}).get(name)
        if y is None:
            y = run.backend.predict(inputs, trained, best, eval_set)
        out[name] = {"id": list(eval_set.ids), "y_true": eval_set.y.tolist(), "y_pred": np.asarray(y).tolist()}
    return out


def execute(spec: RunSpec, on_line: Callable[[str], None] | None = None) -> Path:
    """Run one training + evaluation and write its record; returns the record path."""
    timing: dict[str, float] = {}
    t_start = time.time()
    run = prepare(spec)
    timing["prepare_s"] = time.time() - t_start
    work = _fresh(work_dir(run.spec))
    sets, n, dropped = fold_sets(run)
    preset = run.model.preset(run.spec.preset)
    params = run.strategy.resolve_params(run.spec.strategy_params)
    inputs = FoldInputs(run.spec, run.model, run.strategy, run.dataset, run.target, sets, work, run.resolution, preset,
                        params)
    t0 = time.time()
    trained = run.backend.train(inputs, on_line=on_line)
    timing["train_s"] = time.time() - t0 - trained.data.get("fold_data_seconds", 0.0)
    timing["data_s"] = trained.data.get("fold_data_seconds", 0.0)
    t0 = time.time()
    best, scored, val_pred = select(run, inputs, trained)
    predictions = predict_sets(run, inputs, trained, best, {"val": val_pred})
    timing["eval_s"] = time.time() - t0
    timing["wall_s"] = time.time() - t_start
    record = build_record(run, trained, best, scored, predictions, n, dropped, timing)
    path = finalize(run, trained, best, record)
    if not run.spec.keep_work:
        results = resolve_results(run.spec.results_dir)
        shutil.rmtree(work, ignore_errors=True)
        _prune_empty(work.parent, results / SCRATCH)
    return path


def build_record(run: PreparedRun, trained: Trained, best: Candidate, scored: list[dict[str, Any]],
                 predictions: dict[str, Any], n: dict[str, int], dropped: dict[str, int],
                 timing: dict[str, float]) -> dict[str, Any]:
    spec, ds = run.spec, run.dataset
    return {
        "format": FORMAT,
        "status": "complete",
        "key": spec.key.to_dict(),
        "config": {
            "preset": spec.preset, "unit": run.target.unit, "target_kind": run.target.kind,
            "strategy_label": run.strategy.label, "model_label": run.model.label,
            "strategy_params": run.strategy.resolve_params(spec.strategy_params),
            "backend": run.backend.name, "model_version": run.model.version,
            "selection": spec.selection, "fingerprint": run.fingerprint, "spec": spec.to_json(),
            **trained.config,
        },
        "versions": run_versions(run.backend.versions()),
        "data": {
            "dataset_source": ds.source, "dataset_sha256": ds.sha256, "dataset_checksum_status": ds.checksum_status,
            "split_file": run.split_path, "split_sha256": run.split_sha256,
            "n": n, "n_train": n["train"] - dropped["train"], "dropped_without_structure": dropped,
            "train_subset": {"fraction": spec.key.train_fraction, "pool": spec.subset_pool,
                             "seed": spec.key.seed if spec.subset_seed is None else spec.subset_seed},
            **trained.data,
        },
        **{"pretrained": None, "aux": None, **run.resolution.record},
        "environment": {"device": _device(), "host": platform.node()},
        "timing": {**{k: round(v, 2) for k, v in timing.items()},
                   "peak_train_mem_mb": None if trained.peak_mem_mb is None else round(trained.peak_mem_mb, 1)},
        "training": {**trained.training, "selected_step": best.step, "selection": scored,
                     "checkpoint": best.name, "model_file": run.backend.model_file},
        "predictions": predictions,
        "metrics": evaluate_sets(predictions),
    }


def finalize(run: PreparedRun, trained: Trained, best: Candidate, record: dict[str, Any]) -> Path:
    """Log and model file first, the record last: a crash in between leaves no record beside a
    model it does not describe (an old record is removed before the new files land)."""
    spec = run.spec
    results = resolve_results(spec.results_dir)
    roots = portable_roots(spec.data_dir, spec.splits_dir, spec.results_dir)
    out = record_path(results, spec.key)
    out.parent.mkdir(parents=True, exist_ok=True)
    for old in (out, out.with_name(LEGACY_RECORD_NAME)):
        old.unlink(missing_ok=True)
    if trained.log_file is not None:
        text = trained.log_file.read_text(errors="replace")
        atomic_write_bytes(out.parent / "train.log", portable(text, roots).encode())
    if run.backend.model_file:
        model_path = out.parent / run.backend.model_file
        run.backend.save_model(trained, best, model_path)
        record["training"]["model_sha256"] = sha256_file(model_path)  # analysis refuses a swapped model
    return write_record(results, portable(record, roots))


def _device() -> str:
    try:
        import torch
    except ImportError:
        return f"cpu ({platform.processor() or platform.machine()})"
    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu ({platform.processor() or platform.machine()})"


def _prune_empty(path: Path, stop: Path) -> None:
    while path != stop and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        path = path.parent
