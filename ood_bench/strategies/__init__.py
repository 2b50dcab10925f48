"""Strategy registry: what each strategy is and which backends run it (one module per family)."""

from .base import STRATEGIES, Param, Strategy, label_of, ordered, reference_strategy

__all__ = ["STRATEGIES", "Param", "Strategy", "label_of", "ordered", "reference_strategy"]
