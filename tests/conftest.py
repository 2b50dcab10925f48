"""Shared fixtures: the small real data under tests/fixtures/data, an isolated cache, a tiny
stand-in pretrained model (built once per session), and toy splits over the fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DATA = REPO / "tests" / "fixtures" / "data"


def full_data_dir() -> Path | None:
    """The real datasets, when OODBENCH_DATA_DIR points at them (CI: ../shared/data)."""
    env = os.environ.get("OODBENCH_DATA_DIR")
    if env and (Path(env) / "qm9" / "qm9_properties_133885.csv.gz").exists() and \
            not (Path(env) / "oodbench-fixture.json").exists():
        return Path(env)
    return None


@pytest.fixture(scope="session")
def fixture_data() -> Path:
    return FIXTURE_DATA


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """Caches (structure arrays, the stand-in model) live in a per-session folder."""
    path = tmp_path_factory.mktemp("oodbench-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("OODBENCH_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def stand_in(session_cache, fixture_data):
    """A tiny two-branch stand-in pretrained model built from the fixture data (~40 s), in a child
    process: CHGNet and xTB labelling would leave ~2.5 GB in the test process for the whole suite."""
    import subprocess
    import sys

    from ood_bench.backends.deepmd.pretrained import load_pretrained

    code = ("import sys\n"
            "from ood_bench.backends.deepmd.pretrain import PretrainConfig, pretrain\n"
            "cfg = PretrainConfig(n_molecules=80, n_crystals=45, n_copies=2, steps=40)\n"
            "print(pretrain(cfg, sys.argv[1]))\n")
    out = subprocess.run([sys.executable, "-c", code, str(fixture_data)], capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        pytest.fail(f"building the test stand-in failed:\n{out.stderr[-3000:]}")
    load_pretrained.cache_clear()
    return load_pretrained(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def toy_splits(tmp_path_factory, fixture_data, session_cache) -> Path:
    """One-fold splits over the fixtures: QM9 (train/val/id_test/ood_test, including molecules
    without coordinates) and MatBench dielectric (train/val/test)."""
    from ood_bench.datasets import load_dataset
    from ood_bench.splits import Fold, SplitSet, save_split

    root = tmp_path_factory.mktemp("splits")
    q = load_dataset("qm9", fixture_data)
    ids = sorted(q.ids, key=lambda i: q.table.loc[i, "gap"])  # OOD = the gap tails
    ood = ids[:20] + ids[-20:]
    rest = [i for i in q.ids if i not in set(ood)]
    fold = Fold("0", rest[:200], rest[200:230], {"id_test": rest[230:], "ood_test": ood})
    save_split(SplitSet("qm9", "toy-gap", {"0": fold}, ["id_test", "ood_test"], property="gap",
                        dataset_sha256=q.sha256), root)
    m = load_dataset("matbench_dielectric", fixture_data)
    mids = m.ids
    folds = {str(k): Fold(str(k), [i for i in mids if i not in set(mids[30 * k:30 * k + 60])],
                          mids[30 * k:30 * k + 30], {"test": mids[30 * k + 30:30 * k + 60]}) for k in range(2)}
    save_split(SplitSet("matbench_dielectric", "toy", folds, ["test"], dataset_sha256=m.sha256), root)
    return root


def pytest_runtest_logfinish(nodeid: str, location) -> None:
    """With ``OODBENCH_TEST_MEMORY=<file>``, append each test's peak memory so far (MiB) of this
    process and of its largest finished child (``dp`` trainings): where the suite's peak comes from
    (``benchmarks/test_memory.py`` reads it)."""
    out = os.environ.get("OODBENCH_TEST_MEMORY")
    if out:
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        with open(out, "a") as fh:
            fh.write(f"{own:.0f}\t{kids:.0f}\t{nodeid}\n")


@pytest.fixture(scope="module")
def env(stand_in, toy_splits, fixture_data, tmp_path_factory, request):
    """The robust fine-tuning tests' setting (tests/robust_helpers.py): the test stand-in, the toy
    splits, the fixture data and a results folder of the module's own."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    return {"stand_in": stand_in, "splits": toy_splits, "data": fixture_data,
            "results": tmp_path_factory.mktemp(f"{name}-results")}
