"""CLI command groups; each module exposes ``register(cli)``. Shared options live here."""

from __future__ import annotations

import click

data_dir_option = click.option(
    "--data-dir",
    envvar="OODBENCH_DATA_DIR",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder with qm9/ and matbench/ data [env OODBENCH_DATA_DIR; default ~/.cache/oodbench/data].",
)
splits_dir_option = click.option(
    "--splits-dir", envvar="OODBENCH_SPLITS_DIR", type=click.Path(file_okay=False), default=None,
    help="Split files folder [env OODBENCH_SPLITS_DIR; default ./splits].",
)
results_dir_option = click.option(
    "--results-dir", envvar="OODBENCH_RESULTS_DIR", type=click.Path(file_okay=False), default=None,
    help="Result records folder [env OODBENCH_RESULTS_DIR; default ./results].",
)
