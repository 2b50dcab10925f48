"""Make split files by method name: the library call behind ``oodbench split`` and the quickstart.

``generate_splits("qm9", ["boom"], "gap")`` resolves the methods that apply to the dataset (the
registry in ``methods.py``), applies generator parameter overrides, builds the split sets (methods
sharing a batch builder together) and saves them under the splits folder. Same inputs give
byte-identical files. Nothing here goes through the command line.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .schema import SplitSet

log = logging.getLogger(__name__)


def resolve_methods(dataset: str, methods: Iterable[str] = ("all",), import_published: bool = False) -> list[str]:
    """Method names for DATASET: ``all`` = its default methods; a name that does not apply is an error."""
    from ..datasets import get_spec
    from .methods import SPLIT_METHODS, methods_for

    spec = get_spec(dataset)
    applicable = {m.name: m for m in methods_for(spec.kind, include_non_default=True)}
    names: list[str] = []
    for m in methods:
        if m == "all":
            names.extend(n for n, sm in applicable.items() if sm.default)
        elif m in applicable:
            names.append(m)
        else:
            SPLIT_METHODS.get(m)  # unknown name: UsageError listing the known ones
            raise UsageError(f"split method '{m}' does not apply to {dataset}; use one of {', '.join(applicable)}")
    if import_published:
        if spec.kind != "crystals":
            raise UsageError("--import-published applies to the MatBench datasets only")
        names.append("omee2024")
    return list(dict.fromkeys(names))


def resolve_properties(dataset: str, prop: str | None = "all") -> list[str] | None:
    """QM9: the properties to split on (``all`` = every target); MatBench: None (one target)."""
    from ..datasets import get_spec

    spec = get_spec(dataset)
    prop = prop or "all"
    if spec.kind == "molecules":
        return [t.name for t in spec.targets] if prop == "all" else [spec.target(prop).name]
    if prop != "all":
        spec.target(prop)  # a wrong name is an error even where there is one target
    return None


def param_objects(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Generator parameter overrides (``n_ood=30``, ``n_clusters=5``...) applied to the parameter
    dataclasses of the OFM folds and every BOOM variant; unknown keys are an error."""
    from .boom import VARIANTS
    from .ofm_folds import OfmFoldParams

    if not overrides:
        return {}
    ofm_fields = {f.name for f in dataclasses.fields(OfmFoldParams)}
    boom_fields = {f.name for f in dataclasses.fields(next(iter(VARIANTS.values())))}
    unknown = set(overrides) - ofm_fields - boom_fields
    if unknown:
        raise UsageError(f"unknown --param {sorted(unknown)}; known: {', '.join(sorted(ofm_fields | boom_fields))}")
    ofm = OfmFoldParams(**{k: v for k, v in overrides.items() if k in ofm_fields})
    boom = {name: dataclasses.replace(p, **{k: v for k, v in overrides.items() if k in boom_fields})
            for name, p in VARIANTS.items()}
    return {"ofm_params": ofm, "boom_params": boom}


def set_sizes(s: SplitSet) -> dict[str, str]:
    """Size of each set over the folds ('120' or '110-130')."""
    out = {}
    for k in ["train", "val", *s.test_sets]:
        lens = sorted({len(f.all_sets()[k]) for f in s.folds.values()})
        out[k] = str(lens[0]) if len(lens) == 1 else f"{lens[0]}-{lens[-1]}"
    return out


def generate_splits(dataset: str, methods: Iterable[str] = ("all",), prop: str | None = "all", *,
                    data_dir: str | Path | None = None, splits_dir: str | Path | None = None,
                    params: Mapping[str, Any] | None = None, import_published: bool = False,
                    published_dir: str | None = None, n_jobs: int | None = None, use_cache: bool = True,
                    progress: bool = False, ds=None) -> list[Path]:
    """Build and save the split files of ``methods`` for DATASET; returns the paths written.

    ``params``: generator parameter overrides (the canonical files use the published values);
    ``ds``: an already loaded dataset (else loaded from ``data_dir``).
    """
    from ..datasets import load_dataset
    from ..paths import check_writable_splits_dir
    from .methods import methods_for
    from .schema import save_split

    names = resolve_methods(dataset, methods, import_published)
    props = resolve_properties(dataset, prop)
    overrides = param_objects(params)  # before loading anything: a typo fails at once
    check_writable_splits_dir(splits_dir)
    ds = ds if ds is not None else load_dataset(dataset, data_dir)
    applicable = {m.name: m for m in methods_for(ds.spec.kind, include_non_default=True)}
    options = {
        **overrides,
        "properties": props, "n_jobs": n_jobs, "use_cache": use_cache, "progress": progress,
        "data_dir": str(data_dir) if data_dir else None, "published_dir": published_dir,
        "log": lambda msg: log.info("building %s", msg),
    }
    done_batches: set[int] = set()
    written: list[Path] = []
    for name in names:
        method = applicable[name]
        t0 = time.perf_counter()
        if method.batch_build is not None:
            if id(method.batch_build) in done_batches:
                continue
            done_batches.add(id(method.batch_build))
            batch = [n for n in names if applicable[n].batch_build is method.batch_build]
            sets = method.batch_build(ds, batch, options)
        else:
            sets = method.build(ds, options)
        for s in sets:
            path = save_split(s, splits_dir)
            written.append(path)
            sizes = ", ".join(f"{k} {v}" for k, v in set_sizes(s).items())
            log.info("wrote %s (%d folds; %s) in %.1f s", path, len(s.folds), sizes, time.perf_counter() - t0)
    return written
