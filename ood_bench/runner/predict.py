"""Predictions through deepmd's Python inference API (``DeepEval``), never ``dp test`` logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..models.deepmd_data import SystemSet, read_system_frames


def load_model(checkpoint: Path, head: str | None = None):
    from ..deepmd_cli import set_inference_threads

    set_inference_threads()
    from deepmd.infer import DeepEval

    return DeepEval(str(checkpoint), head=head) if head else DeepEval(str(checkpoint))


def predict(model, systems: SystemSet) -> tuple[list, np.ndarray]:
    """(ids, predictions (n,)) for every frame of every system, in ``systems.ids`` order."""
    ids, preds = [], []
    for sys_dir, sys_ids in zip(systems.systems, systems.ids_per_system, strict=True):
        coord, box, atype = read_system_frames(sys_dir)
        out = model.eval(coord, box, atype, mixed_type=True)
        y = np.asarray(out[0] if isinstance(out, tuple) else out).reshape(len(sys_ids), -1)[:, 0]
        ids.extend(sys_ids)
        preds.append(y)
    return ids, (np.concatenate(preds) if preds else np.zeros(0))


def list_checkpoints(workdir: Path) -> list[tuple[int, Path]]:
    """(step, path) of each saved ``model.ckpt-<step>.pt``, by step."""
    out = []
    for p in workdir.glob("model.ckpt-*.pt"):
        try:
            out.append((int(p.stem.split("-")[-1]), p))
        except ValueError:
            continue
    return sorted(out)
