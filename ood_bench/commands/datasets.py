"""``oodbench datasets``: what data is registered, found, and whether it is the official file."""

from __future__ import annotations

import click

from . import data_dir_option


@click.command("datasets")
@data_dir_option
def datasets(data_dir: str | None) -> None:
    """List datasets: entries, targets with units, source file and checksum status.

    \b
    Example:
      OODBENCH_DATA_DIR=../shared/data oodbench datasets
    """
    from rich.console import Console
    from rich.table import Table

    from ..datasets import DATASETS, load_dataset
    from ..errors import OodBenchError

    table = Table(title="oodbench datasets")
    for col in ("name", "entries", "with structures", "targets (unit)", "source", "checksum"):
        table.add_column(col, overflow="fold")
    for name, spec in DATASETS.items():
        targets = ", ".join(f"{t.name} ({t.unit})" for t in spec.targets)
        try:
            ds = load_dataset(name, data_dir)
        except OodBenchError as exc:
            table.add_row(name, "-", "-", targets, f"[red]{exc}[/red]", "-")
            continue
        n_struct = len(ds.ids_with_structures())
        table.add_row(name, f"{len(ds):,}", f"{n_struct:,}", targets, ds.source,
                      f"{ds.checksum_status} ({ds.sha256[:12]})")
    Console(width=160).print(table)


def register(cli: click.Group) -> None:
    cli.add_command(datasets)
