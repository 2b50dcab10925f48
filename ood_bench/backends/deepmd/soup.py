"""Uniform model soups on deepmd-kit (the deepmd side of ``ood_bench/strategies/soup.py``).

Wortsman et al. 2022: fine-tune several models from the same initialisation and average their final
weights. One run, all with ``dp --pt train``:

1. ``init/``: FT (or MFT) for 0 steps with the run's seed: deepmd saves the model fine-tuning starts
   from (pretrained backbone, the new head drawn from the fitting net's seed, the output bias from
   deepmd's statistics on training batches).
2. ``member<i>/``: the FT recipe and steps from that model (``--init-model``, which loads the whole
   model, bias and std included, and recomputes no statistics), ``training.seed`` = seed + 1000 i:
   the members differ only in the order deepmd's data loaders draw the batches.
3. ``soup.pt``: the uniform average of the members' last checkpoints (checkpoint arithmetic), the
   run's only candidate.

Resume: each finished stage writes ``oodbench-finished.json`` (its input, arguments, the digests of
the pretrained checkpoint, the fold data and, for members, the init model; its last checkpoint).
Training again in the same work folder reuses every stage whose stamp matches what it would run now
and trains the others from scratch; the soup is always rebuilt (cheap).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...backends.base import FINISHED_STAGE
from ...errors import OodBenchError
from .inputs import RECIPES, FineTune, MultiTaskFineTune, RunContext
from .robust import WithParams, read_state

SOUP = "soup.pt"
INIT = "init"
STAMP = FINISHED_STAGE  # written last by a finished stage: what makes it reusable (the runner keeps it)
SEED_STRIDE = 1000
AVERAGING = ("uniform: every floating tensor of the model state (backbone, heads, output bias and std, "
             "statistics) is the mean of the members' tensors, in float64, cast back; tensors equal in "
             "every member are copied; other entries must agree and are member 0's")
REUSED = "reused, finished by an earlier attempt"
_BATCH = re.compile(r"Batch\s+(\d+):")


def member_seed(seed: int, index: int) -> int:
    """``training.seed`` of member ``index``: the order of deepmd's batches."""
    return seed + SEED_STRIDE * index


# --- checkpoint arithmetic ------------------------------------------------------------------
def average_states(states: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """The uniform average of model state dicts with the same keys and shapes (see ``AVERAGING``)."""
    import torch

    first = states[0]
    for state, name in zip(states[1:], names[1:], strict=True):
        if state.keys() != first.keys():
            raise OodBenchError(f"{name} and {names[0]} hold different tensors; a soup needs the same architecture")
    out: dict[str, Any] = {}
    for key, value in first.items():
        values = [s[key] for s in states]
        if not torch.is_tensor(value):
            out[key] = value
            continue
        if any(v.shape != value.shape or v.dtype != value.dtype for v in values):
            raise OodBenchError(f"{key}: shapes or dtypes differ between the soup's members")
        if all(torch.equal(value, v) for v in values[1:]):
            out[key] = value
        elif not value.is_floating_point():
            raise OodBenchError(f"{key}: a non-floating tensor differs between the soup's members")
        else:
            out[key] = (sum(v.double() for v in values) / len(values)).to(value.dtype)
    return out


def write_soup(members: list[Path], dest: Path) -> None:
    """``dest``: the uniform average of the ``members`` checkpoints, written atomically."""
    import torch

    soup = average_states([read_state(p) for p in members], [str(p) for p in members])
    tmp = dest.with_name(dest.name + ".tmp")
    torch.save({"model": soup}, tmp)
    os.replace(tmp, dest)


# --- resume -------------------------------------------------------------------------------
def data_digest(systems: list[str]) -> str:
    """sha256 over the files of deepmd systems (names and bytes): the fold data a stage saw."""
    h = hashlib.sha256()
    for system in systems:
        root = Path(system)
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            h.update(f"{root.name}/{f.relative_to(root)}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def read_stamp(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None


def reusable(folder: Path, expected: dict[str, Any]) -> dict[str, Any] | None:
    """The stamp of a finished stage run exactly as ``expected`` says, its checkpoint present."""
    stamp = read_stamp(folder)
    if stamp is None or any(stamp.get(k) != v for k, v in expected.items()):
        return None
    return stamp if (folder / str(stamp.get("checkpoint"))).is_file() else None


def run_stage(folder: Path, expected: dict[str, Any], *, label: str, on_line: Callable[[str], None] | None,
              processes: int) -> tuple[dict[str, Any], bool]:
    """One ``dp --pt train`` of ``expected["input"]`` with ``expected["args"]`` in ``folder``, unless a
    finished one matches (then it is reused). A partial folder is removed first; the stamp is
    written last. Returns the stamp and whether it was reused."""
    from .launcher import dp_train
    from .predict import list_checkpoints

    stamp = reusable(folder, expected)
    if stamp is not None:
        return stamp, True
    if folder.exists():
        shutil.rmtree(folder)
    log, peak = dp_train(expected["input"], folder, expected["args"], label=label, on_line=on_line,
                         processes=processes)
    ckpts = list_checkpoints(folder)
    if not ckpts:
        raise OodBenchError(f"{label}: deepmd wrote no checkpoint (see {log})")
    step, last = ckpts[-1]
    stamp = {**expected, "checkpoint": last.name, "step": step, "peak_mem_mb": peak}
    tmp = folder / (STAMP + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=1))
    os.replace(tmp, folder / STAMP)
    return stamp, False


def _scaled(on_line: Callable[[str], None] | None, index: int, members: int,
            steps: int) -> Callable[[str], None] | None:
    """A line callback that shows member ``index``'s steps as the soup's progress (0..steps overall)."""
    if on_line is None:
        return None
    return lambda line: on_line(_BATCH.sub(lambda m: f"Batch {(index * steps + int(m.group(1))) // members}:", line))


# --- the recipe ---------------------------------------------------------------------------
class _Soup(WithParams):
    """The base recipe for 0 steps in ``init/``, then ``members`` trainings from that model in
    ``member<i>/`` (``training.seed`` = seed + 1000 i), then one candidate: their average ``soup.pt``."""

    def n_members(self, ctx: RunContext) -> int:
        return int(self.params(ctx)["members"])

    @staticmethod
    def member_dir(ctx: RunContext, index: int) -> Path:
        return ctx.workdir / f"member{index}"

    @staticmethod
    def init_checkpoint(ctx: RunContext) -> Path:
        return ctx.workdir / INIT / "model.ckpt-0.pt"  # what deepmd saves after 0 steps

    def init_input(self, ctx: RunContext) -> dict[str, Any]:
        config = super().build_input(dataclasses.replace(ctx, workdir=ctx.workdir / INIT))
        config["training"]["numb_steps"] = 0
        return config

    def init_args(self, ctx: RunContext) -> list[str]:
        return super().train_args(ctx)  # FT's: --finetune <pretrained>

    def member_input(self, ctx: RunContext, index: int) -> dict[str, Any]:
        config = super().build_input(dataclasses.replace(ctx, workdir=self.member_dir(ctx, index)))
        config["training"]["seed"] = member_seed(ctx.seed, index)
        return config

    def build_input(self, ctx: RunContext) -> dict[str, Any]:
        """Member 0's input (the record's ``deepmd_input``); the others differ in paths and ``training.seed``."""
        return self.member_input(ctx, 0)

    def train_args(self, ctx: RunContext) -> list[str]:
        """Every member's: the whole init model (head, bias and std included; no statistics recomputed)."""
        return ["--init-model", str(self.init_checkpoint(ctx))]

    def expected(self, ctx: RunContext, config: dict[str, Any], args: list[str], digest: str,
                 **extra: Any) -> dict[str, Any]:
        from ...versions import package_versions

        stamp = {"input": config, "args": args, "data_sha256": digest,
                 "pretrained_sha256": ctx.pretrained.sha256 if ctx.pretrained is not None else None,
                 "deepmd_kit": package_versions("deepmd-kit")["deepmd-kit"], **extra}
        return json.loads(json.dumps(stamp))  # as read back from the file

    def launch(self, ctx: RunContext, config: dict[str, Any], args: list[str], *, label: str,
               on_line: Callable[[str], None] | None, processes: int) -> tuple[Path, float]:
        """Each stage not finished by an earlier attempt; one log with every stage's."""
        from ...io_utils import sha256_file

        n = self.n_members(ctx)
        digest = data_digest(ctx.train_systems + ctx.val_systems)
        init = ctx.workdir / INIT
        stamp, reused = run_stage(init, self.expected(ctx, self.init_input(ctx), self.init_args(ctx), digest),
                                  label=f"{label} (soup init, 0 steps)", on_line=None, processes=processes)
        if init / stamp["checkpoint"] != self.init_checkpoint(ctx):
            raise OodBenchError(f"{label}: the 0-step run saved {stamp['checkpoint']}, expected "
                                f"{self.init_checkpoint(ctx).name}")
        parts = [self._log_part(init, "init/: the fine-tuning start, 0 steps", reused)]
        peak = float(stamp["peak_mem_mb"])
        init_sha = sha256_file(self.init_checkpoint(ctx))
        for i in range(n):
            member = self.member_dir(ctx, i)
            stamp, reused = run_stage(member, self.expected(ctx, self.member_input(ctx, i), args, digest,
                                                            init_sha256=init_sha),
                                      label=f"{label} (soup member {i + 1}/{n})", processes=processes,
                                      on_line=_scaled(on_line, i, n, ctx.steps))
            peak = max(peak, float(stamp["peak_mem_mb"]))
            parts.append(self._log_part(member, f"member {i + 1} of {n}: {member.name}/, training.seed "
                                                f"{member_seed(ctx.seed, i)}", reused))
        both = ctx.workdir / "train-soup.log"
        both.write_text("\n".join(parts))
        return both, peak

    @staticmethod
    def _log_part(folder: Path, what: str, reused: bool) -> str:
        log = folder / "train.log"
        return (f"# oodbench soup, {what}{': ' + REUSED if reused else ''}\n"
                + (log.read_text(errors="replace") if log.exists() else "(no log)\n"))

    def finals(self, ctx: RunContext) -> list[tuple[int, Path]]:
        """(step, path) of each member's last checkpoint, as its stamp names it."""
        out = []
        for i in range(self.n_members(ctx)):
            stamp = read_stamp(self.member_dir(ctx, i))
            if stamp is None:
                raise OodBenchError(f"soup member {i} has not finished ({self.member_dir(ctx, i)} has no {STAMP})")
            out.append((int(stamp["step"]), self.member_dir(ctx, i) / stamp["checkpoint"]))
        return out

    def candidates(self, ctx: RunContext, checkpoints: list[tuple[int, Path]]) -> list[tuple[int, Path]]:
        """The soup only: choosing among the members on validation would be a different method."""
        finals = self.finals(ctx)
        write_soup([p for _, p in finals], ctx.workdir / SOUP)
        return [(max(s for s, _ in finals), ctx.workdir / SOUP)]

    def training_info(self, ctx: RunContext) -> dict[str, Any]:
        from .launcher import read_lcurve

        curve, members = [], []
        for i, (step, path) in enumerate(self.finals(ctx)):
            curve += [{**row, "member": i} for row in read_lcurve(self.member_dir(ctx, i) / "lcurve.out")]
            members.append({"member": i, "folder": self.member_dir(ctx, i).name,
                            "training_seed": member_seed(ctx.seed, i), "checkpoint": path.name, "step": step,
                            "val_rmse": val_rmse(path, ctx.val_systems, ctx.target.name, self.eval_head())})
        return {
            "learning_curve": curve,  # each member's own steps; "member" is its index
            "soup": {"members": members, "source": "each member's last checkpoint", "averaging": AVERAGING,
                     "candidates": [SOUP],
                     "init": {"checkpoint": f"{INIT}/{self.init_checkpoint(ctx).name}", "seed": ctx.seed,
                              "input": self.init_input(ctx), "train_args": self.init_args(ctx),
                              "shared": "every member starts from this model (--init-model): the same new "
                                        "head, output bias and std; members differ in training.seed only "
                                        f"(seed + {SEED_STRIDE} i: the order of the batches)"}},
        }


def val_rmse(checkpoint: Path, systems: list[str], prop: str, head: str | None) -> float:
    """RMSE of a checkpoint on the validation systems, against the labels stored in them (the
    runner's validation set, so comparable with the record's selection)."""
    import numpy as np

    from ...evaluate import regression_metrics
    from .data import read_system_frames
    from .predict import load_model

    model = load_model(checkpoint, head)
    y_true, y_pred = [], []
    for system in map(Path, systems):
        coord, box, atype = read_system_frames(system)
        out = model.eval(coord, box, atype, mixed_type=True)
        y_pred.append(np.asarray(out[0] if isinstance(out, tuple) else out).reshape(len(coord), -1)[:, 0])
        y_true.append(np.concatenate([np.load(s / f"{prop}.npy") for s in sorted(system.glob("set.*"))])[:, 0])
    return regression_metrics(np.concatenate(y_true), np.concatenate(y_pred))["rmse"]


class FtSoup(_Soup, FineTune):
    strategy = "soup"


class MftSoup(_Soup, MultiTaskFineTune):
    strategy = "mft-soup"


RECIPES.add("soup", FtSoup())
RECIPES.add("mft-soup", MftSoup())
