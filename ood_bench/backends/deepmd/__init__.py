"""Everything deepmd-kit: data writer, ``dp`` launcher, checkpoint resolver, DeepEval prediction,
representation hooks, strategy recipes, the stand-in pretrained model. Registers the backend."""

from . import backend  # noqa: F401
