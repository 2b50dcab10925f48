"""CLI command groups; each module exposes ``register(cli)``. Shared options live here."""

from __future__ import annotations

import click


def _existing_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A data folder that was named must exist: falling back silently would use other data."""
    from pathlib import Path

    from ..errors import UsageError

    if value and not Path(value).expanduser().is_dir():
        raise UsageError(f"--data-dir / OODBENCH_DATA_DIR {value}: no such folder; point it at the folder "
                         "holding qm9/ and matbench/, or leave it unset to download into ~/.cache/oodbench/data")
    return value


data_dir_option = click.option(
    "--data-dir",
    envvar="OODBENCH_DATA_DIR",
    type=click.Path(file_okay=False),
    default=None,
    callback=_existing_dir,
    help="Folder with qm9/ and matbench/ data [env OODBENCH_DATA_DIR; default ~/.cache/oodbench/data].",
)
splits_dir_option = click.option(
    "--splits-dir", envvar="OODBENCH_SPLITS_DIR", type=click.Path(file_okay=False), default=None,
    help="Split files folder [env OODBENCH_SPLITS_DIR; default: the canonical split files oodbench ships].",
)
results_dir_option = click.option(
    "--results-dir", envvar="OODBENCH_RESULTS_DIR", type=click.Path(file_okay=False), default=None,
    help="Result records folder [env OODBENCH_RESULTS_DIR; default ./results].",
)
