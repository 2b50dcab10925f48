"""``oodbench split``: make the split files (runs only ever read them)."""

from __future__ import annotations

import click

from . import data_dir_option, splits_dir_option


@click.command("split")
@click.argument("dataset", required=False)
@click.option("--method", "methods", multiple=True, default=("all",), show_default=True,
              help="Split method(s): all, or one of boom, boom10pct (qm9); LOCO, SparseXsingle, "
                   "SparseXcluster, SparseYsingle, SparseYcluster, random, omee2024 (MatBench). Repeatable.")
@click.option("--property", "prop", default="all", show_default=True,
              help="QM9 property (mu, alpha, homo, lumo, gap, r2, zpve, Cv) or 'all'.")
@click.option("--import-published", is_flag=True,
              help="Also import the published Omee et al. 2024 folds as omee2024-<method> (MatBench).")
@click.option("--published-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with <dataset>_<method>.json.gz published folds [default <data-dir>/omee2024-folds].")
@click.option("-j", "--n-jobs", type=int, default=None, help="Processes for OFM features [default: all cores].")
@click.option("--no-feature-cache", is_flag=True, help="Recompute OFM features even if cached.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a generator parameter (e.g. n_clusters=5, n_low_density=40, n_ood=100); "
                   "the canonical files use the published values. Repeatable.")
@click.option("--list", "list_only", is_flag=True,
              help="List the split methods and the split files there are (for DATASET, or every dataset) and exit.")
@click.option("--compare", is_flag=True,
              help="Report how far the regenerated LOCO/SparseX/SparseY folds agree with the published ones.")
@click.option("--check", is_flag=True,
              help="Validate the existing split files of DATASET against the data (ids, disjointness, checksum).")
@data_dir_option
@splits_dir_option
def split(dataset: str, methods: tuple[str, ...], prop: str, import_published: bool, published_dir: str | None,
          n_jobs: int | None, no_feature_cache: bool, params: tuple[str, ...], list_only: bool, compare: bool,
          check: bool, data_dir: str | None, splits_dir: str | None) -> None:
    """Generate split files for DATASET (qm9, matbench_dielectric, matbench_log_gvrh,
    matbench_perovskites) under splits/<dataset>/<name>.json.xz.

    QM9 gets BOOM property-tail splits (boom-<property>); MatBench gets LOCO, SparseX/Y
    single/cluster (50 folds each, on cached Orbital-Field Matrix features) and the official random
    5-fold split. Same inputs give byte-identical files.

    \b
    Example:
      oodbench split --list                              # split files runs can use
      oodbench split qm9 --property gap
      oodbench split qm9 --method boom10pct --property all
      oodbench split matbench_dielectric                 # all six methods
      oodbench split matbench_perovskites --method omee2024   # import published folds only
      oodbench split matbench_dielectric --check         # validate the files already there
      oodbench split matbench_dielectric --compare       # agreement with the published folds
    """
    from rich.console import Console

    from ..datasets import get_spec
    from ..errors import UsageError

    console = Console(stderr=True)
    if list_only:
        _list([dataset] if dataset else None, splits_dir)
        return
    if not dataset:
        raise UsageError("give a DATASET (qm9, matbench_dielectric, matbench_log_gvrh, matbench_perovskites), "
                         "or --list")
    get_spec(dataset)
    if check:
        _check(dataset, data_dir, splits_dir, console)
        return
    if compare:
        from ..splits.compare import compare_with_published

        for row in compare_with_published(dataset, splits_dir):
            console.print(" ".join(f"{k}={v}" for k, v in row.items()))
        return
    from ..splits.generate import generate_splits

    written = generate_splits(dataset, methods, prop, data_dir=data_dir, splits_dir=splits_dir,
                              params=_parse_params(params), import_published=import_published,
                              published_dir=published_dir, n_jobs=n_jobs, use_cache=not no_feature_cache,
                              progress=True)
    console.print(f"[green]{len(written)} split files written[/green] for {dataset}")


def _check(dataset: str, data_dir: str | None, splits_dir: str | None, console) -> None:
    """Load every split file of the dataset with full validation; the first problem is the error."""
    from rich.table import Table

    from ..datasets import load_dataset
    from ..errors import DataMissingError
    from ..splits.generate import set_sizes
    from ..splits.schema import list_splits, load_split

    found = list_splits(dataset, splits_dir)
    if not found:
        raise DataMissingError(f"no split files for {dataset}; run `oodbench split {dataset}`")
    ds = load_dataset(dataset, data_dir)
    known = set(ds.ids)
    table = Table(title=f"split files of {dataset}")
    for col in ("name", "folds", "sizes", "generator", "dataset sha256"):
        table.add_column(col, overflow="fold")
    for _, name, _path in found:
        s = load_split(dataset, name, splits_dir, known_ids=known)
        same = "matches" if s.dataset_sha256 == ds.sha256 else f"[yellow]differs ({s.dataset_sha256[:12]})[/yellow]"
        sizes = "; ".join(f"{k} {v}" for k, v in set_sizes(s).items())
        table.add_row(name, str(len(s.folds)), sizes, s.generator.get("name", "?"), same)
    console.print(table)
    console.print(f"[green]{len(found)} split files valid[/green] for {dataset} ({ds.checksum_status})")


def _parse_params(items: tuple[str, ...]) -> dict:
    import json

    from ..errors import UsageError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _list(datasets: list[str] | None, splits_dir: str | None) -> None:
    """Split methods per dataset, and the split files in the splits folder (what `run --split` takes)."""
    from ..datasets import DATASETS, get_spec
    from ..paths import splits_dir as resolve
    from ..splits.methods import methods_for
    from ..splits.schema import list_splits

    click.echo(f"split files in {resolve(splits_dir)}")
    for name in datasets or DATASETS.names():
        methods = [m.name for m in methods_for(get_spec(name).kind, include_non_default=True)]
        files = [n for _, n, _ in list_splits(name, splits_dir)]
        click.echo(f"{name}: methods {', '.join(methods)}")
        click.echo(f"    files: {', '.join(files) if files else '(none yet: run `oodbench split ' + name + '`)'}")


def register(cli: click.Group) -> None:
    cli.add_command(split)
