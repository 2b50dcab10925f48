"""``oodbench run``: the run matrix (model x strategies x folds x seeds x fractions), resumable."""

from __future__ import annotations

from typing import Any

import click

from . import data_dir_option, results_dir_option, splits_dir_option


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command("run")
@click.option("--model", default="dpa3", show_default=True, help="Registered model (see `oodbench models`).")
@click.option("--strategy", "strategies", default=None,
              help="Strategy or comma list: scratch, lp, ft, mft (see `oodbench strategies`) "
                   "[default: the model's, e.g. ft for dpa3, scratch for the reference baselines].")
@click.option("--dataset", required=True, help="qm9, matbench_dielectric, matbench_log_gvrh, matbench_perovskites.")
@click.option("--property", "prop", default=None,
              help="Target; QM9: mu, alpha, homo, lumo, gap, r2, zpve, Cv or 'all' "
                   "[default: gap / the MatBench target].")
@click.option("--split", default=None,
              help="Split file name under splits/<dataset>/ "
                   "[default: boom-<property> for QM9, omee2024-LOCO for MatBench].")
@click.option("--folds", default="all", show_default=True, help="'all', '0', '0,3' or '0-9'.")
@click.option("--seeds", default="0", show_default=True, help="Comma list of seeds.")
@click.option("--train-fraction", "fractions", default="1", show_default=True,
              help="Comma list of training-set fractions (seeded subsamples) for data-efficiency curves.")
@click.option("--subset-seed", type=int, default=None,
              help="Seed of the training subset (--train-fraction) when it should not follow the run's seed: "
                   "N subsets x M training seeds [default: the run's seed].")
@click.option("--subset-pool", type=click.Choice(["train", "train+val"]), default="train", show_default=True,
              help="Draw the training subset from train, or from train+val (the paper's smallest sets); drawn "
                   "validation ids leave the validation set.")
@click.option("--strategy-param", "strategy_params", multiple=True, metavar="KEY=VALUE",
              help="A strategy parameter (see `oodbench strategies`); repeatable. Part of the run's identity.")
@click.option("--gpus", type=int, default=1, show_default=True,
              help="Data-parallel training processes, one per GPU (deepmd under torchrun; the paper trained QM9 "
                   "MFT on 2). With dpdispatcher, ask for as many in resources.json (gpu_per_node).")
@click.option("--preset", default=None,
              help="Model preset, e.g. tiny (CPU) or paper (Table 8) for dpa3 [default: the model's; see "
                   "`oodbench models`].")
@click.option("--pretrained", default=None,
              help="Checkpoint path, a deepmd-kit registry name (DPA-3.1-3M) or a stand-in (oodbench-small, "
                   "shipped; oodbench-tiny, built by `oodbench pretrain --recipe tiny`) "
                   "[default: DPA-3.1-3M for paper, oodbench-small otherwise].")
@click.option("--aux-branch", default=None, help="MFT: force-field branch of the checkpoint to keep training.")
@click.option("--aux-data", multiple=True, type=click.Path(exists=False),
              help="MFT: deepmd-format force-field data (folder of systems); repeatable.")
@click.option("--aux-prob", default=0.5, show_default=True, type=float, help="MFT: share of steps on the aux task.")
@click.option("--steps", type=int, default=None, help="Override the preset's training steps.")
@click.option("--batch-size", default=None, help="Override the batch size, e.g. auto:512.")
@click.option("--lr", "learning_rate", type=float, default=None, help="Override the start learning rate.")
@click.option("--select", "selection", type=click.Choice(["best_val", "last"]), default="best_val",
              show_default=True, help="Checkpoint choice: best validation RMSE, or the last one.")
@click.option("--executor", default="local", show_default=True, help="local or dpdispatcher.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1), help="local: runs at once.")
@click.option("--machine", type=click.Path(dir_okay=False), default=None, help="dpdispatcher machine.json.")
@click.option("--resources", type=click.Path(dir_okay=False), default=None, help="dpdispatcher resources.json.")
@click.option("--retries", default=2, show_default=True, help="dpdispatcher: resubmissions of a failed task.")
@click.option("--check-interval", default=30, show_default=True, help="dpdispatcher: seconds between polls.")
@click.option("--steps-per-second", type=float, default=None, help="With --dry-run: estimate GPU hours.")
@click.option("--force", is_flag=True, help="Rerun runs that already have a record.")
@click.option("--dry-run", is_flag=True, help="List the runs and the cost, do nothing.")
@click.option("--keep-work", is_flag=True, help="Keep deepmd work folders (checkpoints, fold data).")
@data_dir_option
@splits_dir_option
@results_dir_option
def run(**opts: Any) -> None:
    """Fine-tune and evaluate: one record per (dataset, split, fold, model, strategy, seed,
    fraction) under results/runs/. Rerunning the same command resumes: finished runs are skipped.

    \b
    Examples:
      oodbench run --model dpa3 --strategy mft --dataset qm9 --property gap
      oodbench run --model rf-scm-magpie --dataset matbench_dielectric --split random
      oodbench run --strategy ft,mft --dataset matbench_dielectric --split omee2024-LOCO \\
          --folds all --seeds 0,1,2 --preset paper --pretrained DPA-3.1-3M --aux-branch Omat24 \\
          --aux-data /data/omat24_deepmd
      oodbench run --strategy mft --dataset qm9 --executor dpdispatcher \\
          --machine machine.json --resources resources.json --dry-run
    """
    from ..runner.executors import EXECUTORS
    from ..runner.sweep import plan
    from .run_report import execute_sweep

    EXECUTORS.get(opts["executor"])
    specs = plan(_sweep_options(opts))
    options = {k: opts[k] for k in ("jobs", "machine", "resources", "retries", "check_interval")}
    ok = execute_sweep(specs, opts["executor"], options, force=opts["force"], dry_run=opts["dry_run"],
                       steps_per_second=opts["steps_per_second"])
    if not ok:
        raise click.exceptions.Exit(1)


def _sweep_options(opts: dict[str, Any]):
    """The run matrix from the command line; every RunSpec field comes from the option of the same
    name, so a new run option is one click option and one RunSpec field."""
    import dataclasses

    from ..datasets import get_spec
    from ..models import MODELS
    from ..records import RunKey
    from ..runner.spec import RunSpec
    from ..runner.sweep import SweepOptions

    model = MODELS.get(opts["model"])
    strategies = _csv(opts["strategies"]) if opts["strategies"] else [model.default_strategy]
    for s in strategies:
        model.check_strategy(s)
    fields = {f.name for f in dataclasses.fields(RunSpec)} - {"key"}
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items() if k in fields}
    values["strategy_params"] = _key_values(opts["strategy_params"])
    template = RunSpec(key=RunKey(opts["dataset"], "", "", opts["model"], "", 0), **values)
    seeds, fractions = _numbers(opts["seeds"], opts["fractions"])
    props = _properties(get_spec(opts["dataset"]), opts["prop"])
    return SweepOptions(opts["model"], strategies, opts["dataset"], props, opts["split"], opts["folds"], seeds,
                        fractions, template)


def _key_values(items: tuple[str, ...]) -> dict[str, str]:
    from ..errors import UsageError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--strategy-param takes KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _properties(spec, prop: str | None) -> list[str]:
    if prop == "all":
        return [t.name for t in spec.targets]
    if prop:
        return [spec.target(prop).name]
    return [spec.targets[0].name if spec.kind == "crystals" else "gap"]


def _numbers(seeds: str, fractions: str) -> tuple[list[int], list[float]]:
    from ..errors import UsageError

    try:
        seed_list = [int(s) for s in _csv(seeds)]
        frac_list = [float(f) for f in _csv(fractions)]
    except ValueError:
        raise UsageError("--seeds takes integers and --train-fraction numbers, comma separated") from None
    if not seed_list:
        raise UsageError("--seeds selects nothing; give comma-separated integers, e.g. 0,1,2")
    return seed_list, frac_list


def register(cli: click.Group) -> None:
    cli.add_command(run)
