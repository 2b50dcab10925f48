"""What a fine-tuning strategy is to oodbench: a name, a label, an order, and the backends that
can run it. How a backend runs it (a deepmd input, a closed-form fit) lives in that backend.

Adding a strategy is adding one module that registers a ``Strategy`` in ``STRATEGIES``; the runner,
leaderboard and analysis read labels and order from here and never branch on names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..registry import Registry


@dataclass(frozen=True)
class Param:
    """One ``--strategy-param KEY=VALUE``: its type, default and meaning (shown by `oodbench strategies`)."""

    default: Any
    help: str
    kind: type = float

    def parse(self, name: str, text: str) -> Any:
        try:
            if self.kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                return text.lower() in ("true", "1", "yes")
            return self.kind(text)
        except ValueError:
            raise UsageError(f"--strategy-param {name}={text}: expected {self.kind.__name__}") from None


@dataclass(frozen=True)
class Strategy:
    name: str
    label: str
    summary: str
    order: int  # position in tables and figures (the paper's Scratch, LP, FT, MFT first)
    backends: tuple[str, ...]
    needs_pretrained: bool = False
    uses_aux: bool = False
    # The strategy others are measured against (the paper's Fig. 2: improvement over Scratch).
    reference: bool = False
    # What a comparison table does with it: "fine-tune" (the paper's plain FT, the second
    # reference of Fig. 2), "multi-task" (MFT, the ablations' baseline), "ablation" (Fig. 3(c-e)), or None.
    role: str | None = None
    params: dict[str, Param] = field(default_factory=dict)
    # The parameter that counts full trainings in one run (a soup's members), for cost estimates.
    trainings_param: str | None = None

    def supports(self, backend: str) -> bool:
        return backend in self.backends

    def resolve_params(self, given: dict[str, str]) -> dict[str, Any]:
        """Defaults overridden by ``given`` (strings from the command line), typed; an unknown key is
        one line naming the known ones."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            known = ", ".join(self.params) or "none"
            raise UsageError(f"strategy {self.name} has no parameter '{unknown[0]}'; its parameters: {known}")
        return {k: (p.parse(k, given[k]) if k in given else p.default) for k, p in self.params.items()}

    def trainings_per_run(self, given: dict[str, str]) -> int:
        """How many times one run trains the model (1, or a soup's member count)."""
        return int(self.resolve_params(given)[self.trainings_param]) if self.trainings_param else 1

    def param_variant(self, given: dict[str, str]) -> str:
        """The non-default parameters, canonically (``delta=0.1,k=2``): part of the record path."""
        values = self.resolve_params(given)
        return ",".join(f"{k}={_fmt(values[k])}" for k in sorted(values) if values[k] != self.params[k].default)


STRATEGIES: Registry[Strategy] = Registry("strategy", "ood_bench.strategies")


def ordered(names) -> list[str]:
    """Strategy names in their registered order (unknown names last, alphabetically)."""
    known = dict(STRATEGIES.items())
    return sorted(names, key=lambda n: (known[n].order if n in known else 1000, n))


def reference_strategy() -> str:
    return next(n for n, s in STRATEGIES.items() if s.reference)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def label_of(name: str) -> str:
    """Display label (``MFT``); a name no longer registered shows as itself."""
    return STRATEGIES.get(name).label if name in STRATEGIES else name
