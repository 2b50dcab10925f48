"""``oodbench analyze representative-fold``: the fold data-efficiency curves are run on."""

from __future__ import annotations

import click

from . import results_dir_option


@click.command("representative-fold")
@click.option("--dataset", required=True, help="e.g. matbench_dielectric")
@click.option("--split", required=True, help="e.g. omee2024-LOCO")
@click.option("--model", default="dpa3", show_default=True)
@click.option("--strategy", default="ft", show_default=True, help="The paper picks the fold on full-data FT.")
@click.option("--test-set", default=None, help="Evaluation set [default: the split's only test set, else ood_test].")
@results_dir_option
def representative_fold_cmd(dataset: str, split: str, model: str, strategy: str, test_set: str | None,
                            results_dir: str | None) -> None:
    """Print the fold whose full-data error is closest to the mean over folds (paper Supplementary
    D.4), from existing records; then run the data-efficiency curve on it.

    \b
    Example:
      oodbench analyze representative-fold --dataset matbench_dielectric --split omee2024-LOCO
      oodbench run --strategy ft,mft --dataset matbench_dielectric --split omee2024-LOCO \\
          --folds <that fold> --train-fraction 0.00390625,0.015625,0.0625,0.25,1 --subset-pool train+val
    """
    from ..analysis.representative import representative_fold
    from ..paths import results_dir as resolve
    from ..records import load_records

    records, _ = load_records(resolve(results_dir))
    rep = representative_fold(records, dataset, split, model, strategy, test_set)
    click.echo(f"{rep.fold}")
    click.echo(f"fold {rep.fold}: {rep.metric.upper()} {rep.error:.4g} on {rep.test_set}; mean over "
               f"{rep.n_folds} folds {rep.mean_error:.4g} ({model}-{strategy}, {dataset}/{split})", err=True)


def register(cli: click.Group) -> None:
    cli.commands["analyze"].add_command(representative_fold_cmd)
