"""The paper's two coordinate heads for QM9, as deepmd-kit plugins (MFT paper, Supplementary D.2).

deepmd-kit's property head pools per-atom scalars (paper eq. 16). For QM9 mu and <R^2> the paper
used heads that need the atomic positions; deepmd has neither, so this module adds them the way
deepmd is meant to be extended: classes registered in deepmd's own plugin registries, imported by
``import deepmd.pt`` through the ``deepmd.pt`` entry-point group, so ``dp --pt train`` and
``DeepEval`` resolve them by name. Nothing in deepmd is patched.

Registered here:

- model types ``oodbench_dipole_norm`` and ``oodbench_spatial_extent`` (``BaseModel.register``):
  ``PropertyModel`` subclasses whose atomic model (a ``DPPropertyAtomicModel`` subclass) turns the
  fitting net's per-atom outputs and the positions into per-atom contributions ``c_i`` whose sum is
  the target; deepmd's own reduction, output names (``mu``/``atom_mu``), ``DeepEval`` and label
  files (``set.*/mu.npy``) then work as for the plain property head;
- fitting type ``oodbench_dipole_norm`` (``BaseFitting.register``): a property fitting net that
  outputs, per atom, a charge-like scalar and an equivariant vector (its extra outputs contracted
  with the descriptor's rotation matrix, as deepmd's dipole fitting does);
- loss type ``oodbench_head`` (``TaskLoss.register``): MSE/MAE on the frame-level target
  normalised by the training labels' standard deviation;
- their input arguments (``model_args_plugin``, ``fitting_args_plugin``, ``loss_args_plugin``), so
  deepmd's input check accepts them.

Formulas, with r_c the centre of mass of the molecule (atomic masses, as the ET and JMP heads do)
and sigma, p(Z) set from the training labels before training:

- spatial extent (ET ``ElectronicSpatialExtent``, JMP ``SpatialExtentOutputHead``):
  q_i = sigma * MLP(f_i) + p(Z_i),  c_i = q_i |r_i - r_c|^2,  <R^2> = sum_i c_i.
  p solves sum_z [sum_{i: Z_i = z} |r_i - r_c|^2] p(z) = y_k in the least-squares sense (paper
  eq. 17 with each atom weighted by its squared distance to the centre).
- dipole norm (ET ``EquivariantDipoleMoment``; per-atom dipole vectors as in Deep Wannier [84]):
  m_i = sigma * (q_i (r_i - r_c) + d_i) with q_i = MLP(f_i)_0 and d_i = sum_k MLP(f_i)_k G_ik
  (G: the descriptor's equivariant rotation matrix), mu_vec = sum_i m_i, mu = |mu_vec|;
  c_i = m_i . mu_vec / sqrt(|mu_vec|^2 + eps^2), so sum_i c_i = |mu_vec| up to eps. No per-type
  bias (it would break rotation invariance).

Both are defined for isolated molecules only: the models refuse a periodic box.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from dargs import Argument
from deepmd.dpmodel import FittingOutputDef, OutputVariableDef
from deepmd.pt.loss.loss import TaskLoss
from deepmd.pt.loss.property import PropertyLoss
from deepmd.pt.model.atomic_model import DPPropertyAtomicModel
from deepmd.pt.model.descriptor.base_descriptor import BaseDescriptor
from deepmd.pt.model.model.model import BaseModel
from deepmd.pt.model.model.property_model import PropertyModel
from deepmd.pt.model.task.base_fitting import BaseFitting
from deepmd.pt.model.task.property import PropertyFittingNet
from deepmd.pt.utils import env
from deepmd.utils.argcheck import (
    fitting_args_plugin,
    loss_args_plugin,
    model_args_plugin,
    standard_model_args,
)
from deepmd.utils.version import check_version_compatibility

from . import DIPOLE_NORM, HEAD_LOSS_TYPE, MODEL_TYPES, SPATIAL_EXTENT

# A child of deepmd's logger, so the messages land in the `dp train` log.
log = logging.getLogger("deepmd.oodbench_heads")

DIPOLE_MODEL = MODEL_TYPES[DIPOLE_NORM]
SPATIAL_MODEL = MODEL_TYPES[SPATIAL_EXTENT]
DIPOLE_FITTING = "oodbench_dipole_norm"


def type_masses(type_map: list[str]) -> torch.Tensor:
    """Atomic masses (amu) of the element symbols of a type map, for the centre of mass."""
    from ase.data import atomic_masses, atomic_numbers

    unknown = [t for t in type_map if t not in atomic_numbers]
    if unknown:
        raise ValueError(f"the oodbench coordinate heads need element symbols as types; unknown: {unknown}")
    masses = [float(atomic_masses[atomic_numbers[t]]) for t in type_map]
    return torch.tensor(masses, dtype=env.GLOBAL_PT_FLOAT_PRECISION, device=env.DEVICE)


# --- fitting --------------------------------------------------------------------------------
@BaseFitting.register(DIPOLE_FITTING)
class DipoleNormFittingNet(PropertyFittingNet):
    """Per atom: a charge-like scalar q_i and an equivariant vector d_i.

    The network has ``1 + embedding_width`` outputs; the first is q_i, the others are contracted
    with the descriptor's rotation matrix (nf x nloc x embedding_width x 3) into d_i, exactly as
    deepmd's ``DipoleFittingNet`` builds its atomic dipoles. Output: ``var_name`` of shape
    (nf, nloc, 4) = [q_i, d_i]; the atomic model reduces it to |mu|.
    """

    def __init__(self, ntypes: int, dim_descrpt: int, embedding_width: int, property_name: str,
                 task_dim: int = 1, intensive: bool = False, **kwargs: Any) -> None:
        if task_dim != 1 or intensive:
            raise ValueError(f"fitting {DIPOLE_FITTING}: the dipole norm is one extensive scalar "
                             "(task_dim 1, intensive false)")
        self.embedding_width = embedding_width
        super().__init__(ntypes, dim_descrpt, property_name, task_dim=1, intensive=False, **kwargs)

    def _net_out_dim(self) -> int:
        return 1 + self.embedding_width

    def output_def(self) -> FittingOutputDef:
        return FittingOutputDef([
            OutputVariableDef(self.var_name, [4], reducible=False, r_differentiable=False,
                              c_differentiable=False),
        ])

    def forward(
        self,
        descriptor: torch.Tensor,
        atype: torch.Tensor,
        gr: torch.Tensor | None = None,
        g2: torch.Tensor | None = None,
        h2: torch.Tensor | None = None,
        fparam: torch.Tensor | None = None,
        aparam: torch.Tensor | None = None,
        return_atomic_feature: bool = False,
    ) -> dict[str, torch.Tensor]:
        nframes, nloc, _ = descriptor.shape
        assert gr is not None, "the dipole-norm head needs the descriptor's rotation matrix"
        gr = gr.to(self.prec)
        fit_ret = self._forward_common(descriptor, atype, gr, g2, h2, fparam, aparam,
                                       return_atomic_feature=return_atomic_feature)
        out = fit_ret[self.var_name]  # nf x nloc x (1 + m1)
        charge = out[:, :, :1]
        coeff = out[:, :, 1:].reshape(nframes * nloc, 1, self.embedding_width)
        gr = gr.view(nframes * nloc, self.embedding_width, 3)
        vec = torch.bmm(coeff, gr).view(nframes, nloc, 3)
        result = {self.var_name: torch.cat([charge, vec], dim=-1).to(env.GLOBAL_PT_FLOAT_PRECISION)}
        if return_atomic_feature:
            result["atomic_feature"] = fit_ret["atomic_feature"]
        return result

    def serialize(self) -> dict:
        data = super().serialize()
        data["type"] = DIPOLE_FITTING
        data["embedding_width"] = self.embedding_width
        return data

    @classmethod
    def deserialize(cls, data: dict) -> DipoleNormFittingNet:
        data = data.copy()
        check_version_compatibility(data.pop("@version", 1), 6, 1)
        data.pop("dim_out", None)
        data.pop("type", None)
        data["property_name"] = data.pop("var_name")
        return super(PropertyFittingNet, cls).deserialize(data)


# --- atomic models --------------------------------------------------------------------------
class CoordinateHeadAtomicModel(DPPropertyAtomicModel):
    """A property atomic model whose per-atom outputs are combined with the positions relative to
    the molecule's centre of mass before deepmd's reduction (sum over atoms)."""

    def __init__(self, descriptor: Any, fitting: Any, type_map: list[str], **kwargs: Any) -> None:
        super().__init__(descriptor, fitting, type_map, **kwargs)
        if self.get_intensive():
            raise ValueError("the oodbench coordinate heads sum per-atom contributions: set intensive false")
        self.register_buffer("type_mass", type_masses(type_map))
        # Frame-level spread of the training labels: what the oodbench_head loss divides by.
        self.register_buffer("label_std", torch.ones(1, dtype=env.GLOBAL_PT_FLOAT_PRECISION, device=env.DEVICE))

    def change_type_map(self, type_map: list[str], model_with_new_type_stat: Any = None) -> None:
        super().change_type_map(type_map, model_with_new_type_stat=model_with_new_type_stat)
        self.type_mass = type_masses(type_map)

    def relative_positions(self, extended_coord: torch.Tensor, atype: torch.Tensor,
                           real: torch.Tensor) -> torch.Tensor:
        """r_i - r_c (nf x nloc x 3), r_c the centre of mass of the real atoms; zero for virtual ones."""
        nframes, nloc = atype.shape
        coord = extended_coord.view(nframes, -1, 3)[:, :nloc, :].to(self.type_mass.dtype)
        weight = real.to(coord.dtype)
        mass = self.type_mass[atype.to(torch.long)] * weight
        total = torch.clamp(torch.sum(mass, dim=1, keepdim=True), min=1e-12)
        center = torch.sum(mass.unsqueeze(-1) * coord, dim=1, keepdim=True) / total.unsqueeze(-1)
        return (coord - center) * weight.unsqueeze(-1)

    def apply_head(self, ret: dict[str, torch.Tensor], atype: torch.Tensor, rel: torch.Tensor,
                   atom_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward_common_atomic(
        self,
        extended_coord: torch.Tensor,
        extended_atype: torch.Tensor,
        nlist: torch.Tensor,
        mapping: torch.Tensor | None = None,
        fparam: torch.Tensor | None = None,
        aparam: torch.Tensor | None = None,
        comm_dict: dict[str, torch.Tensor] | None = None,
        charge_spin: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``BaseAtomicModel.forward_common_atomic`` with ``apply_out_stat`` replaced by the head
        (TorchScript compiles no ``super()`` call, hence the copy of its few lines)."""
        _, nloc, _ = nlist.shape
        atype = extended_atype[:, :nloc]
        if self.pair_excl is not None:
            pair_mask = self.pair_excl(nlist, extended_atype)
            nlist = torch.where(pair_mask == 1, nlist, -1)
        ext_atom_mask = self.make_atom_mask(extended_atype)
        ret_dict = self.forward_atomic(
            extended_coord,
            torch.where(ext_atom_mask, extended_atype, 0),
            nlist,
            mapping=mapping,
            fparam=fparam,
            aparam=aparam,
            comm_dict=comm_dict,
            charge_spin=charge_spin,
        )
        real = ext_atom_mask[:, :nloc]
        atom_mask = real.to(torch.int32)
        if self.atom_excl is not None:
            atom_mask *= self.atom_excl(atype)
        safe_atype = torch.where(real, atype, 0)
        rel = self.relative_positions(extended_coord, safe_atype, real)
        ret_dict = self.apply_head(ret_dict, safe_atype, rel, atom_mask)
        for kk in ret_dict.keys():  # noqa: SIM118  (as in deepmd: TorchScript)
            out_shape = ret_dict[kk].shape
            out_shape2 = 1
            for ss in out_shape[2:]:
                out_shape2 *= ss
            ret_dict[kk] = (
                ret_dict[kk].reshape([out_shape[0], out_shape[1], out_shape2]) * atom_mask[:, :, None]
            ).view(out_shape)
        ret_dict["mask"] = atom_mask
        return ret_dict

    # --- statistics (plain Python: never compiled) -------------------------------------------
    def compute_or_load_out_stat(self, merged: Callable[[], list[dict]] | list[dict],
                                 stat_file_path: Any = None) -> None:
        self.change_out_bias(merged, stat_file_path=stat_file_path, bias_adjust_mode="set-by-statistic")

    def change_out_bias(self, sample_merged: Callable[[], list[dict]] | list[dict],
                        stat_file_path: Any = None, bias_adjust_mode: str = "change-by-statistic") -> None:
        """Set (``set-by-statistic``) or shift (``change-by-statistic``, from the current
        predictions) the head's statistics from sampled training frames. Always computed from the
        samples; deepmd's stat file cache is not used for these heads."""
        if bias_adjust_mode not in ("set-by-statistic", "change-by-statistic"):
            raise RuntimeError("Unknown bias_adjust_mode mode: " + bias_adjust_mode)
        sampled = sample_merged() if callable(sample_merged) else sample_merged
        var = self.bias_keys[0]
        rel, atype, real, label, pred = [], [], [], [], []
        forward = self._get_forward_wrapper_func() if bias_adjust_mode == "change-by-statistic" else None
        for system in sampled:
            find = system.get("find_" + var, 1.0)
            if var not in system or not float(find):
                continue
            if system.get("box") is not None:
                raise ValueError("the oodbench coordinate heads are for isolated molecules (nopbc data) only")
            coord = torch.as_tensor(system["coord"], device=env.DEVICE)
            at = torch.as_tensor(system["atype"], device=env.DEVICE).reshape(coord.shape[0], -1)
            ok = at >= 0
            safe = torch.where(ok, at, 0)
            with torch.no_grad():
                rel.append(self.relative_positions(coord.reshape(coord.shape[0], -1), safe, ok).cpu().numpy())
            atype.append(safe.cpu().numpy())
            real.append(ok.cpu().numpy())
            label.append(np.asarray(torch.as_tensor(system[var]).cpu(), dtype=np.float64).reshape(-1))
            if forward is not None:
                out = forward(coord, torch.as_tensor(system["atype"], device=env.DEVICE), None,
                              fparam=system.get("fparam"), aparam=system.get("aparam"))
                pred.append(out[var].sum(dim=1).reshape(-1).cpu().numpy())
        if not label:
            raise ValueError(f"no sampled frame carries the label {var}")
        stats = HeadStats(rel, atype, real, np.concatenate(label), self.get_ntypes(),
                          self.get_compute_stats_distinguish_types(), self.rcond, self.data_stat_protect)
        residual = None if not pred else stats.label - np.concatenate(pred)
        bias, std = self.head_stats(stats, residual)
        bias_t = torch.as_tensor(bias, dtype=self.out_bias.dtype, device=self.out_bias.device)
        out_bias = self.out_bias.clone()
        out_std = self.out_std.clone()
        out_bias[0, :, 0] = bias_t if residual is None else out_bias[0, :, 0] + bias_t
        out_std[0, :, 0] = std
        self.out_bias.copy_(out_bias)
        self.out_std.copy_(out_std)
        self.label_std.fill_(stats.label_std)
        log.info(f"{type(self).__name__} statistics from {len(stats.label)} frames: std {std:.6g}, "
                 f"label std {stats.label_std:.6g}")

    def head_stats(self, stats: HeadStats, residual: np.ndarray | None) -> tuple[np.ndarray, float]:
        """(per-type bias (ntypes,), scale sigma) of the head."""
        raise NotImplementedError


class HeadStats:
    """Sampled training frames flattened for the heads' statistics."""

    def __init__(self, rel: list[np.ndarray], atype: list[np.ndarray], real: list[np.ndarray],
                 label: np.ndarray, ntypes: int, distinguish_types: bool, rcond: float | None,
                 protect: float) -> None:
        self.label = label
        self.ntypes = ntypes
        self.distinguish_types = distinguish_types
        self.rcond = rcond
        self.protect = protect
        # Per frame: sum over atoms of type t of |r_i - r_c|^2 (nframes x ntypes).
        rows = []
        for r, t, m in zip(rel, atype, real, strict=True):
            w = np.sum(r * r, axis=-1) * m
            a = np.zeros((r.shape[0], ntypes))
            np.add.at(a, (np.repeat(np.arange(r.shape[0]), r.shape[1]), t.reshape(-1)), w.reshape(-1))
            rows.append(a)
        self.weighted_counts = np.concatenate(rows)
        self.spread = self.weighted_counts.sum(axis=1)  # sum_i |r_i - r_c|^2 per frame
        self.label_std = float(max(np.std(label), protect))


class SpatialExtentAtomicModel(CoordinateHeadAtomicModel):
    """<R^2> = sum_i (sigma MLP(f_i) + p(Z_i)) |r_i - r_c|^2."""

    def apply_head(self, ret: dict[str, torch.Tensor], atype: torch.Tensor, rel: torch.Tensor,
                   atom_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        ret = self.apply_out_stat(ret, atype)  # q_i = sigma * MLP + p(Z_i)
        weight = torch.sum(rel * rel, dim=-1, keepdim=True)
        for kk in self.bias_keys:
            ret[kk] = ret[kk] * weight.to(ret[kk].dtype)
        return ret

    def head_stats(self, stats: HeadStats, residual: np.ndarray | None) -> tuple[np.ndarray, float]:
        target = stats.label if residual is None else residual
        a = stats.weighted_counts
        if stats.distinguish_types:
            bias = np.linalg.lstsq(a, target, rcond=stats.rcond)[0]
        else:
            bias = np.full(stats.ntypes, np.linalg.lstsq(stats.spread[:, None], target, rcond=stats.rcond)[0][0])
        left = (target - a @ bias) / np.maximum(stats.spread, 1e-12)
        return bias, float(max(np.sqrt(np.mean(left * left)), stats.protect))


class DipoleNormAtomicModel(CoordinateHeadAtomicModel):
    """|mu| = |sigma sum_i (q_i (r_i - r_c) + d_i)|, decomposed into per-atom projections."""

    def fitting_output_def(self) -> FittingOutputDef:
        # What this atomic model returns per atom: the contribution c_i to |mu| (summed by deepmd).
        return FittingOutputDef([
            OutputVariableDef(self.fitting_net.var_name, [1], reducible=True, r_differentiable=False,
                              c_differentiable=False, intensive=False),
        ])

    def apply_head(self, ret: dict[str, torch.Tensor], atype: torch.Tensor, rel: torch.Tensor,
                   atom_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        sigma = self.out_std[0, 0, 0]
        for kk in self.bias_keys:
            out = ret[kk].to(rel.dtype)
            moment = sigma * (out[:, :, :1] * rel + out[:, :, 1:4])
            moment = moment * atom_mask.unsqueeze(-1).to(rel.dtype)
            total = torch.sum(moment, dim=1, keepdim=True)  # nf x 1 x 3
            # eps = 1e-6 (target units) softens |mu_vec| at zero; TorchScript wants the literal
            norm = torch.sqrt(torch.sum(total * total, dim=-1, keepdim=True) + 1e-12)
            ret[kk] = torch.sum(moment * total, dim=-1, keepdim=True) / norm
        return ret

    def head_stats(self, stats: HeadStats, residual: np.ndarray | None) -> tuple[np.ndarray, float]:
        # No bias; sigma makes an O(1) network output give |mu| of the labels' size: with random
        # unit charges, E|sum_i q_i (r_i - r_c)|^2 = sum_i |r_i - r_c|^2.
        if residual is not None:
            return np.zeros(stats.ntypes), float(self.out_std[0, 0, 0])
        sigma = np.sqrt(np.mean(stats.label ** 2) / max(np.mean(stats.spread), 1e-12))
        return np.zeros(stats.ntypes), float(max(sigma, stats.protect))


# --- models ---------------------------------------------------------------------------------
def _build(cls: type, atomic_cls: type, model_params: dict, fitting_type: str) -> PropertyModel:
    """Descriptor + fitting + atomic model from a ``model`` input section (what deepmd's
    ``get_standard_model`` does for its own fitting types)."""
    params = copy.deepcopy(model_params)
    if "type_embedding" in params:
        raise ValueError("In the PyTorch backend, type_embedding is not at the model level")
    if params.get("spin") or params.get("use_srtab") or params.get("hessian_mode"):
        raise ValueError(f"model type {params.get('type')}: spin, use_srtab and hessian_mode are not supported")
    if params.get("preset_out_bias"):
        raise ValueError(f"model type {params.get('type')}: preset_out_bias is not supported")
    type_map = params["type_map"]
    params["descriptor"]["ntypes"] = len(type_map)
    params["descriptor"]["type_map"] = copy.deepcopy(type_map)
    descriptor = BaseDescriptor(**params["descriptor"])
    fit = params.get("fitting_net", {})
    if fit.get("type", "ener") != fitting_type:
        raise ValueError(f"model type {params.get('type')} needs fitting_net.type {fitting_type!r}, "
                         f"got {fit.get('type', 'ener')!r}")
    fit.update(ntypes=descriptor.get_ntypes(), type_map=copy.deepcopy(type_map),
               mixed_types=descriptor.mixed_types(), dim_descrpt=descriptor.get_dim_out())
    if fitting_type == DIPOLE_FITTING:
        fit["embedding_width"] = descriptor.get_dim_emb()
    fitting = BaseFitting(**fit)
    atomic = atomic_cls(descriptor, fitting, type_map=type_map,
                        atom_exclude_types=params.get("atom_exclude_types", []),
                        pair_exclude_types=params.get("pair_exclude_types", []),
                        data_stat_protect=params.get("data_stat_protect", 1e-2))
    model = cls(atomic_model_=atomic)
    model.model_def_script = json.dumps(model_params)
    return model


class CoordinateHeadModel(PropertyModel):
    """deepmd's property model over a coordinate-head atomic model; refuses periodic boxes."""

    def forward(
        self,
        coord: torch.Tensor,
        atype: torch.Tensor,
        box: torch.Tensor | None = None,
        fparam: torch.Tensor | None = None,
        aparam: torch.Tensor | None = None,
        do_atomic_virial: bool = False,
        charge_spin: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if box is not None:
            raise RuntimeError("the oodbench coordinate heads (dipole norm, spatial extent) are "
                               "defined for isolated molecules only: got a periodic box")
        model_ret = self.forward_common(coord, atype, box, fparam=fparam, aparam=aparam,
                                        do_atomic_virial=do_atomic_virial, charge_spin=charge_spin)
        model_predict = {}
        model_predict[f"atom_{self.get_var_name()}"] = model_ret[self.get_var_name()]
        model_predict[self.get_var_name()] = model_ret[f"{self.get_var_name()}_redu"]
        if "mask" in model_ret:
            model_predict["mask"] = model_ret["mask"]
        return model_predict

    def change_out_bias(self, merged: Any, bias_adjust_mode: str = "change-by-statistic") -> None:
        # Both modes go to the head's own statistics (deepmd's generic ones fit a per-type bias
        # on atom counts, which is not how these heads use their bias).
        self.atomic_model.change_out_bias(merged, bias_adjust_mode=bias_adjust_mode)


@BaseModel.register(SPATIAL_MODEL)
class SpatialExtentModel(CoordinateHeadModel):
    """QM9 <R^2> = sum_i q_i |r_i - r_c|^2 (ET / JMP / GotenNet spatial-extent head)."""

    @classmethod
    def get_model(cls, model_params: dict) -> SpatialExtentModel:
        return _build(cls, SpatialExtentAtomicModel, model_params, "property")


@BaseModel.register(DIPOLE_MODEL)
class DipoleNormModel(CoordinateHeadModel):
    """QM9 mu = |sum_i (q_i (r_i - r_c) + d_i)| (norm of a predicted dipole vector)."""

    @classmethod
    def get_model(cls, model_params: dict) -> DipoleNormModel:
        return _build(cls, DipoleNormAtomicModel, model_params, DIPOLE_FITTING)


# --- loss -----------------------------------------------------------------------------------
@TaskLoss.register(HEAD_LOSS_TYPE)
class HeadLoss(PropertyLoss):
    """deepmd's property loss on the frame-level target, residuals divided by the training
    labels' standard deviation (``label_std``, set with the head's statistics) and not by the atom
    count: the dipole norm is not extensive, and the heads' per-atom scale is not the label's."""

    def __init__(self, property_name: str, task_dim: int = 1, loss_func: str = "mse",
                 metric: list[str] | None = None, beta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(task_dim=task_dim, var_name=property_name, loss_func=loss_func,
                         metric=list(metric or ["mae", "rmse"]), beta=beta, intensive=True)

    @classmethod
    def get_loss(cls, loss_params: dict) -> HeadLoss:
        params = dict(loss_params)
        params.pop("type", None)
        params.pop("starter_learning_rate", None)
        return cls(**params)

    def forward(self, input_dict: dict[str, torch.Tensor], model: torch.nn.Module,
                label: dict[str, torch.Tensor], natoms: int, learning_rate: float = 0.0,
                mae: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
        scale = getattr(model.atomic_model, "label_std", None)
        if scale is None:
            raise RuntimeError(f"loss {HEAD_LOSS_TYPE} trains the oodbench coordinate heads "
                               f"({DIPOLE_MODEL}, {SPATIAL_MODEL}); this model is {type(model).__name__}")
        # deepmd's property loss with out_bias 0 and out_std = label_std, intensive (no 1/natoms).
        self.out_bias = [0.0] * self.task_dim
        self.out_std = [float(scale[0])] * self.task_dim
        return super().forward(input_dict, model, label, natoms, learning_rate, mae)

    def serialize(self) -> dict:
        return {"@class": "HeadLoss", "@version": 1, "property_name": self.var_name, "task_dim": self.task_dim,
                "loss_func": self.loss_func, "metric": self.metric, "beta": self.beta}

    @classmethod
    def deserialize(cls, data: dict) -> HeadLoss:
        data = data.copy()
        check_version_compatibility(data.pop("@version"), 1, 1)
        data.pop("@class")
        return cls(**data)


# --- input arguments (deepmd's input check) --------------------------------------------------
@model_args_plugin.register(DIPOLE_MODEL)
def _dipole_model_args() -> Argument:
    return _head_model_args(DIPOLE_MODEL, "oodbench: QM9 mu as the norm of a predicted dipole vector "
                            f"(fitting_net.type {DIPOLE_FITTING}).")


@model_args_plugin.register(SPATIAL_MODEL)
def _spatial_model_args() -> Argument:
    return _head_model_args(SPATIAL_MODEL, "oodbench: QM9 <R^2> as sum_i q_i |r_i - r_c|^2 "
                            "(fitting_net.type property, intensive false).")


def _head_model_args(name: str, doc: str) -> Argument:
    std = standard_model_args()
    return Argument(name, dict, list(std.sub_fields.values()), list(std.sub_variants.values()), doc=doc)


@fitting_args_plugin.register(DIPOLE_FITTING, doc="oodbench: per-atom charge and equivariant vector "
                              "(the dipole-norm head); same arguments as the property fitting.")
def _dipole_fitting_args() -> list[Argument]:
    return list(fitting_args_plugin.get_argument("property").sub_fields.values())


@loss_args_plugin.register(HEAD_LOSS_TYPE, doc="oodbench: loss of the coordinate heads.")
def _head_loss_args() -> list[Argument]:
    return [
        Argument("property_name", str, optional=False, doc="The property (label file name), e.g. mu."),
        Argument("task_dim", int, optional=True, default=1, doc="Output dimension (1)."),
        Argument("loss_func", str, optional=True, default="mse", doc="mse, smooth_mae, mae, rmse or mape."),
        Argument("metric", list, optional=True, default=["mae", "rmse"], doc="Metrics to display."),
        Argument("beta", [float, int], optional=True, default=1.0, doc="beta of smooth_mae."),
    ]
