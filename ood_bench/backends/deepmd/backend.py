"""The deepmd backend: DPA3 trained with deepmd-kit's own ``dp --pt train`` and evaluated with
its Python inference API (``DeepEval``), never by parsing ``dp test`` logs.

Per run: the fold's frames become deepmd/npy mixed-type systems (only this fold's, written once),
the strategy's recipe writes the training input, every saved checkpoint is a candidate.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import OodBenchError, UsageError
from ..base import BACKENDS, Backend, Candidate, EvalSet, FoldInputs, Resolution, Trained
from .pretrained import STAND_IN, PretrainedModel, load_pretrained


def default_pretrained(preset: str) -> str:
    return "DPA-3.1-3M" if preset == "paper" else STAND_IN


def expand_systems(paths: list[str]) -> list[str]:
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


class DeepmdBackend(Backend):
    name = "deepmd"
    summary = "deepmd-kit: dp --pt train, DeepEval predictions, every saved checkpoint a candidate"
    model_file = "model.pt"
    writes_log = True

    def versions(self) -> dict[str, str | None]:
        from ...versions import package_versions

        return package_versions("deepmd-kit", "torch")

    def planned_steps(self, spec, model, strategy, dataset_kind) -> int:
        preset = model.preset(spec.preset)
        if spec.steps:
            return spec.steps
        if strategy.uses_aux and dataset_kind == "crystals":
            return preset.extra.get("steps_mft_crystals", preset.steps)
        return preset.steps

    def step_of(self, line: str) -> int | None:
        from .launcher import step_of

        return step_of(line)

    def _pretrained(self, spec, strategy) -> PretrainedModel | None:
        """The checkpoint a run uses: its weights (fine-tuning), or only its architecture and
        auxiliary branch (Scratch with --pretrained, multi-task from scratch)."""
        if strategy.needs_pretrained or strategy.uses_aux or spec.pretrained:
            return load_pretrained(spec.pretrained or default_pretrained(spec.preset))
        return None

    def identity(self, spec, model, strategy) -> dict[str, Any]:
        """The checkpoint counts by content (sha256), not by name: a rebuilt stand-in is a new model."""
        pre = self._pretrained(spec, strategy)
        return {"pretrained_sha256": pre.sha256 if pre is not None else None}

    def resolve(self, spec, model, strategy, dataset) -> Resolution:
        model.preset(spec.preset)
        pre = self._pretrained(spec, strategy)
        aux_branch, aux_systems, aux_virial = None, [], False
        if strategy.uses_aux:
            assert pre is not None
            aux_branch = pre.check_branch(spec.aux_branch or pre.default_aux_branch(dataset.spec.kind))
            aux_systems = self._aux_systems(spec, pre, aux_branch)
            aux_virial = any(any(Path(s).glob("set.*/virial.npy")) for s in aux_systems)
        elif spec.aux_branch:
            assert pre is not None
            pre.check_branch(spec.aux_branch)
        record = {
            # Scratch may borrow a checkpoint's architecture, never its weights: not "pretrained".
            "pretrained": pre.record(aux_branch) if pre is not None and strategy.needs_pretrained else None,
            "aux": {"branch": aux_branch, "systems": aux_systems} if strategy.uses_aux else None,
        }
        state = {"pretrained": pre, "aux_branch": aux_branch, "aux_systems": aux_systems, "aux_virial": aux_virial}
        return Resolution(identity={"pretrained_sha256": pre.sha256 if pre is not None else None},
                          record=record, state=state)

    @staticmethod
    def _aux_systems(spec, pre: PretrainedModel, branch: str) -> list[str]:
        from .standin import aux_systems

        if spec.aux_data:
            return expand_systems(spec.aux_data)
        if branch not in (pre.meta.get("aux_file") or {}).get("frames", {}):
            raise UsageError(f"pass --aux-data (deepmd-format force-field data for branch {branch})")
        return aux_systems(pre.path, branch)

    # --- training ---------------------------------------------------------------------------
    def train(self, inputs: FoldInputs, on_line: Callable[[str], None] | None = None) -> Trained:
        from .launcher import read_lcurve
        from .predict import list_checkpoints
        from .recipes import RECIPES

        systems, data = self._write_fold(inputs)
        ctx = self._context(inputs, systems)
        spec, recipe = inputs.spec, RECIPES.get(inputs.strategy.name)
        config, args = recipe.build_input(ctx), recipe.train_args(ctx)
        log, peak_mb = recipe.launch(ctx, config, args, label=spec.key.label(), on_line=on_line,
                                     processes=spec.gpus)
        ckpts = recipe.candidates(ctx, list_checkpoints(inputs.workdir))
        if not ckpts:
            raise OodBenchError(f"{spec.key.label()}: deepmd wrote no checkpoint (see {log})")
        pre = ctx.pretrained
        return Trained(
            candidates=[Candidate(step, path.name, path) for step, path in ckpts],
            config={"steps": ctx.steps, "batch_size": ctx.batch_size, "learning_rate": ctx.start_lr,
                    "processes": spec.gpus, "aux_prob": spec.aux_prob if inputs.strategy.uses_aux else None,
                    "deepmd_input": config, "dp_train_args": args,
                    "architecture_from": pre.name if pre is not None else f"preset {ctx.preset.name}"},
            training={"steps": ctx.steps, "eval_head": recipe.eval_head(), "head": recipe.head_name(ctx),
                      "paper_head": inputs.target.paper_head,
                      "learning_curve": read_lcurve(inputs.workdir / "lcurve.out"), **recipe.training_info(ctx)},
            data=data, peak_mem_mb=peak_mb, log_file=log,
            state={"systems": systems, "head": recipe.eval_head(), "loaded": {}},
        )

    @staticmethod
    def _write_fold(inputs: FoldInputs):
        """Only this fold's frames, as deepmd/npy mixed-type systems (one per atom count and set)."""
        from .data import write_systems

        t0 = time.time()
        st = inputs.dataset.structures
        systems = {name: write_systems(inputs.workdir / "data" / name, st, s.ids, {inputs.target.name: s.y[:, None]})
                   for name, s in inputs.sets.items()}
        return systems, {"fold_data_bytes": sum(s.nbytes() for s in systems.values()),
                         "fold_data_seconds": round(time.time() - t0, 3)}

    def _context(self, inputs: FoldInputs, systems):
        from .data import full_type_map
        from .inputs import RunContext

        spec, preset, state = inputs.spec, inputs.preset, inputs.resolution.state
        pre = state["pretrained"]
        return RunContext(
            target=inputs.target, dataset_kind=inputs.dataset.spec.kind, preset=preset,
            descriptor=pre.descriptor if pre is not None else preset.descriptor,
            type_map=pre.type_map if pre is not None else full_type_map(),
            train_systems=[str(s) for s in systems["train"].systems],
            val_systems=[str(s) for s in systems["val"].systems],
            workdir=inputs.workdir,
            steps=self.planned_steps(spec, inputs.model, inputs.strategy, inputs.dataset.spec.kind),
            batch_size=spec.batch_size or preset.batch_size,
            start_lr=spec.learning_rate or preset.start_lr, seed=spec.key.seed, pretrained=pre,
            aux_branch=state["aux_branch"], aux_systems=state["aux_systems"], aux_has_virial=state["aux_virial"],
            aux_prob=spec.aux_prob, aux_batch_size=preset.aux_batch_size, params=dict(inputs.params),
        )

    # --- evaluation -------------------------------------------------------------------------
    def _model(self, trained: Trained, candidate: Candidate):
        from .predict import load_model

        loaded = trained.state["loaded"]
        if candidate.name not in loaded:
            loaded.clear()  # one model in memory at a time
            loaded[candidate.name] = load_model(candidate.handle, trained.state["head"])
        return loaded[candidate.name]

    def predict(self, inputs, trained, candidate, eval_set: EvalSet) -> np.ndarray:
        from .predict import predict

        ids, y = predict(self._model(trained, candidate), trained.state["systems"][eval_set.name])
        pos = {sid: k for k, sid in enumerate(ids)}
        return y[[pos[i] for i in eval_set.ids]]

    def save_model(self, trained, candidate, dest: Path) -> None:
        shutil.copyfile(candidate.handle, dest)

    def representation_model(self, model_path: Path, record: dict[str, Any]):
        from .representations import RepresentationModel

        return RepresentationModel(model_path, head=(record.get("training") or {}).get("eval_head"))


BACKENDS.add("deepmd", DeepmdBackend())
