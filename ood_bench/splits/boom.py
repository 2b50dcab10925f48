"""QM9 property-tail splits: BOOM's ``prepare_splits_qm9`` (Antoniuk et al. 2025), reproduced exactly.

BOOM's code (FLASK-LLNL/BOOM ``boom/data/prepare_splits_qm9.py``, commit 2bb1d83), per property::

    random.seed(42)
    X = np.array(values).reshape(-1, 1).astype(np.float64)   # one row per SMILES, file order
    score = KernelDensity(kernel="gaussian", bandwidth="scott").fit(X).score_samples(X)  # log-density
    ood_indices = np.argpartition(np.exp(score), 10000)[0:10000]
    for counter, molecule in enumerate(molecules):             # file order again
        if counter in ood_indices: OOD
        elif random.random() < 0.05: ID test
        else: train

Here, on the raw values of all 133,885 molecules in gdb order (BOOM's file order; the property table
has no two molecules with the same SMILES, so BOOM's SMILES-keyed dict merges nothing):

1. ``score``: scikit-learn's ``score_samples`` itself, bit for bit. It is evaluated once per
   distinct value (optionally in several processes): scikit-learn computes each query point's
   log-density from that point and the fitted tree alone (``_kde_single_breadthfirst`` resets its
   heap per point), so a value's score does not depend on which other points are queried with it.
2. OOD: ``np.argpartition(np.exp(score), n_ood)[:n_ood]`` with numpy's own introselect, i.e. the
   molecules the partition puts first, ties at the boundary included. Which tied molecules those are
   depends on the selection algorithm: numpy < 2.0 (BOOM's environments pin 1.24) always ran its
   introselect; numpy >= 2.0 hands a single ``kth`` of a 4- or 8-byte dtype to x86-simd-sort, whose
   AVX-512 and AVX2 versions pick different tied molecules, so a plain ``np.argpartition`` call gives
   a CPU-dependent split. We call ``np.argpartition(d, [n_ood, n_ood])``: with more than one kth
   numpy runs its introselect on every CPU and version (the second, equal kth finds its pivot
   already in place and moves nothing). ``tie_order="native"`` reproduces the plain call as this
   numpy dispatches it on this CPU; ``tie_order="gdb"`` is split version 1's rule (lowest gdb index
   among tied molecules goes to OOD).
3. ID test: ``random.seed(42)``, then one ``random.random()`` per non-OOD molecule in gdb order;
   ID when ``< 0.05``, train otherwise.
4. Validation (oodbench's, BOOM has none): ``val_fraction`` (5%, as the paper's gap counts imply)
   of train, drawn with ``numpy.random.default_rng(val_seed)``; the rest is train.

Variant ``boom10pct`` runs the same code with the paper's wording (lowest 10% OOD, ID p = 0.10).
Split files list all molecules, including the 3,054 without coordinates (their count is in the
metadata); a run skips ids that have no structure.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataMissingError, UsageError
from .schema import Fold, SplitSet

N_FULL = 133_885
# Version of the BOOM split procedure written into every file (generator.split_version).
# 1: OOD ties at the density boundary broken by lowest gdb index (files before this change; no field).
# 2: OOD = np.argpartition(np.exp(score), n_ood)[:n_ood], numpy's introselect tie order (BOOM's code).
SPLIT_VERSION = 2

TIE_ORDERS = {
    "introselect": "np.argpartition(np.exp(score), n_ood)[:n_ood] with numpy's introselect "
                   "(numpy < 2.0 on every CPU, numpy >= 2.0 without SIMD dispatch): BOOM's code",
    "native": "np.argpartition(np.exp(score), n_ood)[:n_ood] as this numpy dispatches it on this CPU "
              "(numpy >= 2.0 on AVX-512/AVX2 CPUs picks different tied molecules): machine-dependent",
    "gdb": "ties at the boundary broken by lowest gdb index (split version 1's rule, not BOOM's code)",
}


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
    tie_order: str = "introselect"

    def __post_init__(self):
        if self.tie_order not in TIE_ORDERS:
            raise UsageError(f"BOOM: tie_order={self.tie_order!r}; use one of {', '.join(TIE_ORDERS)}")

    def resolve_n_ood(self, n: int) -> int:
        if self.n_ood is not None:
            return int(self.n_ood)
        return int(math.floor(self.ood_fraction * n))


VARIANTS = {
    "boom": BoomParams(),
    "boom10pct": BoomParams(n_ood=None, ood_fraction=0.10, id_probability=0.10),
}

# ---------------------------------------------------------------- density

_DENSITY_CACHE: dict = {}
_WORKER_KDE = None


def _init_worker(kde) -> None:
    global _WORKER_KDE
    _WORKER_KDE = kde


def _score_chunk(q: np.ndarray) -> np.ndarray:
    return _WORKER_KDE.score_samples(q.reshape(-1, 1))


def boom_log_density(values: np.ndarray, kernel: str = "gaussian", bandwidth: str | float = "scott",
                     n_jobs: int | None = 1) -> np.ndarray:
    """``KernelDensity(kernel, bandwidth).fit(X).score_samples(X)`` for ``X = values`` as BOOM builds it
    (an ``(n, 1)`` float64 array), bit for bit.

    Each distinct value is scored once, by ``score_samples`` itself, in ``n_jobs`` processes
    (``None``: all cores) when there are enough of them; results are memoised per input so the two
    BOOM variants of a property share one evaluation. With scikit-learn's default tolerances
    (atol = rtol = 0) no tree node is ever pruned, so each distinct value costs a sum over all
    molecules: seconds for homo/lumo/gap/alpha (2-5k distinct values), minutes for mu, r2 and zpve
    (50-133k distinct values).
    """
    import hashlib

    from sklearn.neighbors import KernelDensity

    X = np.array(values).reshape(-1, 1).astype(np.float64)
    key = (hashlib.sha256(X.tobytes()).hexdigest(), kernel, str(bandwidth))
    if key in _DENSITY_CACHE:
        return _DENSITY_CACHE[key].copy()
    kde = KernelDensity(kernel=kernel, bandwidth=bandwidth).fit(X)
    uniq, inverse = np.unique(X[:, 0], return_inverse=True)
    n_proc = min(n_jobs or os.cpu_count() or 1, max(1, len(uniq) // 2000))
    if n_proc <= 1:
        scores = kde.score_samples(uniq.reshape(-1, 1))
    else:
        import multiprocessing as mp

        chunks = np.array_split(uniq, 4 * n_proc)  # the middle of the range costs more: balance
        ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
        with ctx.Pool(n_proc, initializer=_init_worker, initargs=(kde,)) as pool:
            scores = np.concatenate(pool.map(_score_chunk, chunks, chunksize=1))
    out = scores[inverse.reshape(-1)]
    if len(_DENSITY_CACHE) > 32:
        _DENSITY_CACHE.clear()
    _DENSITY_CACHE[key] = out
    return out.copy()


# ---------------------------------------------------------------- selection

def boom_select(density: np.ndarray, n: int, tie_order: str = "introselect") -> np.ndarray:
    """Rows of the ``n`` lowest densities, ascending: ``np.argpartition(density, n)[:n]`` (see the
    module docstring for why ``[n, n]``), or by (density, row) for ``tie_order="gdb"``."""
    d = np.ascontiguousarray(density, dtype=np.float64)
    if not 0 < n < len(d):
        raise UsageError(f"BOOM: n_ood={n} must be between 1 and {len(d) - 1} for {len(d)} molecules")
    if tie_order == "introselect":
        first = np.argpartition(d, [n, n])[:n]
    elif tie_order == "native":
        first = np.argpartition(d, n)[:n]
    elif tie_order == "gdb":
        first = np.argsort(d, kind="stable")[:n]
    else:
        raise UsageError(f"BOOM: tie_order={tie_order!r}; use one of {', '.join(TIE_ORDERS)}")
    return np.sort(first)


@dataclass
class BoomAssignment:
    ood: np.ndarray  # row indices, ascending
    id_test: np.ndarray
    train: np.ndarray
    val: np.ndarray
    info: dict


def _selection_info(values: np.ndarray, log_density: np.ndarray, density: np.ndarray, is_ood: np.ndarray,
                    n_ood: int, params: BoomParams) -> dict:
    """How the OOD set was chosen, with the facts that make the choice checkable (ties, underflow)."""
    import sklearn

    boundary = density[is_ood].max()
    tied = density == boundary
    distinct = np.unique(log_density)
    median = float(np.median(values))
    ood_vals = values[is_ood]
    return {
        "n_ood": n_ood,
        "selection": f"np.argpartition(np.exp(score), {n_ood})[:{n_ood}]",
        "tie_order": params.tie_order,
        "tie_rule": TIE_ORDERS[params.tie_order],
        "computed_with": {"numpy": np.__version__, "scikit-learn": sklearn.__version__},
        "score": "sklearn KernelDensity.score_samples, once per distinct value (bit-identical to one "
                 "call on all molecules)",
        "boundary_density": float(boundary),
        "boundary_log_density": float(log_density[is_ood][np.argmax(density[is_ood])]),
        "tied_at_boundary": int(tied.sum()),
        "tied_at_boundary_in_ood": int((tied & is_ood).sum()),
        "below_boundary": int((density < boundary).sum()),
        # exp strictly increasing over the distinct scores: ranking exp(score) = ranking score, so the
        # selection does not depend on which exp implementation numpy uses
        "exp_strictly_increasing": bool(np.all(np.diff(np.exp(distinct)) > 0)),
        "exp_density_underflow": int(np.sum(density == 0.0)),
        "ood_below_median": int(np.sum(ood_vals < median)),
        "ood_above_median": int(np.sum(ood_vals >= median)),
        "max_ood_log_density": float(log_density[is_ood].max()),
        "min_non_ood_log_density": float(log_density[~is_ood].min()),
    }


def boom_assign(values: np.ndarray, params: BoomParams = BoomParams(),
                log_density: np.ndarray | None = None, n_jobs: int | None = 1) -> BoomAssignment:
    """Rows (positions in the given gdb-ordered array) of OOD, ID test, train and val."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    n_ood = params.resolve_n_ood(n)
    if not 0 < n_ood < n:
        raise UsageError(f"BOOM: n_ood={n_ood} must be between 1 and {n - 1} for {n} molecules")
    if log_density is None:
        log_density = boom_log_density(values, params.kernel, params.bandwidth, n_jobs=n_jobs)
    density = np.exp(log_density)  # BOOM partitions exp(score)
    ood = boom_select(density, n_ood, params.tie_order)
    is_ood = np.zeros(n, dtype=bool)
    is_ood[ood] = True

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

    info = _selection_info(values, log_density, density, is_ood, n_ood, params)
    return BoomAssignment(ood, np.nonzero(is_id)[0], train, val, info)


def require_full_table(ds) -> None:
    """BOOM needs the property table of all 133,885 molecules, not qm9pack's 130,831."""
    if ds.checksum_status.startswith("qm9pack") or Path(ds.source).is_dir():
        raise DataMissingError(
            f"BOOM splits need QM9's full property table (all {N_FULL:,} molecules, incl. the 3,054 "
            f"uncharacterised ones); only {len(ds):,} from qm9pack were found: put "
            "qm9/qm9_properties_133885.csv.gz (or the original dsgdb9nsd.xyz.tar.bz2) under --data-dir"
        )


def _boom_generator(a: BoomAssignment, params: BoomParams, variant: str, target: str,
                    generator_block: dict | None) -> dict:
    """The split file's generator block: parameters and the notes that let a reader re-derive it."""
    from .methods import generator_block as make_block

    gen = dict(generator_block or make_block(variant, {}))
    gen["split_version"] = SPLIT_VERSION
    gen["params"] = {"property": target, **params.__dict__, "n_ood_resolved": a.info["n_ood"],
                     "ranking": a.info["selection"] + f" (tie order: {params.tie_order})",
                     "id_walk_order": "gdb index ascending (BOOM's file order)"}
    notes = list(gen.get("notes", []))
    notes += [
        "BOOM's code (FLASK-LLNL/BOOM boom/data/prepare_splits_qm9.py @ 2bb1d83) on all molecules in "
        "gdb order, keyed by gdb index (no two share a SMILES, so BOOM's SMILES keys merge nothing).",
        f"OOD = {a.info['selection']}; {a.info['tied_at_boundary']} molecules share the boundary density, "
        f"{a.info['tied_at_boundary_in_ood']} of them are OOD, chosen by {TIE_ORDERS[params.tie_order]}; "
        f"computed with numpy {np.__version__}, scikit-learn {a.info['computed_with']['scikit-learn']}.",
        f"split_version {SPLIT_VERSION}: version 1 broke density ties by lowest gdb index instead.",
    ]
    if variant == "boom10pct":
        notes.append("paper wording (MFT Supplementary C.1: lowest 10% OOD, 10% ID) run through BOOM's code")
    gen["notes"] = notes
    return gen


def build_boom(ds, prop: str, variant: str = "boom", params: BoomParams | None = None,
               generator_block: dict | None = None, n_jobs: int | None = 1) -> SplitSet:
    """A ``SplitSet`` named ``<variant>-<prop>`` with one fold: train / val / id_test / ood_test."""
    require_full_table(ds)
    params = params or VARIANTS[variant]
    target = ds.spec.target(prop).name
    table = ds.table.sort_index()  # gdb order
    ids = [int(i) for i in table.index]
    values = table[target].to_numpy(dtype=np.float64)
    a = boom_assign(values, params, n_jobs=n_jobs)

    def pick(rows):
        return [ids[r] for r in rows]

    fold = Fold("0", pick(a.train), pick(a.val), {"id_test": pick(a.id_test), "ood_test": pick(a.ood)})
    try:
        with_structure = set(ds.ids_with_structures())
        no_structure = {s: sum(1 for i in v if i not in with_structure) for s, v in fold.all_sets().items()}
    except DataMissingError:
        no_structure = None
    gen = _boom_generator(a, params, variant, target, generator_block)
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
            out.append(build_boom(ds, prop, variant, params, gen, n_jobs=options.get("n_jobs")))
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
        description="BOOM's code with the paper's wording: lowest 10% OOD, ID p=0.10 (MFT Supplementary C.1)",
    ))


_register()
