"""The three MatBench tasks of the MFT paper's Table 4, read from a data dir or matminer's download.

Files are MatBench's own layout: ``{"index": [mb ids], "columns": ["structure", target],
"data": [[pymatgen Structure dict, value], ...]}``. Structures are parsed straight from the dicts
into flat arrays (fast, cached on disk by file checksum); pymatgen objects are made on demand.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CorruptFileError, DataMissingError
from ..io_utils import read_json, sha256_file
from ..paths import cache_dir
from .base import (
    DATASETS,
    DatasetSpec,
    LoadedDataset,
    Structures,
    TargetInfo,
    check_count,
    read_fixture_marker,
)
from .checksums import checksum_status

log = logging.getLogger(__name__)

# name, target column in the file, short target name, unit, description, count, per-type bias
_TASKS = [
    ("matbench_dielectric", "n", "n", "unitless", "refractive index", 4764, False),
    ("matbench_log_gvrh", "log10(G_VRH)", "log_gvrh", "log10(GPa)", "VRH shear modulus", 10987, True),
    ("matbench_perovskites", "e_form", "e_form", "eV/unit cell", "perovskite formation energy", 18928, True),
]


def _file_for(spec: DatasetSpec, root: Path) -> Path:
    return root / "matbench" / f"{spec.name}.json.gz"


def _download(spec: DatasetSpec, root: Path) -> Path:
    """Fetch the official file with matminer (users with internet); matminer checks its hash."""
    target = root / "matbench"
    target.mkdir(parents=True, exist_ok=True)
    try:
        from matminer.datasets import load_dataset as mm_load

        mm_load(spec.name, data_home=str(target), download_if_missing=True)
    except Exception as exc:  # network errors come in many types
        raise DataMissingError(
            f"{spec.name}: not found at {_file_for(spec, root)} and the matminer download failed "
            f"({type(exc).__name__}); set OODBENCH_DATA_DIR (or --data-dir) to a folder holding "
            f"matbench/{spec.name}.json.gz"
        ) from None
    return _file_for(spec, root)


def _parse_structures(ids: list[str], dicts: list[dict]) -> Structures:
    z_of = _element_table()
    numbers, positions, offsets, cells = [], [], [0], []
    for sd in dicts:
        lat = np.asarray(sd["lattice"]["matrix"], dtype=float)
        for site in sd["sites"]:
            species = site["species"]
            if len(species) != 1 or abs(species[0].get("occu", 1.0) - 1.0) > 1e-6:
                raise CorruptFileError("partially occupied site found; oodbench needs ordered structures")
            el = species[0]["element"]
            numbers.append(z_of[el])
            if "xyz" in site:
                positions.append(site["xyz"])
            else:
                positions.append(np.dot(site["abc"], lat))
        offsets.append(len(numbers))
        cells.append(lat)
    return Structures(ids, np.array(numbers), np.array(positions), np.array(offsets), np.array(cells))


@functools.cache
def _element_table() -> dict[str, int]:
    from ase.data import atomic_numbers

    return dict(atomic_numbers)


def _load(spec: DatasetSpec, root: Path, download: bool = True) -> LoadedDataset:
    path = _file_for(spec, root)
    if not path.exists():
        if not download:
            raise DataMissingError(
                f"{spec.name}: looked for {path}; set OODBENCH_DATA_DIR or --data-dir to a folder "
                f"with matbench/{spec.name}.json.gz, or allow the matminer download"
            )
        path = _download(spec, root)
    digest = sha256_file(path)
    fixture = read_fixture_marker(root)
    status = checksum_status(spec.name, digest, fixture=fixture is not None)
    if status.startswith("UNVERIFIED"):
        log.warning("%s: %s is not a known release (sha256 %s)", spec.name, path, digest[:12])
    raw = read_json(path)
    try:
        ids = list(raw["index"])
        columns = list(raw["columns"])
        data = raw["data"]
        s_col = columns.index("structure")
        t_col = [i for i, c in enumerate(columns) if c != "structure"][0]
    except (KeyError, TypeError, ValueError, IndexError):
        raise CorruptFileError(f"{path}: not MatBench's index/columns/data layout") from None
    check_count(spec, len(ids), path, fixture)
    target = spec.targets[0].name
    values = np.array([row[t_col] for row in data], dtype=float)
    if not np.all(np.isfinite(values)):
        raise CorruptFileError(f"{path}: {int((~np.isfinite(values)).sum())} non-finite targets")
    table = pd.DataFrame({target: values}, index=pd.Index(ids, name="id"))
    if table.index.has_duplicates:
        raise CorruptFileError(f"{path}: duplicate ids")

    cache = cache_dir() / "structures" / f"{spec.name}-{digest[:16]}.npz"

    def structures() -> Structures:
        if cache.exists():
            return Structures.load(cache)
        st = _parse_structures(ids, [row[s_col] for row in data])
        st.save(cache)
        return st

    return LoadedDataset(spec, table, str(path), digest, status, structures)


for _name, _col, _short, _unit, _desc, _count, _bias in _TASKS:
    DATASETS.add(
        _name,
        DatasetSpec(
            name=_name,
            kind="crystals",
            targets=(TargetInfo(_short, _unit, "intensive", _desc, True, per_type_bias=_bias),),
            expected_count=_count,
            description=f"MatBench {_desc} ({_col})",
            metric="mae",
            label=_name.removeprefix("matbench_"),
            loader=_load,
        ),
    )
