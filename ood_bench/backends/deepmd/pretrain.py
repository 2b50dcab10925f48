"""Build an offline stand-in pretrained model: a multi-branch DPA3 force field made here.

It stands in for DPA-3.1-3M where that cannot be downloaded (no internet, tests, the quickstart).
Two branches, each trained on data this module generates and labels itself: ``qm9_gfn2``
(perturbed QM9 conformers, GFN2-xTB) and ``matbench_chgnet`` (perturbed MatBench crystals,
CHGNet). A seeded share of those frames ships with the checkpoint as the MFT auxiliary set.

Recipes: ``small`` is the model oodbench ships (``oodbench-small``); ``tiny`` is a fast one for
tests. Molecules in any test set of the canonical QM9 BOOM splits never enter the data (checked,
and recorded in the checkpoint). Labelling is saved in chunks and training checkpoints every
tenth of its steps, so a killed build resumes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...datasets import concat_structures, load_dataset
from .auxdata import Frames, label_frames, perturb
from .data import full_type_map, write_systems
from .inputs import ENER_LOSS, VIRIAL_PREFS
from .launcher import dp_train
from .presets import PRESETS
from .standin import export_checkpoint, qm9_test_exclusion, read_embedded_meta, stand_in_dir

log = logging.getLogger(__name__)

MOLECULE_BRANCH = "qm9_gfn2"
CRYSTAL_BRANCH = "matbench_chgnet"
PRETRAIN_SEED_OFFSET = 10_000
CRYSTAL_SOURCES = ("matbench_dielectric", "matbench_log_gvrh", "matbench_perovskites")


@dataclass(frozen=True)
class PretrainConfig:
    """One stand-in recipe. ``n_molecules`` 0: every eligible QM9 molecule."""

    recipe: str = "tiny"
    preset: str = "tiny"
    n_molecules: int = 400
    n_crystals: int = 240
    n_copies: int = 2
    steps: int = 1500
    seed: int = 0
    holdout: float = 0.02
    aux_frames: int = 100_000  # per branch, shipped as the MFT auxiliary set
    crystals: bool = True  # False: molecules-only stand-in (no MatBench data on this machine)

    @property
    def name(self) -> str:
        return f"oodbench-{self.recipe}"


RECIPES: dict[str, PretrainConfig] = {
    "tiny": PretrainConfig(),
    "small": PretrainConfig(recipe="small", preset="small", n_molecules=0, n_crystals=6000, n_copies=1,
                            steps=16_000, aux_frames=8000),
}


def recipe(name: str, **overrides: Any) -> PretrainConfig:
    from ...errors import UsageError

    if name not in RECIPES:
        raise UsageError(f"unknown stand-in recipe '{name}'; recipes: {', '.join(RECIPES)}")
    return dataclasses.replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})


def _sample(ids: list, n: int, rng: np.random.Generator) -> list:
    if n <= 0 or n >= len(ids):
        return list(ids)
    return [ids[i] for i in sorted(rng.choice(len(ids), n, replace=False))]


def source_structures(cfg: PretrainConfig, data_dir: str | None) -> dict[str, dict[str, Any]]:
    """Per branch: the perturbed structures to label, the labeller and what they came from."""
    rng = np.random.default_rng(cfg.seed)
    qm9 = load_dataset("qm9", data_dir)
    excluded, clean_for = qm9_test_exclusion()
    eligible = [i for i in qm9.ids_with_structures() if i not in excluded]
    mol_ids = _sample(eligible, cfg.n_molecules, rng)
    out = {MOLECULE_BRANCH: {
        "structures": perturb(qm9.structures.subset(mol_ids), cfg.n_copies, 0.05, 0.0, cfg.seed),
        "labeller": "gfn2-xtb", "virial": False,
        "source": {"dataset": "qm9", "n_structures": len(mol_ids), "n_eligible": len(eligible),
                   "excluded": {"rule": "every id_test/ood_test molecule of these QM9 split files",
                                "splits": clean_for, "n_excluded": len(excluded),
                                "overlap_checked": not (set(mol_ids) & excluded)}}}}
    if not cfg.crystals:
        return out
    per = max(1, cfg.n_crystals // len(CRYSTAL_SOURCES))
    parts, used = [], {}
    for name in CRYSTAL_SOURCES:
        ds = load_dataset(name, data_dir)
        ids = _sample(ds.ids_with_structures(), per, rng)
        parts.append(ds.structures.subset(ids))
        used[name] = len(ids)
    out[CRYSTAL_BRANCH] = {
        "structures": perturb(concat_structures(parts), cfg.n_copies, 0.03, 0.02, cfg.seed),
        "labeller": "chgnet", "virial": True,
        "source": {"datasets": used, "note": "MatBench crystals appear in MatBench test folds: their "
                   "CHGNet energies and forces, never the benchmark targets, were seen in pretraining"}}
    return out


def _fingerprint(st, labeller: str) -> str:
    """Labels are reused only for exactly these frames and this labeller."""
    import hashlib

    h = hashlib.sha256(labeller.encode())
    h.update(np.ascontiguousarray(st.positions).tobytes())
    h.update(np.ascontiguousarray(st.numbers).tobytes())
    return h.hexdigest()[:12]


def holdout_rows(n: int, fraction: float, seed: int) -> np.ndarray:
    k = max(1, int(round(n * fraction))) if fraction > 0 else 0
    return np.sort(np.random.default_rng(seed + 1).permutation(n)[:k])


def multitask_input(branches: dict[str, dict[str, Any]], workdir: Path, cfg: PretrainConfig) -> dict[str, Any]:
    preset = PRESETS[cfg.preset]
    init_seed = PRETRAIN_SEED_OFFSET + cfg.seed  # never the same init as a seed-k Scratch run
    desc = dict(preset.descriptor, seed=init_seed)
    fitting = {"type": "ener", "neuron": list(preset.fitting_neuron), "resnet_dt": True,
               "activation_function": "silut:3.0", "dim_case_embd": len(branches), "seed": init_seed}
    return {
        "model": {
            "shared_dict": {"type_map_all": full_type_map(), "dpa3_descriptor": desc},
            "model_dict": {b: {"type_map": "type_map_all", "descriptor": "dpa3_descriptor",
                               "fitting_net": dict(fitting)} for b in branches},
        },
        "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-5,
                          "decay_steps": max(1, cfg.steps // 20)},
        "loss_dict": {b: dict(ENER_LOSS, **(VIRIAL_PREFS if info["virial"] else {})) for b, info in branches.items()},
        "training": {
            "model_prob": {b: 1.0 / len(branches) for b in branches},
            "data_dict": {b: {"training_data": {"systems": info["systems"], "batch_size": "auto:64"}}
                          for b, info in branches.items()},
            "numb_steps": cfg.steps, "seed": cfg.seed, "disp_freq": max(1, cfg.steps // 50),
            "save_freq": max(1, cfg.steps // 10), "max_ckpt_keep": 2,
            "save_ckpt": str(workdir / "model.ckpt"), "disp_file": str(workdir / "lcurve.out"),
        },
    }


def _label_branches(cfg: PretrainConfig, data_dir: str | None, work: Path, progress) -> dict[str, dict[str, Any]]:
    """Label each branch (resumable), split off held-out frames, write deepmd systems."""
    branches = {}
    for branch, src in source_structures(cfg, data_dir).items():
        t = time.time()
        chunks = work / "labels" / f"{branch}-{_fingerprint(src['structures'], src['labeller'])}"
        frames = label_frames(src["structures"], src["labeller"], chunks, progress=progress)
        held = holdout_rows(len(frames), cfg.holdout, cfg.seed)
        train = frames.take(np.setdiff1d(np.arange(len(frames)), held))
        systems = write_systems(work / "data" / branch, train.structures, train.structures.ids, train.labels())
        branches[branch] = {
            "labeller": src["labeller"], "virial": src["virial"], "source": src["source"],
            "n_frames": len(train), "n_holdout": len(held), "label_seconds": round(time.time() - t, 1),
            "systems": [str(s) for s in systems.systems], "_train": train, "_holdout": frames.take(held)}
    return branches


def pretrain(cfg: PretrainConfig, data_dir: str | None = None, force: bool = False,
             output_dir: Path | None = None) -> Path:
    """Build (or reuse) the stand-in checkpoint; returns its path."""
    out = Path(output_dir) if output_dir else stand_in_dir(cfg.name)
    ckpt = out / f"{cfg.name}.pt"
    if ckpt.exists() and not force and (read_embedded_meta(ckpt) or {}).get("config") == asdict(cfg):
        log.info("stand-in pretrained model already built: %s (use --force to rebuild)", ckpt)
        return ckpt
    work = stand_in_dir(cfg.name) / "work"
    t0 = time.time()
    from ...progress import progress_bar, step_callback
    from .launcher import step_of

    with progress_bar() as progress:
        branches = _label_branches(cfg, data_dir, work, progress)
        config = multitask_input(branches, work / "train", cfg)
        task = progress.add_task(f"training the stand-in ({len(branches)} branches)", total=cfg.steps)
        dp_train(config, work / "train", _restart_args(work / "train", cfg, force), label="oodbench pretrain",
                 on_line=step_callback(progress, task, step_of))
    train_s = time.time() - t0
    final = work / "train" / "model.ckpt.pt"
    quality = {b: holdout_errors(final, b, info["_holdout"], info["_train"], cfg.seed)
               for b, info in branches.items()}
    meta = _metadata(cfg, branches, quality, config, round(train_s, 1))
    aux = {b: _aux_share(info["_train"], cfg.aux_frames, cfg.seed) for b, info in branches.items()}
    return export_checkpoint(final, ckpt, meta, aux)


def _restart_args(train_dir: Path, cfg: PretrainConfig, force: bool) -> list[str]:
    """Resume a killed pretraining of the same recipe from its newest checkpoint; anything else
    (or ``--force``) starts afresh."""
    import json
    import shutil

    from .predict import list_checkpoints

    stamp = train_dir / "recipe.json"
    same = not force and stamp.exists() and json.loads(stamp.read_text()) == asdict(cfg)
    if not same and train_dir.exists():
        shutil.rmtree(train_dir)
    train_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(asdict(cfg)))
    ckpts = list_checkpoints(train_dir)
    return ["--restart", str(ckpts[-1][1])] if ckpts else []


def _aux_share(frames: Frames, n: int, seed: int) -> Frames:
    rows = np.sort(np.random.default_rng(seed + 2).permutation(len(frames))[:n])
    return frames.take(rows)


def _metadata(cfg: PretrainConfig, branches: dict, quality: dict, config: dict, seconds: float) -> dict[str, Any]:
    from ...versions import package_versions

    return {
        "stand_in": True,
        "name": cfg.name,
        "note": (f"{cfg.name}: small offline stand-in for DPA-3.1-3M, trained by `oodbench pretrain --recipe "
                 f"{cfg.recipe}` on GFN2-xTB-labelled QM9 conformers and CHGNet-labelled MatBench crystals "
                 "(stand-ins for SPICE2/OMat24); not comparable to published DPA3 numbers"),
        "aux_branch_for": {"molecules": MOLECULE_BRANCH, **({"crystals": CRYSTAL_BRANCH} if cfg.crystals else {})},
        "data": {b: {k: v for k, v in info.items() if not k.startswith("_") and k != "systems"}
                 for b, info in branches.items()},
        "holdout_errors": quality,
        "config": asdict(cfg),
        "recipe_command": f"oodbench pretrain --recipe {cfg.recipe} --force",
        "build_seconds": seconds,
        "versions": package_versions("deepmd-kit", "torch", "tblite", "chgnet"),
        "deepmd_input": {k: v for k, v in config.items() if k != "training"},
    }


def holdout_errors(checkpoint: Path, branch: str, frames: Frames, train: Frames | None = None,
                   seed: int = 0) -> dict[str, float]:
    """The force field at its own job on frames it never saw, next to the labels' spread.

    The energy spread is what counting atoms gets: the per-atom RMSE, on these frames, of a
    per-element linear fit made on the training frames (fit in-sample it flatters the spread when
    elements are many and frames few, as for crystals). Errors on as many training frames say
    whether the model underfits (train ~ held-out) or lacks data (train << held-out)."""
    from .predict import load_model

    if not len(frames):
        return {}
    model = load_model(checkpoint, branch)
    has_train = train is not None and len(train) > 0
    reference = train if has_train else frames
    out = {"n_frames": len(frames), **_errors(model, frames),
           "energy_spread_ev_per_atom": counting_rmse(reference, frames),
           "force_spread_ev_per_a": float(np.std(frames.force))}
    if has_train:
        sample = train_sample(train, len(frames), seed)
        out.update({f"train_{k}": v for k, v in _errors(model, sample).items()})
        out.update(n_train_frames=len(sample), train_force_spread_ev_per_a=float(np.std(sample.force)))
    return out


def train_sample(train: Frames, n: int, seed: int) -> Frames:
    """The ``n`` training frames a build's training-frame errors are measured on."""
    return train.take(np.sort(np.random.default_rng(seed + 3).permutation(len(train))[:n]))


def rebuild_holdout(meta: dict[str, Any], data_dir: str | None, work: Path) -> dict[str, Frames]:
    """Per branch: a build's held-out frames, rebuilt from the recipe in its metadata and
    relabelled under ``work`` (the labeller must keep every frame for the rows to line up)."""
    cfg = PretrainConfig(**meta["config"])
    out = {}
    for branch, src in source_structures(cfg, data_dir).items():
        st = src["structures"]
        held = holdout_rows(len(st), cfg.holdout, cfg.seed)
        out[branch] = label_frames(st.subset([st.ids[r] for r in held]), src["labeller"], work / branch)
    return out


def _errors(model, frames: Frames) -> dict[str, float]:
    e_pred, f_pred = _predict_energy_forces(model, frames)
    nat = frames.structures.natoms()
    return {"energy_rmse_ev_per_atom": float(np.sqrt(np.mean(((e_pred - frames.energy) / nat) ** 2))),
            "force_rmse_ev_per_a": float(np.sqrt(np.mean((f_pred - frames.force) ** 2)))}


def counting_rmse(fit_on: Frames, apply_to: Frames) -> float:
    """Per-atom energy RMSE on ``apply_to`` of a per-element linear fit to ``fit_on``."""
    elements = np.union1d(np.unique(fit_on.structures.numbers), np.unique(apply_to.structures.numbers))
    coef, *_ = np.linalg.lstsq(_composition(fit_on, elements), fit_on.energy, rcond=None)
    resid = (apply_to.energy - _composition(apply_to, elements) @ coef) / apply_to.structures.natoms()
    return float(np.sqrt(np.mean(resid ** 2)))


def _composition(frames: Frames, elements: np.ndarray) -> np.ndarray:
    st = frames.structures
    out = np.zeros((len(st), len(elements)))
    for k in range(len(st)):
        z = st.numbers[st.offsets[k]:st.offsets[k + 1]]
        out[k] = [(z == e).sum() for e in elements]
    return out


def _predict_energy_forces(model, frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    st = frames.structures
    e_pred, f_pred = np.zeros(len(st)), np.zeros_like(frames.force)
    nat = st.natoms()
    for n in np.unique(nat):
        sel = np.flatnonzero(nat == n)
        idx = st.offsets[sel][:, None] + np.arange(n)[None, :]
        box = None if st.cells is None else st.cells[sel].reshape(len(sel), 9)
        e, f, _ = model.eval(st.positions[idx].reshape(len(sel), -1), box, (st.numbers[idx] - 1).astype(int),
                             mixed_type=True)
        e_pred[sel] = np.asarray(e).reshape(-1)
        f_pred[idx.reshape(-1)] = np.asarray(f).reshape(-1, 3)
    return e_pred, f_pred
