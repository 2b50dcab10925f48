"""``oodbench run``: the run matrix (model x strategies x folds x seeds x fractions), resumable."""

from __future__ import annotations

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
@click.option("--preset", default=None,
              help="Model preset, e.g. tiny (CPU) or paper (Table 8) for dpa3 [default: the model's; see "
                   "`oodbench models`].")
@click.option("--pretrained", default=None,
              help="Checkpoint path, a deepmd-kit registry name (DPA-3.1-3M) or oodbench-tiny "
                   "[default: DPA-3.1-3M for paper, oodbench-tiny for tiny].")
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
def run(model, strategies, dataset, prop, split, folds, seeds, fractions, preset, pretrained, aux_branch,
        aux_data, aux_prob, steps, batch_size, learning_rate, selection, executor, jobs, machine,
        resources, retries, check_interval, steps_per_second, force, dry_run, keep_work, data_dir, splits_dir,
        results_dir) -> None:
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
    from ..datasets import get_spec
    from ..errors import UsageError
    from ..models import MODELS
    from ..records import RunKey
    from ..runner.executors import EXECUTORS
    from ..runner.spec import RunSpec
    from ..runner.sweep import SweepOptions, plan
    from .run_report import execute_sweep

    spec = get_spec(dataset)
    model_spec = MODELS.get(model)
    strategy_list = _csv(strategies) if strategies else [model_spec.default_strategy]
    for s in strategy_list:
        model_spec.check_strategy(s)
    EXECUTORS.get(executor)
    if prop == "all":
        props = [t.name for t in spec.targets]
    else:
        props = [spec.target(prop).name] if prop else [spec.targets[0].name if spec.kind == "crystals" else "gap"]
    try:
        seed_list = [int(s) for s in _csv(seeds)]
        if not seed_list:
            raise UsageError("--seeds selects nothing; give comma-separated integers, e.g. 0,1,2")
        frac_list = [float(f) for f in _csv(fractions)]
    except ValueError:
        raise UsageError("--seeds takes integers and --train-fraction numbers, comma separated") from None
    template = RunSpec(
        key=RunKey(dataset, "", "", model, "", 0), preset=preset, pretrained=pretrained, aux_branch=aux_branch,
        aux_data=list(aux_data), aux_prob=aux_prob, steps=steps, batch_size=batch_size,
        learning_rate=learning_rate, selection=selection, data_dir=data_dir, splits_dir=splits_dir,
        results_dir=results_dir, keep_work=keep_work,
    )
    opts = SweepOptions(model, strategy_list, dataset, props, split, folds, seed_list, frac_list, template)
    specs = plan(opts)
    options = {"jobs": jobs, "machine": machine, "resources": resources, "retries": retries,
               "check_interval": check_interval}
    ok = execute_sweep(specs, executor, options, force=force, dry_run=dry_run, steps_per_second=steps_per_second)
    if not ok:
        raise click.exceptions.Exit(1)


def register(cli: click.Group) -> None:
    cli.add_command(run)
