"""``oodbench leaderboard``: reduce result records + published baselines to LEADERBOARD.md and figures."""

from __future__ import annotations

import click

from . import splits_dir_option


@click.command("leaderboard")
@click.option("--results-dir", envvar="OODBENCH_RESULTS_DIR", type=click.Path(), default=None,
              help="Result records folder, holding runs/ [env OODBENCH_RESULTS_DIR; default ./results].")
@click.option("--out", "out_md", type=click.Path(dir_okay=False), default=None,
              help="Markdown file to write [default: <results-dir>/LEADERBOARD.md].")
@click.option("--figures-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the PNG figures [default: <results-dir>/figures].")
@splits_dir_option
@click.option("--baselines-dir", envvar="OODBENCH_BASELINES_DIR", type=click.Path(file_okay=False), default=None,
              help="Folder of baseline cards [env OODBENCH_BASELINES_DIR; default: the repo's baselines/].")
@click.option("--no-figures", is_flag=True, help="Write only the markdown.")
@click.option("--folds", "folds_spec", default="all", show_default=True,
              help="Reduce over this fold subset only ('0', '0,3', '0-9'): for a study that runs a fixed subset "
                   "of a split's folds. Its splits are named '<split> [folds ...]' on the page.")
def leaderboard(results_dir: str | None, out_md: str | None, figures_dir: str | None, splits_dir: str | None,
                baselines_dir: str | None, no_figures: bool, folds_spec: str) -> None:
    """Build the leaderboard: published numbers (baselines/*.yaml) next to measured results.

    Reads every <results-dir>/runs/**/record.json.gz (and legacy record.json; a corrupt record is
    reported once and skipped), writes LEADERBOARD.md with the measured runs first, then the QM9
    (paper Table 3) and MatBench (Table 4) tables and the OOD/ID gaps, plus PNG figures, and
    prints where they are. A --results-dir given explicitly must hold a runs/ folder; without it,
    ./results is used and may hold none (the reported numbers only).

    \b
    Example:
      oodbench leaderboard
      oodbench leaderboard --results-dir results/quickstart
      oodbench leaderboard --results-dir results --out /tmp/LEADERBOARD.md --no-figures
      oodbench leaderboard --results-dir results/studies/standin-dielectric --folds 0
    """
    from ..leaderboard import build_leaderboard
    from ..splits import parse_fold_spec

    _require_given_results_dir(results_dir)
    folds = parse_fold_spec(folds_spec)

    def warn(problem) -> None:
        from ..leaderboard.build import problem_text

        click.echo(f"warning: skipped corrupt record {problem.path}: {problem_text(problem)}", err=True)

    out = build_leaderboard(results_dir, out_md, figures_dir, splits_dir=splits_dir, baselines_dir=baselines_dir,
                            figures=not no_figures, on_skip=warn, folds=folds)
    _print_outputs(out)


def _require_given_results_dir(results_dir: str | None) -> None:
    """A results folder the user named (option or env) must exist and hold runs/: a typo is not an empty board."""
    from pathlib import Path

    from ..errors import DataMissingError

    source = click.get_current_context().get_parameter_source("results_dir")
    if not results_dir or source not in (click.core.ParameterSource.COMMANDLINE,
                                         click.core.ParameterSource.ENVIRONMENT):
        return
    given = "--results-dir" if source == click.core.ParameterSource.COMMANDLINE else "OODBENCH_RESULTS_DIR"
    root = Path(results_dir)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "no such folder"
        raise DataMissingError(f"{given} {results_dir}: {what}")
    if not (root / "runs").is_dir():
        raise DataMissingError(f"{given} {results_dir}: no runs/ folder inside, so no result records (a typo? "
                               "records live in <results-dir>/runs/)")


def _print_outputs(out: dict) -> None:
    """Where the markdown and figures went, relative to the working directory when inside it."""
    from pathlib import Path

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
