"""Strategy registry: scratch, lp, ft, mft (one module each)."""

from .base import PROPERTY_BRANCH, STRATEGIES, RunContext, Strategy

__all__ = ["PROPERTY_BRANCH", "STRATEGIES", "RunContext", "Strategy"]
