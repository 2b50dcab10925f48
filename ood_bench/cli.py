"""The ``oodbench`` command line. Each command group lives in ``ood_bench/commands/<name>.py``.

Errors the user can fix (``OodBenchError``) print as one line with a non-zero exit code; heavy
libraries load only inside the command that needs them, so ``oodbench --help`` is instant.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from .errors import OodBenchError

# One module per command group, each with ``register(cli)``.
COMMAND_MODULES = [
    "datasets",
    "split",
    "run",
    "registry_cmds",
    "pretrain",
    "leaderboard",
    "quickstart",
    "analyze",
    "representative",  # adds `analyze representative-fold`
]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.option("-v", "--verbose", is_flag=True, help="Show debug logging.")
@click.version_option(package_name="oodbench")
def cli(verbose: bool) -> None:
    """Benchmark out-of-distribution property prediction of fine-tuned atomistic models.

    \b
    Example:
      oodbench quickstart
      oodbench run --model dpa3 --strategy mft --dataset qm9 --property gap
    """
    from rich.console import Console
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_time=False, show_path=False, console=Console(stderr=True))],
        force=True,
    )


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"ood_bench.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ood_bench.commands.{name}":
                continue  # command group not built yet
            raise
        module.register(cli)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    _register_all()
    try:
        rc = cli.main(args=argv, standalone_mode=False, prog_name="oodbench")
    except OodBenchError as exc:
        print(f"oodbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except click.exceptions.Abort:
        print("oodbench: aborted; finished results are kept, rerun to resume", file=sys.stderr)
        return 130
    except click.UsageError as exc:  # bad option value, unknown command: one line, then where to look
        command = exc.ctx.command_path if exc.ctx is not None else "oodbench"
        print(f"oodbench: error: {exc.format_message()} (see `{command} --help`)", file=sys.stderr)
        return exc.exit_code
    except click.ClickException as exc:
        print(f"oodbench: error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("oodbench: interrupted; finished results are kept, rerun to resume", file=sys.stderr)
        return 130
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
