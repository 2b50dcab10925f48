"""QM9 property-tail splits following BOOM (Antoniuk et al. 2025, ``prepare_splits_qm9``).

Procedure, per property, on the raw values of all 133,885 molecules in gdb order:

1. ``KernelDensity(kernel="gaussian", bandwidth="scott").fit(values)``; log-density of every
   molecule with ``score_samples`` (evaluated once per distinct value: the score of a point
   depends on the point only, so this is the same number, just without repeating the work).
2. OOD test: the ``n_ood`` (10,000) molecules of lowest density.
   **Tie-breaking** (BOOM's ``np.argpartition`` leaves it to the selection algorithm): molecules
   are ranked by (log-density, gdb index), so among molecules of equal density at the boundary the
   ones with the LOWEST gdb index go to OOD. Ranking uses the log-density, which orders like
   BOOM's ``exp(score)`` except where ``exp`` rounds distinct scores together.
3. ID test: ``random.seed(42)``, then walking the other molecules in gdb order, each goes to ID
   when ``random.random() < 0.05`` and to train otherwise (one draw per non-OOD molecule, so a
   different OOD set shifts the stream for every later molecule).
4. Validation: ``val_fraction`` (5%, as the paper's gap counts imply) of train, drawn with
   ``numpy.random.default_rng(val_seed)``; the rest is train.

Variant ``boom10pct`` is the paper's wording (lowest 10% OOD, ID drawn with probability 0.10).
Split files list all molecules, including the 3,054 without coordinates (their count is in the
metadata); a run skips ids that have no structure.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataMissingError, UsageError
from .schema import Fold, SplitSet

N_FULL = 133_885


@dataclass(frozen=True)
class BoomParams:
    n_ood: int | None = 10_000
    ood_fraction: float | None = None  # used when n_ood is None
    id_probability: float = 0.05
    seed: int = 42
    val_fraction: float = 0.05
    val_seed: int = 42
    kernel: str = "gaussian"
    bandwidth: str = "scott"

    def resolve_n_ood(self, n: int) -> int:
        if self.n_ood is not None:
            return int(self.n_ood)
        return int(math.floor(self.ood_fraction * n))


VARIANTS = {
    "boom": BoomParams(),
    "boom10pct": BoomParams(n_ood=None, ood_fraction=0.10, id_probability=0.10),
}


def kde_log_density(values: np.ndarray, kernel: str = "gaussian", bandwidth: str | float = "scott",
                    refine_window: float = 1e-8, boundary_rank: int | None = None) -> np.ndarray:
    """Log-density of every value under sklearn's ``KernelDensity(kernel, bandwidth).fit(values)``.

    ``score_samples`` on 133,885 points takes sklearn's tree (atol = rtol = 0) minutes to hours per
    property, so the same sum is computed directly: one query per distinct value, Gaussian kernel
    with sklearn's fitted ``bandwidth_``, data weighted by multiplicity, terms beyond 40 bandwidths
    (exactly 0 in double precision) skipped. It agrees with ``score_samples`` to ~1e-12. Where the
    ranking at a boundary matters (``boundary_rank``: the OOD size), distinct values whose
    log-density lies within ``refine_window`` of the boundary are re-scored with ``score_samples``
    itself, so the OOD set is decided by sklearn's own numbers.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    kde, uniq, inverse, out = _direct_log_density(v, kernel, bandwidth)
    out = out.copy()
    if boundary_rank is not None and 0 < boundary_rank < len(v):
        dens = out[inverse]
        boundary = np.sort(dens, kind="stable")[boundary_rank - 1]
        near = np.nonzero(np.abs(out - boundary) <= refine_window)[0]
        if len(near):
            out[near] = kde.score_samples(uniq[near].reshape(-1, 1))
    return out[inverse]


_DENSITY_CACHE: dict = {}


def _direct_log_density(v: np.ndarray, kernel: str, bandwidth: str | float):
    """(fitted KernelDensity, distinct values, inverse index, log-density per distinct value); memoised
    per input so the two BOOM variants of a property share one evaluation."""
    import hashlib

    from sklearn.neighbors import KernelDensity

    key = (hashlib.sha256(v.tobytes()).hexdigest(), kernel, str(bandwidth))
    if key in _DENSITY_CACHE:
        return _DENSITY_CACHE[key]
    kde = KernelDensity(kernel=kernel, bandwidth=bandwidth).fit(v.reshape(-1, 1))
    uniq, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if kernel != "gaussian":
        out = kde.score_samples(uniq.reshape(-1, 1))
    else:
        h = float(kde.bandwidth_)
        log_norm = math.log(len(v) * h * math.sqrt(2 * math.pi))
        out = np.empty(len(uniq))
        w = counts.astype(np.float64)
        block = 256
        for start in range(0, len(uniq), block):
            q = uniq[start:start + block]
            lo = np.searchsorted(uniq, q[0] - 40 * h, side="left")
            hi = np.searchsorted(uniq, q[-1] + 40 * h, side="right")
            z = (q[:, None] - uniq[None, lo:hi]) / h
            out[start:start + block] = np.log(np.exp(-0.5 * z * z) @ w[lo:hi]) - log_norm
    if len(_DENSITY_CACHE) > 32:
        _DENSITY_CACHE.clear()
    _DENSITY_CACHE[key] = (kde, uniq, inverse, out)
    return _DENSITY_CACHE[key]


def rank_low_density(log_density: np.ndarray) -> np.ndarray:
    """Row order from lowest to highest density; ties keep row (= gdb) order."""
    return np.argsort(log_density, kind="stable")


@dataclass
class BoomAssignment:
    ood: np.ndarray  # row indices, ascending
    id_test: np.ndarray
    train: np.ndarray
    val: np.ndarray
    info: dict


def boom_assign(values: np.ndarray, params: BoomParams = BoomParams(),
                log_density: np.ndarray | None = None) -> BoomAssignment:
    """Rows (positions in the given gdb-ordered array) of OOD, ID test, train and val."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    n_ood = params.resolve_n_ood(n)
    if not 0 < n_ood < n:
        raise UsageError(f"BOOM: n_ood={n_ood} must be between 1 and {n - 1} for {n} molecules")
    if log_density is None:
        log_density = kde_log_density(values, params.kernel, params.bandwidth, boundary_rank=n_ood)
    order = rank_low_density(log_density)
    is_ood = np.zeros(n, dtype=bool)
    is_ood[order[:n_ood]] = True
    boundary = log_density[order[n_ood - 1]]
    tied = log_density == boundary
    n_tied = int(tied.sum())
    n_tied_in = int((tied & is_ood).sum())

    rnd = random.Random(params.seed)
    is_id = np.zeros(n, dtype=bool)
    for row in range(n):  # gdb order; one draw per non-OOD molecule, as BOOM does
        if not is_ood[row] and rnd.random() < params.id_probability:
            is_id[row] = True
    train_all = np.nonzero(~is_ood & ~is_id)[0]
    n_val = int(round(params.val_fraction * len(train_all)))
    rng = np.random.default_rng(params.val_seed)
    val = np.sort(rng.choice(train_all, size=n_val, replace=False)) if n_val else np.zeros(0, dtype=int)
    train = np.setdiff1d(train_all, val)

    median = float(np.median(values))
    ood_vals = values[is_ood]
    info = {
        "n_ood": n_ood,
        "boundary_log_density": float(boundary),
        "tied_at_boundary": n_tied,
        "tied_at_boundary_in_ood": n_tied_in,
        "tie_rule": "rank by (log-density, gdb index): among equal densities the lowest gdb index goes to OOD",
        "exp_density_underflow": int(np.sum(np.exp(log_density) == 0.0)),
        "ood_below_median": int(np.sum(ood_vals < median)),
        "ood_above_median": int(np.sum(ood_vals >= median)),
        "max_ood_log_density": float(log_density[is_ood].max()),
        "min_non_ood_log_density": float(log_density[~is_ood].min()),
    }
    return BoomAssignment(np.nonzero(is_ood)[0], np.nonzero(is_id)[0], train, val, info)


def require_full_table(ds) -> None:
    """BOOM needs the property table of all 133,885 molecules, not qm9pack's 130,831."""
    if ds.checksum_status.startswith("qm9pack") or Path(ds.source).is_dir():
        raise DataMissingError(
            f"BOOM splits need QM9's full property table (all {N_FULL:,} molecules, incl. the 3,054 "
            f"uncharacterised ones); only {len(ds):,} from qm9pack were found: put "
            "qm9/qm9_properties_133885.csv.gz (or the original dsgdb9nsd.xyz.tar.bz2) under --data-dir"
        )


def build_boom(ds, prop: str, variant: str = "boom", params: BoomParams | None = None,
               generator_block: dict | None = None) -> SplitSet:
    """A ``SplitSet`` named ``<variant>-<prop>`` with one fold: train / val / id_test / ood_test."""
    require_full_table(ds)
    params = params or VARIANTS[variant]
    target = ds.spec.target(prop).name
    table = ds.table.sort_index()  # gdb order
    ids = [int(i) for i in table.index]
    values = table[target].to_numpy(dtype=np.float64)
    a = boom_assign(values, params)

    def pick(rows):
        return [ids[r] for r in rows]

    fold = Fold("0", pick(a.train), pick(a.val), {"id_test": pick(a.id_test), "ood_test": pick(a.ood)})
    try:
        with_structure = set(ds.ids_with_structures())
        no_structure = {s: sum(1 for i in v if i not in with_structure) for s, v in fold.all_sets().items()}
    except DataMissingError:
        no_structure = None
    from .methods import generator_block as make_block

    gen = dict(generator_block or make_block(variant, {}))
    gen["params"] = {"property": target, **params.__dict__, "n_ood_resolved": a.info["n_ood"],
                     "ranking": "log-density ascending, ties by gdb index ascending",
                     "id_walk_order": "gdb index ascending"}
    notes = list(gen.get("notes", []))
    notes += [
        "BOOM procedure (FLASK-LLNL/BOOM prepare_splits_qm9) on all molecules keyed by gdb index "
        "(BOOM keyed by SMILES, which merges the few molecules that share one).",
        f"density tie-breaking: {a.info['tied_at_boundary']} molecules share the boundary density, "
        f"{a.info['tied_at_boundary_in_ood']} of them (lowest gdb indices) are OOD",
    ]
    if variant == "boom10pct":
        notes.append("paper wording (MFT Supplementary C.1: lowest 10% OOD, 10% ID), not BOOM's code")
    gen["notes"] = notes
    provenance = {
        "dataset_source": Path(ds.source).name,
        "checksum_status": ds.checksum_status,
        "n_molecules": len(ids),
        "counts": {s: len(v) for s, v in fold.all_sets().items()},
        "ids_without_structure": no_structure,
        "density": a.info,
    }
    return SplitSet(
        dataset=ds.name, name=f"{variant}-{target}", folds={"0": fold}, test_sets=["id_test", "ood_test"],
        generator=gen, dataset_sha256=ds.sha256, property=target, provenance=provenance,
    )


def _builder(variant: str):
    def build(ds, options: dict) -> list[SplitSet]:
        from .methods import generator_block

        props = options.get("properties") or [t.name for t in ds.spec.targets]
        params = options.get("boom_params", {}).get(variant) or VARIANTS[variant]
        out = []
        for prop in props:
            if options.get("log"):
                options["log"](f"qm9: {variant}-{prop}")
            gen = generator_block(variant, {})
            out.append(build_boom(ds, prop, variant, params, gen))
        return out

    return build


def _register() -> None:
    from .methods import SPLIT_METHODS, SplitMethod

    SPLIT_METHODS.add("boom", SplitMethod(
        name="boom", kind="molecules", build=_builder("boom"),
        description="BOOM property-tail split: 10,000 lowest-density molecules OOD, ID p=0.05 (BOOM's code)",
    ))
    SPLIT_METHODS.add("boom10pct", SplitMethod(
        name="boom10pct", kind="molecules", build=_builder("boom10pct"), default=False,
        description="paper wording of BOOM: lowest 10% OOD, ID p=0.10 (MFT Supplementary C.1)",
    ))


_register()
