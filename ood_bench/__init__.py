"""oodbench: out-of-distribution property prediction benchmark for pretrained atomistic models.

Importing the package does no work: datasets, models and strategies load on first use.
"""

__version__ = "0.1.0"
