"""Predictions through deepmd's Python inference API (``DeepEval``), never ``dp test`` logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import SystemSet, read_system_frames


def load_model(checkpoint: Path, head: str | None = None):
    from .launcher import inference_threads, set_inference_threads

    set_inference_threads()
    import torch
    from deepmd.infer import DeepEval

    # Eager, not TorchScript: each candidate is loaded once and makes one pass over a set, and
    # TorchScript's profiling executor spends that pass re-specialising on every new batch shape
    # (benchmarks/eval_speed.py: with 256-atom batches on idle cores, 2.2x over TorchScript on
    # one thread with 1024-atom batches; same predictions to 4e-10).
    kwargs = {"head": head} if head else {}
    model = DeepEval(str(checkpoint), no_jit=True, **kwargs)
    torch.set_num_threads(inference_threads())  # after deepmd's backend import set its training default
    return model


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


def pooled_descriptors(checkpoint: Path, head: str | None, structures, ids: list, chunk: int = 256,
                       progress=None) -> np.ndarray:
    """Per-structure [mean | sum] over atoms of the model's descriptor (``DeepEval.eval_descriptor``),
    rows in ``ids`` order: linear probing's features, as deepmd-kit's ``dpa_adapt`` pools them."""
    from ase.data import chemical_symbols

    model = load_model(checkpoint, head)
    index = {s: t for t, s in enumerate(model.get_type_map())}
    lookup = np.full(119, -1, dtype=np.int64)
    for z in range(1, 119):
        lookup[z] = index.get(chemical_symbols[z], -1)
    rows = np.array([structures.row(i) for i in ids], dtype=np.int64)
    natoms = structures.natoms()[rows]
    out: np.ndarray | None = None
    for nat in np.unique(natoms):
        sel = np.flatnonzero(natoms == nat)
        for start in range(0, len(sel), chunk):
            part = sel[start:start + chunk]
            atom_idx = structures.offsets[rows[part]][:, None] + np.arange(nat)[None, :]
            atype = lookup[structures.numbers[atom_idx]]
            if (atype < 0).any():
                from ...errors import OodBenchError

                raise OodBenchError(f"{Path(checkpoint).name} has no atom type for some element of these structures")
            coord = structures.positions[atom_idx].reshape(len(part), -1)
            box = None if structures.cells is None else structures.cells[rows[part]].reshape(len(part), 9)
            desc = np.asarray(model.eval_descriptor(coord, box, atype, mixed_type=True)).reshape(len(part), nat, -1)
            if out is None:
                out = np.empty((len(ids), 2 * desc.shape[-1]))
            out[part] = np.concatenate([desc.mean(axis=1), desc.sum(axis=1)], axis=1)
            if progress is not None:
                progress(len(part))
    return out if out is not None else np.zeros((0, 0))
