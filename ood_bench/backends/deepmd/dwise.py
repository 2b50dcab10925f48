"""DWiSE-FT and MFT + DWiSE-FT on deepmd-kit (the deepmd side of ``ood_bench/strategies/interpolation.py``).

RoFt-Mol's DWiSE-FT (``Mole-BERT/DWISE.py``, ``GNN_interpolate`` in their ``model.py``): after full
fine-tuning, one coefficient per layer group, theta_l = alpha_l theta_ft,l + (1 - alpha_l) theta_pt,l,
with both weight sets and the fine-tuned head frozen; only the alphas are trained, with Adam on the
validation set. Here the layer groups are DPA3's (``group_of`` / ``all_groups`` in ``robust.py``),
the loss is deepmd's own training loss of the run (built by deepmd's ``get_loss`` from the input
``dp --pt train`` normalised, ``out.json``), evaluated by deepmd's ``ModelWrapper`` on the fine-tuned
model through ``torch.func.functional_call`` with the interpolated descriptor parameters. Nothing in
deepmd is patched: the model is built with deepmd's ``get_model`` from the checkpoint's stored input
and loaded with ``load_state_dict``, as ``DeepEval`` loads it. The interpolated checkpoint is then
written by checkpoint arithmetic (``mix``, as WiSE-FT's), exact at alpha 0 and 1.
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import OodBenchError, UsageError
from ...strategies import STRATEGIES
from .data import read_system_frames
from .inputs import RECIPES, FineTune, MultiTaskFineTune, Recipe, RunContext
from .robust import all_groups, backbone, group_of, interpolate_backbone, read_state

DWISE_FILE = "dwise.pt"
FIT_FILE = "dwise.json"  # the fit's outcome beside the checkpoints (read back by training_info)
_WRAPPED = "model.Default.atomic_model.descriptor."  # descriptor parameters inside deepmd's ModelWrapper


@dataclass(frozen=True)
class FitSettings:
    """How the alphas are fitted (``--strategy-param alpha_*``) and the seed of the batch order."""

    steps: int
    lr: float
    init: float
    batch: int
    seed: int

    @classmethod
    def of(cls, params: dict[str, Any], seed: int) -> FitSettings:
        return cls(int(params["alpha_steps"]), float(params["alpha_lr"]), float(params["alpha_init"]),
                   int(params["alpha_batch"]), seed)


# --- validation frames --------------------------------------------------------------------------
@dataclass
class Frames:
    """One deepmd system (all frames one atom count) as model inputs and deepmd labels."""

    coord: np.ndarray  # (nf, nat, 3)
    box: np.ndarray | None  # (nf, 3, 3); None without periodic cell
    atype: np.ndarray  # (nf, nat), the model's type indices
    labels: dict[str, np.ndarray]  # label name -> (nf, ndof)

    def __len__(self) -> int:
        return len(self.coord)


def read_frames(systems: list[str], label_ndof: dict[str, int], type_map: list[str]) -> list[Frames]:
    """The mixed-type systems ``data.write_systems`` wrote, atom types mapped to the model's type map
    (as deepmd's data loader maps a system's ``type_map.raw``), with the loss's frame labels."""
    index = {s: t for t, s in enumerate(type_map)}
    out = []
    for system in map(Path, systems):
        coord, box, atype = read_system_frames(system)
        lookup = np.array([index.get(s, -1) for s in (system / "type_map.raw").read_text().split()])
        mapped = lookup[atype]
        if (mapped < 0).any():
            raise OodBenchError(f"{system}: an element of these frames is not in the model's type map")
        nf = len(coord)
        labels = {key: np.concatenate([np.load(s / f"{key}.npy") for s in sorted(system.glob("set.*"))])
                  .reshape(nf, ndof) for key, ndof in label_ndof.items()}
        out.append(Frames(coord.reshape(nf, -1, 3), None if box is None else box.reshape(nf, 3, 3), mapped, labels))
    return out


def epoch(sizes: list[int], batch: int, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """Every frame once: each system's frames shuffled and cut into batches of at most ``batch``,
    the batches of all systems in a shuffled order (a batch never mixes atom counts)."""
    out = [(s, chunk) for s, n in enumerate(sizes) if n
           for chunk in np.array_split(rng.permutation(n), math.ceil(n / batch))]
    return [out[k] for k in rng.permutation(len(out))]


def batches(sizes: list[int], batch: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """Epochs over the frames, seeded, for as long as asked."""
    rng = np.random.default_rng(seed)
    while True:
        yield from epoch(sizes, batch, rng)


def in_order(sizes: list[int], batch: int) -> Iterator[tuple[int, np.ndarray]]:
    """Every frame once, in file order (full-set evaluations)."""
    for s, n in enumerate(sizes):
        for start in range(0, n, batch):
            yield s, np.arange(start, min(n, start + batch))


# --- the model: fine-tuned head, interpolated descriptor ----------------------------------------
def load_wrapper(finetuned: Path, branch: str | None, loss_params: dict[str, Any], start_lr: float):
    """deepmd's ``ModelWrapper`` of one branch of a checkpoint with the run's training loss: the model
    built by ``get_model`` from the checkpoint's stored input and loaded as ``DeepEval`` loads it, the
    loss built by the trainer's ``get_loss`` (which resolves oodbench's loss plugins by name)."""
    import deepmd.pt  # noqa: F401  (loads the deepmd.pt entry points: oodbench's heads and losses)
    import torch
    from deepmd.pt.model.model import get_model
    from deepmd.pt.train.training import get_loss
    from deepmd.pt.train.wrapper import ModelWrapper
    from deepmd.pt.utils.env import DEVICE

    state = torch.load(finetuned, map_location=DEVICE, weights_only=True)
    state = state.get("model", state)
    params = state["_extra_state"]["model_params"]
    if branch is not None:
        params = params["model_dict"][branch]
        prefix = f"model.{branch}."
        state = {"_extra_state": state["_extra_state"],
                 **{"model.Default." + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}}
    model = get_model(copy.deepcopy(params)).to(DEVICE)
    loss = get_loss(copy.deepcopy(loss_params), start_lr, len(model.get_type_map()), model)
    wrapper = ModelWrapper(model, loss)
    missing, unexpected = wrapper.load_state_dict(state, strict=False)
    missing = [k for k in missing if k.startswith("model.")]
    if missing or unexpected:
        raise OodBenchError(f"{finetuned.name}: the rebuilt model does not match the checkpoint "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    wrapper.eval()
    wrapper.requires_grad_(False)  # only the alphas are trained
    return wrapper


class Interpolation:
    """The fine-tuned model and its training loss, evaluated with every descriptor parameter
    replaced by (1 - alpha_g) theta_pt + alpha_g theta_ft of its layer group g. Computed in float64
    and cast back, exactly as ``mix`` writes the checkpoint, so the fitted loss is the saved model's."""

    def __init__(self, pretrained: Path, finetuned: Path, branch: str | None, loss_params: dict[str, Any],
                 start_lr: float) -> None:
        import torch

        self.wrapper = load_wrapper(finetuned, branch, loss_params, start_lr)
        self.lr = start_lr
        model, loss = self.wrapper.model["Default"], self.wrapper.loss["Default"]
        self.type_map = list(model.get_type_map())
        self.labels = self._labels(loss)
        pre = backbone(read_state(pretrained))
        self.params: dict[str, tuple[str, Any, Any]] = {}  # wrapper name -> (group, pretrained, fine-tuned)
        for full, ft in self.wrapper.named_parameters():
            if not full.startswith(_WRAPPED):
                continue
            name, group = full[len(_WRAPPED):], group_of(full[len(_WRAPPED):])
            if group == "other" or name not in pre or pre[name].shape != ft.shape:
                raise OodBenchError(f"descriptor parameter {name} is in no DPA3 layer group or has no "
                                    "pretrained counterpart of its shape; DWiSE-FT needs a DPA3 backbone")
            self.params[full] = (group, pre[name].to(ft.device, torch.float64), ft.detach().double())
        if not self.params:
            raise OodBenchError(f"{finetuned.name}: no descriptor parameters to interpolate")
        present = {g for g, _, _ in self.params.values()}
        nlayers = sum(1 for g in present if re.fullmatch(r"layer\d+", g))
        self.groups = [g for g in all_groups(nlayers) if g in present]
        if len(self.groups) != len(present):
            raise OodBenchError(f"layer groups {sorted(present - set(self.groups))} are not DPA3's")
        self._index = {g: k for k, g in enumerate(self.groups)}
        self._dtype = {full: p.dtype for full, p in self.wrapper.named_parameters() if full in self.params}

    @staticmethod
    def _labels(loss) -> dict[str, int]:
        out = {}
        for item in loss.label_requirement:
            if item.atomic:
                raise OodBenchError(f"DWiSE-FT fits frame labels only; the loss needs per-atom {item.key}")
            out[item.key] = item.ndof
        return out

    def weights(self, alphas) -> dict[str, Any]:
        """The interpolated descriptor parameters, by their name in the wrapper."""
        out = {}
        for full, (group, pt, ft) in self.params.items():
            a = alphas[self._index[group]]
            out[full] = ((1.0 - a) * pt + a * ft).to(self._dtype[full])
        return out

    def loss(self, frames: Frames, idx: np.ndarray, alphas):
        """deepmd's training loss of the frames ``idx`` (its own reduction over the batch)."""
        import torch
        from deepmd.pt.utils.env import DEVICE, GLOBAL_PT_FLOAT_PRECISION

        def t(a: np.ndarray, dtype=GLOBAL_PT_FLOAT_PRECISION):
            return torch.as_tensor(a[idx], dtype=dtype, device=DEVICE)

        label: dict[str, Any] = {k: t(v) for k, v in frames.labels.items()}  # fresh: deepmd's loss rescales it
        label.update({f"find_{k}": 1.0 for k in frames.labels})
        inputs = {"coord": t(frames.coord), "atype": t(frames.atype, torch.long),
                  "box": None if frames.box is None else t(frames.box), "label": label, "cur_lr": self.lr}
        _, loss, _ = torch.func.functional_call(self.wrapper, self.weights(alphas), args=(), kwargs=inputs)
        return loss

    def mean_loss(self, frames: list[Frames], alphas, batch: int) -> float:
        """The loss summed over every validation batch, per frame (deepmd's property losses sum
        over a batch's frames: the mean over frames)."""
        import torch

        total, n = 0.0, 0
        with torch.no_grad():
            for s, idx in in_order([len(f) for f in frames], batch):
                total += float(self.loss(frames[s], idx, alphas))
                n += len(idx)
        return total / max(n, 1)


def fit_alphas(pretrained: Path, finetuned: Path, val_systems: list[str], loss_params: dict[str, Any],
               settings: FitSettings, branch: str | None = None, start_lr: float = 0.0) -> dict[str, Any]:
    """Per-group alphas minimising the training loss on the validation systems (and nothing else):
    Adam from ``settings.init``, one batch per step, each alpha projected back to [0, 1]."""
    import torch
    from deepmd.pt.utils.env import DEVICE

    t0 = time.time()
    interp = Interpolation(pretrained, finetuned, branch, loss_params, start_lr)
    frames = read_frames(val_systems, interp.labels, interp.type_map)
    sizes = [len(f) for f in frames]
    if not sum(sizes):
        raise OodBenchError("DWiSE-FT: the validation set has no frames")
    alphas = torch.full((len(interp.groups),), settings.init, dtype=torch.float64, device=DEVICE,
                        requires_grad=True)
    loss_init = interp.mean_loss(frames, alphas.detach(), settings.batch)
    optimizer = torch.optim.Adam([alphas], lr=settings.lr)
    order = batches(sizes, settings.batch, settings.seed)
    for _ in range(settings.steps):
        s, idx = next(order)
        optimizer.zero_grad()
        interp.loss(frames[s], idx, alphas).backward()
        optimizer.step()
        with torch.no_grad():
            alphas.clamp_(0.0, 1.0)
    fitted = [float(a) for a in alphas.detach().cpu()]
    per_epoch = sum(math.ceil(n / settings.batch) for n in sizes if n)
    return {
        "alphas": dict(zip(interp.groups, fitted, strict=True)),
        "val_loss": {"init": loss_init, "fitted": interp.mean_loss(frames, alphas.detach(), settings.batch)},
        "val_frames": int(sum(sizes)), "epochs": round(settings.steps / per_epoch, 3),
        "fit_seconds": round(time.time() - t0, 2),
    }


# --- checkpoint arithmetic --------------------------------------------------------------------
def write_interpolation(pretrained: Path, finetuned: Path, alphas: dict[str, float], dest: Path) -> None:
    """Write ``dest``: the fine-tuned checkpoint with every branch's descriptor replaced by the
    per-group interpolation (``mix``: alpha 0 / 1 copy the pretrained / fine-tuned tensor bit for
    bit); heads, output bias/std and everything else as fine-tuned. A descriptor tensor outside the
    groups (statistics) must be equal at both ends, and is then kept."""
    interpolate_backbone(pretrained, finetuned, lambda name: alphas.get(group_of(name)), dest)


# --- recipes ----------------------------------------------------------------------------------
class _DWise(Recipe):
    """Train as FT / MFT; candidates: the last fine-tuned checkpoint and its DWiSE interpolation
    (``dwise.pt``, last, so ``--select last`` takes it)."""

    strategy = ""

    def params(self, ctx: RunContext) -> dict[str, Any]:
        return {**STRATEGIES.get(self.strategy).resolve_params({}), **ctx.params}

    def build_input(self, ctx: RunContext) -> dict[str, Any]:
        if ctx.descriptor.get("type") != "dpa3":
            raise UsageError(f"{self.strategy} interpolates DPA3 layer groups; this model's descriptor is "
                             f"{ctx.descriptor.get('type')}")
        return super().build_input(ctx)  # type: ignore[misc]

    def loss_params(self, ctx: RunContext) -> dict[str, Any]:
        """The property loss exactly as ``dp --pt train`` used it (its normalised input, ``out.json``)."""
        path = ctx.workdir / "out.json"
        if not path.exists():
            raise OodBenchError(f"{path}: deepmd's normalised training input is missing")
        config = json.loads(path.read_text())
        branch = self.eval_head()
        return config["loss_dict"][branch] if branch else config["loss"]

    def candidates(self, ctx: RunContext, checkpoints: list[tuple[int, Path]]) -> list[tuple[int, Path]]:
        if not checkpoints:
            return checkpoints
        from .launcher import inference_threads, set_inference_threads

        assert ctx.pretrained is not None
        set_inference_threads()
        import torch

        torch.set_num_threads(inference_threads())
        step, source = checkpoints[-1]
        settings = FitSettings.of(self.params(ctx), ctx.seed)
        loss = self.loss_params(ctx)
        fit = fit_alphas(ctx.pretrained.path, source, list(ctx.val_systems), loss, settings,
                         branch=self.eval_head(), start_lr=ctx.start_lr)
        dest = ctx.workdir / DWISE_FILE
        write_interpolation(ctx.pretrained.path, source, fit["alphas"], dest)
        info = {**fit, "source_checkpoint": source.name, "source_step": step,
                "settings": {"steps": settings.steps, "lr": settings.lr, "init": settings.init,
                             "batch": settings.batch, "seed": settings.seed, "optimizer": "Adam",
                             "range": [0.0, 1.0]},
                "loss": {k: loss[k] for k in ("type", "loss_func") if k in loss},
                "fitted_on": "validation set only", "groups": list(fit["alphas"]),
                "interpolated": "descriptor per layer group: (1 - alpha) pretrained + alpha fine-tuned, "
                                "every branch",
                "kept": "heads as fine-tuned (fitting nets, output bias and std)",
                "candidates": {source.name: "fine-tuned (every alpha 1)", DWISE_FILE: "fitted alphas"}}
        (ctx.workdir / FIT_FILE).write_text(json.dumps(info, indent=1))
        return [(step, source), (step, dest)]

    def training_info(self, ctx: RunContext) -> dict[str, Any]:
        path = ctx.workdir / FIT_FILE
        return {"dwise": json.loads(path.read_text())} if path.exists() else {}


class DWiseFineTune(_DWise, FineTune):
    strategy = "dwise-ft"


class MftDWise(_DWise, MultiTaskFineTune):
    strategy = "mft-dwise"  # fitted on the property branch's loss; every branch gets the interpolation


RECIPES.add("dwise-ft", DWiseFineTune())
RECIPES.add("mft-dwise", MftDWise())
