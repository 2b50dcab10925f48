"""``oodbench pretrain``: build an offline stand-in pretrained model and its auxiliary data."""

from __future__ import annotations

from pathlib import Path

import click

from . import data_dir_option


@click.command("pretrain")
@click.option("--recipe", default="small", show_default=True,
              help="small: the model oodbench ships (oodbench-small); tiny: a fast one for tests.")
@click.option("--steps", type=int, help="Multi-task training steps [default: the recipe's].")
@click.option("--n-molecules", type=int, help="QM9 molecules to label with GFN2-xTB (0: every eligible one).")
@click.option("--n-crystals", type=int, help="MatBench crystals to label with CHGNet.")
@click.option("--copies", type=int, help="Perturbed copies per structure.")
@click.option("--seed", type=int, help="Sampling, perturbation and initialisation seed [default: 0].")
@click.option("--output-dir", type=click.Path(path_type=Path),
              help="Where the checkpoint goes [default: the cache, where it replaces the shipped copy].")
@click.option("--force", is_flag=True, help="Rebuild even if an identical one exists.")
@data_dir_option
def pretrain(recipe, steps, n_molecules, n_crystals, copies, seed, output_dir, force, data_dir) -> None:
    """Build a stand-in for DPA-3.1-3M: a two-branch DPA3 force field (GFN2-xTB-labelled QM9
    conformers, CHGNet-labelled MatBench crystals), never trained on a molecule of any QM9 BOOM
    test set. oodbench ships `oodbench-small`, so nobody needs to run this to fine-tune; it is
    how that model was made. Labelling and training resume where a killed build stopped.

    \b
    Example:
      oodbench pretrain --recipe small          # rebuild the shipped model (about 1.5 CPU-hours)
      oodbench pretrain --recipe tiny --steps 200
      oodbench run --strategy mft --dataset qm9 --pretrained oodbench-small
    """
    from ..backends.deepmd.pretrain import pretrain as build
    from ..backends.deepmd.pretrain import recipe as get_recipe
    from ..backends.deepmd.standin import describe_errors, read_embedded_meta

    cfg = get_recipe(recipe, steps=steps, n_molecules=n_molecules, n_crystals=n_crystals, n_copies=copies,
                     seed=seed)
    path = build(cfg, data_dir, force=force, output_dir=output_dir)
    meta = read_embedded_meta(path) or {}
    click.echo(f"stand-in pretrained model: {path} (built in {meta.get('build_seconds', 0) / 60:.1f} min)")
    for branch, err in (meta.get("holdout_errors") or {}).items():
        click.echo(f"  {branch}: {describe_errors(err)}")


def register(cli: click.Group) -> None:
    cli.add_command(pretrain)
