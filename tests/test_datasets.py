"""Dataset registry: counts, ids, structures, provenance and the one-line errors."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import FIXTURE_DATA, full_data_dir

from ood_bench.datasets import DATASETS, load_dataset
from ood_bench.datasets.checksums import KNOWN
from ood_bench.errors import CorruptFileError, DataMissingError, UsageError


def oodbench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "ood_bench", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_registry_has_the_four_datasets():
    assert DATASETS.names() == ["matbench_dielectric", "matbench_log_gvrh", "matbench_perovskites", "qm9"]
    assert {t.name for t in DATASETS.get("qm9").targets} == {"mu", "alpha", "homo", "lumo", "gap", "r2",
                                                               "zpve", "Cv"}
    kinds = {t.name: t.kind for t in DATASETS.get("qm9").targets}
    assert kinds["gap"] == "intensive" and kinds["alpha"] == "extensive" and kinds["mu"] == "special"
    assert not DATASETS.get("matbench_dielectric").targets[0].per_type_bias


def test_unknown_dataset_is_a_usage_error():
    with pytest.raises(UsageError, match="known: matbench_dielectric"):
        DATASETS.get("qm10")


def test_fixture_qm9_keyed_by_gdb_index(session_cache):
    ds = load_dataset("qm9", FIXTURE_DATA)
    assert len(ds) == 300 and ds.checksum_status.startswith("fixture")
    st = ds.structures
    assert len(st) == 292  # 8 uncharacterised molecules have no coordinates: reported, not dropped
    assert len(ds.ids) - len(ds.ids_with_structures()) == 8
    sid = ds.ids_with_structures()[0]
    z, pos, cell = st.atoms_of(sid)
    assert cell is None and pos.shape == (len(z), 3) and set(z) <= {1, 6, 7, 8, 9}
    mol = st.to_pymatgen(sid)
    assert len(mol) == len(z)


def test_fixture_matbench_structures_are_periodic(session_cache):
    ds = load_dataset("matbench_dielectric", FIXTURE_DATA)
    assert len(ds) == 200 and ds.ids[0].startswith("mb-dielectric-")
    st = ds.structures
    s = st.to_pymatgen(ds.ids[0])
    assert s.lattice.volume > 0 and st.cells.shape == (200, 3, 3)
    assert np.isfinite(ds.target_values("n")).all()


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    spec = DATASETS.get("matbench_dielectric")
    with pytest.raises(DataMissingError, match=str(tmp_path)):
        spec.loader(spec, tmp_path, download=False)


def test_corrupt_and_truncated_files_name_the_file(tmp_path, session_cache):
    bad = tmp_path / "bad"
    (bad / "matbench").mkdir(parents=True)
    (bad / "matbench" / "matbench_dielectric.json.gz").write_bytes(b"not gzip")
    spec = DATASETS.get("matbench_dielectric")
    with pytest.raises(CorruptFileError, match="matbench_dielectric.json.gz"):
        spec.loader(spec, bad)
    short = tmp_path / "short"
    (short / "matbench").mkdir(parents=True)
    raw = json.loads(gzip.decompress((FIXTURE_DATA / "matbench" / "matbench_dielectric.json.gz").read_bytes()))
    (short / "matbench" / "matbench_dielectric.json.gz").write_bytes(gzip.compress(json.dumps(raw).encode()))
    with pytest.raises(CorruptFileError, match="expected 4764"):  # no fixture marker: real count expected
        spec.loader(spec, short)


def _xyz(gdb: int, props: str, atoms: list[str]) -> str:
    """One molecule in the original QM9 xyz format (properties on line 2, Mathematica '*^' exponents)."""
    return "\n".join([str(len(atoms)), f"gdb {gdb}\t" + props.replace(" ", "\t") + "\t", *atoms,
                      "1341.307\t1562.6731", "C\tC", "InChI=1S/x\tInChI=1S/x", ""])


_METHANE = _xyz(1, "157.7118 157.70997 157.70699 0. 13.21 -0.3877 0.1171 0.5048 35.3641 0.044749 -40.47893 "
                   "-40.476062 -40.475117 -40.498597 6.469",
                ["C\t-0.0126981359\t1.0858041578\t0.0080009958\t-0.535689",
                 "H\t0.002150416\t-0.0060313176\t0.0019761204\t0.133921",
                 "H\t1.0117308433\t1.4637511618\t0.0002765748\t0.133922",
                 "H\t-0.540815069\t1.4475266138\t-0.8766437152\t0.133923",
                 "H\t-0.5238136345\t1.4379326443\t0.9063972942\t0.133923"])
_WATER = _xyz(3, "799.58812 437.90386 282.94545 1.8511 6.31 -0.2928 0.0687 0.3615 19.0002 2.1375*^-2 -76.404702 "
                 "-76.401867 -76.400922 -76.422349 6.002",
              ["O\t-0.0343604951\t0.9775395708\t0.0076015923\t-0.589706",
               "H\t0.0647664611\t0.0205721421\t0.0015346692\t0.294853",
               "H\t0.8717903190\t1.3007924107\t6.931874*^-4\t0.294853"])


def test_original_qm9_tarball_is_parsed_once_and_keyed_by_gdb_index(tmp_path, monkeypatch):
    import io
    import tarfile

    monkeypatch.setenv("OODBENCH_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    (root / "qm9").mkdir(parents=True)
    (root / "oodbench-fixture.json").write_text(json.dumps({"counts": {"qm9": 2}}))
    with tarfile.open(root / "qm9" / "dsgdb9nsd.xyz.tar.bz2", "w:bz2") as tar:
        for name, text in (("dsgdb9nsd_000003.xyz", _WATER), ("dsgdb9nsd_000001.xyz", _METHANE)):
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    spec = DATASETS.get("qm9")
    ds = spec.loader(spec, root)
    assert ds.checksum_status == "original QM9 xyz tarball" and ds.ids == [1, 3]
    assert ds.table.loc[3, "gap"] == pytest.approx(0.3615) and ds.table.loc[1, "Cv"] == pytest.approx(6.469)
    assert ds.table.loc[3, "zpve"] == pytest.approx(0.021375)
    z, pos, cell = ds.structures.atoms_of(3)
    assert z.tolist() == [8, 1, 1] and cell is None
    assert pos[2] == pytest.approx([0.871790319, 1.3007924107, 0.0006931874])
    cached = list((tmp_path / "cache" / "qm9").glob("tarball-*/table.csv.gz"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    assert spec.loader(spec, root).ids == [1, 3] and cached[0].stat().st_mtime_ns == stamp  # parsed once
    (root / "qm9" / "dsgdb9nsd.xyz.tar.bz2").write_bytes(b"not a tarball")
    with pytest.raises(CorruptFileError, match="not a readable QM9 xyz tarball"):
        spec.loader(spec, root)


def test_nan_label_in_data_file_is_rejected(tmp_path, session_cache):
    d = tmp_path / "nan"
    shutil.copytree(FIXTURE_DATA, d)
    path = d / "matbench" / "matbench_dielectric.json.gz"
    raw = json.loads(gzip.decompress(path.read_bytes()))
    raw["data"][3][1] = float("nan")
    path.write_bytes(gzip.compress(json.dumps(raw).encode()))
    spec = DATASETS.get("matbench_dielectric")
    with pytest.raises(CorruptFileError, match="non-finite"):
        spec.loader(spec, d)


def test_cli_unknown_dataset_one_line_exit_2():
    res = oodbench("run", "--dataset", "qm10")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "unknown dataset 'qm10'" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_datasets_lists_all_four(session_cache):
    res = oodbench("datasets", "--data-dir", str(FIXTURE_DATA))
    assert res.returncode == 0, res.stderr
    for name in DATASETS.names():
        assert name in res.stdout


@pytest.mark.fulldata
def test_full_datasets_counts_and_checksums(session_cache):
    root = full_data_dir()
    if root is None:
        pytest.skip("OODBENCH_DATA_DIR with the full datasets is not set")
    expected = {"qm9": 133_885, "matbench_dielectric": 4764, "matbench_log_gvrh": 10_987,
                "matbench_perovskites": 18_928}
    for name, n in expected.items():
        ds = load_dataset(name, root)
        assert len(ds) == n
        assert ds.sha256 in {d for _, d in KNOWN[name]}, f"{name}: unknown sha256 {ds.sha256}"
    assert len(load_dataset("qm9", root).ids_with_structures()) == 130_831
