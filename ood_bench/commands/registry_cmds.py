"""``oodbench models`` and ``oodbench strategies``: what is registered, one line each."""

from __future__ import annotations

import click


@click.command("models")
def models() -> None:
    """List registered models and their presets.

    \b
    Example:
      oodbench models
    """
    from ..models import MODELS

    for name, spec in MODELS.items():
        click.echo(f"{name}: {spec.summary}")
        for p in spec.presets.values():
            click.echo(f"    preset {p.name}: {p.summary}")


@click.command("strategies")
def strategies() -> None:
    """List registered fine-tuning strategies.

    \b
    Example:
      oodbench strategies
    """
    from ..strategies import STRATEGIES

    for name, s in STRATEGIES.items():
        needs = " (needs a pretrained model)" if s.needs_pretrained else ""
        aux = " + auxiliary force-field data" if s.uses_aux else ""
        click.echo(f"{name}: {s.summary}{needs}{aux}")


def register(cli: click.Group) -> None:
    cli.add_command(models)
    cli.add_command(strategies)
