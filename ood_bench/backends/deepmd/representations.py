"""Per-atom (node) and per-pair (edge) representations of a deepmd DPA3 model.

Nodes come from deepmd's inference API (``DeepEval.eval_descriptor``). Edges have no deepmd API:
they are the third output of the DPA3 descriptor's ``forward`` (``node_ebd, rot_mat, edge_ebd, h2,
sw``), so a forward hook on the descriptor module (``torch.nn.Module.register_forward_hook``)
reads them during the same inference call. Which pair each edge row belongs to follows from the
descriptor's inputs, exactly as ``RepFlowBlock.forward`` lays edges out:

* ``nlist`` (nf, nloc, nnei) holds extended-atom indices of each centre's neighbours, -1 padding;
  ``mapping`` (nf, nall) maps an extended (periodic image) atom to its local atom.
* The real edges are ``mask = nlist != -1`` (minus pair-excluded types, if any).
* With ``use_dynamic_sel`` the edge embedding is flat (n_edge, e_dim), its rows in the row-major
  order of ``mask`` (``edge_input[nlist_mask]``); without it, it is (nf, nloc, nnei, e_dim) and
  ``edge_ebd[mask]`` gives the same order.

The model is loaded with ``no_jit=True`` (a TorchScript module runs no Python hooks) and without
deepmd's automatic batching, so each ``eval_descriptor`` call is exactly one descriptor call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...datasets import Structures
from ...errors import OodBenchError

DIST_TOL = 1e-3  # Angstrom; matches a requested (i, j, distance) edge to a model edge


@dataclass
class Requests:
    """Which atoms and edges to read, as rows into a list of structure ids.

    ``atom_struct[k]``/``atom_index[k]``: structure row and atom of requested atom k.
    ``edge_struct``/``edge_i``/``edge_j``/``edge_dist``: requested directed edges (centre i,
    neighbour j, distance; the distance tells periodic images apart).
    """

    atom_struct: np.ndarray
    atom_index: np.ndarray
    edge_struct: np.ndarray
    edge_i: np.ndarray
    edge_j: np.ndarray
    edge_dist: np.ndarray

    @classmethod
    def make(cls, atom_struct: Sequence[int] = (), atom_index: Sequence[int] = (),
             edge_struct: Sequence[int] = (), edge_i: Sequence[int] = (), edge_j: Sequence[int] = (),
             edge_dist: Sequence[float] = ()) -> Requests:
        ai = np.asarray
        return cls(ai(atom_struct, dtype=np.int64), ai(atom_index, dtype=np.int64),
                   ai(edge_struct, dtype=np.int64), ai(edge_i, dtype=np.int64),
                   ai(edge_j, dtype=np.int64), ai(edge_dist, dtype=np.float64))

    def structures_needed(self) -> np.ndarray:
        return np.unique(np.concatenate([self.atom_struct, self.edge_struct]))


@dataclass
class Representations:
    """Rows aligned with the requests: ``nodes`` (n_atoms, dim); ``edges`` (n_edges, e_dim) with
    ``edge_found`` False (and NaN rows) for requested edges the model has no edge for (outside its
    cutoff or beyond its neighbour selection)."""

    nodes: np.ndarray
    edges: np.ndarray
    edge_found: np.ndarray


class RepresentationModel:
    """A deepmd checkpoint opened for representation read-out."""

    def __init__(self, checkpoint: str | Path, head: str | None = None, chunk: int = 32) -> None:
        from .launcher import set_inference_threads

        set_inference_threads()
        import warnings

        from deepmd.infer import DeepEval

        self.path = Path(checkpoint)
        kwargs = {"no_jit": True, "auto_batch_size": False}
        if head:
            kwargs["head"] = head
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.dp = DeepEval(str(checkpoint), **kwargs)
        self.chunk = chunk
        self.type_map = list(self.dp.get_type_map())
        model = self.dp.deep_eval.get_model()
        self.descriptor = model.get_descriptor()
        # edge read-out knows the DPA3 (repflow) layout only; other descriptors give nodes only
        self.edges_supported = hasattr(self.descriptor, "repflows")
        self._calls: list[dict[str, np.ndarray]] = []
        self._want: np.ndarray | None = None
        self._nat = 0
        self._handle = (self.descriptor.register_forward_hook(self._hook, with_kwargs=True)
                        if self.edges_supported else None)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    # --- the hook -------------------------------------------------------------------------------
    def _hook(self, module, args, kwargs, output) -> None:
        import torch

        bound = inspect.signature(module.forward).bind(*args, **kwargs).arguments
        nlist = bound["nlist"]
        ext_atype = bound["extended_atype"]
        nf, nloc, _ = nlist.shape
        ext_coord = bound["extended_coord"].reshape(nf, -1, 3)
        mapping = bound.get("mapping")
        if mapping is None:
            mapping = torch.arange(ext_coord.shape[1], device=nlist.device).expand(nf, -1)
        edge = output[2]
        with torch.no_grad():
            mask = nlist != -1
            if getattr(module, "exclude_types", None):
                mask = mask & (module.repflows.emask(nlist, ext_atype) != 0)
            # static selection: (nf, nloc, nnei, e_dim); dynamic: (n_edge, e_dim) already in mask order
            rows = edge[mask] if edge.dim() == 4 else edge
            if rows.shape[0] != int(mask.sum()):
                raise OodBenchError(
                    f"edge embedding has {rows.shape[0]} rows but the neighbour list has "
                    f"{int(mask.sum())} edges; this deepmd version lays edges out differently"
                )
            f, i, k = torch.nonzero(mask, as_tuple=True)
            jext = nlist[f, i, k]
            j = mapping[f, jext]
            dist = torch.linalg.norm(ext_coord[f, jext] - ext_coord[f, i], dim=-1)
            key = (f.to(torch.int64) * self._nat + i) * self._nat + j
            key_np = key.cpu().numpy()
            keep = np.isin(key_np, self._want) if self._want is not None else np.ones(len(key_np), bool)
            self._calls.append({
                "key": key_np[keep],
                "dist": dist.detach().cpu().numpy().astype(np.float64)[keep],
                "emb": rows.detach().cpu().numpy()[keep],
            })

    # --- evaluation -----------------------------------------------------------------------------
    def _types(self, numbers: np.ndarray) -> np.ndarray:
        from ase.data import chemical_symbols

        index = {s: t for t, s in enumerate(self.type_map)}
        out = np.empty(numbers.shape, dtype=np.int64)
        for z in np.unique(numbers):
            sym = chemical_symbols[int(z)]
            if sym not in index:
                raise OodBenchError(f"{self.path.name} has no atom type for element {sym}")
            out[numbers == z] = index[sym]
        return out

    def evaluate(self, structures: Structures, ids: Sequence, requests: Requests,
                 progress: Callable[[int], None] | None = None) -> Representations:
        """Representations of the requested atoms and edges; only structures they touch are run.

        ``progress(n)`` is called after each batch with the number of structures done in it.
        """
        ids = list(ids)
        need = requests.structures_needed()
        n_atoms, n_edges = len(requests.atom_struct), len(requests.edge_struct)
        nodes: np.ndarray | None = None
        edges: np.ndarray | None = None
        found = np.zeros(n_edges, dtype=bool)
        rows = np.array([structures.row(ids[s]) for s in need], dtype=np.int64)
        natoms = structures.natoms()[rows] if len(rows) else np.zeros(0, dtype=np.int64)
        for nat in np.unique(natoms):
            group = need[natoms == nat]
            for start in range(0, len(group), self.chunk):
                part = group[start:start + self.chunk]
                n_out, e_out = self._run_chunk(structures, ids, part, int(nat), requests)
                sel_a, vals_a = n_out
                if nodes is None:
                    nodes = np.full((n_atoms, vals_a.shape[-1]), np.nan)
                nodes[sel_a] = vals_a
                if e_out is not None:
                    sel_e, vals_e = e_out
                    if edges is None:
                        edges = np.full((n_edges, vals_e.shape[-1]), np.nan)
                    edges[sel_e] = vals_e
                    found[sel_e] = True
                if progress:
                    progress(len(part))
        if nodes is None:
            nodes = np.zeros((n_atoms, 0))
        if edges is None:
            edges = np.full((n_edges, 0), np.nan)
        return Representations(nodes=nodes, edges=edges, edge_found=found)

    def _run_chunk(self, structures: Structures, ids: list, part: np.ndarray, nat: int,
                   req: Requests):
        rows = [structures.row(ids[s]) for s in part]
        starts = structures.offsets[rows]
        atom_idx = starts[:, None] + np.arange(nat)[None, :]
        coord = structures.positions[atom_idx].reshape(len(part), -1)
        atype = self._types(structures.numbers[atom_idx])
        box = None if structures.cells is None else structures.cells[rows].reshape(len(part), 9)
        frame_of = {int(s): f for f, s in enumerate(part)}

        # requested edges of these frames, as keys the hook can filter on
        e_sel = np.flatnonzero(np.isin(req.edge_struct, part))
        e_frame = np.array([frame_of[int(s)] for s in req.edge_struct[e_sel]], dtype=np.int64)
        e_key = (e_frame * nat + req.edge_i[e_sel]) * nat + req.edge_j[e_sel]
        self._nat = nat
        self._want = np.unique(e_key)
        self._calls = []
        try:
            desc = self.dp.eval_descriptor(coord, box, atype, mixed_type=True)
        finally:
            self._want = None
        desc = np.asarray(desc).reshape(len(part), nat, -1)
        if self.edges_supported and len(self._calls) != 1:
            raise OodBenchError(
                f"expected one descriptor call per batch, saw {len(self._calls)}; edge read-out "
                "cannot tell the frames apart"
            )

        a_sel = np.flatnonzero(np.isin(req.atom_struct, part))
        a_frame = np.array([frame_of[int(s)] for s in req.atom_struct[a_sel]], dtype=np.int64)
        nodes = (a_sel, desc[a_frame, req.atom_index[a_sel]])
        if not len(e_sel) or not self.edges_supported:
            return nodes, None
        got = self._calls[0]
        order = np.argsort(got["key"], kind="stable")
        gkey, gdist, gemb = got["key"][order], got["dist"][order], got["emb"][order]
        lo = np.searchsorted(gkey, e_key, side="left")
        hi = np.searchsorted(gkey, e_key, side="right")
        hit_rows, hit_req = [], []
        for r, (a, b) in enumerate(zip(lo, hi, strict=True)):
            if a == b:
                continue
            cand = a + int(np.argmin(np.abs(gdist[a:b] - req.edge_dist[e_sel[r]])))
            if abs(gdist[cand] - req.edge_dist[e_sel[r]]) < DIST_TOL:
                hit_rows.append(cand)
                hit_req.append(e_sel[r])
        if not hit_rows:
            return nodes, None
        return nodes, (np.array(hit_req), gemb[np.array(hit_rows)].astype(np.float64))
