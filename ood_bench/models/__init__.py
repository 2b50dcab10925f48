"""Model registry: ``MODELS`` maps a name to its backend and presets; one module per model."""

from .base import MODELS, ModelSpec, label_of

__all__ = ["MODELS", "ModelSpec", "label_of"]
