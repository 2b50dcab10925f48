"""``oodbench quickstart``: the README's main command."""

from __future__ import annotations

import click

from . import data_dir_option, splits_dir_option


@click.command("quickstart")
@click.option("--steps", default=300, show_default=True, help="Training steps per run.")
@click.option("--train-fraction", default=0.02, show_default=True, help="Share of the BOOM training set used.")
@data_dir_option
@splits_dir_option
@click.option("--results-dir", type=click.Path(file_okay=False), default=None,
              help="Where its records and leaderboard go [default: results/quickstart].")
def quickstart(steps, train_fraction, data_dir, splits_dir, results_dir) -> None:
    """Run the pipeline end to end on the embedded default (CPU, under 10 minutes on 2 cores):
    the shipped stand-in pretrained model (oodbench-small), QM9 BOOM gap split, DPA3 Scratch/FT/MFT
    on a 2% training subset, a summary of those rows in the terminal and a leaderboard with them
    first (results/quickstart/LEADERBOARD.md). It always reruns.

    \b
    Example:
      oodbench quickstart
    """
    from ..quickstart import QuickstartConfig, run_quickstart

    res = run_quickstart(QuickstartConfig(steps=steps, train_fraction=train_fraction), data_dir,
                         splits_dir, results_dir)
    if not res["ok"]:
        raise click.exceptions.Exit(1)


def register(cli: click.Group) -> None:
    cli.add_command(quickstart)
