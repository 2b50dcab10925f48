"""``oodbench leaderboard``: reduce result records + published baselines to LEADERBOARD.md and figures."""

from __future__ import annotations

import click

from . import results_dir_option, splits_dir_option


@click.command("leaderboard")
@results_dir_option
@click.option("--out", "out_md", type=click.Path(dir_okay=False), default=None,
              help="Markdown file to write [default: <results-dir>/LEADERBOARD.md].")
@click.option("--figures-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the PNG figures [default: <results-dir>/figures].")
@splits_dir_option
@click.option("--baselines-dir", envvar="OODBENCH_BASELINES_DIR", type=click.Path(file_okay=False), default=None,
              help="Folder of baseline cards [env OODBENCH_BASELINES_DIR; default: the repo's baselines/].")
@click.option("--no-figures", is_flag=True, help="Write only the markdown.")
def leaderboard(results_dir: str | None, out_md: str | None, figures_dir: str | None, splits_dir: str | None,
                baselines_dir: str | None, no_figures: bool) -> None:
    """Build the leaderboard: published numbers (baselines/*.yaml) next to measured results.

    Reads every results/runs/**/record.json (a corrupt record is reported and skipped), writes
    LEADERBOARD.md with the QM9 (paper Table 3) and MatBench (Table 4) tables and the OOD/ID
    gaps, plus PNG figures, and prints where they are.

    \b
    Example:
      oodbench leaderboard
      oodbench leaderboard --results-dir results --out results/LEADERBOARD.md
    """
    from pathlib import Path

    from ..leaderboard import build_leaderboard

    out = build_leaderboard(results_dir, out_md, figures_dir, splits_dir=splits_dir, baselines_dir=baselines_dir,
                            figures=not no_figures)
    for path, problem in out["skipped"]:
        click.echo(f"warning: skipped corrupt record {path}: {problem}", err=True)
    cwd = Path.cwd()

    def show(p: Path) -> str:
        p = Path(p).resolve()
        return str(p.relative_to(cwd)) if p.is_relative_to(cwd) else str(p)

    click.echo(f"leaderboard: {show(out['markdown'])} ({out['n_records']} records, {len(out['skipped'])} skipped, "
               f"{out['n_cards']} baseline cards)")
    if out["figures"]:
        click.echo(f"figures ({len(out['figures'])}) in {show(out['figures_dir'])}:")
        for f in out["figures"]:
            click.echo(f"  {show(f)}")


def register(cli: click.Group) -> None:
    cli.add_command(leaderboard)
