"""What a fine-tuning strategy is to oodbench: a name, a label, an order, and the backends that
can run it. How a backend runs it (a deepmd input, a closed-form fit) lives in that backend.

Adding a strategy is adding one module that registers a ``Strategy`` in ``STRATEGIES``; the runner,
leaderboard and analysis read labels and order from here and never branch on names.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry


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

    def supports(self, backend: str) -> bool:
        return backend in self.backends


STRATEGIES: Registry[Strategy] = Registry("strategy", "ood_bench.strategies")


def ordered(names) -> list[str]:
    """Strategy names in their registered order (unknown names last, alphabetically)."""
    known = dict(STRATEGIES.items())
    return sorted(names, key=lambda n: (known[n].order if n in known else 1000, n))


def reference_strategy() -> str:
    return next(n for n, s in STRATEGIES.items() if s.reference)


def label_of(name: str) -> str:
    """Display label (``MFT``); a name no longer registered shows as itself."""
    return STRATEGIES.get(name).label if name in STRATEGIES else name
