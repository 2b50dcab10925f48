"""Features of MatBench's RF-SCM/Magpie reference algorithm: Magpie composition statistics plus
the Sine Coulomb Matrix eigenvalue spectrum, both from matminer, one row per crystal.

What MatBench ran (``benchmarks/matbench_v0.1_rf/run.py`` and the "RF-SCM/Magpie" page of the
MatBench docs, matbench_v0.1_rf.md): automatminer 1.0.3.20191111's ``AutoFeaturizer(preset="debug")``,
which for structure tasks is

- ``ElementProperty.from_preset("magpie")`` on ``StructureToComposition(reduce=True)``, i.e. on
  ``structure.composition.reduced_composition`` (132 features), and
- ``SineCoulombMatrix(flatten=True)``, fitted on the structures so that its width is the largest
  number of sites (``sine coulomb matrix eig 0 .. n_max-1``),

in that column order (MatBench's ``features_all``: the 132 Magpie columns, then the SCM columns).
Automatminer also guessed oxidation states first; neither featurizer uses them (``ElementProperty``
reads ``composition.element_composition``, ``SineCoulombMatrix`` reads ``specie.Z``), so it is
skipped here. A featurizer that raises on a structure gives NaN for its whole block (automatminer
ran with ``ignore_errors=True``); infinities become NaN (automatminer's ``DataCleaner`` does that
first). NaNs are returned as they are: imputing is the estimator's job.

One deliberate difference: matminer's ``flatten=True`` takes ``np.linalg.eig`` of the symmetric
matrix and stores the eigenvalues in whatever order LAPACK's general eigensolver returns them
(not sorted; for degenerate spectra sometimes complex, of which matminer keeps the real part).
That order depends on the LAPACK build and makes column k a different quantity from one crystal
to the next. Here each row's eigenvalues (matminer's own numbers) are sorted by decreasing
absolute value, zero padding last, as in the Coulomb-matrix literature (Rupp et al. 2012;
Faber et al. 2015), so the features are permutation invariant and reproducible across builds.
``EIGENVALUE_ORDER`` names this in the settings (and so in the cache key).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import FEATURIZERS, Featurizer

log = logging.getLogger(__name__)

N_MAGPIE = 132
EIGENVALUE_ORDER = "decreasing |eigenvalue|, zero padding last"

SETTINGS: dict[str, Any] = {
    "reference": "matbench_v0.1 RF-SCM/Magpie (automatminer AutoFeaturizer preset='debug')",
    "composition_featurizer": "matminer.featurizers.composition.ElementProperty",
    "composition_preset": "magpie",
    "composition_input": "Structure.composition.reduced_composition (StructureToComposition(reduce=True))",
    "structure_featurizer": "matminer.featurizers.structure.SineCoulombMatrix",
    "structure_featurizer_args": {"diag_elems": True, "flatten": True},
    "structure_featurizer_fit": "SineCoulombMatrix.fit on all structures of the dataset (width = max sites)",
    "eigenvalue_order": EIGENVALUE_ORDER,
    "column_order": "132 magpie columns, then sine coulomb matrix eig 0..n_max-1",
    "oxidation_states": "not guessed (neither featurizer uses them)",
    "errors": "a featurizer that raises gives NaN for its block; +-inf -> NaN; no imputation",
    "implementation": "ood_bench.features.scm_magpie/1",
}


@functools.cache
def _magpie():
    import warnings

    from matminer.featurizers.composition import ElementProperty

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ElementProperty.from_preset("magpie")


def magpie_labels() -> list[str]:
    return list(_magpie().feature_labels())


def feature_labels(n_max_sites: int) -> list[str]:
    """Column names of a matrix whose SCM block has ``n_max_sites`` columns (matminer's names)."""
    return magpie_labels() + [f"sine coulomb matrix eig {i}" for i in range(n_max_sites)]


def sort_spectrum(eigs: np.ndarray) -> np.ndarray:
    """Sort rows (or one row) by decreasing absolute value; stable, so zero padding stays last."""
    eigs = np.asarray(eigs, dtype=float)
    order = np.argsort(-np.abs(eigs), axis=-1, kind="stable")
    return np.take_along_axis(eigs, order, axis=-1)


def fitted_scm(structures: Sequence):
    """matminer's ``SineCoulombMatrix(flatten=True)`` fitted on pymatgen structures (any iterable)."""
    import warnings

    from matminer.featurizers.structure import SineCoulombMatrix

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SineCoulombMatrix(diag_elems=True, flatten=True).fit(structures)


def featurize_one(structure, scm) -> tuple[np.ndarray, int]:
    """(row, number of featurizers that failed) for one pymatgen Structure and a fitted SCM."""
    import warnings

    n_max = len(scm.feature_labels())  # set by fit: the width matminer pads to
    row = np.full(N_MAGPIE + n_max, np.nan)
    failed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # np.matrix, ComplexWarning, pymatgen chatter
        try:
            comp = structure.composition.reduced_composition
            row[:N_MAGPIE] = np.asarray(_magpie().featurize(comp), dtype=float)
        except Exception as exc:  # noqa: BLE001 - automatminer: ignore_errors=True -> NaN
            log.debug("magpie failed: %s", exc)
            failed += 1
        try:
            eigs = np.asarray(scm.featurize(structure), dtype=float)
            if eigs.shape != (n_max,):
                raise ValueError(f"{structure.num_sites} sites, fitted for at most {n_max}")
            row[N_MAGPIE:] = sort_spectrum(eigs)
        except Exception as exc:  # noqa: BLE001
            log.debug("sine coulomb matrix failed: %s", exc)
            failed += 1
    row[np.isinf(row)] = np.nan
    return row, failed


def _to_pymatgen(numbers, positions, cell):
    """The pymatgen Structure ``Structures.to_pymatgen`` gives for these arrays."""
    from ..datasets.base import Structures

    n = len(numbers)
    one = Structures([0], numbers, positions, np.array([0, n]), np.asarray(cell)[None])
    return one.to_pymatgen(0)


_WORKER_SCM = None


def _worker_init(scm) -> None:
    import warnings

    global _WORKER_SCM
    warnings.filterwarnings("ignore")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("SPGLIB_WARNING", "OFF")
    logging.getLogger("pymatgen").setLevel(logging.ERROR)
    logging.getLogger("matminer").setLevel(logging.ERROR)
    _WORKER_SCM = scm


def _featurize_task(args) -> tuple[np.ndarray, int]:
    return featurize_one(_to_pymatgen(*args), _WORKER_SCM)


def featurize_structures(structures, ids: Sequence | None = None, n_jobs: int | None = None,
                         progress: bool = True, description: str = "SCM+Magpie") -> tuple[np.ndarray, int]:
    """(X, number of featurizer failures) for ``ids`` of a periodic ``Structures``, in parallel.

    The SCM is fitted on exactly these structures, so the width is 132 + their largest site count.
    """
    from .ofm import _progress

    ids = list(structures.ids if ids is None else ids)
    if not ids:
        raise ValueError("no structures to featurize")
    if not structures.periodic:
        raise ValueError("scm-magpie needs periodic structures (crystals)")
    n_jobs = n_jobs or os.cpu_count() or 1
    scm = fitted_scm(structures.iter_pymatgen(ids))
    _magpie()  # load the Magpie tables once, before forking
    out = np.empty((len(ids), N_MAGPIE + len(scm.feature_labels())))
    failures = 0
    tasks = (structures.atoms_of(i) for i in ids)
    with _progress(progress) as bar:
        task = bar.add_task(description, total=len(ids))
        pool = None
        if n_jobs == 1 or len(ids) < 8:
            _worker_init(scm)
            results = map(_featurize_task, tasks)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
            pool = ctx.Pool(n_jobs, initializer=_worker_init, initargs=(scm,))
            results = pool.imap(_featurize_task, tasks, chunksize=16)
        try:
            for k, (row, failed) in enumerate(results):
                out[k] = row
                failures += failed
                bar.advance(task)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    return out, failures


def compute(structures, ids: Sequence, options: dict[str, Any]) -> np.ndarray:
    X, failures = featurize_structures(structures, ids, n_jobs=options.get("n_jobs"),
                                       progress=options.get("progress", True))
    if failures:
        log.warning("scm-magpie: %d featurizer failures (NaN blocks) over %d structures", failures, len(ids))
    return X


SCM_MAGPIE = Featurizer(
    name="scm-magpie",
    summary="MatBench RF-SCM/Magpie features: matminer Magpie ElementProperty (132) + sorted "
            "SineCoulombMatrix eigenvalues (padded to the largest cell of the dataset)",
    kinds=("crystals",),
    settings=SETTINGS,
    compute=compute,
    libraries=("matminer", "pymatgen", "scipy"),
)
FEATURIZERS.add("scm-magpie", SCM_MAGPIE)
