"""Backends run what is model-specific: ``deepmd`` (DPA3 through deepmd-kit) and ``sklearn``
(descriptor baselines). Nothing heavy is imported until a backend is used."""

from .base import BACKENDS, FINISHED_STAGE, Backend, Candidate, EvalSet, FoldInputs, Resolution, Trained, backend_for

__all__ = ["BACKENDS", "FINISHED_STAGE", "Backend", "Candidate", "EvalSet", "FoldInputs", "Resolution", "Trained",
           "backend_for"]
