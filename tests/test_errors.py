"""Every bad input is one line on stderr, a non-zero exit and no traceback, before anything is
created; a torn record shows as such in --dry-run; a killed driver leaves no process behind.

Each case runs the real command line (``python -m ood_bench``) in an empty folder with the
results folder inside it, and checks the folder is still empty afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ood_bench.records import RECORD_NAME


def oodbench(args: list[str], cwd: Path, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ood_bench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200", **env})


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_one_line(res: subprocess.CompletedProcess, *needles: str) -> str:
    err = res.stderr.strip()
    assert res.returncode != 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Traceback" not in res.stderr + res.stdout, res.stderr[-3000:]
    assert err.startswith("oodbench: error:") and "\n" not in err, res.stderr[-3000:]
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture()
def work(tmp_path) -> Path:
    """An empty working folder; the run's results go to work/results."""
    d = tmp_path / "work"
    d.mkdir()
    return d


@pytest.fixture()
def base(toy_splits, fixture_data, work) -> list[str]:
    """A valid run (checked by test_the_base_command_is_valid); each case adds one bad option."""
    return ["run", "--dataset", "matbench_dielectric", "--split", "toy", "--folds", "0", "--strategy", "scratch",
            "--steps", "5", "--data-dir", str(fixture_data), "--splits-dir", str(toy_splits),
            "--results-dir", str(work / "results")]


def test_the_base_command_is_valid(base, work):
    res = oodbench([*base, "--dry-run"], work)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "runs: 1, to do: 1" in res.stdout


@pytest.mark.parametrize("extra, needle", [
    (["--train-fraction", "0"], "--train-fraction"),
    (["--train-fraction", "-0.1"], "--train-fraction"),
    (["--train-fraction", "1.5"], "--train-fraction"),
    (["--steps", "-5"], "--steps"),
    (["--aux-prob", "2"], "--aux-prob"),
    (["--batch-size", "abc"], "--batch-size"),
    (["--jobs", "-3"], "--jobs"),
    (["--folds", "7-3"], "--folds"),
    (["--seeds", ""], "--seeds"),
], ids=["fraction-0", "fraction-negative", "fraction-above-1", "steps-negative", "aux-prob-2", "batch-size-abc",
        "jobs-negative", "folds-reversed", "seeds-empty"])
def test_bad_run_option_is_one_line_and_creates_nothing(base, work, extra, needle):
    res = oodbench([*base, *extra], work)  # not a dry run: a missed check would start training
    assert_one_line(res, needle)
    assert tree(work) == set()


def test_missing_data_dir_for_qm9(work):
    existed = Path("/does").exists()
    res = oodbench(["run", "--dataset", "qm9", "--data-dir", "/does/not/exist", "--results-dir",
                    str(work / "results")], work)
    assert_one_line(res, "/does/not/exist")
    assert tree(work) == set() and Path("/does").exists() == existed


def test_datasets_with_a_missing_data_dir_creates_no_folder(work):
    existed = Path("/does").exists()
    res = oodbench(["datasets", "--data-dir", "/does/not/exist"], work)
    assert_one_line(res, "/does/not/exist")
    assert not Path("/does/not/exist").exists() and Path("/does").exists() == existed
    assert tree(work) == set()


def test_leaderboard_with_a_missing_results_dir(work):
    res = oodbench(["leaderboard", "--results-dir", "/does/not/exist"], work)
    assert_one_line(res, "/does/not/exist")
    assert not Path("/does/not/exist").exists() and tree(work) == set()


def test_results_dir_under_a_regular_file(base, work):
    blocker = work / "a-file"
    blocker.write_text("not a folder\n")
    res = oodbench([*base, "--results-dir", str(blocker / "results")], work)
    assert_one_line(res, "not writable", str(blocker / "results"))
    assert tree(work) == {"a-file"} and blocker.read_text() == "not a folder\n"


def test_truncated_checkpoint(base, work, stand_in):
    ckpt = work / "model.pt"
    ckpt.write_bytes(stand_in.path.read_bytes()[:5000])  # a download or copy cut short
    res = oodbench([*base, "--strategy", "ft", "--pretrained", str(ckpt), "--dry-run"], work)
    assert_one_line(res, "model.pt")
    assert tree(work) == {"model.pt"}


def test_stand_in_aux_data_that_does_not_match_its_checkpoint(base, work, stand_in):
    ckpt = work / "standin.pt"
    shutil.copyfile(stand_in.path, ckpt)
    aux = stand_in.path.with_name(f"{stand_in.path.stem}.aux.npz")
    (work / aux.name).write_bytes(aux.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    res = oodbench([*base, "--strategy", "mft", "--pretrained", str(ckpt), "--dry-run"], work)
    assert_one_line(res, aux.name, "sha256")


def _online(host: str = "huggingface.co", port: int = 443) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def test_registry_model_without_internet_is_one_quiet_line(base, work, tmp_path):
    if _online():
        pytest.skip("this machine has internet: DPA-3.1-3M would download")
    home = tmp_path / "home"  # no cached copy of the model, and nothing written to the real home
    home.mkdir()
    res = oodbench([*base, "--strategy", "ft", "--pretrained", "DPA-3.1-3M"], work, HOME=str(home))
    if res.returncode == 0:
        pytest.skip("DPA-3.1-3M was downloaded: this machine has internet")
    err = assert_one_line(res, "DPA-3.1-3M", "--pretrained")
    assert res.stdout.strip() == "", res.stdout[-2000:]  # no download progress or retry chatter
    assert "could not get DPA-3.1-3M" in err
    assert tree(work) == set()


def test_truncated_record_shows_as_corrupt_in_dry_run(toy_splits, fixture_data, work):
    args = ["run", "--model", "dummy", "--dataset", "matbench_dielectric", "--split", "toy", "--folds", "0",
            "--data-dir", str(fixture_data), "--splits-dir", str(toy_splits), "--results-dir", str(work / "results")]
    assert oodbench(args, work).returncode == 0
    (record,) = (work / "results" / "runs").rglob(RECORD_NAME)
    body = record.read_bytes()
    record.write_bytes(body[: len(body) // 2])
    res = oodbench([*args, "--dry-run"], work)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "redo (corrupt record)" in res.stdout and "to do: 1" in res.stdout
    assert "Traceback" not in res.stderr
    assert record.read_bytes() == body[: len(body) // 2]  # a dry run changes nothing


# --- a killed driver leaves no process behind ---------------------------------------------------


def _processes() -> dict[int, tuple[int, int, int, str]]:
    """Live (non-zombie) processes: pid -> (ppid, session id, start time, command line)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp session ...
        if fields[0] in ("Z", "X"):
            continue
        out[int(name)] = (int(fields[1]), int(fields[3]), int(fields[19]), cmd.strip())
    return out


def _descendants(root: int, procs: dict[int, tuple[int, int, int, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = set(), [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux")
def test_kill_9_of_the_driver_leaves_no_worker_or_dp_process(toy_splits, fixture_data, work):
    args = ["run", "--dataset", "matbench_dielectric", "--split", "toy", "--folds", "0,1", "--strategy", "scratch",
            "--steps", "100000", "--jobs", "2", "--data-dir", str(fixture_data), "--splits-dir", str(toy_splits),
            "--results-dir", str(work / "results")]
    driver = subprocess.Popen([sys.executable, "-m", "ood_bench", *args], cwd=work, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, tuple[int, str]] = {}  # every descendant ever seen: pid -> (start time, command)
    try:
        deadline = time.time() + 240
        n_dp = 0
        while time.time() < deadline and driver.poll() is None:
            procs = _processes()
            for pid in _descendants(driver.pid, procs):
                seen.setdefault(pid, (procs[pid][2], procs[pid][3]))
            live = _descendants(driver.pid, procs)
            n_dp = sum(1 for pid in live if "deepmd" in procs[pid][3] and " train " in procs[pid][3])
            if n_dp >= 2:
                break
            time.sleep(0.5)
        assert driver.poll() is None, "the driver exited before both runs were training"
        assert n_dp >= 2, f"both workers did not start dp within the time limit: {sorted(seen.values())}"
        os.kill(driver.pid, signal.SIGKILL)  # the driver only, not its group
        driver.wait()
        deadline = time.time() + 15
        while True:
            procs = _processes()
            left = {pid: procs[pid][3] for pid, (start, _) in seen.items()
                    if pid in procs and procs[pid][2] == start}
            left.update({pid: p[3] for pid, p in procs.items() if p[1] == driver.pid})  # its session
            if not left or time.time() > deadline:
                break
            time.sleep(0.25)
        assert not left, f"still running after the driver was killed: {left}"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        procs = _processes()
        for pid, (start, _) in seen.items():  # only what this test started
            if pid in procs and procs[pid][2] == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
