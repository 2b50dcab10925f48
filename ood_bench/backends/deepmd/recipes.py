"""Every deepmd recipe, registered: the paper's strategies and ablations (``inputs.py``) and the
robust fine-tuning family, one module per mechanism. Read ``RECIPES`` from here: ``inputs.py``
does not import the modules that subclass its recipes (they import it)."""

from . import dwise, feature_reg, llrd, robust, soup  # noqa: F401  (each registers its recipes)
from .inputs import RECIPES

__all__ = ["RECIPES"]
