"""Robust fine-tuning on deepmd-kit (the deepmd side of ``ood_bench/strategies/robust.py``).

One mechanism per method, each through what deepmd offers (nothing in deepmd is patched):

- WiSE-FT / MFT + WiSE-FT: FT (or MFT) as usual, then checkpoint arithmetic on the saved state
  dicts: the descriptor (DPA3's backbone) of the *last* fine-tuned checkpoint is interpolated with
  the pretrained one, theta = (1 - alpha) theta_pretrained + alpha theta_finetuned, heads kept as
  fine-tuned (with their output bias/std); one ``wise-alpha<a>.pt`` per alpha beside deepmd's
  checkpoints, each a candidate for the runner's validation selection.
- LP-FT: two ``dp --pt train`` runs: LP (``trainable: false`` descriptor) in ``lp/``, then FT
  with ``--init-model lp/model.ckpt.pt`` (the whole LP model, head and its bias/std included; no
  statistics recomputed). ``--finetune`` from the LP checkpoint would shift the head's bias
  ("change-by-statistic"), so it is not used.
- L2-SP / MFT + L2-SP: a loss (``oodbench_l2sp``, ``plugins/robust_losses.py``) registered in
  deepmd's ``TaskLoss`` registry, used by ``dp --pt train`` itself.
- EMA: deepmd's own ``training.enable_ema`` / ``ema_decay``; the candidates are its EMA
  checkpoints (``model_ema.ckpt-<step>.pt``).
- Surgical FT: deepmd's public Python training API in one process (``train_surgical``): the
  ``Trainer`` is built from the same input ``dp --pt train --finetune`` would use, then the
  parameters of the layer groups that do not train get ``requires_grad = False`` before
  ``Trainer.run()`` (what deepmd's own ``trainable: false`` does, per group instead of per
  descriptor).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import OodBenchError, RunFailedError, UsageError
from ...strategies import STRATEGIES
from ...strategies.robust import LAYER_GROUPS, alphas_of, groups_of
from .inputs import RECIPES, FineTune, LinearProbe, MultiTaskFineTune, Recipe, RunContext

L2SP_LOSS_TYPE = "oodbench_l2sp"
DESCRIPTOR = ".atomic_model.descriptor."
HEAD = "head"

# A child of deepmd's logger, so the messages land in the training log.
log = logging.getLogger("deepmd.oodbench_robust")


class WithParams(Recipe):
    """A recipe of a strategy with parameters: the run's values, defaults filled."""

    strategy = ""

    def params(self, ctx: RunContext) -> dict[str, Any]:
        return {**STRATEGIES.get(self.strategy).resolve_params({}), **ctx.params}


# --- checkpoint arithmetic ------------------------------------------------------------------
def read_state(path: Path) -> dict[str, Any]:
    """The model state dict of a deepmd ``.pt`` checkpoint."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state)


def backbone(state: dict[str, Any], branch: str | None = None) -> dict[str, Any]:
    """Descriptor tensors by their name inside the descriptor (``repflows.layers.0...``), from
    ``branch`` or the first branch (a multi-task checkpoint shares one descriptor)."""
    prefixes = sorted({k.split(DESCRIPTOR, 1)[0] for k in state if DESCRIPTOR in k})
    if not prefixes:
        raise OodBenchError("checkpoint has no descriptor weights (not a deepmd DPA model)")
    prefix = f"model.{branch}" if branch else prefixes[0]
    if prefix not in prefixes:
        raise OodBenchError(f"checkpoint has no branch {branch}; branches: "
                            f"{', '.join(p.split('.', 1)[1] for p in prefixes)}")
    head = prefix + DESCRIPTOR
    return {k[len(head):]: v for k, v in state.items() if k.startswith(head)}


def mix(pretrained: Any, finetuned: Any, alpha: float) -> Any:
    """(1 - alpha) pretrained + alpha finetuned, in float64, cast back. Exact at the ends and
    where both agree (statistics, frozen tensors): those are copies, bit for bit."""
    import torch

    if alpha == 1.0 or torch.equal(pretrained, finetuned):
        return finetuned
    if alpha == 0.0:
        return pretrained.to(finetuned.dtype)
    mixed = (1.0 - alpha) * pretrained.double() + alpha * finetuned.double()
    return mixed.to(finetuned.dtype)


def interpolate_backbone(pretrained: Path, finetuned: Path, alpha: float | Callable[[str], float | None],
                         dest: Path) -> int:
    """Write ``dest``: the fine-tuned checkpoint with every branch's descriptor replaced by the
    interpolation (everything else as fine-tuned); returns how many descriptor tensors differ
    between the two ends (what alpha acts on). ``alpha`` may be a function of the tensor's name
    inside the descriptor (one weight per layer group, DWiSE-FT); where it gives None, the tensor
    must be equal at both ends (statistics) and is kept."""
    import torch

    alpha_of = alpha if callable(alpha) else (lambda _name: alpha)
    pre = backbone(read_state(pretrained))
    state = read_state(finetuned)
    out: dict[str, Any] = {}
    done: dict[str, Any] = {}
    for key, value in state.items():
        if DESCRIPTOR not in key or not torch.is_tensor(value) or not value.is_floating_point():
            out[key] = value
            continue
        name = key.split(DESCRIPTOR, 1)[1]
        if name not in done:
            done[name] = _interpolated(name, pre.get(name), value, alpha_of(name), finetuned)
        out[key] = done[name]
    tmp = dest.with_name(dest.name + ".tmp")
    torch.save({"model": out}, tmp)
    os.replace(tmp, dest)
    fine = backbone(state)
    return sum(1 for name in done if not torch.equal(pre[name], fine[name]))


def _interpolated(name: str, base: Any, value: Any, alpha: float | None, finetuned: Path) -> Any:
    import torch

    if base is None or base.shape != value.shape:
        raise OodBenchError(f"{finetuned.name}: descriptor tensor {name} has no counterpart of shape "
                            f"{tuple(value.shape)} in the pretrained checkpoint")
    if alpha is not None:
        return mix(base, value, alpha)
    if not torch.equal(base, value):
        raise OodBenchError(f"{finetuned.name}: descriptor tensor {name} changed in fine-tuning but has no "
                            "interpolation weight")
    return value


def wise_name(alpha: float) -> str:
    return f"wise-alpha{alpha:g}.pt"


# --- WiSE-FT ----------------------------------------------------------------------------------
class _Wise(WithParams):
    """Candidates: the backbone interpolation of the last fine-tuned checkpoint, one per alpha."""

    def candidates(self, ctx: RunContext, checkpoints: list[tuple[int, Path]]) -> list[tuple[int, Path]]:
        if not checkpoints:
            return checkpoints
        assert ctx.pretrained is not None
        step, source = checkpoints[-1]
        out = []
        for alpha in alphas_of(self.params(ctx)["alphas"]):
            dest = ctx.workdir / wise_name(alpha)
            interpolate_backbone(ctx.pretrained.path, source, alpha, dest)
            out.append((step, dest))
        return out

    def training_info(self, ctx: RunContext) -> dict[str, Any]:
        from .predict import list_checkpoints

        ckpts = list_checkpoints(ctx.workdir)
        alphas = alphas_of(self.params(ctx)["alphas"])
        return {"wise_ft": {
            "source_checkpoint": ckpts[-1][1].name if ckpts else None,
            "source_step": ckpts[-1][0] if ckpts else None,
            "interpolated": "descriptor (type embedding, edge/angle embeddings, repflow layers) of every branch",
            "kept": "heads as fine-tuned (fitting nets, output bias and std)",
            "alphas": alphas, "candidates": {wise_name(a): a for a in alphas},
        }}


class WiseFineTune(_Wise, FineTune):
    strategy = "wise-ft"


class MftWise(_Wise, MultiTaskFineTune):
    strategy = "mft-wise"


# --- LP-FT ------------------------------------------------------------------------------------
_BATCH = re.compile(r"Batch\s+(\d+):")


def _shifted(on_line: Callable[[str], None] | None, offset: int) -> Callable[[str], None] | None:
    """A line callback that sees phase-2 steps as steps of the whole run (progress bars)."""
    if on_line is None or offset == 0:
        return on_line
    return lambda line: on_line(_BATCH.sub(lambda m: f"Batch {int(m.group(1)) + offset}:", line))


class LinearProbeThenFineTune(WithParams, FineTune):
    """Phase 1: LP for ``lp_fraction`` of the steps in ``lp/``; phase 2: FT for the rest in the run
    folder, from the LP model (``--init-model``). Each phase has its own learning-rate schedule."""

    strategy = "lp-ft"
    LP = LinearProbe()

    def phases(self, ctx: RunContext) -> tuple[RunContext, RunContext]:
        if ctx.steps < 2:
            raise UsageError("lp-ft needs at least 2 training steps (one per phase)")
        lp_steps = min(ctx.steps - 1, max(1, round(self.params(ctx)["lp_fraction"] * ctx.steps)))
        return (dataclasses.replace(ctx, workdir=ctx.workdir / "lp", steps=lp_steps),
                dataclasses.replace(ctx, steps=ctx.steps - lp_steps))

    @staticmethod
    def lp_checkpoint(lp: RunContext) -> Path:
        return lp.workdir / "model.ckpt.pt"  # deepmd's link to its latest checkpoint

    def build_input(self, ctx: RunContext) -> dict[str, Any]:
        return FineTune.build_input(self, self.phases(ctx)[1])

    def train_args(self, ctx: RunContext) -> list[str]:
        return ["--init-model", str(self.lp_checkpoint(self.phases(ctx)[0]))]

    def launch(self, ctx: RunContext, config: dict[str, Any], args: list[str], *, label: str,
               on_line: Callable[[str], None] | None, processes: int) -> tuple[Path, float]:
        from .launcher import dp_train

        lp, _ = self.phases(ctx)
        lp_log, lp_peak = dp_train(self.LP.build_input(lp), lp.workdir, self.LP.train_args(lp),
                                   label=f"{label} (LP phase)", on_line=on_line, processes=processes)
        if not self.lp_checkpoint(lp).exists():
            raise OodBenchError(f"{label}: the LP phase wrote no checkpoint (see {lp_log})")
        ft_log, ft_peak = dp_train(config, ctx.workdir, args, label=f"{label} (FT phase)",
                                   on_line=_shifted(on_line, lp.steps), processes=processes)
        both = ctx.workdir / "train-lp-ft.log"
        both.write_text(f"# oodbench lp-ft, phase 1 of 2: linear probing, {lp.steps} steps\n"
                        + lp_log.read_text(errors="replace")
                        + f"\n# oodbench lp-ft, phase 2 of 2: fine-tuning from the LP model, {ctx.steps - lp.steps} "
                        "steps\n" + ft_log.read_text(errors="replace"))
        return both, max(lp_peak, ft_peak)

    def candidates(self, ctx: RunContext, checkpoints: list[tuple[int, Path]]) -> list[tuple[int, Path]]:
        offset = self.phases(ctx)[0].steps
        return [(offset + step, path) for step, path in checkpoints]  # steps of the whole run

    def training_info(self, ctx: RunContext) -> dict[str, Any]:
        from .launcher import read_lcurve

        lp, ft = self.phases(ctx)
        lp_curve = read_lcurve(lp.workdir / "lcurve.out")
        ft_curve = [{**row, "step": row["step"] + lp.steps} for row in read_lcurve(ctx.workdir / "lcurve.out")]
        for row in lp_curve:
            row["phase"] = 1
        for row in ft_curve:
            row["phase"] = 2
        link = self.lp_checkpoint(lp)
        return {
            "learning_curve": lp_curve + ft_curve,  # steps of the whole run; "phase" 1 (LP) or 2 (FT)
            "lp_ft": {"lp_steps": lp.steps, "ft_steps": ft.steps,
                      "lp_checkpoint": link.resolve().name if link.exists() else None,
                      "phase_2": "dp --pt train --init-model <LP checkpoint>: the LP model, head, bias and std "
                                 "included, all parameters trainable",
                      "lp_input": self.LP.build_input(lp), "lp_train_args": self.LP.train_args(lp)},
        }


# --- L2-SP ------------------------------------------------------------------------------------
class WrappedPropertyLoss(WithParams):
    """The property loss wrapped in a loss plugin (``loss_type``, with ``loss_params``): the base
    config gets what deepmd's ``get_loss`` would otherwise read from the model."""

    loss_type = ""

    def loss_params(self, ctx: RunContext) -> dict[str, Any]:
        raise NotImplementedError

    def property_loss(self, ctx: RunContext) -> dict[str, Any]:
        base = super().property_loss(ctx)  # type: ignore[misc]
        if base["type"] == "property":  # what deepmd's get_loss fills in from the model
            fit = self.property_fitting(ctx)  # type: ignore[attr-defined]
            base = {**base, "task_dim": fit["task_dim"], "var_name": fit["property_name"],
                    "intensive": fit["intensive"]}
        return {"type": self.loss_type, "base": base, **self.loss_params(ctx)}


class _L2SP(WrappedPropertyLoss):
    """The property loss wrapped in ``oodbench_l2sp``: + delta/2 ||theta_backbone - theta_pre||^2
    (+ delta_head/2 ||w_head||^2), the pretrained backbone read from the checkpoint given here."""

    loss_type = L2SP_LOSS_TYPE

    def loss_params(self, ctx: RunContext) -> dict[str, Any]:
        assert ctx.pretrained is not None
        p = self.params(ctx)
        return {"delta": p["delta"], "delta_head": p["delta_head"], "pretrained": str(ctx.pretrained.path)}


class L2SPFineTune(_L2SP, FineTune):
    strategy = "l2sp"


class MftL2SP(_L2SP, MultiTaskFineTune):
    strategy = "mft-l2sp"


# --- EMA --------------------------------------------------------------------------------------
def ema_prefix(save_ckpt: str) -> Path:
    """deepmd's name for the EMA checkpoints of a ``save_ckpt`` prefix (``model.ckpt`` ->
    ``model_ema.ckpt``), from deepmd itself."""
    from deepmd.pt_expt.train.ema import get_ema_checkpoint_prefix

    return Path(get_ema_checkpoint_prefix(save_ckpt))


def list_ema_checkpoints(workdir: Path) -> list[tuple[int, Path]]:
    """(step, path) of each EMA checkpoint ``<prefix>-<step>.pt`` of a run folder, by step."""
    prefix = ema_prefix(str(workdir / "model.ckpt"))
    out = []
    for p in prefix.parent.glob(f"{prefix.name}-*.pt"):
        try:
            out.append((int(p.stem.rsplit("-", 1)[-1]), p))
        except ValueError:
            continue
    return sorted(out)


class EmaFineTune(WithParams, FineTune):
    strategy = "ema"

    def training_common(self, ctx: RunContext) -> dict[str, Any]:
        return {**super().training_common(ctx), "enable_ema": True, "ema_decay": self.params(ctx)["decay"]}

    def candidates(self, ctx: RunContext, checkpoints: list[tuple[int, Path]]) -> list[tuple[int, Path]]:
        return list_ema_checkpoints(ctx.workdir)

    def training_info(self, ctx: RunContext) -> dict[str, Any]:
        prefix = ema_prefix(self.training_common(ctx)["save_ckpt"]).name
        return {"ema": {"decay": self.params(ctx)["decay"], "candidates": "deepmd's EMA checkpoints "
                        f"({prefix}-<step>.pt), saved with the regular ones"}}


# --- surgical FT ------------------------------------------------------------------------------
def group_of(name: str) -> str:
    """The DPA3 layer group of a descriptor parameter (its name inside the descriptor)."""
    if name.startswith("type_embedding."):
        return "type_embedding"
    if name.startswith("repflows.edge_embd."):
        return "edge_embedding"
    if name.startswith("repflows.angle_embd."):
        return "angle_embedding"
    m = re.match(r"repflows\.layers\.(\d+)\.", name)
    if m:
        return f"layer{m.group(1)}"
    return "other"


def resolve_groups(groups: list[str], nlayers: int) -> list[str]:
    """``layer-1`` and friends as absolute layer indices; every index within the model."""
    out = []
    for g in groups:
        m = re.match(r"^layer(-?\d+)$", g)
        if m:
            k = int(m.group(1))
            if not -nlayers <= k < nlayers:
                raise UsageError(f"layer group {g}: the model has {nlayers} repflow layers "
                                 f"(layer0..layer{nlayers - 1})")
            g = f"layer{k % nlayers}"
        if g not in out:
            out.append(g)
    return out


def all_groups(nlayers: int) -> list[str]:
    return [*LAYER_GROUPS, *(f"layer{k}" for k in range(nlayers))]


SURGICAL_MAIN = ("import sys; from ood_bench.backends.deepmd.robust import train_surgical; "
                 "sys.exit(train_surgical(sys.argv[1:]))")


class SurgicalFineTune(WithParams, FineTune):
    """FT in which only the chosen descriptor layer groups and the head train."""

    strategy = "surgical"

    def trained_groups(self, ctx: RunContext) -> list[str]:
        nlayers = int(ctx.descriptor.get("repflow", {}).get("nlayers", 0))
        if ctx.descriptor.get("type") != "dpa3" or nlayers < 1:
            raise UsageError("surgical fine-tuning names DPA3 layer groups; this model's descriptor is "
                             f"{ctx.descriptor.get('type')}")
        return resolve_groups(groups_of(self.params(ctx)["groups"]), nlayers)

    def launch(self, ctx: RunContext, config: dict[str, Any], args: list[str], *, label: str,
               on_line: Callable[[str], None] | None, processes: int) -> tuple[Path, float]:
        if processes != 1:
            raise UsageError("surgical fine-tuning trains in one process (--gpus 1): freezing single "
                             "layers after deepmd has wrapped the model for data parallelism is unsupported")
        groups = self.trained_groups(ctx)
        return run_in_process(SURGICAL_MAIN, ctx, config, [*args, "--train-groups", ",".join(groups)], label,
                              on_line, what="surgical training")

    def training_info(self, ctx: RunContext) -> dict[str, Any]:
        trained = self.trained_groups(ctx)
        nlayers = int(ctx.descriptor["repflow"]["nlayers"])
        return {"surgical": {"trained_groups": [*trained, HEAD],
                             "frozen_groups": [g for g in all_groups(nlayers) if g not in trained],
                             "launcher": "deepmd Trainer in-process (ood_bench.backends.deepmd.robust.train_surgical)"}}


def run_in_process(main: str, ctx: RunContext, config: dict[str, Any], args: list[str], label: str,
                   on_line: Callable[[str], None] | None, what: str) -> tuple[Path, float]:
    """Write ``input.json`` in the run folder and run ``python -c main input.json ARGS`` there (an
    in-process deepmd trainer: surgical FT, layer-wise learning rates) with ``run_logged``."""
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    inp = ctx.workdir / "input.json"
    inp.write_text(json.dumps(config, indent=1))
    return run_logged([sys.executable, "-c", main, str(inp), *args], ctx.workdir, label, on_line, what=what)


def run_logged(cmd: list[str], workdir: Path, label: str,
               on_line: Callable[[str], None] | None = None, what: str = "surgical training") -> tuple[Path, float]:
    """Run a training command in ``workdir`` as ``dp_train`` runs ``dp --pt train``: same thread
    settings, one log file, the exit code checked. Returns the log and peak memory (MiB)."""
    from ...procs import die_with_parent
    from .launcher import dp_env, tail

    log_path = workdir / "train.log"
    with open(log_path, "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=workdir, env=dp_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, preexec_fn=die_with_parent)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if on_line is not None:
                on_line(line)
        _, status, usage = os.wait4(proc.pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        proc.returncode = rc
    if rc != 0:
        raise RunFailedError(f"{label}: {what} exited with code {rc}; log {log_path}:\n{tail(log_path)}")
    return log_path, usage.ru_maxrss / 1024.0


def freeze_groups(model: Any, trained: list[str]) -> dict[str, list[str]]:
    """``requires_grad = False`` on every descriptor parameter outside ``trained`` groups (the
    fitting net always trains). Returns the parameter names by group, frozen and trained."""
    descriptor = model.atomic_model.descriptor
    frozen: dict[str, list[str]] = {}
    kept: dict[str, list[str]] = {}
    for name, param in descriptor.named_parameters():
        group = group_of(name)
        if group in trained:
            kept.setdefault(group, []).append(name)
        else:
            param.requires_grad_(False)
            frozen.setdefault(group, []).append(name)
    missing = [g for g in trained if g not in kept]
    if missing:
        raise UsageError(f"layer group(s) {', '.join(missing)} have no parameters in this model")
    return {"frozen": sorted(frozen), "trained": sorted(kept)}


def build_finetune_trainer(input_path: str, finetune: str, what: str) -> Any:
    """deepmd's ``Trainer`` for ``dp --pt train INPUT --finetune CKPT --skip-neighbor-stat``, built
    through deepmd's Python API in the order its train entry point calls it (``get_finetune_rules``,
    ``update_deepmd_input``, ``normalize``, ``get_trainer``), not yet run; the caller may change its
    model's trainability or its optimiser first. Single-task inputs only (``what`` names the caller
    in the error)."""
    import deepmd.pt  # noqa: F401  (loads the deepmd.pt entry points: oodbench's plugins)
    from deepmd.common import j_loader
    from deepmd.loggers.loggers import set_log_handles
    from deepmd.pt.entrypoints.main import get_trainer
    from deepmd.pt.utils import env as dp_torch_env
    from deepmd.pt.utils.finetune import get_finetune_rules
    from deepmd.utils.argcheck import normalize
    from deepmd.utils.compat import update_deepmd_input

    set_log_handles(logging.INFO)
    dp_torch_env.CUSTOM_OP_USE_JIT = True  # the setting `dp --pt train` makes (its train entry point)
    config = j_loader(input_path)
    if "model_dict" in config["model"]:
        raise UsageError(f"{what} is single-task")
    config["model"], links = get_finetune_rules(finetune, config["model"], model_branch="",
                                                change_model_params=False)
    config = update_deepmd_input(config, warning=True, dump="input_v2_compat.json")
    config = normalize(config, multi_task=False)
    with open("out.json", "w") as fh:
        json.dump(config, fh, indent=4)
    return get_trainer(config, finetune_model=finetune, finetune_links=links)


def train_surgical(argv: list[str] | None = None) -> int:
    """``dp --pt train INPUT --finetune CKPT --skip-neighbor-stat`` through deepmd's Python API
    (``build_finetune_trainer``, ``Trainer.run``), with the descriptor parameters outside
    ``--train-groups`` frozen between building the trainer and running it."""
    parser = argparse.ArgumentParser(prog="oodbench-surgical")
    parser.add_argument("input")
    parser.add_argument("--finetune", required=True)
    parser.add_argument("--train-groups", required=True)
    a = parser.parse_args(argv)

    trainer = build_finetune_trainer(a.input, a.finetune, "surgical fine-tuning")
    groups = freeze_groups(trainer.model, groups_of(a.train_groups))
    log.info("oodbench surgical fine-tuning: training %s + head; frozen %s",
             ", ".join(groups["trained"]), ", ".join(groups["frozen"]) or "nothing")
    trainer.run()
    return 0


RECIPES.add("wise-ft", WiseFineTune())
RECIPES.add("mft-wise", MftWise())
RECIPES.add("lp-ft", LinearProbeThenFineTune())
RECIPES.add("l2sp", L2SPFineTune())
RECIPES.add("mft-l2sp", MftL2SP())
RECIPES.add("ema", EmaFineTune())
RECIPES.add("surgical", SurgicalFineTune())

