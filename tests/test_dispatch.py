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
    keys = [json.loads(p.read_text())["key"] for p in recs]
    assert len({json.dumps(k, sort_keys=True) for k in keys}) == 2
    assert not list((results / "dispatch").rglob(RECORD_NAME)), "no stray copies left behind"
    again = cli(dispatch_env["args"], env)
    assert again.returncode == 0 and "skipping 2 finished runs" in again.stderr
