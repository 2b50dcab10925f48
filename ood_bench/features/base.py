"""Per-structure feature vectors for descriptor baselines, computed once per dataset and cached.

A ``Featurizer`` turns the structures of a dataset into a fixed-width float matrix. Features are
never computed per fold: ``cached_features`` computes the whole dataset once and stores it
content-addressed (dataset sha256 + featurizer name + its settings), so every fold, split
method and seed of a sweep reads the same matrix.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..registry import Registry

log = logging.getLogger(__name__)


@dataclass
class Featurizer:
    """``compute(structures, ids)`` returns (len(ids), d) floats (NaN where a feature is undefined).

    ``settings`` fully define the numbers (library, class, arguments, implementation version):
    they are part of the cache key and of every record that uses the features.
    ``kinds`` lists the dataset kinds (molecules, crystals) it applies to.
    ``context(spec, kind)``, for features that depend on more than their settings (a pretrained
    checkpoint), returns a ``FeatureContext``; it is called before anything is computed.
    """

    name: str
    summary: str
    kinds: tuple[str, ...]
    settings: dict[str, Any]
    compute: Any = field(repr=False)  # Callable[[Structures, Sequence, dict], np.ndarray]
    context: Any = field(default=None, repr=False)  # Callable[[RunSpec, str], FeatureContext] | None
    libraries: tuple[str, ...] = ()  # packages whose versions go into records

    def resolve(self, spec, kind: str) -> FeatureContext:
        return self.context(spec, kind) if self.context is not None else FeatureContext()

    def key(self) -> str:
        blob = json.dumps({"name": self.name, **self.settings}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class FeatureContext:
    """What a run's features depend on beyond the featurizer's settings.

    ``cache_key`` separates caches, ``options`` go to ``compute``, ``identity`` into the run
    fingerprint, ``record`` into the run record (e.g. its ``pretrained`` block)."""

    cache_key: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


FEATURIZERS: Registry[Featurizer] = Registry("featurizer", "ood_bench.features")


def cache_path(featurizer: Featurizer, dataset: str, dataset_sha256: str, extra: str = "") -> Path:
    from ..paths import cache_dir

    tag = f"-{extra}" if extra else ""
    return cache_dir() / "features" / f"{featurizer.name}-{dataset}-{dataset_sha256[:16]}-{featurizer.key()}{tag}.npz"


def cached_features(featurizer: Featurizer, ds, options: dict[str, Any] | None = None,
                    extra_key: str = "") -> tuple[list, np.ndarray, dict[str, Any]]:
    """(ids with structures, X rows in that order, info) for a loaded dataset; cached on disk.

    ``extra_key`` separates caches of featurizers whose numbers depend on more than their settings
    (the pretrained descriptor: its checkpoint's sha256). A cache whose ids differ is recomputed.
    """
    from ..io_utils import atomic_write_bytes

    if ds.spec.kind not in featurizer.kinds:
        from ..errors import UsageError

        raise UsageError(f"featurizer {featurizer.name} does not apply to {ds.spec.kind} ({ds.name})")
    ids = ds.ids_with_structures()
    path = cache_path(featurizer, ds.name, ds.sha256, extra_key)
    want = np.array([str(i) for i in ids])
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                if np.array_equal(z["ids"], want):
                    return ids, z["X"], {**json.loads(str(z["meta"])), "from_cache": True}
        except Exception:  # noqa: BLE001 - unreadable cache: recompute
            log.warning("ignoring unreadable feature cache %s", path)
    t0 = time.perf_counter()
    X = np.asarray(featurizer.compute(ds.structures, ids, options or {}), dtype=np.float64)
    if X.shape[0] != len(ids):
        raise RuntimeError(f"{featurizer.name} returned {X.shape[0]} rows for {len(ids)} structures")
    meta = {"featurizer": featurizer.name, "settings": featurizer.settings, "n": len(ids), "dim": int(X.shape[1]),
            "wall_s": round(time.perf_counter() - t0, 1), "cache_file": path.name}
    buf = io.BytesIO()
    np.savez_compressed(buf, X=X, ids=want, meta=np.array(json.dumps(meta, default=str)))
    atomic_write_bytes(path, buf.getvalue())
    return ids, X, {**meta, "from_cache": False}


def rows_for(all_ids: Sequence, wanted: Sequence) -> np.ndarray:
    """Row indices of ``wanted`` ids in ``all_ids`` (both in the dataset's id type)."""
    index = {sid: i for i, sid in enumerate(all_ids)}
    return np.array([index[i] for i in wanted], dtype=np.int64)
