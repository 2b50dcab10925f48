"""``oodbench pretrain``: build the offline stand-in pretrained model and its auxiliary data."""

from __future__ import annotations

import click

from . import data_dir_option


@click.command("pretrain")
@click.option("--steps", default=1500, show_default=True, help="Multi-task training steps.")
@click.option("--n-molecules", default=400, show_default=True, help="QM9 molecules to label with GFN2-xTB.")
@click.option("--n-crystals", default=240, show_default=True, help="MatBench crystals to label with CHGNet.")
@click.option("--copies", default=2, show_default=True, help="Perturbed copies per structure.")
@click.option("--seed", default=0, show_default=True)
@click.option("--force", is_flag=True, help="Rebuild even if an identical one exists.")
@data_dir_option
def pretrain(steps, n_molecules, n_crystals, copies, seed, force, data_dir) -> None:
    """Build `oodbench-tiny`, a small two-branch DPA3 force field (GFN2-xTB molecules,
    CHGNet crystals): an offline stand-in for DPA-3.1-3M and SPICE2/OMat24, not a replacement.

    \b
    Example:
      oodbench pretrain --steps 1500
      oodbench run --strategy mft --dataset qm9 --pretrained oodbench-tiny
    """
    from ..backends.deepmd.pretrain import PretrainConfig
    from ..backends.deepmd.pretrain import pretrain as build

    path = build(PretrainConfig(n_molecules=n_molecules, n_crystals=n_crystals, n_copies=copies,
                                steps=steps, seed=seed), data_dir, force=force)
    click.echo(f"stand-in pretrained model: {path}")


def register(cli: click.Group) -> None:
    cli.add_command(pretrain)
