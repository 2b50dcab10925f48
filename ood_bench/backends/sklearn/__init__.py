"""Descriptor baselines with scikit-learn: cached per-dataset features, an estimator, no training
loop. Registers the backend."""

from . import backend  # noqa: F401
