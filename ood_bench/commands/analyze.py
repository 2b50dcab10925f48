"""``oodbench analyze``: analyses of finished runs (representation collapse and drift)."""

from __future__ import annotations

import click

from . import data_dir_option, results_dir_option, splits_dir_option


@click.group("analyze")
def analyze() -> None:
    """Analyse finished runs (needs the model.pt kept beside each record).

    \b
    Example:
      oodbench analyze collapse --runs "dataset=qm9,property=gap,split=boom-gap"
    """


@analyze.command("collapse")
@click.option("--runs", "selector", default="", show_default=False,
              help="Which runs: comma-separated key=value filters over record keys (dataset, split, fold, "
                   "model, strategy, seed, train_fraction, property); 'a|b' allows either value. "
                   "Empty = every record.")
@results_dir_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder for collapse.md, collapse.json and figures/ [default: <results-dir>/analysis].")
@click.option("--max-per-class", type=click.IntRange(min=2), default=2000, show_default=True,
              help="Atoms (and edges) sampled per class from the OOD test set for t-SNE + Davies-Bouldin.")
@click.option("--w1-samples", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Atoms sampled per set (train, ID, OOD) for the 1-Wasserstein drift.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and t-SNE.")
@click.option("--no-figures", is_flag=True, help="Write only collapse.md and collapse.json.")
@data_dir_option
@splits_dir_option
def collapse(selector: str, results_dir: str | None, out_dir: str | None, max_per_class: int, w1_samples: int,
             seed: int, no_figures: bool, data_dir: str | None, splits_dir: str | None) -> None:
    """Compare each selected run's fine-tuned model with its pretrained model (paper Fig. 2(d-i), Table 2).

    Node DB ratio: Davies-Bouldin index of the 2-D t-SNE map of per-atom descriptors (classes =
    element x covalent neighbours, OOD test set) relative to the pretrained model's (>1 = collapse).
    Edge DB ratio: the same for DPA3 edge embeddings of C-H / C-O pairs (near, 3-4 A, 5-6 A).
    W1: exact 1-Wasserstein distance between pretrained and fine-tuned descriptors of the same atoms
    on the train, ID and OOD sets (drift). Scratch runs are compared with the pretrained model of the
    other selected runs. t-SNE costs minutes for ~20k points: lower --max-per-class to go faster.

    \b
    Example:
      oodbench analyze collapse --runs "dataset=qm9,property=gap,split=boom-gap"
      oodbench analyze collapse --runs "dataset=qm9,strategy=ft|mft,seed=0" --max-per-class 500
    """
    from pathlib import Path

    from rich.console import Console

    from ..analysis.collapse import RichReporter, parse_selector, run_collapse, select_records
    from ..errors import OodBenchError
    from ..paths import results_dir as resolve_results
    from ..progress import progress_bar
    from ..records import load_records

    filters = parse_selector(selector)
    results = resolve_results(results_dir)
    records, bad = load_records(results)
    for p in bad:
        click.echo(f"warning: skipped corrupt record {p.path}: {p.problem}", err=True)
    picked = select_records(records, filters)
    if not picked:
        raise OodBenchError(
            f"no runs match --runs '{selector or 'all'}' among {len(records)} records in {results / 'runs'}"
        )
    out = Path(out_dir) if out_dir else results / "analysis"
    console = Console(stderr=True)
    console.print(f"analysing {len(picked)} run(s) -> {out}")
    with progress_bar(console=console) as progress:
        body = run_collapse(picked, out, data_dir=data_dir, splits_dir=splits_dir,
                            max_per_class=max_per_class, w1_samples=w1_samples, seed=seed,
                            selector=selector, reporter=RichReporter(progress), figures=not no_figures,
                            results_dir=results)
    n_runs = sum(len(g["runs"]) for g in body["groups"])
    click.echo(f"collapse analysis: {out / 'collapse.md'} ({n_runs} runs in {len(body['groups'])} group(s); "
               f"{len(body['notes'])} skipped or noted)")
    for g in body["groups"]:
        for f in g["figures"]:
            click.echo(f"  {out / f}")


def register(cli: click.Group) -> None:
    cli.add_command(analyze)
