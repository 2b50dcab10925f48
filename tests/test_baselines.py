"""Baseline cards: schema, exact transcription of the paper's Tables 3 and 4 (bracketed values are
standard errors: ``id_se``/``ood_se``), measured-only cards, registry coverage."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from ood_bench.errors import CorruptFileError
from ood_bench.leaderboard.baselines import (
    MATBENCH_DATASETS,
    QM9_PROPERTIES,
    SPLIT_METHODS,
    default_baselines_dir,
    load_cards,
    read_card,
    validate_card,
)

REPO = Path(__file__).resolve().parents[1]
BASELINES = REPO / "baselines"
PAPER = REPO.parent / "shared" / "reference" / "mft-paper.txt"

TABLE3_ROWS = ["ChemBERTa", "Graphormer", "EGNN", "ET", "MoLFormer", "RT", "Geoformer", "Chemprop", "MACE",
               "ModernBERT", "GotenNet", "DPA3-Scratch", "DPA3-LP", "DPA3-FT", "DPA3-MFT"]
TABLE4_COLS = ["CGCNN", "MEGNet", "SchNet", "DimeNet++", "ALIGNN", "DeeperGATGNN", "coGN", "coNGN", "DPA3-FT",
               "DPA3-MFT"]
# Cards of registered models that oodbench measures and no paper reports on these splits: no numbers.
MEASURED_ONLY = {"Dummy": ("dummy", "scratch"), "RF-SCM/Magpie": ("rf-scm-magpie", "scratch"),
                 "CM-KRR": ("cm-krr", "scratch"), "DPA3-frozen": ("dpa3-frozen", "lp")}


@pytest.fixture(scope="module")
def cards():
    return load_cards(BASELINES)


def by_name(cards):
    return {c.name: c for c in cards}


def test_every_card_passes_the_schema():
    files = sorted(BASELINES.glob("*.yaml"))
    assert len(files) == 27
    for path in files:
        data = yaml.safe_load(path.read_text())
        assert validate_card(data, path.stem) == [], path


def test_cards_cover_every_row_of_both_tables(cards):
    names = by_name(cards)
    assert [c.name for c in sorted((c for c in cards if c.has_qm9), key=lambda c: c.order("Table 3"))] == TABLE3_ROWS
    assert [c.name for c in sorted((c for c in cards if c.has_matbench), key=lambda c: c.order("Table 4"))] \
        == TABLE4_COLS
    for name in TABLE3_ROWS:
        assert all(names[name].qm9(p) for p in QM9_PROPERTIES), name
    for name in TABLE4_COLS:
        assert all(names[name].matbench(d, m) for d in MATBENCH_DATASETS for m in SPLIT_METHODS), name
    assert set(names) == set(TABLE3_ROWS) | set(TABLE4_COLS) | set(MEASURED_ONLY)
    assert {c.name for c in cards if not c.has_numbers} == set(MEASURED_ONLY)
    assert default_baselines_dir() == BASELINES


def test_spot_checks_equal_the_paper(cards):
    n = by_name(cards)
    mft = n["DPA3-MFT"]
    assert mft.qm9("gap")["ood"] == "0.0171" and mft.qm9("gap")["ood_se"] == "0.0002"
    assert mft.matbench("matbench_dielectric", "LOCO") == "0.4690"
    assert str(Decimal(mft.matbench("matbench_dielectric", "LOCO"))) == "0.4690"  # printed precision kept
    assert mft.qm9("zpve")["id"] == "0.00010" and mft.qm9("zpve")["id_se"] == "0.00000"
    assert n["GotenNet"].params == "9.2M" and n["GotenNet"].qm9("homo")["ood"] == "0.0126"
    assert n["RT"].qm9("alpha")["ood"] == "69968"
    assert n["DPA3-Scratch"].qm9("r2")["id"] == "8.5" and n["DPA3-Scratch"].qm9("r2")["id_se"] == "0.3"
    assert n["coNGN"].matbench("matbench_dielectric", "SparseXsingle") == "0.5518"
    assert n["DPA3-FT"].matbench("matbench_perovskites", "Random") == "0.0272"
    assert n["CGCNN"].matbench("matbench_log_gvrh", "LOCO") == "0.0585"
    assert n["CGCNN"].params is None  # Table 4 gives no parameter counts


def test_molformer_ood_row_is_kept_as_printed_with_a_note(cards):
    n = by_name(cards)
    assert all(n["MoLFormer"].qm9(p)["ood"] == n["Graphormer"].qm9(p)["ood"] for p in QM9_PROPERTIES)
    assert n["MoLFormer"].qm9("homo")["id"] != n["Graphormer"].qm9("homo")["id"]
    assert any("Graphormer" in note and "copy error" in note for note in n["MoLFormer"].notes)


def test_runnable_cards_name_their_model_and_strategy(cards):
    runnable = {c.name: (c.model, c.strategy) for c in cards if not c.reported_only}
    assert runnable == {"DPA3-Scratch": ("dpa3", "scratch"), "DPA3-LP": ("dpa3", "lp"),
                        "DPA3-FT": ("dpa3", "ft"), "DPA3-MFT": ("dpa3", "mft"), **MEASURED_ONLY}
    for c in cards:
        if c.has_numbers:
            assert "Zhang et al. 2025, Multi-Task Fine-Tuning" in c.citation
            # the tables it appears in, from this file's own transcription of the paper's layout
            tables = {t for t, names in (("Table 3", TABLE3_ROWS), ("Table 4", TABLE4_COLS)) if c.name in names}
            assert set(c.source_table) == tables and tables, c.key
            assert all(t in c.citation for t in tables), c.key
        else:
            assert not c.source_table and not c.reported_only


def test_measured_only_cards_cite_the_methods(cards):
    n = by_name(cards)
    for name in ("Dummy", "RF-SCM/Magpie"):
        assert "Dunn et al. 2020" in n[name].citation and "npj Comput. Mater. 6:138" in n[name].citation
    assert "Phys. Rev. Lett. 108:058301" in n["CM-KRR"].citation and "Rupp" in n["CM-KRR"].citation
    assert "J. Chem. Theory Comput. 9:3404" in n["CM-KRR"].citation and "Hansen" in n["CM-KRR"].citation
    assert "DPA3" in n["DPA3-frozen"].citation and "dpa_adapt" in n["DPA3-frozen"].citation


def test_every_card_is_runnable_or_reported_only(cards):
    """Registry test: a card that is not reported-only names a registered model and a strategy that
    model supports; every registered model with ``card`` set has that card, and it names that model."""
    import ood_bench.models as models
    import ood_bench.strategies as strategies

    model_names, strategy_names = set(models.MODELS.names()), set(strategies.STRATEGIES.names())
    by_key = {c.key: c for c in cards}
    for c in cards:
        if c.reported_only:
            assert c.model is None and c.strategy is None, c.key
            continue
        assert c.model in model_names, f"{c.key}: model '{c.model}' is not registered ({sorted(model_names)})"
        assert c.strategy in strategy_names, f"{c.key}: strategy '{c.strategy}' is not registered"
        supported = models.MODELS.get(c.model).supported_strategies()
        assert c.strategy in supported, f"{c.key}: model {c.model} cannot run '{c.strategy}' (only {supported})"
    with_card = {name: spec.card for name, spec in models.MODELS.items() if spec.card}
    assert {"dummy", "rf-scm-magpie", "cm-krr", "dpa3-frozen"} <= set(with_card)
    for name, key in with_card.items():
        assert key in by_key, f"model {name}: card baselines/{key}.yaml is missing"
        card = by_key[key]
        assert card.model == name and not card.reported_only, f"model {name}: baselines/{key}.yaml names {card.model}"
        assert card.strategy in models.MODELS.get(name).supported_strategies(), key


# ------------------------------------------------------------------------------------ schema


def _good():
    return yaml.safe_load((BASELINES / "dpa3-mft.yaml").read_text())


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d.pop("citation"), "missing field 'citation'"),
    (lambda d: d["metrics"]["qm9"]["boom"]["gap"].__setitem__("ood", 0.0171), "quoted number string"),
    (lambda d: d["metrics"]["qm9"]["boom"]["gap"].__setitem__("metric", "mae"), "metric must be 'rmse'"),
    (lambda d: d["metrics"]["qm9"]["boom"]["gap"].__setitem__("unit", "eV"), "unit must be 'Hartree'"),
    (lambda d: d["metrics"]["qm9"]["boom"].__setitem__("U0", d["metrics"]["qm9"]["boom"]["gap"]),
     "unknown property 'U0'"),
    (lambda d: d["metrics"]["matbench_dielectric"].__setitem__("LOCO2", {"metric": "mae", "unit": "unitless",
                                                                         "mae": "1.0"}), "unknown split method"),
    (lambda d: d["metrics"]["matbench_dielectric"]["LOCO"].__setitem__("mae", "0.46.9"), "quoted number string"),
    (lambda d: d["metrics"].__setitem__("matbench_foo", {}), "unknown dataset 'matbench_foo'"),
    (lambda d: d.pop("strategy"), "needs 'strategy'"),
    (lambda d: d.__setitem__("key", "dpa3-ft"), "differs from the file name"),
    (lambda d: d.__setitem__("params", 3.3), "params must be"),
    (lambda d: d.__setitem__("colour", "blue"), "unknown field 'colour'"),
    (lambda d: d["metrics"]["qm9"]["boom"]["gap"].pop("ood_se"), "both id_se and ood_se"),
    (lambda d: d["metrics"]["qm9"]["boom"]["gap"].__setitem__("ood_std", "0.0002"), "are standard errors"),
    (lambda d: d.__setitem__("metrics", {}), "metrics must be a non-empty mapping"),  # dpa3 has published numbers
    (lambda d: d.pop("source_table"), "missing field 'source_table'"),
])
def test_schema_rejects_bad_cards(mutate, expected):
    data = _good()
    mutate(data)
    problems = validate_card(data, "dpa3-mft")
    assert any(expected in p for p in problems), problems


def _measured_only():
    return yaml.safe_load((BASELINES / "cm-krr.yaml").read_text())


def test_a_card_for_a_registered_measured_only_model_needs_no_numbers():
    pytest.importorskip("ood_bench.models", reason="model registry not built yet")
    data = _measured_only()
    assert "metrics" not in data and "source_table" not in data
    assert validate_card(data, "cm-krr") == []
    assert validate_card({**data, "metrics": {}, "source_table": []}, "cm-krr") == []
    # Numbers are still checked when a measured-only card has some.
    bad = {**data, "source_table": ["Table 3"], "metrics": {"qm9": {"boom": {"gap": {"metric": "mae"}}}}}
    assert any("metric must be 'rmse'" in p for p in validate_card(bad, "cm-krr"))


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d.__setitem__("model", "not-a-model"), "missing field 'metrics'"),
    (lambda d: d.__setitem__("reported_only", True), "missing field 'metrics'"),
    (lambda d: d.pop("strategy"), "needs 'strategy'"),
])
def test_a_card_without_numbers_must_be_a_registered_measured_model(mutate, expected):
    pytest.importorskip("ood_bench.models", reason="model registry not built yet")
    data = _measured_only()
    mutate(data)
    problems = validate_card(data, "cm-krr")
    assert any(expected in p for p in problems), problems


def test_a_bad_card_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(CorruptFileError, match="broken.yaml"):
        read_card(bad)
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump({**_good(), "key": "broken", "reported_only": "yes"}))
    with pytest.raises(CorruptFileError, match="reported_only must be true or false"):
        load_cards(tmp_path)


# ----------------------------------------------------------------- transcription vs the paper


def _paper_tables():
    lines = PAPER.read_text(encoding="utf-8").splitlines()
    i3 = next(i for i, line in enumerate(lines) if line.startswith("Table 3: Root-mean-square error"))
    i4 = next(i for i, line in enumerate(lines) if line.startswith("Table 4: Mean absolute error"))
    number = re.compile(r"^(?:<u>)?([-\d.]+)(?:</u>)?(?: \(([-\d.]+)\))?$")
    t3, j = {}, i3 + 3
    while lines[j].strip():
        id_row, ood_row = lines[j].split("\t"), lines[j + 1].split("\t")
        cols = ["homo", "lumo", "gap", "zpve", "r2", "alpha", "mu", "Cv"]
        t3[id_row[0]] = {"params": id_row[1], **{
            p: (number.match(a.strip()).groups(), number.match(b.strip()).groups())
            for p, a, b in zip(cols, id_row[3:], ood_row[3:], strict=True)}}
        j += 2
    header = lines[i4 + 2].split("\t")[2:]
    names = {"dielectric": "matbench_dielectric", "elasticity": "matbench_log_gvrh",
             "perovskites": "matbench_perovskites"}
    t4, j, method = {}, i4 + 3, None
    while lines[j].strip():
        row = lines[j].split("\t")
        method = row[0] or method
        for model, tok in zip(header, row[2:], strict=True):
            t4[(model, names[row[1]], method)] = number.match(tok.strip()).group(1)
        j += 1
    return t3, t4


@pytest.mark.skipif(not PAPER.exists(), reason="paper text not available (../shared/reference/mft-paper.txt)")
def test_every_number_equals_the_paper_text(cards):
    t3, t4 = _paper_tables()
    n = by_name(cards)
    assert list(t3) == TABLE3_ROWS
    for name, row in t3.items():
        assert n[name].params == row["params"]
        for p in QM9_PROPERTIES:
            (iv, ise), (ov, ose) = row[p]
            e = n[name].qm9(p)
            assert (e["id"], e.get("id_se"), e["ood"], e.get("ood_se")) == (iv, ise, ov, ose), (name, p)
    assert len(t4) == 10 * 3 * 6
    for (model, ds, method), value in t4.items():
        assert n[model].matbench(ds, method) == value, (model, ds, method)


def test_records_from_before_an_option_existed_still_resume():
    """A record written before subset_seed/subset_pool/strategy_params/gpus existed (its config,
    as oodbench a3a7eb1 wrote it) is the same run as today's default spec, and a conflict as soon
    as the planned run sets one of those options or changes an old one."""
    import dataclasses

    from ood_bench.runner.identity import fingerprint, same_run
    from ood_bench.runner.spec import RunSpec

    config = json.loads((Path(__file__).parent / "fixtures" / "reference" / "legacy_record_config.json").read_text())
    spec = RunSpec.from_json(config["spec"])
    assert fingerprint(spec) != config["fingerprint"]  # today's fingerprint covers the newer options
    assert same_run(config, spec)
    for change in ({"subset_pool": "train+val"}, {"gpus": 2}, {"aux_prob": 0.3}, {"selection": "last"}):
        assert not same_run(config, dataclasses.replace(spec, **change)), change


@pytest.mark.parametrize("root", ["runs", "quickstart", "studies"])
def test_committed_records_are_what_todays_code_would_resume(root, monkeypatch, tmp_path):
    """Every committed record is the run today's code plans for its spec (same options, same
    stand-in checkpoint): rerunning a committed sweep skips it instead of reporting a conflict,
    and a leaderboard row never mixes records of two stand-ins."""
    from ood_bench.io_utils import read_json
    from ood_bench.runner.identity import same_run
    from ood_bench.runner.spec import RunSpec

    monkeypatch.setenv("OODBENCH_CACHE_DIR", str(tmp_path))  # the shipped stand-in, not a local rebuild
    stale = []
    for path in sorted((REPO / "results" / root).rglob("record.json.gz")):
        config = read_json(path)["config"]
        if not same_run(config, RunSpec.from_json(config["spec"])):
            stale.append(str(path.relative_to(REPO)))
    assert not stale, f"{len(stale)} stale records, e.g. {stale[:3]}"
