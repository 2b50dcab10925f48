"""Uniform model soups (``soup``, ``mft-soup``; docs/robust-finetuning.md) through the normal runner on
tiny trainings with 2 members: the soup is the members' mean, tensor by tensor; members share the new
head's initialisation and differ in data order; a retry reuses finished members. Runs are shared
between tests (module fixtures)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from robust_helpers import STEPS, identical, qm9, state

from ood_bench.errors import UsageError
from ood_bench.io_utils import read_json
from ood_bench.records import validate_record
from ood_bench.runner.execute import execute, fold_sets, prepare, work_dir
from ood_bench.runner.identity import canonical
from ood_bench.runner.spec import RunSpec
from ood_bench.runner.sweep import status_of

pytestmark = pytest.mark.slow

TWO = {"members": "2"}


def head(s: dict, branch: str = "Default") -> dict[str, torch.Tensor]:
    """The new head's weights: the fitting net of one branch."""
    prefix = f"model.{branch}.atomic_model.fitting_net."
    return {k: v for k, v in s.items() if k.startswith(prefix)}


def members(work: Path, record: dict) -> list[dict[str, torch.Tensor]]:
    return [state(work / m["folder"] / m["checkpoint"]) for m in record["training"]["soup"]["members"]]


def assert_uniform_mean(soup: dict, parts: list[dict]) -> int:
    """Every floating tensor of the soup is the float64 mean of the members' (cast back), bit for
    bit; the rest is member 0's. Returns how many tensors differ between the members."""
    assert soup.keys() == parts[0].keys() and len(parts) == 2
    differ = 0
    for k, v in soup.items():
        a, b = parts[0][k], parts[1][k]
        if not v.is_floating_point():
            assert torch.equal(v, a), k
            continue
        assert v.dtype == a.dtype, k
        assert torch.equal(v, ((a.double() + b.double()) / 2).to(a.dtype)), k
        differ += not torch.equal(a, b)
    return differ


@pytest.fixture(scope="module")
def soup(env):
    spec = qm9("soup", env, params=TWO)
    record = read_json(execute(spec))
    return {"spec": spec, "record": record, "work": work_dir(canonical(spec))}


def test_soup_is_the_uniform_mean_of_the_members_last_checkpoints(soup):
    rec, work = soup["record"], soup["work"]
    assert validate_record(rec) == []
    assert rec["key"]["variant"] == "members=2"
    assert [(c["candidate"], c["step"]) for c in rec["training"]["selection"]] == [("soup.pt", STEPS)]
    assert rec["training"]["checkpoint"] == "soup.pt"
    info = rec["training"]["soup"]
    assert [(m["member"], m["folder"], m["training_seed"], m["step"]) for m in info["members"]] == [
        (0, "member0", 0, STEPS), (1, "member1", 1000, STEPS)]
    parts = members(work, rec)
    differ = assert_uniform_mean(state(work / "soup.pt"), parts)
    # Members differ in what they trained: backbone and head both moved differently.
    assert differ > 10
    assert not identical(head(parts[0]), head(parts[1]))
    assert {row["member"] for row in rec["training"]["learning_curve"]} == {0, 1}


def test_members_differ_in_data_order_only(soup):
    inputs = [json.loads((soup["work"] / f"member{i}" / "input.json").read_text()) for i in (0, 1)]
    assert [c["training"]["seed"] for c in inputs] == [0, 1000]
    assert inputs[0]["model"] == inputs[1]["model"]  # same seeds for the descriptor and the new head
    for c in inputs:
        c["training"].pop("seed")
        for key in ("disp_file", "save_ckpt"):
            c["training"][key] = Path(c["training"][key]).name
    assert inputs[0] == inputs[1]
    assert soup["record"]["config"]["deepmd_input"]["training"]["save_ckpt"].endswith("/member0/model.ckpt")
    # Different batches from the first step on: the first logged training errors differ.
    first = [next(r for r in soup["record"]["training"]["learning_curve"] if r["member"] == i) for i in (0, 1)]
    assert first[0]["step"] == first[1]["step"] and first[0]["rmse_trn"] != first[1]["rmse_trn"]


def at_step_zero(folder: Path, out: Path, args: list[str] | None = None) -> dict:
    """A stage's recorded input run for 0 steps (with its recorded arguments unless ``args``):
    deepmd then saves the model that training starts from."""
    from ood_bench.backends.deepmd.launcher import dp_train

    config = json.loads((folder / "input.json").read_text())
    if args is None:
        command = (folder / "train.log").read_text().splitlines()[0].split()
        args = command[command.index("--skip-neighbor-stat") + 1:]
    config["training"].update(numb_steps=0, save_ckpt=str(out / "model.ckpt"), disp_file=str(out / "lcurve.out"))
    dp_train(config, out, args, label=f"{folder.name} at step 0")
    return state(out / "model.ckpt-0.pt")


def test_members_start_from_the_same_model(soup, env, tmp_path):
    """Every member starts from init/ (bit for bit, output bias included), although their data
    seeds differ. Without the shared init, --finetune with member 1's seed would draw the same new
    head but deepmd's output-bias statistics from other batches."""
    work = soup["work"]
    init = state(work / "init" / "model.ckpt-0.pt")
    args = soup["record"]["config"]["dp_train_args"]  # paths in records are made portable
    assert args[0] == "--init-model" and args[1].endswith(f"{work.name}/init/model.ckpt-0.pt") and len(args) == 2
    assert soup["record"]["training"]["soup"]["init"]["train_args"][0] == "--finetune"
    for i in (0, 1):
        assert identical(at_step_zero(work / f"member{i}", tmp_path / f"start{i}"), init), i
    alone = at_step_zero(work / "member1", tmp_path / "finetune1", ["--finetune", str(env["stand_in"].path)])
    assert identical(head(alone), head(init))  # the fitting net's own seed: the same new head
    bias = "model.Default.atomic_model.out_bias"
    assert not torch.equal(alone[bias], init[bias])  # statistics from member 1's batches
    trained = members(work, soup["record"])
    assert not identical(head(init), head(trained[0]))  # the head did train


def test_member_validation_errors_are_recorded_on_the_runners_validation_set(soup):
    """``val_rmse`` of each member is computed like the runner's selection: on soup.pt it reproduces
    the record's validation RMSE of the soup."""
    from ood_bench.backends.deepmd.soup import val_rmse

    rec, work = soup["record"], soup["work"]
    systems = sorted(str(p) for p in (work / "data" / "val").iterdir())
    ours = val_rmse(work / "soup.pt", systems, "gap", None)
    assert math.isclose(ours, rec["training"]["selection"][0]["val_rmse"], rel_tol=1e-9)
    rmses = [m["val_rmse"] for m in rec["training"]["soup"]["members"]]
    assert all(math.isfinite(r) and r > 0 for r in rmses) and rmses[0] != rmses[1]


def test_soup_record_resumes_complete_and_members_are_checked(soup, env):
    assert status_of(canonical(soup["spec"])) == "complete"
    assert canonical(qm9("soup", env, params={"members": "3"})).key.variant == ""
    assert status_of(canonical(qm9("soup", env, params={"members": "4"}))) == "todo"
    for bad in ("1", "0", "-2", "2.5", "x"):
        with pytest.raises(UsageError, match="members"):
            prepare(qm9("soup", env, params={"members": bad}))


def test_reusable_needs_a_matching_stamp_and_its_checkpoint(tmp_path):
    from ood_bench.backends.deepmd.soup import STAMP, reusable

    expected = {"input": {"training": {"seed": 1000}}, "args": ["--finetune", "x.pt"], "data_sha256": "ab"}
    (tmp_path / STAMP).write_text(json.dumps({**expected, "checkpoint": "model.ckpt-12.pt", "step": 12}))
    assert reusable(tmp_path, expected) is None  # the checkpoint is missing
    (tmp_path / "model.ckpt-12.pt").write_bytes(b"")
    assert reusable(tmp_path, expected)["step"] == 12
    assert reusable(tmp_path, {**expected, "data_sha256": "cd"}) is None  # other fold data
    assert reusable(tmp_path, {**expected, "input": {"training": {"seed": 0}}}) is None
    (tmp_path / STAMP).unlink()
    assert reusable(tmp_path, expected) is None  # unfinished: no stamp


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}


def train_again(spec: RunSpec):
    """What ``execute`` does before selection, in the same work folder (a retry that kept it)."""
    from ood_bench.backends import FoldInputs

    run = prepare(spec)
    sets, _, _ = fold_sets(run)
    inputs = FoldInputs(run.spec, run.model, run.strategy, run.dataset, run.target, sets, work_dir(run.spec),
                        run.resolution, run.model.preset(run.spec.preset),
                        run.strategy.resolve_params(run.spec.strategy_params))
    return run.backend.train(inputs)


@pytest.fixture(scope="module")
def mft_soup(env):
    spec = qm9("mft-soup", env, params=TWO)
    return {"spec": spec, "record": read_json(execute(spec)), "work": work_dir(canonical(spec))}


def test_mft_soup_averages_backbone_and_both_heads(mft_soup):
    rec, work = mft_soup["record"], mft_soup["work"]
    assert validate_record(rec) == []
    assert rec["training"]["eval_head"] == "property" and rec["training"]["checkpoint"] == "soup.pt"
    assert status_of(canonical(mft_soup["spec"])) == "complete"
    parts = members(work, rec)
    assert assert_uniform_mean(state(work / "soup.pt"), parts) > 10
    aux = rec["aux"]["branch"]
    for branch in (aux, "property"):
        assert not identical(head(parts[0], branch), head(parts[1], branch)), branch
    inputs = [json.loads((work / f"member{i}" / "input.json").read_text()) for i in (0, 1)]
    assert [c["training"]["seed"] for c in inputs] == [0, 1000] and inputs[0]["model"] == inputs[1]["model"]


def test_oodbench_strategies_lists_the_soups_and_their_members():
    out = subprocess.run([sys.executable, "-m", "ood_bench", "strategies"], capture_output=True, text=True,
                         check=True).stdout
    for name in ("soup", "mft-soup"):
        assert f"\n{name} (" in out, name
        block = out.split(f"\n{name} (", 1)[1].split("\n", 1)[1]
        assert block.lstrip().startswith("--strategy-param members=<int> (default 3)"), name


def test_a_retry_reuses_finished_stages_and_retrains_only_the_missing_one(soup):
    """Last in this file: it retrains the fixture's member 1 (to the same, deterministic result)."""
    from ood_bench.backends.deepmd.soup import REUSED, STAMP

    work = soup["work"]
    folders = ("init", "member0", "member1")
    soup_before = state(work / "soup.pt")
    member1_before = members(work, soup["record"])[1]
    before = {f: mtimes(work / f) for f in folders}

    (work / "soup.pt").unlink()
    trained = train_again(soup["spec"])
    assert {f: mtimes(work / f) for f in folders} == before  # nothing retrained
    assert [c.name for c in trained.candidates] == ["soup.pt"]
    assert identical(state(work / "soup.pt"), soup_before)
    assert (work / "train-soup.log").read_text().count(REUSED) == 3

    # Killed while training member 1: it has some checkpoints but no stamp.
    stamp = json.loads((work / "member1" / STAMP).read_text())
    (work / "member1" / STAMP).unlink()
    (work / "member1" / stamp["checkpoint"]).unlink()
    train_again(soup["spec"])
    assert {f: mtimes(work / f) for f in folders[:2]} == {f: before[f] for f in folders[:2]}
    assert json.loads((work / "member1" / STAMP).read_text())["checkpoint"] == stamp["checkpoint"]
    assert mtimes(work / "member1")[stamp["checkpoint"]] > before["member1"][stamp["checkpoint"]]
    assert identical(state(work / "member1" / stamp["checkpoint"]), member1_before)  # same recipe, same result
    assert identical(state(work / "soup.pt"), soup_before)
    assert (work / "train-soup.log").read_text().count(REUSED) == 2


def test_a_killed_soup_run_resumes_finished_members_through_the_runner(soup):
    """The runner keeps a killed run's stamped stages: with no record and member 1 unfinished,
    rerunning the run reuses init/ and member0/, retrains member 1 and writes the record."""
    from ood_bench.backends.deepmd.soup import STAMP
    from ood_bench.paths import results_dir
    from ood_bench.records import record_path

    spec = canonical(soup["spec"])
    work = soup["work"]
    kept = {f: mtimes(work / f) for f in ("init", "member0")}
    record_path(results_dir(spec.results_dir), spec.key).unlink()
    (work / "member1" / STAMP).unlink()
    assert status_of(spec) != "complete"
    execute(spec)
    assert {f: mtimes(work / f) for f in kept} == kept
    assert (work / "member1" / STAMP).is_file()
    assert status_of(spec) == "complete"
