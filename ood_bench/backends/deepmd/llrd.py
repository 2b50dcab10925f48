"""Layer-wise learning-rate decay (``llrd``) on deepmd-kit: FT in which each DPA3 layer group trains
at lr_g = lr * gamma^(L - depth_g), the head at depth L = nlayers + 1, repflow layer k at k + 1, the
type/edge/angle embeddings at 0.

deepmd builds one optimiser parameter group for the whole model and has no per-group hook, so
``train_llrd`` builds deepmd's ``Trainer`` in one process exactly as surgical FT does
(``robust.build_finetune_trainer``: the input ``dp --pt train --finetune`` would use), then, before
``Trainer.run()``, replaces its ``optimizer`` by one of the same class and settings with one
parameter group per layer group (``lr`` scaled) and its ``scheduler`` by the ``LambdaLR`` deepmd
would build, but with each group's base learning rate scaled: every group follows deepmd's schedule
times its factor. With gamma 1 this is deepmd's own optimiser and schedule (same checkpoints, bit
for bit).
"""

from __future__ import annotations

import argparse
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import OodBenchError, UsageError
from .inputs import RECIPES, FineTune, RunContext
from .robust import DESCRIPTOR, HEAD, WithParams, all_groups, build_finetune_trainer, group_of, log, run_in_process

LLRD_MAIN = "import sys; from ood_bench.backends.deepmd.llrd import train_llrd; sys.exit(train_llrd(sys.argv[1:]))"
GROUPS_FILE = "llrd-groups.json"  # the optimiser's parameter groups as run, written beside the checkpoints
FITTING = ".atomic_model.fitting_net."


def depths(nlayers: int) -> dict[str, int]:
    """Depth of each layer group: embeddings 0, repflow layer k at k + 1, the head at nlayers + 1."""
    out = {g: 0 for g in all_groups(nlayers) if not g.startswith("layer")}
    out.update({f"layer{k}": k + 1 for k in range(nlayers)})
    return {**out, HEAD: nlayers + 1}


def lr_factors(gamma: float, nlayers: int) -> dict[str, float]:
    """lr_g / lr = gamma^(L - depth_g), head first, then downwards (the optimiser's group order)."""
    d = depths(nlayers)
    top = d[HEAD]
    return {g: gamma ** (top - d[g]) for g in sorted(d, key=lambda g: -d[g])}


def param_group_of(name: str) -> str:
    """The layer group of one of deepmd's trainer parameters (``model.Default.atomic_model...``)."""
    if FITTING in name:
        return HEAD
    if DESCRIPTOR in name:
        group = group_of(name.split(DESCRIPTOR, 1)[1])
        if group != "other":
            return group
    raise OodBenchError(f"layer-wise learning rates: parameter {name} belongs to no DPA3 layer group")


def split_parameters(named: list[tuple[str, Any]], factors: dict[str, float]) -> dict[str, list[Any]]:
    """The trainer's parameters by layer group, in ``factors``' order (deepmd's order within a group);
    every parameter has a group with a factor, and every group has parameters."""
    by_group: dict[str, list[Any]] = {g: [] for g in factors}
    for name, param in named:
        group = param_group_of(name)
        if group not in by_group:
            raise OodBenchError(f"layer-wise learning rates: {name} is in {group}, which has no factor")
        by_group[group].append(param)
    empty = [g for g, ps in by_group.items() if not ps]
    if empty:
        raise OodBenchError(f"layer-wise learning rates: layer group(s) {', '.join(empty)} have no parameters")
    return by_group


def layerwise_optimizer(trainer: Any, factors: dict[str, float]) -> list[dict[str, Any]]:
    """Replace ``trainer.optimizer`` (deepmd's Adam/AdamW, one group) by the same class and settings
    with one group per layer group at lr * factor, and ``trainer.scheduler`` by deepmd's LambdaLR
    (``lr_schedule.value(step) / start_lr``) over those groups' scaled base rates. The head's group is
    first: deepmd takes the first group's rate as the step's lr (loss prefactors, ``lcurve.out``).
    Returns each group's summary (factor, learning rate at the start, tensor and value counts)."""
    import torch

    old = trainer.optimizer
    if type(old) not in (torch.optim.Adam, torch.optim.AdamW) or len(old.param_groups) != 1:
        raise UsageError(f"layer-wise learning rates need deepmd's Adam or AdamW optimiser; this input uses "
                         f"{trainer.opt_type}")
    if old.state:
        raise OodBenchError("layer-wise learning rates start a fresh optimiser; deepmd's has state "
                            "(a restarted training), which would be lost")
    cls = type(old)
    accepted = inspect.signature(cls.__init__).parameters
    settings = {k: v for k, v in old.defaults.items() if k in accepted}
    by_group = split_parameters(list(trainer.wrapper.named_parameters()), factors)
    groups = [{"params": ps, "lr": settings["lr"] * factors[g]} for g, ps in by_group.items()]
    new = cls(groups, **settings)
    if new.defaults != old.defaults:
        raise OodBenchError(f"layer-wise learning rates: rebuilt optimiser differs from deepmd's: {new.defaults}")
    start_lr = float(trainer.lr_schedule.start_lr)  # what deepmd's _create_lr_scheduler divides by
    for group, name in zip(new.param_groups, by_group, strict=True):
        group["initial_lr"] = start_lr * factors[name]
    schedule = trainer.lr_schedule
    trainer.optimizer = new
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(
        new, lambda step: schedule.value(step) / start_lr, last_epoch=trainer.start_step - 1)
    return [{"group": name, "lr_factor": factors[name], "start_lr": group["lr"], "tensors": len(group["params"]),
             "values": sum(p.numel() for p in group["params"])}
            for group, name in zip(new.param_groups, by_group, strict=True)]


def train_llrd(argv: list[str] | None = None) -> int:
    """``dp --pt train INPUT --finetune CKPT --skip-neighbor-stat`` through deepmd's Python API with
    the optimiser split into layer groups at ``--lr-factors`` (JSON: group -> factor) before
    ``Trainer.run()``; the groups as run go to ``llrd-groups.json`` and the log."""
    parser = argparse.ArgumentParser(prog="oodbench-llrd")
    parser.add_argument("input")
    parser.add_argument("--finetune", required=True)
    parser.add_argument("--lr-factors", required=True)
    a = parser.parse_args(argv)

    trainer = build_finetune_trainer(a.input, a.finetune, "layer-wise learning-rate decay")
    if trainer.is_distributed:
        raise UsageError("layer-wise learning-rate decay trains in one process (--gpus 1)")
    groups = layerwise_optimizer(trainer, json.loads(a.lr_factors))
    Path(GROUPS_FILE).write_text(json.dumps(groups, indent=1))
    log.info("oodbench layer-wise learning rates (group: factor, lr at step %d): %s", trainer.start_step,
             "; ".join(f"{g['group']}: {g['lr_factor']:.6g}, {g['start_lr']:.6g}" for g in groups))
    trainer.run()
    return 0


class LayerwiseLrDecay(WithParams, FineTune):
    """FT with the learning rate of each DPA3 layer group scaled by gamma^(depth below the head)."""

    strategy = "llrd"

    @staticmethod
    def nlayers(ctx: RunContext) -> int:
        nlayers = int(ctx.descriptor.get("repflow", {}).get("nlayers", 0))
        if ctx.descriptor.get("type") != "dpa3" or nlayers < 1:
            raise UsageError("layer-wise learning-rate decay names DPA3 layer groups; this model's descriptor "
                             f"is {ctx.descriptor.get('type')}")
        return nlayers

    def factors(self, ctx: RunContext) -> dict[str, float]:
        return lr_factors(float(self.params(ctx)["gamma"]), self.nlayers(ctx))

    def launch(self, ctx: RunContext, config: dict[str, Any], args: list[str], *, label: str,
               on_line: Callable[[str], None] | None, processes: int) -> tuple[Path, float]:
        if processes != 1:
            raise UsageError("layer-wise learning-rate decay trains in one process (--gpus 1): deepmd's "
                             "distributed launcher builds its own single-group optimiser")
        factors = json.dumps(self.factors(ctx))
        return run_in_process(LLRD_MAIN, ctx, config, [*args, "--lr-factors", factors], label, on_line,
                              what="layer-wise learning-rate training")

    def training_info(self, ctx: RunContext) -> dict[str, Any]:
        run = ctx.workdir / GROUPS_FILE
        return {"llrd": {"gamma": self.params(ctx)["gamma"], "depths": depths(self.nlayers(ctx)),
                         "lr_factors": self.factors(ctx),
                         "param_groups": json.loads(run.read_text()) if run.exists() else None,
                         "launcher": "deepmd Trainer in-process (ood_bench.backends.deepmd.llrd.train_llrd)"}}


RECIPES.add("llrd", LayerwiseLrDecay())
