"""``oodbench models`` and ``oodbench strategies``: what is registered, one line each."""

from __future__ import annotations

import click


@click.command("models")
def models() -> None:
    """List registered models: backend, strategies they run, presets.

    \b
    Example:
      oodbench models
    """
    from ..models import MODELS

    for name, spec in MODELS.items():
        click.echo(f"{name}: {spec.summary}")
        click.echo(f"    backend {spec.backend}, version {spec.version}; strategies: "
                   f"{', '.join(spec.supported_strategies())} (default {spec.default_strategy})")
        for p in spec.presets.values():
            default = " (default)" if p.name == spec.default_preset else ""
            click.echo(f"    preset {p.name}{default}: {p.summary}")


@click.command("strategies")
def strategies() -> None:
    """List registered fine-tuning strategies.

    \b
    Example:
      oodbench strategies
    """
    from ..strategies import STRATEGIES, ordered

    for name in ordered(STRATEGIES.names()):
        s = STRATEGIES.get(name)
        needs = " (needs a pretrained model)" if s.needs_pretrained else ""
        aux = " + auxiliary force-field data" if s.uses_aux else ""
        click.echo(f"{name} ({s.label}): {s.summary}{needs}{aux}; backends: {', '.join(s.backends)}")
        for key, param in s.params.items():
            click.echo(f"    --strategy-param {key}=<{param.kind.__name__}> (default {param.default}): {param.help}")


def register(cli: click.Group) -> None:
    cli.add_command(models)
    cli.add_command(strategies)
