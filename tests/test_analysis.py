"""Representation-collapse analysis: class labels, metrics, node/edge read-out from a tiny DPA3
model (the edge hook is checked against geometry and atom permutations), and the whole
``analyze collapse`` on the tiny stand-in: identical models give W1 = 0 and DB ratio 1, a
perturbed model drifts, results repeat for a seed, and the CLI writes its table and figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ood_bench.analysis import labels as lab
from ood_bench.analysis.metrics import db_index_2d, tsne_2d, wasserstein1
from ood_bench.errors import UsageError

# --- labels (no model) ------------------------------------------------------------------------


def test_methanol_node_labels():
    from ase.build import molecule

    m = molecule("CH3OH")
    got = dict(zip(range(len(m)), lab.node_labels(m.numbers, m.positions), strict=True))
    syms = m.get_chemical_symbols()
    assert [got[i] for i in range(len(m)) if syms[i] == "C"] == ["C4"]
    assert [got[i] for i in range(len(m)) if syms[i] == "O"] == ["O2"]
    assert [got[i] for i in range(len(m)) if syms[i] == "H"] == ["H1"] * 4


def test_methanol_edge_classes():
    from ase.build import molecule

    m = molecule("CH3OH")
    e = lab.classified_edges(m.numbers, m.positions)
    # centred on the carbon only: three C-H bonds, one C-O bond; the hydroxyl H (~1.9 A) is in no class
    assert sorted(e.label) == ["C-H near"] * 3 + ["C-O near"]
    assert set(m.numbers[e.i]) == {6}


@pytest.mark.parametrize(("zi", "zj", "d", "want"), [
    (6, 1, 1.09, "C-H near"), (6, 8, 1.43, "C-O near"), (6, 8, 1.70, None), (6, 1, 3.5, "C-H middle"),
    (6, 8, 4.5, None), (6, 1, 5.5, "C-H far"), (6, 8, 5.9, "C-O far"), (6, 1, 6.5, None),
    (1, 6, 1.09, None), (6, 7, 1.3, None),
])
def test_edge_class_bands(zi, zj, d, want):
    assert lab.edge_class(zi, zj, d) == want


def test_periodic_covalent_environment():
    from ase.build import bulk

    diamond = bulk("C", "diamond", a=3.567)
    assert lab.node_labels(diamond.numbers, diamond.positions, np.array(diamond.cell)) == ["C4", "C4"]


def test_sampling_caps_and_seeds():
    labels = ["a"] * 50 + ["b"] * 5
    s1 = lab.sample_per_class(labels, 10, 0)
    assert np.array_equal(s1, lab.sample_per_class(labels, 10, 0))
    assert sum(labels[i] == "a" for i in s1) == 10 and sum(labels[i] == "b" for i in s1) == 5
    assert not np.array_equal(s1, lab.sample_per_class(labels, 10, 1))
    assert len(lab.sample_uniform(5, 10, 0)) == 5 and len(lab.sample_uniform(100, 10, 0)) == 10


# --- metrics ----------------------------------------------------------------------------------


def test_wasserstein_identity_and_translation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    assert wasserstein1(a, a) == pytest.approx(0.0, abs=1e-9)
    shift = np.zeros(16)
    shift[3] = 0.7
    # translating a cloud moves it by exactly |shift| in W1
    assert wasserstein1(a, a + shift) == pytest.approx(0.7, rel=1e-6)
    assert wasserstein1(a, rng.permutation(a)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError):
        wasserstein1(a, a[:, :3])


def test_db_index_separates_and_repeats():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=8, size=(4, 10))
    labels = np.repeat(np.arange(4), 40)
    pts = centres[labels] + rng.normal(size=(160, 10))
    db = db_index_2d(pts, labels, seed=0)
    assert db == db_index_2d(pts, labels, seed=0)  # bit-for-bit for a seed
    assert np.array_equal(tsne_2d(pts, 3), tsne_2d(pts, 3))
    mixed = db_index_2d(rng.normal(size=(160, 10)), labels, seed=0)
    assert db < mixed
    # db is the Davies-Bouldin index of the seed's sklearn t-SNE map, both computed here by hand
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        emb = TSNE(n_components=2, perplexity=30.0, init="pca", random_state=0).fit_transform(pts)
    np.testing.assert_allclose(tsne_2d(pts, 0), emb, rtol=0, atol=1e-9)
    cent = np.array([emb[labels == k].mean(axis=0) for k in range(4)])
    scatter = np.array([np.linalg.norm(emb[labels == k] - cent[k], axis=1).mean() for k in range(4)])
    ratios = [max((scatter[i] + scatter[j]) / np.linalg.norm(cent[i] - cent[j]) for j in range(4) if j != i)
              for i in range(4)]
    assert db == pytest.approx(np.mean(ratios), rel=1e-9)


def test_selector_parsing():
    from ood_bench.analysis.collapse import parse_selector, select_records

    assert parse_selector("") == {} and parse_selector("all") == {}
    f = parse_selector("dataset=qm9, strategy=ft|mft,train_fraction=0.5")
    assert f == {"dataset": {"qm9"}, "strategy": {"ft", "mft"}, "train_fraction": {"0.5"}}
    with pytest.raises(UsageError):
        parse_selector("datset=qm9")
    with pytest.raises(UsageError):
        parse_selector("qm9")
    recs = [{"key": {"dataset": "qm9", "split": "s", "fold": "0", "model": "dpa3", "strategy": s, "seed": 0,
                     "train_fraction": 0.5, "property": "gap"}} for s in ("ft", "mft", "lp")]
    got = select_records(recs, f)
    assert [r["key"]["strategy"] for r in got] == ["ft", "mft"]
    assert select_records(recs, parse_selector("train_fraction=0.25")) == []


# --- with a tiny model ------------------------------------------------------------------------


def _perturbed_copy(src: Path, dst: Path, scale: float = 0.3) -> Path:
    """The checkpoint with noise added to every descriptor weight."""
    import torch

    state = torch.load(src, map_location="cpu", weights_only=True)
    model = state.get("model", state)
    gen = torch.Generator().manual_seed(0)
    n = 0
    for k, v in model.items():
        if ".descriptor." in k and torch.is_tensor(v) and v.is_floating_point() and "mean" not in k \
                and "stddev" not in k:
            model[k] = v + scale * torch.randn(v.shape, generator=gen, dtype=v.dtype) * (v.std() + 1e-3)
            n += 1
    assert n > 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, dst)
    return dst


def _fake_record(root: Path, name: str, model: Path, head: str | None, strategy: str, seed: int,
                 pretrained: dict | None, split_file: str) -> dict:
    """An in-memory record (what ``load_records`` returns) whose model.pt is ``model``."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, d / "model.pt")
    return {
        "key": {"dataset": "qm9", "split": "toy-gap", "fold": "0", "model": "dpa3", "strategy": strategy,
                "seed": seed, "train_fraction": 1.0, "property": "gap"},
        "_path": str(d / "record.json"), "pretrained": pretrained,
        "config": {"strategy_label": name, "preset": "tiny"},
        "data": {"split_file": split_file},
        "training": {"model_file": "model.pt", "eval_head": head},
    }


@pytest.fixture(scope="module")
def models(stand_in, toy_splits, fixture_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis-models")
    branch = stand_in.branches[0]
    pre = stand_in.record(branch)
    split_file = str(toy_splits / "qm9" / "toy-gap.json.xz")
    if not Path(split_file).exists():
        split_file = str(next((toy_splits / "qm9").glob("toy-gap.json*")))
    perturbed = _perturbed_copy(stand_in.path, root / "perturbed.pt")
    recs = {
        "identical": _fake_record(root, "Identical", stand_in.path, branch, "ft", 1, pre, split_file),
        "perturbed": _fake_record(root, "Perturbed", perturbed, branch, "ft", 2, pre, split_file),
        "scratch": _fake_record(root, "Scratch", perturbed, branch, "scratch", 3, None, split_file),
    }
    return {"root": root, "recs": recs, "branch": branch, "stand_in": stand_in, "perturbed": perturbed,
            "data": fixture_data, "splits": toy_splits}


@pytest.fixture(scope="module")
def qm9(fixture_data):
    from ood_bench.datasets import load_dataset

    return load_dataset("qm9", fixture_data)


@pytest.mark.slow
def test_edge_hook_matches_geometry_and_atom_permutation(models, qm9):
    """Every C-H/C-O edge of a molecule is read out, and an edge's embedding follows its atoms
    when the atoms are permuted: the row <-> (i, j) bookkeeping is right."""
    from ood_bench.backends.deepmd.representations import RepresentationModel, Requests
    from ood_bench.datasets import Structures

    st = qm9.structures
    sid = next(i for i in qm9.ids if i in st and len(st.atoms_of(i)[0]) >= 12)
    z, pos, _ = st.atoms_of(sid)
    perm = np.random.default_rng(1).permutation(len(z))
    inv = np.argsort(perm)  # new index of old atom a
    pair = Structures(["a", "b"], np.concatenate([z, z[perm]]), np.concatenate([pos, pos[perm]]),
                      np.array([0, len(z), 2 * len(z)]), None)
    e = lab.classified_edges(z, pos)
    assert len(e.i) > 5
    n, ne = len(z), len(e.i)
    req = Requests.make(np.r_[np.zeros(n, int), np.ones(n, int)], np.r_[np.arange(n), inv],
                        np.r_[np.zeros(ne, int), np.ones(ne, int)], np.r_[e.i, inv[e.i]], np.r_[e.j, inv[e.j]],
                        np.r_[e.dist, e.dist])
    rm = RepresentationModel(models["perturbed"], models["branch"])
    try:
        reps = rm.evaluate(pair, ["a", "b"], req)
    finally:
        rm.close()
    assert reps.edge_found.all()
    assert np.isfinite(reps.edges).all() and reps.edges.shape[1] == rm.descriptor.repflows.e_dim
    np.testing.assert_allclose(reps.nodes[:n], reps.nodes[n:], atol=1e-5)
    np.testing.assert_allclose(reps.edges[:ne], reps.edges[ne:], atol=1e-5)
    # a mis-assigned row would not match: the embeddings do tell edges apart
    assert np.abs(reps.edges[:ne] - np.roll(reps.edges[ne:], 1, axis=0)).max() > 1e-3
    # an edge that does not exist (distance off) is reported missing, not silently filled
    bad = Requests.make([0], [0], [0], [e.i[0]], [e.j[0]], [e.dist[0] + 0.5])
    rm = RepresentationModel(models["perturbed"], models["branch"])
    try:
        miss = rm.evaluate(pair, ["a", "b"], bad)
    finally:
        rm.close()
    assert not miss.edge_found.any() and np.isnan(miss.edges).all()


@pytest.mark.slow
def test_node_descriptors_equal_deepmd_inference_api(models, qm9):
    """The hooked, non-TorchScript model gives the same per-atom descriptors as DeepEval."""
    from ood_bench.backends.deepmd.predict import load_model
    from ood_bench.backends.deepmd.representations import RepresentationModel, Requests

    st = qm9.structures
    sid = next(i for i in qm9.ids if i in st)
    z, pos, _ = st.atoms_of(sid)
    rm = RepresentationModel(models["perturbed"], models["branch"])
    try:
        got = rm.evaluate(st, [sid], Requests.make(np.zeros(len(z), int), np.arange(len(z)))).nodes
    finally:
        rm.close()
    ref = load_model(models["perturbed"], models["branch"]).eval_descriptor(
        pos.reshape(1, -1), None, (z - 1).reshape(1, -1).astype(int), mixed_type=True)
    np.testing.assert_allclose(got, np.asarray(ref)[0], atol=1e-5)


@pytest.fixture(scope="module")
def collapse_out(models, tmp_path_factory):
    from ood_bench.analysis.collapse import run_collapse

    out = tmp_path_factory.mktemp("collapse")
    recs = [models["recs"][k] for k in ("identical", "perturbed", "scratch")]
    body = run_collapse(recs, out, data_dir=str(models["data"]), splits_dir=str(models["splits"]),
                        max_per_class=40, w1_samples=200, seed=0)
    return out, body


def _runs_by_label(body):
    return {r["strategy_label"]: r for g in body["groups"] for r in g["runs"]}


@pytest.mark.slow
def test_identical_model_has_no_drift_and_db_ratio_one(collapse_out):
    _, body = collapse_out
    run = _runs_by_label(body)["Identical"]
    assert set(run["w1"]) == {"train", "id_test", "ood_test"}
    for v in run["w1"].values():
        assert v == pytest.approx(0.0, abs=1e-9)
    assert run["db_ratio_node"] == 1.0 and run["db_ratio_edge"] == 1.0


@pytest.mark.slow
def test_perturbed_model_drifts(models, collapse_out):
    _, body = collapse_out
    runs = _runs_by_label(body)
    for v in runs["Perturbed"]["w1"].values():
        assert v > 1e-3
    assert runs["Perturbed"]["db_ratio_node"] != 1.0
    # the scratch run is compared with the same pretrained model, and says so
    assert runs["Scratch"]["w1"] == runs["Perturbed"]["w1"]
    g0 = body["groups"][0]
    assert len(body["groups"]) == 1 and [r["strategy_label"] for r in g0["runs"]] == ["Scratch", "Identical",
                                                                                     "Perturbed"]
    assert g0["pretrained"]["sha256"] == models["stand_in"].sha256
    assert runs["Scratch"]["notes"] == ["scratch: compared with the pretrained model of the other runs "
                                        "(never initialised from it)"]
    assert runs["Perturbed"]["notes"] == [] and runs["Identical"]["notes"] == []
    g = body["groups"][0]
    assert g["n_node_points"] > 100 and g["n_edge_points"] > 100
    assert {"C4", "H1", "O2"} <= set(g["node_classes"]) and max(g["node_classes"].values()) <= 40
    assert {"C-H near", "C-H middle", "C-H far", "C-O near"} <= set(g["edge_classes"])


@pytest.mark.slow
def test_outputs_written(collapse_out):
    out, body = collapse_out
    md = (out / "collapse.md").read_text()
    assert "| Strategy |" in md and "W1 OOD" in md and "DB ratio nodes" in md
    saved = json.loads((out / "collapse.json").read_text())
    assert saved["summary"] and saved["groups"][0]["runs"]
    figs = saved["groups"][0]["figures"]
    assert len(figs) == 2 and all((out / f).stat().st_size > 10_000 for f in figs)


@pytest.mark.slow
def test_deterministic_for_a_seed(models, collapse_out, tmp_path):
    from ood_bench.analysis.collapse import run_collapse

    out, _ = collapse_out
    recs = [models["recs"][k] for k in ("identical", "perturbed", "scratch")]
    run_collapse(recs, tmp_path, data_dir=str(models["data"]), splits_dir=str(models["splits"]),
                 max_per_class=40, w1_samples=200, seed=0, figures=False)
    a = json.loads((out / "collapse.json").read_text())
    b = json.loads((tmp_path / "collapse.json").read_text())
    for g in a["groups"]:
        g.pop("figures")
    for g in b["groups"]:
        g.pop("figures")
    assert a == b


@pytest.fixture(scope="module")
def mft_results(stand_in, toy_splits, fixture_data, tmp_path_factory):
    """One real MFT run (multi-task checkpoint, head 'property') and one FT run, 10 steps each."""
    from ood_bench.records import RunKey
    from ood_bench.runner.execute import execute
    from ood_bench.runner.spec import RunSpec

    results = tmp_path_factory.mktemp("analysis-results")
    for strategy in ("ft", "mft"):
        execute(RunSpec(RunKey("qm9", "toy-gap", "0", "dpa3", strategy, 0, 1.0, "gap"), preset="tiny",
                        pretrained=str(stand_in.path), steps=10, data_dir=str(fixture_data),
                        splits_dir=str(toy_splits), results_dir=str(results)))
    return results


@pytest.mark.slow
def test_cli_on_real_runs(mft_results, fixture_data, toy_splits, capsys):
    from ood_bench.cli import main

    out = mft_results / "analysis"
    rc = main(["analyze", "collapse", "--runs", "dataset=qm9,property=gap,split=toy-gap", "--results-dir",
               str(mft_results), "--max-per-class", "25", "--w1-samples", "100", "--data-dir", str(fixture_data),
               "--splits-dir", str(toy_splits)])
    assert rc == 0
    body = json.loads((out / "collapse.json").read_text())
    runs = body["groups"][0]["runs"]
    assert [r["strategy"] for r in runs] == ["ft", "mft"]
    assert runs[1]["eval_head"] == "property"
    for r in runs:
        assert all(v is not None and v > 0 for v in r["w1"].values())
        assert r["db_ratio_node"] > 0 and r["db_ratio_edge"] > 0
    assert "collapse.md" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    from ood_bench.cli import main

    assert main(["analyze", "collapse", "--runs", "dataset=qm9", "--results-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("oodbench: error: no runs match") and "\n" not in err
    assert main(["analyze", "collapse", "--runs", "colour=red", "--results-dir", str(tmp_path)]) == 2
    assert "unknown --runs key" in capsys.readouterr().err


def test_help_has_examples():
    from click.testing import CliRunner

    from ood_bench.cli import _register_all, cli

    _register_all()
    for args in (["analyze", "--help"], ["analyze", "collapse", "--help"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0 and "Example:" in res.output and "oodbench analyze collapse" in res.output


# --- the model file must be the one the run saved ---------------------------------------------


def _record_with_model(root: Path, name: str, content: bytes, saved: bytes | None, strategy: str = "ft") -> dict:
    """A record whose model.pt holds ``content`` and which names the sha256 of ``saved`` (None: a
    legacy record without the hash)."""
    import hashlib

    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.pt").write_bytes(content)
    training = {"model_file": "model.pt", "eval_head": None}
    if saved is not None:
        training["model_sha256"] = hashlib.sha256(saved).hexdigest()
    return {"key": {"dataset": "qm9", "split": "toy-gap", "fold": "0", "model": "dpa3", "strategy": strategy,
                    "seed": 0, "train_fraction": 1.0, "property": "gap"},
            "_path": str(d / "record.json.gz"), "pretrained": None, "config": {}, "data": {}, "training": training}


class _Collect:
    """A Reporter that keeps what it is told."""

    def __init__(self):
        from ood_bench.analysis.collapse import Reporter

        self.base, self.warnings, self.notes = Reporter(), [], []

    def task(self, description, total):
        return self.base.task(description, total)

    def warn(self, text):
        self.warnings.append(text)

    def note(self, text):
        self.notes.append(text)


def test_swapped_or_missing_model_file_is_refused_before_any_computation(tmp_path, monkeypatch):
    from ood_bench.analysis import collapse
    from ood_bench.errors import OodBenchError

    def no_computation(*a, **k):
        raise AssertionError("computed before checking the model files")

    monkeypatch.setattr(collapse, "plan_groups", no_computation)
    monkeypatch.setattr(collapse, "analyze_group", no_computation)
    good = _record_with_model(tmp_path, "good", b"the saved model", b"the saved model")
    swapped = _record_with_model(tmp_path, "swapped", b"another model", b"the saved model")
    for recs in ([good, swapped], [swapped, good]):
        with pytest.raises(OodBenchError) as exc:
            collapse.run_collapse(recs, tmp_path / "out")
        msg = str(exc.value)
        assert "\n" not in msg and swapped["_path"] in msg and "--force" in msg and "sha256" in msg
    missing = _record_with_model(tmp_path, "missing", b"x", b"x")
    (tmp_path / "missing" / "model.pt").unlink()
    with pytest.raises(OodBenchError) as exc:
        collapse.run_collapse([good, missing], tmp_path / "out")
    msg = str(exc.value)
    assert "\n" not in msg and missing["_path"] in msg and "missing" in msg and "--force" in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_refuses_a_swapped_model(mft_results, fixture_data, toy_splits, tmp_path, capsys):
    """Real records carry the sha256 of their model.pt: replace the FT run's model with the MFT
    run's and `oodbench analyze collapse` says so in one line, exit 1, before writing anything."""
    from ood_bench.cli import main

    results = tmp_path / "results"
    shutil.copytree(mft_results, results, ignore=shutil.ignore_patterns("analysis"))
    models_ = {p.parent.parent.name: p for p in (results / "runs").rglob("model.pt")}
    ft_model = next(p for name, p in models_.items() if name.endswith("-ft"))
    mft_model = next(p for name, p in models_.items() if name.endswith("-mft"))
    shutil.copyfile(mft_model, ft_model)
    capsys.readouterr()
    rc = main(["analyze", "collapse", "--results-dir", str(results), "--max-per-class", "25", "--w1-samples", "100",
               "--data-dir", str(fixture_data), "--splits-dir", str(toy_splits), "--no-figures"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[-1].startswith("oodbench: error: record ") and str(ft_model.parent) in err[-1]
    assert "--force" in err[-1] and "sha256" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not (results / "analysis" / "collapse.json").exists()
    assert not [ln for ln in err if "warning" in ln]  # these records name their hash: nothing unverified


def test_legacy_record_without_hash_is_a_warning_not_a_refusal(tmp_path):
    from ood_bench.analysis.collapse import check_model_files, run_collapse
    from ood_bench.errors import OodBenchError

    legacy = _record_with_model(tmp_path, "legacy", b"an old model", None, strategy="scratch")
    assert len(check_model_files([legacy])) == 1
    rep = _Collect()
    # it gets past the check (a warning) and stops only because a lone scratch run has no
    # pretrained model to compare with
    with pytest.raises(OodBenchError, match="no analysable runs"):
        run_collapse([legacy], tmp_path / "out", reporter=rep)
    assert len(rep.warnings) == 1 and legacy["_path"] in rep.warnings[0] and "model_sha256" in rep.warnings[0]
    assert any("no run in the selection names a pretrained model" in n for n in rep.notes)
