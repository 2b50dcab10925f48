"""What the robust fine-tuning tests share (test_robust, test_dwise, test_llrd, test_soup,
test_robust_representation): a tiny QM9 run spec over the toy split with the test stand-in, a run
with its record and work folder, and checkpoint state comparisons. The ``env`` fixture
(conftest.py) gives each module its own results folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ood_bench.io_utils import read_json
from ood_bench.records import RunKey
from ood_bench.runner.execute import execute, work_dir
from ood_bench.runner.identity import canonical
from ood_bench.runner.spec import RunSpec

STEPS = 12


def qm9(strategy, env, *, params=None, results=None, **kw) -> RunSpec:
    return RunSpec(key=RunKey("qm9", "toy-gap", "0", "dpa3", strategy, kw.pop("seed", 0), 1.0, "gap"),
                   preset="tiny", pretrained=str(env["stand_in"].path), steps=kw.pop("steps", STEPS),
                   strategy_params=dict(params or {}), data_dir=str(env["data"]), splits_dir=str(env["splits"]),
                   results_dir=str(results or env["results"]), keep_work=True, **kw)


def last_checkpoint(work: Path) -> Path:
    from ood_bench.backends.deepmd.predict import list_checkpoints

    return list_checkpoints(work)[-1][1]


@dataclasses.dataclass
class Run:
    spec: RunSpec
    record: dict
    work: Path

    def curve(self, column: str) -> list[float]:
        return [row[column] for row in self.record["training"]["learning_curve"]]

    def last(self) -> Path:
        return last_checkpoint(self.work)


def run(spec: RunSpec) -> Run:
    return Run(spec, read_json(execute(spec)), work_dir(canonical(spec)))


def state(path: Path) -> dict[str, torch.Tensor]:
    s = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v for k, v in s.get("model", s).items() if torch.is_tensor(v)}


def part(s: dict, branch: str, what: str) -> dict[str, torch.Tensor]:
    """One branch's descriptor (``descriptor``) or head (fitting net, output bias and std: ``head``)."""
    prefix = f"model.{branch}.atomic_model."
    if what == "descriptor":
        return {k[len(prefix + "descriptor."):]: v for k, v in s.items() if k.startswith(prefix + "descriptor.")}
    return {k[len(prefix):]: v for k, v in s.items()
            if k.startswith(prefix) and not k[len(prefix):].startswith("descriptor.")}


def identical(a: dict, b: dict) -> bool:
    assert a and a.keys() == b.keys(), (sorted(a)[:3], sorted(b)[:3])
    return all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def distance(a: dict, b: dict) -> float:
    """Relative distance ||a - b|| / ||b|| over the floating tensors."""
    keys = [k for k in b if b[k].is_floating_point()]
    diff = sum(float(torch.sum((a[k].double() - b[k].double()) ** 2)) for k in keys)
    norm = sum(float(torch.sum(b[k].double() ** 2)) for k in keys)
    return (diff / norm) ** 0.5
