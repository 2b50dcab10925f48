"""Sweeps through dpdispatcher's local Shell backend: every record arrives, a failing task is
reported (after dpdispatcher's retries) while the others finish, and killing the driver then
rerunning completes the sweep without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ood_bench.io_utils import read_json
from ood_bench.records import RECORD_NAME

pytestmark = pytest.mark.slow


@pytest.fixture()
def dispatch_env(stand_in, toy_splits, fixture_data, tmp_path):
    machine = tmp_path / "machine.json"
    machine.write_text(json.dumps({"batch_type": "Shell", "context_type": "LocalContext", "local_root": "./",
                                   "remote_root": str(tmp_path / "remote")}))
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps({"number_node": 1, "cpu_per_node": 1, "gpu_per_node": 0, "queue_name": "",
                                     "group_size": 1}))
    env = {**os.environ, "OODBENCH_DATA_DIR": str(fixture_data), "OODBENCH_SPLITS_DIR": str(toy_splits),
           "OODBENCH_RESULTS_DIR": str(tmp_path / "results")}
    args = ["run", "--dataset", "matbench_dielectric", "--split", "toy", "--folds", "0", "--strategy",
            "scratch,ft", "--steps", "5", "--pretrained", str(stand_in.path), "--executor", "dpdispatcher",
            "--machine", str(machine), "--resources", str(resources), "--check-interval", "1", "--retries", "1"]
    return {"env": env, "args": args, "results": tmp_path / "results"}


def cli(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "ood_bench", *args], env=env, capture_output=True, text=True,
                          timeout=900, **kw)


def records(results: Path) -> list[Path]:
    return sorted((results / "runs").rglob(RECORD_NAME))


def test_sweep_all_records_arrive_and_failures_are_reported(dispatch_env, stand_in, toy_splits, fixture_data,
                                                            tmp_path, capsys):
    from rich.console import Console

    from ood_bench.commands.run_report import execute_sweep
    from ood_bench.records import RunKey
    from ood_bench.runner.spec import RunSpec

    def spec(strategy, fold, **kw):
        return RunSpec(key=RunKey("matbench_dielectric", "toy", fold, "dpa3", strategy, 0, 1.0, "n"),
                       pretrained=str(stand_in.path), steps=5, data_dir=str(fixture_data),
                       splits_dir=str(toy_splits), results_dir=str(dispatch_env["results"]), **kw)

    # one task fails inside deepmd (bad batch size): reported with its log, the others still arrive
    specs = [spec("scratch", "0"), spec("ft", "1"), spec("scratch", "1", batch_size="auto:oops")]
    out_file = open(tmp_path / "out.txt", "w")  # noqa: SIM115 (closed below, after the sweep)
    console = Console(file=out_file, width=200)
    options = {"machine": dispatch_env["args"][dispatch_env["args"].index("--machine") + 1],
               "resources": dispatch_env["args"][dispatch_env["args"].index("--resources") + 1],
               "retries": 0, "check_interval": 1}
    ok = execute_sweep(specs, "dpdispatcher", options, console=console)
    out_file.close()
    out = (tmp_path / "out.txt").read_text()
    assert not ok
    assert len(records(dispatch_env["results"])) == 2
    assert "task failed after retries" in out and "fold 1/dpa3-scratch" in out
    assert "batch_size" in out, out[-1500:]  # deepmd's own traceback tail names the culprit


def test_killed_driver_rerun_completes_without_duplicates(dispatch_env):
    env, results = dispatch_env["env"], dispatch_env["results"]
    proc = subprocess.Popen([sys.executable, "-m", "ood_bench", *dispatch_env["args"]], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list((results / "dispatch").glob("*/task_*/spec.json")):
        time.sleep(0.5)
    time.sleep(3)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: submitted jobs keep running
    proc.wait()
    res = cli(dispatch_env["args"], env)
    assert res.returncode == 0, res.stderr[-2000:]
    recs = records(results)
    assert len(recs) == 2
    keys = [read_json(p)["key"] for p in recs]  # records are gzip JSON (record.json.gz)
    assert len({json.dumps(k, sort_keys=True) for k in keys}) == 2
    assert not list((results / "dispatch").rglob(RECORD_NAME)), "no stray copies left behind"
    again = cli(dispatch_env["args"], env)
    assert again.returncode == 0 and "skipping 2 finished runs" in again.stderr


# --- dpdispatcher itself failing: one line for the sweep, nothing queued ------------------------

REFUSED_SSH = {"batch_type": "Shell", "context_type": "SSHContext", "local_root": "./", "remote_root": "/tmp/oodbench",
               "remote_profile": {"hostname": "127.0.0.1", "port": 1, "username": "oodbench", "timeout": 2}}


@pytest.fixture()
def dummy_dispatch(toy_splits, fixture_data, tmp_path):
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps({"number_node": 1, "cpu_per_node": 1, "gpu_per_node": 0, "queue_name": "",
                                     "group_size": 1}))
    results = tmp_path / "results"
    args = ["run", "--model", "dummy", "--dataset", "matbench_dielectric", "--split", "toy", "--folds", "0,1",
            "--data-dir", str(fixture_data), "--splits-dir", str(toy_splits), "--results-dir", str(results),
            "--executor", "dpdispatcher", "--resources", str(resources), "--check-interval", "1"]
    return {"args": args, "results": results, "resources": resources, "tmp": tmp_path}


@pytest.mark.parametrize("machine, expected", [
    ({"batch_type": "Slurmx", "context_type": "LocalContext", "local_root": "./", "remote_root": "/tmp/oodbench"},
     "unknown batch_type 'Slurmx'"),
    ({"batch_type": "Shell", "context_type": "NoSuchContext", "local_root": "./"}, "NoSuchContext"),
    (REFUSED_SSH, "ConnectionRefusedError"),
], ids=["batch_type", "context_type", "ssh-refused"])
def test_bad_machine_is_one_line_and_queues_nothing(dummy_dispatch, machine, expected):
    machine_file = dummy_dispatch["tmp"] / "machine.json"
    machine_file.write_text(json.dumps(machine))
    t0 = time.time()
    res = cli([*dummy_dispatch["args"], "--machine", str(machine_file)], dict(os.environ), cwd=dummy_dispatch["tmp"])
    err = res.stderr.strip()
    assert res.returncode != 0
    assert err.startswith("oodbench: error:") and "\n" not in err and expected in err, res.stderr
    assert str(machine_file) in err or "machine" in err
    assert "Traceback" not in res.stdout + res.stderr and "no log" not in err
    assert time.time() - t0 < 60
    results = dummy_dispatch["results"]
    assert not records(results)
    assert not (results / "dispatch").exists(), "nothing queued"


def test_bad_resources_is_one_line(dummy_dispatch):
    machine_file = dummy_dispatch["tmp"] / "machine.json"
    machine_file.write_text(json.dumps({"batch_type": "Shell", "context_type": "LocalContext", "local_root": "./",
                                        "remote_root": str(dummy_dispatch["tmp"] / "remote")}))
    dummy_dispatch["resources"].write_text(json.dumps({"number_node": "one", "cpu_per_node": 1, "group_size": 1}))
    res = cli([*dummy_dispatch["args"], "--machine", str(machine_file)], dict(os.environ), cwd=dummy_dispatch["tmp"])
    err = res.stderr.strip()
    assert res.returncode == 2 and "\n" not in err and "--resources" in err and "number_node" in err, res.stderr
    assert not (dummy_dispatch["results"] / "dispatch").exists()


def test_dpdispatcher_failing_mid_sweep_is_one_line_for_the_sweep(dummy_dispatch, toy_splits, fixture_data,
                                                                  monkeypatch, capsys):
    """An exception out of run_submission (here authentication, as paramiko raises it) is the
    sweep's one error with its type and message, not every task 'failed after retries (no log)'."""
    import dpdispatcher
    import paramiko

    from ood_bench.cli import main

    def refuse(self, **kw):
        raise paramiko.AuthenticationException("Authentication failed.")

    monkeypatch.setattr(dpdispatcher.Submission, "run_submission", refuse)
    monkeypatch.chdir(dummy_dispatch["tmp"])
    machine_file = dummy_dispatch["tmp"] / "machine.json"
    machine_file.write_text(json.dumps({"batch_type": "Shell", "context_type": "LocalContext", "local_root": "./",
                                        "remote_root": str(dummy_dispatch["tmp"] / "remote")}))
    capsys.readouterr()
    rc = main([*dummy_dispatch["args"], "--machine", str(machine_file)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 1
    assert err == [err[-1]] and err[-1].startswith("oodbench: error: dpdispatcher stopped the sweep")
    assert "AuthenticationException: Authentication failed." in err[-1] and "0 of 2 runs" in err[-1]
    assert not records(dummy_dispatch["results"])


def test_a_reference_baseline_runs_through_dpdispatcher(dispatch_env):
    """A scikit-learn model writes no train.log and no model file: its tasks must not wait for them."""
    args = dispatch_env["args"]
    machine, resources = args[args.index("--machine") + 1], args[args.index("--resources") + 1]
    out = cli(["run", "--model", "dummy", "--dataset", "matbench_dielectric", "--split", "toy", "--folds", "0,1",
               "--executor", "dpdispatcher", "--machine", machine, "--resources", resources, "--check-interval", "1",
               "--retries", "0"], dispatch_env["env"])
    assert out.returncode == 0, out.stderr[-2000:]
    found = records(dispatch_env["results"])
    assert [p.parent.parent.name for p in found] == ["dummy-scratch", "dummy-scratch"]
    assert not any(p.with_name("model.pt").exists() for p in found)
