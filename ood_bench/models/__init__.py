"""Model registry: ``MODELS`` maps a name (``dpa3``) to its presets; one module per model."""

from .base import MODELS, ModelSpec, Preset

__all__ = ["MODELS", "ModelSpec", "Preset"]
